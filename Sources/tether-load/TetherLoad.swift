import ArgumentParser
import Foundation
import XMPPLoadKit

#if canImport(Glibc)
import Glibc
#endif

@main
struct TetherLoad: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tether-load",
        abstract: "A load generator for XMPP clients over BOSH, WebSocket or plain TCP.",
        subcommands: [Run.self, Stub.self]
    )
}

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Simulate XMPP clients against an endpoint and measure it.",
        discussion: """
            Sessions log in (SASL PLAIN, restart, bind, presence) at --ramp-rate, then exchange messages \
            in pairs at --message-rate in total for --duration seconds, then log out. Every message \
            carries its send time; any message not delivered within --drain seconds is lost, and a run \
            with lost messages, failed sessions or errors exits with status 1.
            """
    )

    @Option(name: .long, help: "bosh, websocket or tcp.")
    var transport: String = "bosh"

    @Option(name: .long, help: ArgumentHelp("http://host:port/http-bind, ws://host:port/xmpp-websocket or tcp://host:5222.", valueName: "url"))
    var url: String?

    @Option(name: .long, help: "XMPP domain.")
    var domain: String = "localhost"

    @Option(name: .long, help: ArgumentHelp("User name pattern; %d is the user number.", valueName: "pattern"))
    var users: String = "user%d"

    @Option(name: .long, help: ArgumentHelp("Password pattern; %d is the user number.", valueName: "pattern"))
    var password: String = "pass%d"

    @Option(name: .long, help: "Number of the first user.")
    var firstUser: Int = 1

    @Option(name: .long, help: "Sessions in all.")
    var sessions: Int = 2

    @Option(name: .long, help: "How many of the sessions stay idle (log in, no messages).")
    var idleSessions: Int = 0

    @Option(name: .long, help: "New sessions per second.")
    var rampRate: Double = 100

    @Option(name: .long, help: "Messages per second, all pairs together.")
    var messageRate: Double = 10

    @Option(name: .long, help: "Seconds of message exchange (per step with --stepped); an all-idle run (--idle-sessions = --sessions) holds its sessions this long.")
    var duration: Double = 10

    @Option(name: .long, help: ArgumentHelp("Stepped rates START:STEP:MAX (msg/s): find the knee.", valueName: "start:step:max"))
    var stepped: String?

    @Option(name: .long, help: ArgumentHelp("With --stepped: a first step at this rate (msg/s), reported but left out of the knee search.", valueName: "rate"))
    var referenceRate: Double?

    @Option(name: .customLong("p99-bound-ms"), help: "The p99 latency bound of a stepped run, milliseconds.")
    var p99BoundMs: Double = 100

    @Option(name: .long, help: "Seconds to wait for messages in flight after sending stops.")
    var drain: Double = 5

    @Option(name: .long, help: "Extra body bytes per message.")
    var payloadBytes: Int = 0

    @Option(name: .long, help: "Resource asked for at bind.")
    var resource: String = "load"

    @Option(name: .long, help: "SASL mechanism: PLAIN or SCRAM-SHA-1.")
    var sasl: String = "PLAIN"

    @Flag(name: .long, help: "Leave without unavailable presence and stream close/terminate.")
    var noLogout = false

    @Option(name: .long, help: "BOSH 'wait', seconds.")
    var boshWait: Int = 30

    @Option(name: .long, help: "Seconds a session may take to log in.")
    var loginTimeout: Double = 30

    @Option(name: .long, help: "Event-loop threads of the load generator (1 keeps its CPU easy to read).")
    var threads: Int = 1

    @Option(name: .long, help: "PID of the server process, to sample its RSS and read its CPU time per step (Linux /proc).")
    var serverPid: Int32?

    @Option(name: .long, help: "PID of the server behind the measured one (e.g. the XMPP server behind Tether), to read its CPU time per step too.")
    var upstreamPid: Int32?

    @Option(name: .long, help: ArgumentHelp("Write the JSON result here.", valueName: "path"))
    var json: String?

    @Option(name: .long, help: ArgumentHelp("Write the HTML report here.", valueName: "path"))
    var html: String?

    @Flag(name: .long, help: "Start the in-process upstream stub (a measuring instrument, not a real server) and, with --transport tcp and no --url, aim at it.")
    var upstreamStub = false

    @Option(name: .long, help: ArgumentHelp("Where the stub listens with --upstream-stub.", valueName: "host:port"))
    var stubListen: String = "127.0.0.1:0"

    func run() async throws {
        guard let transport = LoadScenario.Transport(rawValue: self.transport) else {
            throw ValidationError("--transport must be bosh, websocket or tcp")
        }
        var stub: UpstreamStub?
        if self.upstreamStub {
            let (host, port) = try parseHostPort(self.stubListen)
            let started = try await UpstreamStub.start(.init(host: host, port: port))
            stub = started
            FileHandle.standardError.write(Data("upstream stub listening on \(host):\(started.port)\n".utf8))
        }
        var urlText = self.url
        if urlText == nil, transport == .tcp, let stub { urlText = "tcp://127.0.0.1:\(stub.port)" }
        guard let urlText, let endpoint = Endpoint(urlText) else {
            await stub?.stop()
            throw ValidationError("--url is missing or not http://, ws:// or tcp://")
        }
        guard let mechanism = SASLMechanism(rawValue: self.sasl.uppercased()) else {
            await stub?.stop()
            throw ValidationError("--sasl must be PLAIN or SCRAM-SHA-1")
        }
        var stepped: LoadScenario.Stepped?
        if let text = self.stepped {
            guard let parsed = LoadScenario.Stepped(text) else {
                await stub?.stop()
                throw ValidationError("--stepped must be START:STEP:MAX with START > 0, STEP > 0, MAX ≥ START")
            }
            stepped = parsed
        }
        let scenario = LoadScenario(
            transport: transport, endpoint: endpoint, domain: self.domain, userPattern: self.users, passwordPattern: self.password,
            firstUser: self.firstUser, sessions: self.sessions, idleSessions: self.idleSessions, rampRate: self.rampRate,
            messageRate: self.messageRate, duration: self.duration, stepped: stepped, referenceRate: self.referenceRate, p99BoundMilliseconds: self.p99BoundMs,
            drainSeconds: self.drain, payloadBytes: self.payloadBytes, resource: self.resource, saslMechanism: mechanism, logout: !self.noLogout,
            boshWait: self.boshWait, boshRequestTimeout: Double(self.boshWait) + 15, loginTimeout: self.loginTimeout,
            threads: self.threads, serverPID: self.serverPid, upstreamPID: self.upstreamPid
        )
        let problems = scenario.validate()
        guard problems.isEmpty else {
            await stub?.stop()
            throw ValidationError(problems.joined(separator: "; "))
        }
        let progress = ProgressLine(enabled: isatty(STDERR_FILENO) == 1)
        let result: LoadResult
        do {
            result = try await LoadRunner(scenario: scenario, progress: { progress.show($0) }).run()
        } catch {
            progress.finish()
            await stub?.stop()
            throw error
        }
        progress.finish()
        await stub?.stop()

        if let path = self.json {
            try ReportWriter.json(result).write(to: URL(fileURLWithPath: path))
        }
        if let path = self.html {
            try Data(HTMLReport.render(result).utf8).write(to: URL(fileURLWithPath: path))
        }
        print(ReportWriter.summary(result))
        if !result.passed {
            throw ExitCode(1)
        }
    }
}

