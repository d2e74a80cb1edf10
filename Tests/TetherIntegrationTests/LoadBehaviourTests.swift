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

/// The reloading WebSocket pages and the BOSH closed tabs against Prosody's own endpoints (no
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

    // Not here: reloads against Prosody's own BOSH. In about one run in ten a message sent to a
    // page while it was away never arrived (one of ~130), with the same client that loses none
    // through Tether; not yet explained, so not asserted.

    @Test("Prosody's WebSocket: pages that reload while chatting resume and lose no message")
    func webSocket() async throws {
        try LoadBehaviourTests.expectReloadsLoseNothing(try await Self.reloads(.websocket))
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
