import AsyncHTTPClient
import BOSHCore
import Foundation
import NIOCore
import Testing
import TetherServer

/// A stanza the server handed to Tether is delivered to the browser or reported back to its
/// sender, never dropped in silence (RFC 6120 §10.4.3), against a real Prosody without and
/// with offline storage: when the session dies, the sender gets an error for each, with its id.
/// DeliveryEndingsTests has the other endings.
@Suite("Delivery: queued stanzas of a dying session are bounced", .serialized, .timeLimit(.minutes(3)))
struct DeliveryTests {
    /// bob (WebSocket) sends alice (BOSH, not polling) `count` messages; they wait in Tether.
    static func strand(_ count: Int, body: String = "are you there?", bob: WebSocketTestClient) async throws {
        for index in 1...count {
            try await bob.send("<message xmlns='jabber:client' to='alice@localhost/a' id='d\(index)' type='chat'><body>\(body) \(index)</body></message>")
        }
    }

    /// bob over WebSocket, then alice over BOSH (bob first: between alice's last request and
    /// bob's messages no login has to happen).
    static func logIn(tether: TetherFixture, http: HTTPClient) async throws -> (bob: WebSocketTestClient, alice: BOSHTestClient) {
        let bob = try await WebSocketTestClient.connect(port: tether.port)
        try await bob.login(user: "bob", password: "secret", resource: "b")
        let alice = BOSHTestClient(http: http, url: tether.boshURL)
        try await alice.login(user: "alice", password: "secret", resource: "a")
        return (bob, alice)
    }

    /// The errors bob gets back, by id, once each of `count` has arrived.
    static func bounces(_ count: Int, to bob: WebSocketTestClient) async throws -> [String: String] {
        var errors: [String: String] = [:]
        let deadline = ContinuousClock.now + .seconds(60)
        while errors.count < count {
            guard ContinuousClock.now < deadline else { throw TestFailure("only \(errors.count) of \(count) bounces: \(errors)") }
            for text in try await bob.receive(until: { $0.contains("type='error'") || $0.contains("type=\"error\"") }, timeout: .seconds(30))
            where text.hasPrefix("<message") && text.contains("error") {
                if let id = HostileFloodTests.id(in: text) { errors[id] = text }
            }
        }
        return errors
    }

