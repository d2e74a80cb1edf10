import BOSHCore
import Foundation
import Testing
import TetherServer
import XMPPLoadKit

/// tether-load's browser behaviours through Tether in front of a real Prosody, each with its
/// exact accounting: pages that reload while chatting (BOSH re-attach, WebSocket XEP-0198
/// resume) lose no message and every reload counts as a successful re-attach; closed tabs are
/// seen to end on the server side, not before the advertised timeout, and the generator's
/// check finds them gone.
@Suite("Load generator behaviours through Tether and Prosody", .serialized, .timeLimit(.minutes(3)))
struct LoadBehaviourTests {
    static let users = (1...4).map { "user\($0)" }

    /// Four pages in two chatting pairs, each reloading every 2.5 ± 0.5 s with a 1 s gap, for 8 s.
    /// The login timeout is generous: a resumption through Tether and Prosody may take seconds on
    /// a loaded machine (regression: with 2 s, one timed out in a full run and its messages
    /// counted as lost), and no test may depend on the machine's speed.
    static func reloading(_ transport: LoadScenario.Transport, _ url: String) -> LoadScenario {
        LoadScenario(
            userPattern: "user%d", passwordPattern: "secret",
            populations: [
                Population(
                    name: "pages", transport: transport, endpoint: Endpoint(url)!, sessions: 4, arrival: .constant(rate: 20, start: 0),
                    behaviours: [.chat(.init(rate: 40)), .reload(.init(every: 2.5, jitter: 0.5, gap: 1))]
                )
            ],
            duration: 8, drainSeconds: 15, boshWait: 10, boshRequestTimeout: 20, loginTimeout: 20
        )
    }

    static func expectReloadsLoseNothing(_ result: LoadResult) throws {
        let chat = try #require(result.behaviours.first { $0.behaviour == .chat })
        let reload = try #require(result.behaviours.first { $0.behaviour == .reload })
        // Every message sent arrived exactly once, reloads or not.
        #expect(chat.attempts > 50)
        #expect(chat.successes == chat.attempts && chat.failures == 0)
        #expect(result.messages.sent == chat.attempts && result.messages.delivered == chat.attempts)
        #expect(result.messages.lost == 0 && result.messages.duplicates == 0)
        // Each page reloaded, and every reload came back.
        #expect(reload.attempts >= 4)
        #expect(reload.successes == reload.attempts && reload.failures == 0, "\(reload.errors)")
        #expect(reload.latency.count == reload.successes)
        // Messages did go to pages while they were gone, and every one of them arrived afterwards.
        let away = try #require(reload.messagesWhileAway)
        #expect(away > 0)
        #expect(reload.messagesWhileAwayDelivered == away)
        #expect(result.sessions.established == 4 && result.sessions.failed == 0)
        #expect(result.errors.isEmpty, "\(result.errors)")
        #expect(result.passed)
    }

    static func boshReload() async throws {
        try await withProsodyAndTether(users: []) { prosody, tether, _ in
            try prosody.writeAccounts(Self.users, password: "secret")
            let result = try await LoadRunner(scenario: Self.reloading(.bosh, tether.boshURL)).run()
            try Self.expectReloadsLoseNothing(result)
            // Tether kept each session across its reloads: one created and, at logout, one ended per user.
            #expect(tether.logs.all.count { $0.contains("session created") } == 4)
            #expect(tether.logs.all.count { $0.contains("session ended") } == 4)
            #expect(result.sessions.closedCleanly == 4)
        }
    }

    @Test("BOSH pages that reload while chatting re-attach with their sid and lose no message")
    func boshReloads() async throws {
        try await Self.boshReload()
    }

    static func webSocketReload() async throws {
        try await withProsodyAndTether(users: []) { prosody, tether, _ in
            try prosody.writeAccounts(Self.users, password: "secret")
            let result = try await LoadRunner(scenario: Self.reloading(.websocket, "ws://127.0.0.1:\(tether.port)/xmpp-websocket")).run()
            try Self.expectReloadsLoseNothing(result)
            #expect(result.sessions.closedCleanly == 4)
        }
    }