struct Stub: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the upstream stub alone: a minimal XMPP server for measuring (any SASL PLAIN login, bind, message routing). Not a real server.",
        discussion: "Prints 'stub listening on HOST:PORT' and serves until SIGINT/SIGTERM."
    )

    @Option(name: .long, help: ArgumentHelp("Address to listen on.", valueName: "host:port"))
    var listen: String = "127.0.0.1:5299"

    @Option(name: .long, help: "Drop every Nth message (to test loss accounting); 0 drops none.")
    var dropEvery: Int = 0

    func run() async throws {
        let (host, port) = try parseHostPort(self.listen)
        let stub = try await UpstreamStub.start(.init(host: host, port: port, dropEveryNthMessage: self.dropEvery))
        // Scripts read the bound port from this line.
        FileHandle.standardOutput.write(Data("stub listening on \(host):\(stub.port)\n".utf8))
        await waitForTerminationSignal()
        let counters = try await stub.counters()
        FileHandle.standardError.write(Data("stub: routed \(counters.routed), dropped \(counters.dropped), undeliverable \(counters.undeliverable)\n".utf8))
        await stub.stop()
    }
}

func parseHostPort(_ text: String) throws -> (String, Int) {
    guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]) else {
        throw ValidationError("expected host:port, got '\(text)'")
    }
    var host = String(text[..<colon])
    if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
    return (host, port)
}

/// Suspends until SIGINT or SIGTERM.
func waitForTerminationSignal() async {
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
        signal(SIGINT, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
        let queue = DispatchQueue(label: "tether-load.signals")
        let sources = [SIGINT, SIGTERM].map { DispatchSource.makeSignalSource(signal: $0, queue: queue) }
        let once = OnceFlag()
        for source in sources {
            source.setEventHandler {
                if once.take() { continuation.resume() }
            }
            source.resume()
        }
        // Keep the sources alive for the life of the process.
        SignalSources.keep(sources)
    }
}

final class OnceFlag: @unchecked Sendable {
    private var done = false
    private let lock = NSLock()
    func take() -> Bool {
        self.lock.lock()
        defer { self.lock.unlock() }
        if self.done { return false }
        self.done = true
        return true
    }
}

enum SignalSources {
    nonisolated(unsafe) private static var sources: [any DispatchSourceSignal] = []
    static func keep(_ new: [any DispatchSourceSignal]) { self.sources += new }
}