    @Test("BOSH inactivity without XEP-0198: each queued message comes back to its sender as service-unavailable with its id (regression: lost)", arguments: [false, true])
    func inactivity(offline: Bool) async throws {
        try await withProsodyAndTether(prosody: DeliveryEndingsTests.prosody(offline: offline)) { _, tether, http in
            let (bob, _) = try await Self.logIn(tether: tether, http: http)
            // alice stops polling (a closed laptop); bob writes to her.
            try await Self.strand(3, bob: bob)
            let errors = try await Self.bounces(3, to: bob)
            #expect(Set(errors.keys) == ["d1", "d2", "d3"])
            for (id, error) in errors {
                #expect(error.contains("service-unavailable"), "\(id): \(error)")
                #expect(error.contains("type='cancel'") || error.contains("type=\"cancel\""), "\(id): \(error)")
            }
            let metrics = try await rawHTTP(port: tether.port, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            #expect(metrics.text.contains("tether_stanzas_bounced_total{transport=\"bosh\",reason=\"inactivity\"} 3"), "\(metrics.text.prefix(3000))")
            await bob.drop()
        } configure: { configuration, _ in
            // Long enough that bob's messages are queued before it ends, on a busy machine too.
            configuration.bosh.inactivity = 10
        }
    }

    @Test("BOSH queue cut (policy-violation) with nobody polling: every queued message is bounced before the stream ends", arguments: [false, true])
    func queueCut(offline: Bool) async throws {
        try await withProsodyAndTether(prosody: DeliveryEndingsTests.prosody(offline: offline)) { _, tether, http in
            let (bob, _) = try await Self.logIn(tether: tether, http: http)
            // About 1,030 bytes each as the server sends them: two (with whatever else waits, such
            // as alice's own presence) stay under the 2,800-byte queue limit, the third passes it.
            // So the cut comes with the last one, and all three are in Tether's queue: were it to
            // come earlier, a message reaching the server after alice's stream closed would be the
            // server's to bounce or, with mod_offline, to store (regression: a 2,000-byte limit cut
            // at the second message, and with offline storage the third was stored, not bounced).
            try await Self.strand(3, body: String(repeating: "z", count: 900), bob: bob)
            let errors = try await Self.bounces(3, to: bob)
            #expect(Set(errors.keys) == ["d1", "d2", "d3"])
            // That the bounced stanzas are not also handed to alice's next request is the state
            // machine's rule (BOSHSessionStateMachineTests, "a terminal condition with nobody to tell").
            await bob.drop()
        } configure: { configuration, _ in
            configuration.bosh.maxQueuedBytes = 2800
            configuration.bosh.inactivity = 30
        }
    }
    @Test(
        "BOSH inactivity or a queue cut with XEP-0198 enabled: nothing bounced; the client resumes through a second tether process and gets every queued message, in order, exactly once",
        arguments: [false, true], [false, true])
    func endThenResumeElsewhere(offline: Bool, cut: Bool) async throws {
        try await withProsodyAndTether(prosody: DeliveryEndingsTests.prosody(offline: offline)) { prosody, tether, http in
            // bob first: between alice's last request and bob's messages no login has to happen.
            let bob = try await WebSocketTestClient.connect(port: tether.port)
            try await bob.login(user: "bob", password: "secret", resource: "b")
            let alice = BOSHTestClient(http: http, url: tether.boshURL)
            try await alice.login(user: "alice", password: "secret", resource: "a")
            let enabled = try await alice.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>", thenReceiveUntil: { $0.hasPrefix("<enabled") })
            let element = try required(enabled.first { $0.hasPrefix("<enabled") })
            let previd = try required(
                element.components(separatedBy: "id='").dropFirst().first?.components(separatedBy: "'").first
                    ?? element.components(separatedBy: "id=\"").dropFirst().first?.components(separatedBy: "\"").first)
            // Past the queue limit with the third (see queueCut), or under it.
            try await Self.strand(3, body: cut ? String(repeating: "z", count: 900) : "are you there?", bob: bob)
            // alice stops polling: her session ends (cut, or by inactivity), the server's stays for <resume/>.
            try await waitUntil(timeout: .seconds(30)) { tether.server.sessionCount == 0 }
            let ended = try await rawHTTP(port: tether.port, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            let condition = cut ? "policy-violation" : "normal"
            #expect(ended.text.contains("tether_terminations_total{transport=\"bosh\",condition=\"\(condition)\"} 1"), "\(ended.text.prefix(2000))")
            try await withTetherProcess(["--route", "localhost=127.0.0.1:\(prosody.c2sPort)"]) { second in
                let again = try await WebSocketTestClient.connect(port: second.port)
                try await again.login(user: "alice", password: "secret", bind: false)
                try await again.send("<resume xmlns='urn:xmpp:sm:3' h='0' previd='\(previd)'/>")
                let resumed = try await again.receive(until: { $0.contains("id='d3'") }, timeout: .seconds(30))
                #expect(resumed.contains { $0.hasPrefix("<resumed") }, "\(resumed)")
                let ids = resumed.filter { $0.hasPrefix("<message") }.compactMap { HostileFloodTests.id(in: $0) }
                #expect(ids == ["d1", "d2", "d3"], "\(resumed)")
                await again.drop()
            }
            // Nothing was bounced to bob: the server had them all along.
            let late = try? await bob.receive(until: { $0.contains("type='error'") }, timeout: .seconds(2))
            #expect(late == nil, "\(late ?? [])")
            let metrics = try await rawHTTP(port: tether.port, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            #expect(!metrics.text.contains("tether_stanzas_bounced_total{"), "\(metrics.text.prefix(2000))")
            await bob.drop()
        } configure: { configuration, _ in
            // With the cut, inactivity leaves room for the three messages to arrive, so only the
            // cut can end the session (regression: on a loaded machine 3 s ran out first); its
            // verdict then waits one inactivity period for a request to tell it to (§10).
            configuration.bosh.inactivity = cut ? 10 : 3
            if cut { configuration.bosh.maxQueuedBytes = 2800 }
        }
    }
}
