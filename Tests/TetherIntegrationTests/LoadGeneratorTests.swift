import Foundation
import Testing
import TetherServer
import XMPPLoadKit

/// tether-load's BOSH and WebSocket clients through Tether in front of a real Prosody: exact
/// counts (every message sent is delivered once), clean logout, and BOSH retransmission of a
/// lost response answered from Tether's cache.
@Suite("Load generator through Tether and Prosody", .serialized, .timeLimit(.minutes(2)))
struct LoadGeneratorTests {
    static let users = (1...6).map { "user\($0)" }

    static func scenario(_ transport: LoadScenario.Transport, _ url: String) -> LoadScenario {
        LoadScenario(
            transport: transport, endpoint: Endpoint(url)!, domain: "localhost", userPattern: "user%d", passwordPattern: "secret",
            sessions: 6, rampRate: 50, messageRate: 60, duration: 2, drainSeconds: 15, boshWait: 10, boshRequestTimeout: 20
        )
    }

    static func expectClean(_ result: LoadResult) {
        #expect(result.sessions.established == 6)
        #expect(result.sessions.closedCleanly == 6)
        #expect(result.messages.sent >= 100)
        #expect(result.messages.delivered == result.messages.sent)
        #expect(result.messages.lost == 0)
        #expect(result.errors.isEmpty, "\(result.errors)")
        #expect(result.passed)
    }

    static func bothTransports() async throws {
        try await withProsodyAndTether(users: []) { prosody, tether, _ in
            try prosody.writeAccounts(Self.users, password: "secret")
            let bosh = try await LoadRunner(scenario: Self.scenario(.bosh, tether.boshURL)).run()
            Self.expectClean(bosh)
            #expect(bosh.retransmissions == 0)
            let ws = try await LoadRunner(scenario: Self.scenario(.websocket, "ws://127.0.0.1:\(tether.port)/xmpp-websocket")).run()
            Self.expectClean(ws)
        }
    }

    @Test("BOSH and WebSocket: every message delivered once, clean logout")
    func transports() async throws {
        try await Self.bothTransports()
    }

    static func lostResponse() async throws {
        try await withProsodyAndTether(users: []) { prosody, tether, _ in
            try prosody.writeAccounts(Self.users, password: "secret")
            // Lose the first response that carries a probe message.
            let proxy = try await ResponseCuttingProxy.start(to: tether.port, cuttingFirstChunkContaining: "tl:")
            let result = try await Self.runBOSH(through: proxy)
            #expect(proxy.cuts == 1)
            #expect(result.retransmissions >= 1)
            Self.expectClean(result)
        }
    }

    @Test("BOSH: a lost response is retransmitted with the same rid and its messages still arrive")
    func retransmission() async throws {
        try await Self.lostResponse()
    }

    static func misaddressed() async throws {
        try await withProsodyAndTether(users: []) { prosody, tether, _ in
            try prosody.writeAccounts(Self.users, password: "secret")
            // One probe message is sent to a user that does not exist: Prosody bounces it.
            let proxy = try await ResponseCuttingProxy.start(to: tether.port, rewritingFirstRequestContaining: "tl:", from: "to='user", to: "to='xser")
            let result = try await Self.runBOSH(through: proxy)
            #expect(proxy.cuts >= 1)
            #expect(result.messages.lost == 1)
            #expect(result.messages.delivered == result.messages.sent - 1)
            #expect(!result.passed)
        }
    }

    @Test("a message that never arrives is reported as lost, and the run fails")
    func lostMessage() async throws {
        try await Self.misaddressed()
    }

    /// A BOSH run through `proxy`, which is stopped afterwards whatever happens.
    static func runBOSH(through proxy: ResponseCuttingProxy) async throws -> LoadResult {
        do {
            let result = try await LoadRunner(scenario: Self.scenario(.bosh, "http://127.0.0.1:\(proxy.port)/http-bind")).run()
            await proxy.stop()
            return result
        } catch {
            await proxy.stop()
            throw error
        }
    }
}