    @Test("WebSocket pages that reload while chatting resume their XEP-0198 session and lose no message")
    func webSocketReloads() async throws {
        try await Self.webSocketReload()
    }

    /// Two idle tabs closed 1 s after login, checked once the advertised timeout plus 2 s has passed.
    static func closing(_ transport: LoadScenario.Transport, _ url: String) -> LoadScenario {
        LoadScenario(
            userPattern: "user%d", passwordPattern: "secret",
            populations: [
                Population(
                    name: "tabs", transport: transport, endpoint: Endpoint(url)!, sessions: 2, arrival: .constant(rate: 20, start: 0),
                    behaviours: [.idle(.init()), .tabClose(.init(after: 1, jitter: 0, verify: true, grace: 2))]
                )
            ],
            duration: 2, drainSeconds: 1, boshWait: 10, boshRequestTimeout: 20
        )
    }

    static func expectClosedTabsExpired(_ result: LoadResult, timeout: Double) throws {
        let tabClose = try #require(result.behaviours.first { $0.behaviour == .tabClose })
        #expect(tabClose.attempts == 2)
        #expect(tabClose.successes == 2 && tabClose.failures == 0, "\(tabClose.errors)")
        #expect(tabClose.latency.count == 2)
        // The check came after the advertised timeout (plus grace), and found the session gone.
        #expect(tabClose.latency.p50 >= (timeout + 2) * 1000)
        let idle = try #require(result.behaviours.first { $0.behaviour == .idle })
        #expect(idle.attempts == 2 && idle.successes == 2)
        #expect(result.sessions.established == 2 && result.sessions.failed == 0)
        #expect(result.sessions.closedCleanly == 0)
        #expect(result.errors.isEmpty, "\(result.errors)")
        #expect(result.passed)
    }

    /// Runs `scenario` while watching `log` (polled): the instants at which `first` and then
    /// `second` have each appeared `count` times.
    static func run(
        _ scenario: LoadScenario, watching log: @escaping @Sendable () -> [String], first: String, second: String, count: Int
    ) async throws -> (LoadResult, ContinuousClock.Instant?, ContinuousClock.Instant?) {
        async let running = LoadRunner(scenario: scenario).run()
        var firstSeen: ContinuousClock.Instant?
        var secondSeen: ContinuousClock.Instant?
        let deadline = ContinuousClock.now + .seconds(90)
        while secondSeen == nil, ContinuousClock.now < deadline {
            let lines = log()
            if firstSeen == nil, lines.count(where: { $0.contains(first) }) >= count { firstSeen = .now }
            if firstSeen != nil, lines.count(where: { $0.contains(second) }) >= count { secondSeen = .now }
            try await Task.sleep(for: .milliseconds(20))
        }
        return (try await running, firstSeen, secondSeen)
    }

    static func boshTabClose() async throws {
        let inactivity = 3
        try await withProsodyAndTether(users: []) { prosody, tether, _ in
            try prosody.writeAccounts(Self.users, password: "secret")
            let logs = tether.logs
            let (result, created, ended) = try await Self.run(
                Self.closing(.bosh, tether.boshURL), watching: { logs.all }, first: "session created", second: "session ended", count: 2
            )
            try Self.expectClosedTabsExpired(result, timeout: Double(inactivity))
            // Tether ended both sessions itself (nobody sent terminate), and not before the tab
            // closed (1 s after login) plus the advertised inactivity.
            let start = try #require(created)
            let end = try #require(ended)
            #expect(end - start >= .milliseconds(1000 + inactivity * 1000 - 100))
            #expect(logs.all.count { $0.contains("session ended") } == 2)
            // …and Prosody saw both logged-in streams end.
            let lines = try String(contentsOfFile: prosody.logPath, encoding: .utf8).split(separator: "\n")
            func session(_ line: Substring) -> Substring? { line.split(separator: "\t").first?.split(separator: " ").last }
            let authenticated = Set(lines.filter { $0.contains("Authenticated as") }.compactMap(session))
            let disconnected = lines.filter { $0.contains("Client disconnected") }.compactMap(session).filter(authenticated.contains)
            #expect(authenticated.count == 2 && Set(disconnected) == authenticated, "\(lines.suffix(20))")
        } configure: { configuration, _ in
            configuration.bosh.inactivity = inactivity
        }
    }

