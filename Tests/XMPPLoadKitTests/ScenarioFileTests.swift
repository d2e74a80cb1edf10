import Foundation
import Testing
import XMPPClientCore

@testable import XMPPLoadKit

/// Scenario files: what they parse to, and the errors for what they must not say.
@Suite("Scenario files")
struct ScenarioFileTests {
    static let full = """
        url: http://127.0.0.1:5280/http-bind
        domain: example.org
        users: load%d
        password: pw%d
        first-user: 100
        sessions: 40
        duration: 30
        drain: 3
        bosh-wait: 20
        login-timeout: 15
        threads: 2
        populations:
          - name: browsers
            transport: bosh
            share: 0.5
            arrival: {process: ramp, from: 1, to: 20, over: 5}
            sasl: SCRAM-SHA-1
            behaviours:
              - chat: {rate: 40, payload-bytes: 16, slo: {p99-ms: 250, max-failures: 0}}
              - reload: {every: 10, jitter: 2, gap: 0.25, slo: {min-success: 0.99}}
            slo: {p99-ms: 2000}
          - name: tabs
            transport: websocket
            url: ws://127.0.0.1:5280/xmpp-websocket
            sessions: 10
            arrival: {process: burst, at: 3, spread: 1}
            behaviours:
              - idle
              - tab-close: {after: 5, verify: false}
          - name: lurkers
            transport: websocket
            url: ws://127.0.0.1:5280/xmpp-websocket
            sessions: 10
            arrival: {process: poisson, rate: 5, seed: 42}
            behaviours: [idle]
        """

