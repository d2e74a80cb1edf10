import Foundation
import Testing
import XMPPClientCore

@testable import XMPPLoadKit

/// The command line's flags map onto the same model as a scenario file.
@Suite("Command-line options")
struct CommandLineOptionsTests {
    @Test("no flags: the documented defaults, one chat population of two BOSH sessions")
    func defaults() throws {
        let scenario = try CommandLineOptions().scenario(defaultURL: "http://127.0.0.1:5280/http-bind")
        #expect(
            scenario.populations == [
                Population(
                    name: "chat", transport: .bosh, endpoint: Endpoint("http://127.0.0.1:5280/http-bind")!, sessions: 2,
                    arrival: .constant(rate: 100, start: 0), behaviours: [.chat(.init(rate: 10))]
                )
            ])
        #expect(scenario.duration == 10 && scenario.drainSeconds == 5 && scenario.boshWait == 30 && scenario.boshRequestTimeout == 45)
        #expect(scenario.logout && scenario.threads == 1 && scenario.domain == "localhost" && scenario.userPattern == "user%d")
    }

    static func flags() -> CommandLineOptions {
        var options = CommandLineOptions()
        options.transport = "websocket"
        options.url = "ws://127.0.0.1:5280/xmpp-websocket"
        options.domain = "example.org"
        options.users = "u%d"
        options.password = "p%d"
        options.firstUser = 5
        options.sessions = 11
        options.idleSessions = 2
        options.rampRate = 20
        options.messageRate = 30
        options.duration = 7
        options.drain = 2
        options.payloadBytes = 64
        options.sasl = "scram-sha-1"
        options.noLogout = true
        options.boshWait = 10
        options.loginTimeout = 12
        options.threads = 2
        return options
    }

    @Test("flags with idle sessions: a chat population of the first sessions (pairs), an idle one arriving right after")
    func idleSplit() throws {
        let scenario = try Self.flags().scenario()
        let endpoint = Endpoint("ws://127.0.0.1:5280/xmpp-websocket")!
        #expect(
            scenario.populations == [
                Population(
                    name: "chat", transport: .websocket, endpoint: endpoint, sessions: 8, arrival: .constant(rate: 20, start: 0),
                    saslMechanism: .scramSHA1, behaviours: [.chat(.init(rate: 30, payloadBytes: 64))]
                ),
                // 11 − 2 idle leaves 9 active: 8 chat in pairs, the odd one out idles with the 2.
                Population(
                    name: "idle", transport: .websocket, endpoint: endpoint, sessions: 3, arrival: .constant(rate: 20, start: 0.4),
                    saslMechanism: .scramSHA1, behaviours: [.idle(.init())]
                ),
            ])
        #expect(!scenario.logout && scenario.boshWait == 10 && scenario.boshRequestTimeout == 25 && scenario.threads == 2)
        // The arrival schedule is the one --ramp-rate always gave: evenly at 20/s in user order.
        let (_, offsets) = LoadRunner.assign(scenario, workers: 2)
        #expect(zip(offsets, (0..<11).map { Double($0) / 20 }).allSatisfy { abs($0 - $1) < 1e-9 })
    }

    @Test("the same load written as a scenario file is the same model")
    func sameAsFile() throws {
        let yaml = """
            url: ws://127.0.0.1:5280/xmpp-websocket
            transport: websocket
            domain: example.org
            users: u%d
            password: p%d
            first-user: 5
            sasl: SCRAM-SHA-1
            duration: 7
            drain: 2
            logout: false
            bosh-wait: 10
            login-timeout: 12
            threads: 2
            populations:
              - name: chat
                sessions: 8
                arrival: {process: constant, rate: 20}
                behaviours: [{chat: {rate: 30, payload-bytes: 64}}]
              - name: idle
                sessions: 3
                arrival: {process: constant, rate: 20, start: 0.4}
                behaviours: [idle]
            """
        #expect(try ScenarioFile.parse(yaml, file: "same.yaml") == Self.flags().scenario())
    }

    @Test("--scenario with a load flag is refused, naming the flag; pid and thread flags apply on top of the file")
    func withFile() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("tether-load-\(UUID().uuidString).yaml").path
        try "url: http://127.0.0.1:1/http-bind\ntransport: bosh\npopulations: [{sessions: 1, behaviours: [idle]}]\n".write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        var options = CommandLineOptions()
        options.scenarioFile = path
        options.sessions = 4
        #expect {
            try options.scenario()
        } throws: { error in
            "\(error)".hasPrefix("--sessions cannot be combined with --scenario")
        }
        options.sessions = nil
        options.threads = 3
        options.serverPID = 42
        let scenario = try options.scenario()
        #expect(scenario.threads == 3 && scenario.serverPID == 42 && scenario.sessions == 1)
    }

    @Test("bad flags are named")
    func badFlags() {
        var options = CommandLineOptions()
        options.url = "http://127.0.0.1:1/http-bind"
        options.idleSessions = 3
        #expect(throws: CommandLineError("--idle-sessions must be between 0 and --sessions")) { try options.scenario() }
        options.idleSessions = nil
        options.transport = "carrier-pigeon"
        #expect(throws: CommandLineError("--transport must be bosh, websocket or tcp")) { try options.scenario() }
        options.transport = "tcp"
        #expect { try options.scenario() } throws: { "\($0)".contains("transport tcp does not go with a http:// endpoint") }
    }
}