    @Test("BOSH tabs closed without terminate are timed out by Tether after the advertised inactivity; the check finds them gone")
    func boshTabsClosed() async throws {
        try await Self.boshTabClose()
    }

    static func webSocketTabClose() async throws {
        let hibernation = 3
        var options = ProsodyServer.Options()
        options.smacksHibernationSeconds = hibernation
        options.logLevel = "debug"
        try await withProsodyAndTether(prosody: options, users: []) { prosody, tether, _ in
            try prosody.writeAccounts(Self.users, password: "secret")
            let path = prosody.logPath
            let (result, hibernating, destroyed) = try await Self.run(
                Self.closing(.websocket, "ws://127.0.0.1:\(tether.port)/xmpp-websocket"),
                watching: { ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init) },
                first: "Session going into hibernation", second: "Destroying session for hibernating too long", count: 2
            )
            try Self.expectClosedTabsExpired(result, timeout: Double(hibernation))
            // Prosody kept both sessions for resumption for the advertised `max`, then let them go.
            let start = try #require(hibernating)
            let end = try #require(destroyed)
            #expect(end - start >= .milliseconds(hibernation * 1000 - 100))
        }
    }

    @Test("WebSocket tabs closed without <close/> hibernate on the server for the advertised XEP-0198 max, then are gone")
    func webSocketTabsClosed() async throws {
        try await Self.webSocketTabClose()
    }
}

/// The page events that strike a session while it chats or idles, through Tether in front of a
/// real Prosody: laptops that sleep (BOSH with and without `pause`, WebSocket), networks that
/// cut the connection carrying what is in flight (BOSH answers the same rid from its cache,
/// WebSocket resumes), and a storm in which 500 sessions drop at once and log in anew.
@Suite("Load generator page events through Tether and Prosody", .serialized, .timeLimit(.minutes(3)))
struct LoadPageEventTests {
    /// Four pages in two chatting pairs, each with `event`, for 8 s.
    static func chatting(_ transport: LoadScenario.Transport, _ url: String, _ event: Behaviour) -> LoadScenario {
        LoadScenario(
            userPattern: "user%d", passwordPattern: "secret",
            populations: [
                Population(
                    name: "pages", transport: transport, endpoint: Endpoint(url)!, sessions: 4, arrival: .constant(rate: 20, start: 0),
                    behaviours: [.chat(.init(rate: 40)), event]
                )
            ],
            duration: 8, drainSeconds: 15, boshWait: 10, boshRequestTimeout: 20, loginTimeout: 20
        )
    }

    /// Every message arrived once; every event of `kind` came back; messages went to pages while
    /// they were away and all of them arrived.
    @discardableResult
    static func expectNothingLost(_ result: LoadResult, _ kind: Behaviour.Kind) throws -> BehaviourResult {
        let chat = try #require(result.behaviours.first { $0.behaviour == .chat })
        let event = try #require(result.behaviours.first { $0.behaviour == kind })
        #expect(chat.attempts > 50)
        #expect(chat.successes == chat.attempts && chat.failures == 0)
        #expect(result.messages.sent == chat.attempts && result.messages.delivered == chat.attempts)
        #expect(result.messages.lost == 0 && result.messages.duplicates == 0)
        #expect(event.attempts >= 4)
        #expect(event.successes == event.attempts && event.failures == 0, "\(event.errors)")
        #expect(event.latency.count == event.successes)
        let away = try #require(event.messagesWhileAway)
        #expect(away > 0)
        #expect(event.messagesWhileAwayDelivered == away)
        #expect(result.sessions.established == 4 && result.sessions.failed == 0)
        #expect(result.errors.isEmpty, "\(result.errors)")
        #expect(result.passed)
        return event
    }