    @Test("a complete YAML file: every key lands in the model")
    func complete() throws {
        let scenario = try ScenarioFile.parse(Self.full, file: "full.yaml")
        #expect(scenario.domain == "example.org")
        #expect(scenario.userPattern == "load%d" && scenario.passwordPattern == "pw%d" && scenario.firstUser == 100)
        #expect(scenario.duration == 30 && scenario.drainSeconds == 3 && scenario.boshWait == 20 && scenario.boshRequestTimeout == 35)
        #expect(scenario.loginTimeout == 15 && scenario.threads == 2)
        #expect(scenario.populations.map(\.name) == ["browsers", "tabs", "lurkers"])
        #expect(scenario.sessions == 40)
        let browsers = scenario.populations[0]
        #expect(browsers.transport == .bosh && browsers.endpoint == Endpoint("http://127.0.0.1:5280/http-bind"))
        #expect(browsers.sessions == 20)
        #expect(browsers.arrival == .ramp(from: 1, to: 20, over: 5, start: 0))
        #expect(browsers.saslMechanism == .scramSHA1)
        #expect(
            browsers.behaviours == [
                .chat(.init(rate: 40, payloadBytes: 16, slo: .init(p99Milliseconds: 250, maxFailures: 0))),
                .reload(.init(every: 10, jitter: 2, gap: 0.25, slo: .init(minSuccessRatio: 0.99))),
            ])
        #expect(browsers.slo == .init(p99Milliseconds: 2000))
        let tabs = scenario.populations[1]
        #expect(tabs.transport == .websocket && tabs.sessions == 10 && tabs.arrival == .burst(at: 3, spread: 1))
        #expect(tabs.behaviours == [.idle(.init()), .tabClose(.init(after: 5, verify: false))])
        #expect(scenario.populations[2].arrival == .poisson(rate: 5, seed: 42, start: 0))
        #expect(scenario.firstSession(ofPopulation: 2) == 30)
        #expect(scenario.messagingSessions == 20 && scenario.chatRate == 40)
    }

    @Test("suspend, flap and storm: parameters and defaults")
    func pageEvents() throws {
        let scenario = try ScenarioFile.parse(
            Self.header + """
                populations:
                  - name: laptops
                    sessions: 4
                    behaviours:
                      - chat: {rate: 4}
                      - suspend: {every: 30, jitter: 5, seconds: 20, announce: true, slo: {min-success: 1}}
                      - flap: {every: 10}
                  - name: restarted
                    sessions: 3
                    behaviours: [idle, {storm: {at: 20, within: 10}}]
                """,
            file: "events.yaml"
        )
        #expect(
            scenario.populations[0].behaviours == [
                .chat(.init(rate: 4)), .suspend(.init(every: 30, jitter: 5, seconds: 20, announce: true, slo: .init(minSuccessRatio: 1))),
                .flap(.init(every: 10, jitter: 0, unread: 0.5)),
            ])
        #expect(scenario.populations[1].behaviours == [.idle(.init()), .storm(.init(at: 20, within: 10))])
        #expect(scenario.validate().isEmpty)
        #expect(scenario.populations.allSatisfy { $0.hasPageBehaviour })
    }

    @Test("JSON is read the same way")
    func json() throws {
        let text = """
            {"url": "ws://127.0.0.1:1/xmpp-websocket", "transport": "websocket",
             "populations": [{"name": "a", "sessions": 4, "arrival": {"process": "constant", "rate": 10},
                              "behaviours": [{"chat": {"rate": 2}}, {"reload": {"every": 3}}]}]}
            """
        let scenario = try ScenarioFile.parse(text, file: "a.json")
        #expect(
            scenario.populations == [
                Population(
                    name: "a", transport: .websocket, endpoint: Endpoint("ws://127.0.0.1:1/xmpp-websocket")!, sessions: 4,
                    arrival: .constant(rate: 10, start: 0), behaviours: [.chat(.init(rate: 2)), .reload(.init(every: 3))]
                )
            ])
    }

    struct Bad: Sendable, CustomTestStringConvertible {
        var yaml: String
        /// What the error must say: `file:line: key: …` or part of it.
        var expected: String
        var testDescription: String { self.expected }
    }

    static let header = "url: http://127.0.0.1:1/http-bind\ntransport: bosh\n"

    static let bad: [Bad] = [
        Bad(yaml: header + "sesions: 3\npopulations: [{sessions: 2, behaviours: [idle]}]", expected: "bad.yaml:3: sesions: unknown key"),
        Bad(yaml: header + "populations:\n  - sessions: 2\n    behaviors: [idle]", expected: "bad.yaml:5: populations[0].behaviors: unknown key"),
        Bad(yaml: header + "populations:\n  - sessions: 2\n    arrival: {process: constant, rat: 3}\n    behaviours: [idle]", expected: "populations[0].arrival.rat: unknown key"),
        Bad(
            yaml: header + "populations:\n  - sessions: 2\n    arrival: {process: sometimes}\n    behaviours: [idle]",
            expected: "populations[0].arrival.process: must be constant, ramp, poisson or burst, not 'sometimes'"),
        Bad(yaml: header + "populations:\n  - sessions: two\n    behaviours: [idle]", expected: "populations[0].sessions: must be a whole number, not 'two'"),
        Bad(yaml: header + "populations:\n  - sessions: 2\n    behaviours: [{reload: {evry: 3}}]", expected: "populations[0].behaviours[0].reload.evry: unknown key"),
        Bad(yaml: header + "populations:\n  - sessions: 2\n    behaviours: [{reload: {jitter: 3}}]", expected: "populations[0].behaviours[0].reload: every: missing"),
        Bad(yaml: header + "populations:\n  - sessions: 2\n    behaviours: [dance]", expected: "populations[0].behaviours[0]: unknown behaviour 'dance'"),
        Bad(yaml: header + "populations:\n  - sessions: 3\n    behaviours: [{chat: {rate: 1}}]", expected: "populations[0].sessions: chat goes in pairs"),
        Bad(yaml: header + "populations:\n  - sessions: 2\n    behaviours: [{chat: {rate: 1}}, idle]", expected: "populations[0].behaviours: chat and idle exclude each other"),
        Bad(yaml: header + "populations:\n  - sessions: 2\n    behaviours: [{tab-close: {after: 1}}, {chat: {rate: 1}}]", expected: "tab-close goes only with idle"),
        Bad(yaml: "url: tcp://127.0.0.1:5222\ntransport: tcp\npopulations:\n  - sessions: 2\n    behaviours: [{reload: {every: 5}}]", expected: "reload is a browser behaviour"),
        Bad(
            yaml: header + "populations:\n  - sessions: 2\n    url: ws://127.0.0.1:1/x\n    behaviours: [idle]",
            expected: "populations[0].url: transport bosh does not go with a ws:// endpoint"),
        Bad(yaml: header + "populations:\n  - share: 0.5\n    behaviours: [idle]", expected: "populations[0].share: a share needs the total"),
        Bad(
            yaml: header + "populations:\n  - sessions: 2\n    behaviours: [{reload: {every: 5, slo: {p99: 3}}}]",
            expected: "populations[0].behaviours[0].reload.slo.p99: unknown key"),
        Bad(
            yaml: header + "populations:\n  - sessions: 2\n    behaviours: [{reload: {every: 5, slo: {min-success: 2}}}]",
            expected: "populations[0].behaviours.reload.slo.min-success: must be between 0 and 1"),
        Bad(yaml: header + "populations:\n  - sessions: 2\n    behaviours: [{tab-close: {after: 5, verify: maybe}}]", expected: "verify: must be true or false, not 'maybe'"),
        Bad(yaml: header + "populations: []", expected: "populations: must be a list of at least one population"),
        Bad(
            yaml: header + "populations:\n  - {sessions: 2, behaviours: [idle]}\n  - {sessions: 2, behaviours: [idle], name: population-1}",
            expected: "populations[1].name: 'population-1' is used twice"),
        Bad(yaml: "populations:\n  - {sessions: 2, behaviours: [idle]}", expected: "populations[0]: transport: missing"),
        Bad(yaml: header + "populations: [unclosed", expected: "bad.yaml: is not valid YAML or JSON"),
        Bad(yaml: header + "duration: 0\npopulations: [{sessions: 2, behaviours: [idle]}]", expected: "bad.yaml: duration: must be positive"),
        Bad(
            yaml: header + "populations:\n  - sessions: 2\n    behaviours: [{suspend: {every: 5}}]",
            expected: "populations[0].behaviours[0].suspend: seconds: missing"),
        Bad(
            yaml: "url: ws://127.0.0.1:1/x\ntransport: websocket\npopulations:\n  - sessions: 2\n    behaviours: [{suspend: {every: 5, seconds: 2, announce: true}}]",
            expected: "populations[0].behaviours.suspend.announce: is BOSH's pause (XEP-0124 §10): needs transport bosh"),
        Bad(
            yaml: header + "populations:\n  - sessions: 2\n    behaviours: [{flap: {every: 2, jitter: 2}}]",
            expected: "populations[0].behaviours.flap.jitter: must be at least 0 and less than every"),
        Bad(
            yaml: header + "populations:\n  - sessions: 2\n    behaviours: [{storm: {at: 5}}, {chat: {rate: 1}}]",
            expected: "storm goes only with idle"),
        Bad(yaml: "url: tcp://127.0.0.1:5222\ntransport: tcp\npopulations:\n  - sessions: 2\n    behaviours: [{flap: {every: 5}}]", expected: "flap is a browser behaviour"),
    ]

    @Test("each mistake is an error naming the file and the key", arguments: Self.bad)
    func errors(_ bad: Bad) {
        #expect {
            _ = try ScenarioFile.parse(bad.yaml, file: "bad.yaml")
        } throws: { error in
            let text = "\(error)"
            return error is ScenarioFileError && text.hasPrefix("bad.yaml") && text.contains(bad.expected)
        }
    }

    @Test("a share rounds, and rounds down to pairs for chat")
    func shares() throws {
        let scenario = try ScenarioFile.parse(
            Self.header + "sessions: 11\npopulations:\n  - {name: a, share: 0.3, behaviours: [{chat: {rate: 1}}]}\n  - {name: b, share: 0.6, behaviours: [idle]}",
            file: "s.yaml"
        )
        #expect(scenario.populations.map(\.sessions) == [2, 7])
    }

    @Test("an unreadable file is an error naming it")
    func missingFile() {
        #expect {
            _ = try ScenarioFile.load(path: "/nonexistent/tether-load.yaml")
        } throws: { error in
            "\(error)".hasPrefix("/nonexistent/tether-load.yaml: cannot be read")
        }
    }

    @Test("the examples in benchmarks/scenarios parse and validate")
    func examples() throws {
        let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("benchmarks/scenarios")
        let files = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".yaml") }.sorted()
        #expect(!files.isEmpty)
        for file in files {
            let scenario = try ScenarioFile.load(path: directory.appendingPathComponent(file).path)
            #expect(scenario.validate().isEmpty, "\(file)")
        }
    }
}