    static let suspend = Behaviour.suspend(.init(every: 2.5, jitter: 0.5, seconds: 1.5))

    @Test("BOSH laptops that sleep without a word: answers wait in the socket, a ping proves the session on waking, nothing lost")
    func boshSuspend() async throws {
        try await withProsodyAndTether(users: []) { prosody, tether, _ in
            try prosody.writeAccounts(LoadBehaviourTests.users, password: "secret")
            let result = try await LoadRunner(scenario: Self.chatting(.bosh, tether.boshURL, Self.suspend)).run()
            try Self.expectNothingLost(result, .suspend)
            #expect(result.sessions.closedCleanly == 4)
        }
    }

    @Test("BOSH laptops that announce their sleep with pause (XEP-0124 §10) keep their session and lose nothing")
    func boshPause() async throws {
        try await withProsodyAndTether(users: []) { prosody, tether, _ in
            try prosody.writeAccounts(LoadBehaviourTests.users, password: "secret")
            let pause = Behaviour.suspend(.init(every: 2.5, jitter: 0.5, seconds: 2, announce: true))
            let result = try await LoadRunner(scenario: Self.chatting(.bosh, tether.boshURL, pause)).run()
            try Self.expectNothingLost(result, .suspend)
            // Each session lived through its pauses: one created and one ended per user.
            #expect(tether.logs.all.count { $0.contains("session created") } == 4)
            #expect(tether.logs.all.count { $0.contains("session ended") } == 4)
        } configure: { configuration, _ in
            // Shorter than the pause: only the pause keeps the sessions alive.
            configuration.bosh.inactivity = 1
        }
    }

    @Test("WebSocket laptops that sleep: nothing read for a while, a ping on waking, nothing lost")
    func webSocketSuspend() async throws {
        try await withProsodyAndTether(users: []) { prosody, tether, _ in
            try prosody.writeAccounts(LoadBehaviourTests.users, password: "secret")
            let url = "ws://127.0.0.1:\(tether.port)/xmpp-websocket"
            let result = try await LoadRunner(scenario: Self.chatting(.websocket, url, Self.suspend)).run()
            try Self.expectNothingLost(result, .suspend)
        }
    }

    static let flap = Behaviour.flap(.init(every: 2, jitter: 0.5, unread: 0.5))

    @Test("BOSH connections cut under a held request: the same rid again gets the very answer the server had given (§14.3)")
    func boshFlap() async throws {
        try await withProsodyAndTether(users: []) { prosody, tether, _ in
            try prosody.writeAccounts(LoadBehaviourTests.users, password: "secret")
            let result = try await LoadRunner(scenario: Self.chatting(.bosh, tether.boshURL, Self.flap)).run()
            if !result.errors.isEmpty {
                // What Tether said about the sessions that ended badly, for the failure's diagnosis.
                let lines = tether.logs.all
                let ended = lines.filter { $0.contains("session ended") && !$0.contains("condition=normal") }
                let sids = ended.compactMap { $0.split(separator: " ").first { $0.hasPrefix("sid=") } }
                for sid in sids {
                    print("Tether's log for \(sid):\n" + lines.filter { $0.contains(sid) }.suffix(400).joined(separator: "\n"))
                }
            }
            let flap = try Self.expectNothingLost(result, .flap)
            // With 10 messages a second to each page, the held request was answered during most
            // of the half seconds it went unread; each of those answers came again byte for byte.
            let replayed = try #require(flap.replayedAnswers)
            #expect(replayed > 0)
            #expect(result.retransmissions >= Int(flap.attempts))
            // The sessions lived through every cut.
            #expect(tether.logs.all.count { $0.contains("session created") } == 4)
        }
    }

    @Test("WebSocket connections cut with a reset: the page resumes its XEP-0198 session and what the server wrote into the cut arrives")
    func webSocketFlap() async throws {
        try await withProsodyAndTether(users: []) { prosody, tether, _ in
            try prosody.writeAccounts(LoadBehaviourTests.users, password: "secret")
            let url = "ws://127.0.0.1:\(tether.port)/xmpp-websocket"
            let result = try await LoadRunner(scenario: Self.chatting(.websocket, url, Self.flap)).run()
            let flap = try Self.expectNothingLost(result, .flap)
            #expect(flap.replayedAnswers == nil)
        }
    }

    @Test("a storm: 500 BOSH sessions drop at once and all of them log in anew within 5 s")
    func boshStorm() async throws {
        let users = (1...500).map { "user\($0)" }
        try await withProsodyAndTether(users: []) { prosody, tether, _ in
            try prosody.writeAccounts(users, password: "secret")
            let scenario = LoadScenario(
                userPattern: "user%d", passwordPattern: "secret",
                populations: [
                    Population(
                        name: "restarted", transport: .bosh, endpoint: Endpoint(tether.boshURL)!, sessions: 500,
                        arrival: .constant(rate: 100, start: 0), behaviours: [.idle(.init()), .storm(.init(at: 1, within: 5))]
                    )
                ],
                duration: 8, drainSeconds: 1, boshWait: 10, boshRequestTimeout: 30, loginTimeout: 60, threads: 2
            )
            let result = try await LoadRunner(scenario: scenario).run()
            let storm = try #require(result.behaviours.first { $0.behaviour == .storm })
            #expect(storm.attempts == 500)
            #expect(storm.successes == 500 && storm.failures == 0, "\(storm.errors)")
            #expect(storm.latency.count == 500)
            let idle = try #require(result.behaviours.first { $0.behaviour == .idle })
            #expect(idle.attempts == 500 && idle.successes == 500)
            // First logins once each; the storm's new logins are not counted again.
            #expect(result.sessions.established == 500 && result.sessions.failed == 0)
            #expect(result.errors.isEmpty, "\(result.errors)")
            #expect(result.passed)
            // Tether saw 1,000 sessions: each user's dropped one and its new one.
            #expect(tether.logs.all.count { $0.contains("session created") } == 1000)
        } configure: { configuration, _ in
            configuration.maxSessionsPerAddress = 2000
            configuration.newSessionsPerSecondPerAddress = 1000
            configuration.newSessionBurstPerAddress = 1000
        }
    }
}

/// Fan-out through Tether in front of a real Prosody: group chat (XEP-0045) where every occupant
/// gets every room message, and presence changes that reach every contact of rosters
/// provisioned with `tether-load provision`.
@Suite("Load generator fan-out through Tether and Prosody", .serialized, .timeLimit(.minutes(2)))
struct LoadFanoutTests {
    @Test("muc over BOSH: two rooms of four; deliveries equal occupants × messages, none lost, none twice")
    func muc() async throws {
        var options = ProsodyServer.Options()
        options.muc = true
        try await withProsodyAndTether(prosody: options, users: []) { prosody, tether, _ in
            try prosody.writeAccounts((1...8).map { "user\($0)" }, password: "secret")
            let scenario = LoadScenario(
                userPattern: "user%d", passwordPattern: "secret",
                populations: [
                    Population(
                        name: "rooms", transport: .bosh, endpoint: Endpoint(tether.boshURL)!, sessions: 8, arrival: .constant(rate: 20, start: 0),
                        behaviours: [.muc(.init(roomSize: 4, rate: 5))]
                    )
                ],
                duration: 4, drainSeconds: 15, boshWait: 10, boshRequestTimeout: 20, loginTimeout: 20
            )
            let result = try await LoadRunner(scenario: scenario).run()
            let muc = try #require(result.behaviours.first { $0.behaviour == .muc })
            let sent = try #require(muc.stanzasSent)
            // Five a second in each of two rooms for four seconds (less whatever the first tick missed).
            #expect(sent >= 30)
            #expect(muc.attempts == sent * 4)
            #expect(muc.successes == muc.attempts && muc.failures == 0, "\(muc.errors)")
            #expect(muc.latency.count == muc.successes)
            #expect(result.sessions.established == 8 && result.sessions.closedCleanly == 8)
            #expect(result.errors.isEmpty, "\(result.errors)")
            #expect(result.passed)
        }
    }

    @Test("muc with no such service: every occupant's join is refused, and the run fails instead of passing with nothing sent")
    func mucRefused() async throws {
        try await withProsodyAndTether(users: []) { prosody, tether, _ in
            try prosody.writeAccounts((1...4).map { "user\($0)" }, password: "secret")
            let scenario = LoadScenario(
                userPattern: "user%d", passwordPattern: "secret",
                populations: [
                    Population(
                        name: "rooms", transport: .websocket, endpoint: Endpoint("ws://127.0.0.1:\(tether.port)/xmpp-websocket")!, sessions: 4,
                        arrival: .constant(rate: 20, start: 0), behaviours: [.muc(.init(roomSize: 4, rate: 5, service: "nowhere.localhost"))]
                    )
                ],
                duration: 2, drainSeconds: 1, loginTimeout: 20
            )
            let result = try await LoadRunner(scenario: scenario).run()
            let muc = try #require(result.behaviours.first { $0.behaviour == .muc })
            // Regression: no message was sent, so attempts and successes were 0 and the run passed.
            #expect(muc.stanzasSent == 0)
            #expect(muc.failures == 4)
            #expect(muc.errors.keys.allSatisfy { $0.hasPrefix("protocol:muc-") } && muc.errors.values.reduce(0, +) == 4, "\(muc.errors)")
            #expect(!muc.passed && !result.passed)
        }
    }

    @Test("presence over WebSocket: rosters of three contacts provisioned by tether-load provision; every change reaches every contact")
    func presence() async throws {
        try await withProsodyAndTether(users: []) { prosody, tether, _ in
            try await Self.expectPresenceFansOut(url: "ws://127.0.0.1:\(tether.port)/xmpp-websocket", transport: .websocket, prosody: prosody)
        }
    }

    /// Eight users with mutual rosters of three, written into `prosody`'s storage by `tether-load
    /// provision`, change their presence about every second through `url`: each change must reach
    /// each of the three contacts, and the count says so exactly.
    static func expectPresenceFansOut(url: String, transport: LoadScenario.Transport, prosody: ProsodyServer) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tether-load-presence-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("presence.yaml").path
        try """
        url: \(url)
        transport: \(transport.rawValue)
        password: pw%d
        duration: 4
        drain: 15
        populations:
          - name: office
            sessions: 8
            arrival: {process: constant, rate: 20}
            behaviours: [{presence: {contacts: 3, every: 1, jitter: 0.2}}]
        """.write(toFile: file, atomically: true, encoding: .utf8)
        let output = directory.appendingPathComponent("provision.out").path
        let child = try ChildProcess.spawn(
            LoadPartsTests.binary, ["provision", "--scenario", file, "--prosody-data", prosody.dataPath], stdout: output,
            stderr: directory.appendingPathComponent("provision.err").path)
        #expect(await child.wait(timeout: .seconds(30)) == 0)
        let said = try String(contentsOfFile: output, encoding: .utf8)
        #expect(said.contains("8 accounts written") && said.contains("8 rosters written, 24 contacts in all"), "\(said)")
        let result = try await LoadRunner(scenario: try ScenarioFile.load(path: file)).run()
        let presence = try #require(result.behaviours.first { $0.behaviour == .presence })
        let sent = try #require(presence.stanzasSent)
        // About four changes per user, each for its three contacts.
        #expect(sent >= 16)
        #expect(presence.attempts == sent * 3)
        #expect(presence.successes == presence.attempts && presence.failures == 0, "\(presence.errors)")
        #expect(result.sessions.established == 8 && result.sessions.failed == 0)
        #expect(result.errors.isEmpty, "\(result.errors)")
        #expect(result.passed)
    }
}

/// The behaviours against Prosody's own BOSH and WebSocket (no
/// Tether): the generator's accounting does not depend on the connection manager.
@Suite("Load generator behaviours against Prosody's own endpoints", .serialized, .timeLimit(.minutes(2)))
struct ProsodyEndpointBehaviourTests {
    static func reloads(_ transport: LoadScenario.Transport) async throws -> LoadResult {
        var options = ProsodyServer.Options()
        options.httpEndpoints = true
        return try await withProsody(options) { prosody in
            try prosody.writeAccounts(LoadBehaviourTests.users, password: "secret")
            let port = try #require(prosody.httpPort)
            let url = transport == .bosh ? "http://127.0.0.1:\(port)/http-bind" : "ws://127.0.0.1:\(port)/xmpp-websocket"
            return try await LoadRunner(scenario: LoadBehaviourTests.reloading(transport, url)).run()
        }
    }

    @Test("Prosody's WebSocket: pages that reload while chatting resume and lose no message")
    func webSocket() async throws {
        try LoadBehaviourTests.expectReloadsLoseNothing(try await Self.reloads(.websocket))
    }

    // Not here: reloads against Prosody's own BOSH. In about one run in ten under the whole suite
    // a message sent to a page while it was away never arrives (2026-12-08: one of 124), with the
    // same client that loses none through Tether; twenty runs of it alone, ten with both cores
    // saturated, lost none. Not yet explained, so not asserted.

    /// Runs `scenario(url)` against a Prosody serving its own BOSH and WebSocket (and MUC).
    static func onProsody(
        _ transport: LoadScenario.Transport, users: Int = 4, extraConfig: String = "", _ scenario: (String) -> LoadScenario
    ) async throws -> LoadResult {
        var options = ProsodyServer.Options()
        options.httpEndpoints = true
        options.muc = true
        options.extraConfig = extraConfig
        return try await withProsody(options) { prosody in
            try prosody.writeAccounts((1...users).map { "user\($0)" }, password: "secret")
            let port = try #require(prosody.httpPort)
            let url = transport == .bosh ? "http://127.0.0.1:\(port)/http-bind" : "ws://127.0.0.1:\(port)/xmpp-websocket"
            return try await LoadRunner(scenario: scenario(url)).run()
        }
    }

    @Test("Prosody's WebSocket: laptops that sleep lose nothing")
    func webSocketSuspend() async throws {
        let result = try await Self.onProsody(.websocket) { LoadPageEventTests.chatting(.websocket, $0, LoadPageEventTests.suspend) }
        try LoadPageEventTests.expectNothingLost(result, .suspend)
    }

    @Test("Prosody's WebSocket: connections cut with a reset resume and lose nothing")
    func webSocketFlap() async throws {
        let result = try await Self.onProsody(.websocket) { LoadPageEventTests.chatting(.websocket, $0, LoadPageEventTests.flap) }
        try LoadPageEventTests.expectNothingLost(result, .flap)
    }

    @Test("Prosody's BOSH: laptops that sleep without a word lose nothing")
    func boshSuspend() async throws {
        let result = try await Self.onProsody(.bosh) { LoadPageEventTests.chatting(.bosh, $0, LoadPageEventTests.suspend) }
        try LoadPageEventTests.expectNothingLost(result, .suspend)
    }

    @Test("Prosody's BOSH: a storm of 100 sessions all log in anew")
    func boshStorm() async throws {
        let result = try await Self.onProsody(.bosh, users: 100) { url in
            LoadScenario(
                userPattern: "user%d", passwordPattern: "secret",
                populations: [
                    Population(
                        name: "restarted", transport: .bosh, endpoint: Endpoint(url)!, sessions: 100, arrival: .constant(rate: 100, start: 0),
                        behaviours: [.idle(.init()), .storm(.init(at: 1, within: 3))]
                    )
                ],
                duration: 6, drainSeconds: 1, boshWait: 10, boshRequestTimeout: 30, loginTimeout: 60
            )
        }
        let storm = try #require(result.behaviours.first { $0.behaviour == .storm })
        #expect(storm.attempts == 100 && storm.successes == 100, "\(storm.errors)")
        #expect(result.errors.isEmpty, "\(result.errors)")
    }

    @Test("Prosody's BOSH: connections cut under a held request get the same answer again for the same rid, nothing lost")
    func boshFlap() async throws {
        let result = try await Self.onProsody(.bosh) { LoadPageEventTests.chatting(.bosh, $0, LoadPageEventTests.flap) }
        let flap = try LoadPageEventTests.expectNothingLost(result, .flap)
        #expect((flap.replayedAnswers ?? 0) > 0)
    }

    @Test("Prosody's BOSH offers no pause (no maxpause): each announced sleep is reported as that, not as a loss")
    func boshPauseNotOffered() async throws {
        let pause = Behaviour.suspend(.init(every: 2.5, jitter: 0.5, seconds: 2, announce: true))
        let result = try await Self.onProsody(.bosh) { LoadPageEventTests.chatting(.bosh, $0, pause) }
        let suspend = try #require(result.behaviours.first { $0.behaviour == .suspend })
        #expect(suspend.attempts >= 1 && suspend.successes == 0)
        #expect(suspend.errors == ["protocol:maxpause-not-offered": Int(suspend.attempts)])
        #expect(result.messages.lost == 0 && result.messages.delivered == result.messages.sent)
        #expect(!result.passed)
    }

    @Test("Prosody's WebSocket: a room of four gets every message to every occupant")
    func webSocketMuc() async throws {
        let result = try await Self.onProsody(.websocket) { url in
            LoadScenario(
                userPattern: "user%d", passwordPattern: "secret",
                populations: [
                    Population(
                        name: "room", transport: .websocket, endpoint: Endpoint(url)!, sessions: 4, arrival: .constant(rate: 20, start: 0),
                        behaviours: [.muc(.init(roomSize: 4, rate: 5))]
                    )
                ],
                duration: 3, drainSeconds: 10, loginTimeout: 20
            )
        }
        let muc = try #require(result.behaviours.first { $0.behaviour == .muc })
        #expect((muc.stanzasSent ?? 0) >= 10 && muc.attempts == (muc.stanzasSent ?? 0) * 4)
        #expect(muc.successes == muc.attempts, "\(muc.errors)")
        #expect(result.errors.isEmpty, "\(result.errors)")
    }

    @Test(
        "Prosody's own WebSocket and BOSH: presence changes reach every contact of rosters provisioned by tether-load provision",
        arguments: [LoadScenario.Transport.websocket, .bosh])
    func presence(transport: LoadScenario.Transport) async throws {
        var options = ProsodyServer.Options()
        options.httpEndpoints = true
        try await withProsody(options) { prosody in
            let port = try #require(prosody.httpPort)
            let url = transport == .bosh ? "http://127.0.0.1:\(port)/http-bind" : "ws://127.0.0.1:\(port)/xmpp-websocket"
            try await LoadFanoutTests.expectPresenceFansOut(url: url, transport: transport, prosody: prosody)
        }
    }

    @Test("Prosody's BOSH: tabs closed without terminate are gone after its advertised inactivity")
    func boshTabsClosed() async throws {
        var options = ProsodyServer.Options()
        options.httpEndpoints = true
        options.extraConfig = "bosh_max_inactivity = 3"
        try await withProsody(options) { prosody in
            try prosody.writeAccounts(LoadBehaviourTests.users, password: "secret")
            let port = try #require(prosody.httpPort)
            let result = try await LoadRunner(scenario: LoadBehaviourTests.closing(.bosh, "http://127.0.0.1:\(port)/http-bind")).run()
            try LoadBehaviourTests.expectClosedTabsExpired(result, timeout: 3)
        }
    }
}
