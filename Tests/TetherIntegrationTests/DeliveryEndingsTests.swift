import AsyncHTTPClient
import Foundation
import NIOCore
import Testing
import TetherServer

/// The other ways a session ends with stanzas in Tether's hands (DeliveryTests has inactivity
/// and the queue cut): a client's terminate, Tether's shutdown and a WebSocket that drops, each
/// without XEP-0198 (every undelivered stanza comes back to its sender with its id) and with it
/// (the client resumes through a second tether process and gets each once, in order), against
/// a real Prosody with and without offline storage (mod_offline).
// Serialized: two of the tests strand 6 MB each, which is enough load for one at a time.
@Suite("Delivery: terminate, shutdown and dropped WebSockets", .serialized, .timeLimit(.minutes(3)))
struct DeliveryEndingsTests {
    static func prosody(offline: Bool) -> ProsodyServer.Options {
        var options = ProsodyServer.Options()
        if offline { options.extraModules = ["offline"] }
        return options
    }

    /// Everything `client` sent before this has been processed by the server (XEP-0199 ping).
    static func synchronize(_ client: WebSocketTestClient, id: String = "sync") async throws {
        try await client.send("<iq xmlns='jabber:client' type='get' id='\(id)' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        _ = try await client.receive(until: { $0.contains("id='\(id)'") }, timeout: .seconds(30))
    }

    /// XEP-0198 with resumption on a WebSocket stream; the id to resume with.
    static func enableStreamManagement(_ client: WebSocketTestClient) async throws -> String {
        try await client.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
        let enabled = try required(try await client.receive(until: { $0.hasPrefix("<enabled") }).last)
        return try required(Self.attribute("id", in: enabled))
    }

    static func attribute(_ name: String, in element: String) -> String? {
        for quote in ["'", "\""] {
            if let start = element.range(of: " \(name)=\(quote)") {
                return element[start.upperBound...].split(separator: Character(quote)).first.map(String.init)
            }
        }
        return nil
    }

    /// alice resumes `previd` through another tether process; the ids of bob's messages she gets.
    static func resume(previd: String, port: Int, until lastID: String) async throws -> [String] {
        let again = try await WebSocketTestClient.connect(port: port)
        defer { Task { await again.drop() } }
        try await again.login(user: "alice", password: "secret", bind: false)
        try await again.send("<resume xmlns='urn:xmpp:sm:3' h='0' previd='\(previd)'/>")
        let resumed = try await again.receive(until: { $0.contains("id='\(lastID)'") }, timeout: .seconds(30))
        #expect(resumed.contains { $0.hasPrefix("<resumed") }, "\(resumed.prefix(3))")
        return resumed.filter { $0.hasPrefix("<message") }.compactMap { HostileFloodTests.id(in: $0) }
    }

    /// Nothing comes back to bob as an error for a while.
    static func expectNoBounces(to bob: WebSocketTestClient) async {
        let late = try? await bob.receive(until: { $0.contains("type='error'") }, timeout: .seconds(2))
        #expect(late == nil, "\(late ?? [])")
    }

    @Test(
        "BOSH terminate: what Tether holds goes out in the terminate response (XEP-0124 §13), what was still on its way from the server is bounced; each message one or the other",
        arguments: [false, true])
    func terminate(offline: Bool) async throws {
        try await withProsodyAndTether(prosody: Self.prosody(offline: offline)) { _, tether, http in
            let (bob, alice) = try await DeliveryTests.logIn(tether: tether, http: http)
            try await DeliveryTests.strand(3, bob: bob)
            // The server has routed all three to alice's stream; whether Tether has read them
            // yet is a race this test leaves open, because both outcomes must add up.
            try await Self.synchronize(bob)
            let answer = try await alice.send(attributes: "type='terminate'")
            #expect(answer.type == "terminate")
            let delivered = Set(answer.children.filter { $0.hasPrefix("<message") }.compactMap { HostileFloodTests.id(in: $0) })
            let ids: Set<String> = ["d1", "d2", "d3"]
            if delivered == ids {
                await Self.expectNoBounces(to: bob)
            } else {
                let bounced = Set(try await DeliveryTests.bounces(ids.count - delivered.count, to: bob).keys)
                #expect(delivered.isDisjoint(with: bounced), "\(delivered) and \(bounced)")
                #expect(delivered.union(bounced) == ids, "\(delivered) and \(bounced)")
            }
            await bob.drop()
        }
    }

    /// bob, on another tether process that stays up, sends alice three messages (the server has
    /// routed them all), then `tether` shuts down; `body` gets bob and the other process.
    static func strandThenShutDown(_ tether: TetherFixture, prosody: ProsodyServer, _ body: (WebSocketTestClient, TetherProcess) async throws -> Void) async throws {
        try await withTetherProcess(["--route", "localhost=127.0.0.1:\(prosody.c2sPort)"]) { other in
            let bob = try await WebSocketTestClient.connect(port: other.port)
            try await bob.login(user: "bob", password: "secret", resource: "b")
            try await DeliveryTests.strand(3, bob: bob)
            try await Self.synchronize(bob)
            await tether.server.shutdown()
            try await body(bob, other)
        }
    }

    @Test("Tether shuts down without XEP-0198: each message queued for a BOSH client comes back to its sender with its id", arguments: [false, true])
    func shutdownBounces(offline: Bool) async throws {
        try await withProsodyAndTether(prosody: Self.prosody(offline: offline)) { prosody, tether, http in
            let alice = BOSHTestClient(http: http, url: tether.boshURL)
            try await alice.login(user: "alice", password: "secret", resource: "a")
            try await Self.strandThenShutDown(tether, prosody: prosody) { bob, _ in
                let errors = try await DeliveryTests.bounces(3, to: bob)
                #expect(Set(errors.keys) == ["d1", "d2", "d3"])
                #expect(errors.values.allSatisfy { $0.contains("service-unavailable") }, "\(errors)")
                await bob.drop()
            }
        }
    }

    @Test(
        "Tether shuts down with XEP-0198 on a BOSH session: nothing bounced; the client resumes through another tether process and gets every message, in order, exactly once",
        arguments: [false, true])
    func shutdownResumes(offline: Bool) async throws {
        try await withProsodyAndTether(prosody: Self.prosody(offline: offline)) { prosody, tether, http in
            let alice = BOSHTestClient(http: http, url: tether.boshURL)
            try await alice.login(user: "alice", password: "secret", resource: "a")
            let enabled = try await alice.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>", thenReceiveUntil: { $0.hasPrefix("<enabled") })
            let previd = try required(enabled.first { $0.hasPrefix("<enabled") }.flatMap { Self.attribute("id", in: $0) })
            try await Self.strandThenShutDown(tether, prosody: prosody) { bob, other in
                let ids = try await Self.resume(previd: previd, port: other.port, until: "d3")
                #expect(ids == ["d1", "d2", "d3"])
                await Self.expectNoBounces(to: bob)
                await bob.drop()
            }
        }
    }

    /// 150 messages of 40 KB from bob to alice, who has stopped reading: 6 MB, more than the
    /// sockets on the way hold (loopback send buffers grow to 4 MB, whatever the receiver's
    /// window), so once Tether's socket to her is full and it stops reading the server, the
    /// rest waits in the server's connection.
    static let stranded = 150
    static func strandMany(bob: WebSocketTestClient) async throws {
        try await DeliveryTests.strand(Self.stranded, body: String(repeating: "w", count: 40_000), bob: bob)
        try await Self.synchronize(bob)
    }

    @Test(
        "a WebSocket client that goes away without XEP-0198: each message is either read by the client or bounced to its sender, never both, never neither (regression: the unwritten ones and those still in the server's connection were lost)",
        arguments: [false, true])
    func webSocketGoneBounces(offline: Bool) async throws {
        try await withProsodyAndTether(prosody: Self.prosody(offline: offline)) { _, tether, _ in
            let bob = try await WebSocketTestClient.connect(port: tether.port)
            try await bob.login(user: "bob", password: "secret", resource: "b")
            let alice = try await WebSocketTestClient.connect(port: tether.port)
            try await alice.login(user: "alice", password: "secret", resource: "a")
            try await alice.channel.setOption(ChannelOptions.autoRead, value: false).get()
            try await Self.strandMany(bob: bob)
            // alice's side ends (FIN); what already reached her socket she can still read, which
            // makes the account exact: Tether must bounce precisely the rest.
            try await alice.channel.close(mode: .output)
            // Read only once Tether has closed her session, or reading would drain its queue.
            try await waitUntil(timeout: .seconds(30)) { tether.server.webSocketSessionCount == 1 }
            try await alice.channel.setOption(ChannelOptions.autoRead, value: true).get()
            let read = Set(
                try await alice.eventsUntilDisconnected(timeout: .seconds(60)).compactMap { event -> Int? in
                    guard case .text(let text) = event, text.hasPrefix("<message"), let id = HostileFloodTests.id(in: text) else { return nil }
                    return Int(id.dropFirst())
                })
            let expected = Self.stranded - read.count
            #expect(expected > 0, "alice read all \(read.count): nothing was left in Tether to bounce")
            let errors = try await DeliveryTests.bounces(expected, to: bob)
            let bounced = Set(errors.keys.compactMap { Int($0.dropFirst()) })
            #expect(read.isDisjoint(with: bounced), "both read and bounced: \(read.intersection(bounced).sorted())")
            #expect(read.union(bounced) == Set(1...Self.stranded), "neither: \(Set(1...Self.stranded).subtracting(read.union(bounced)).sorted())")
            // The newest never left the server's connection before the end: bounced "in flight".
            let metrics = try await rawHTTP(port: tether.port, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            #expect(metrics.text.contains("tether_stanzas_bounced_total{transport=\"websocket\",reason=\"in-flight\"}"), "\(metrics.text.prefix(3000))")
            await bob.drop()
        } configure: { configuration, _ in
            // Tether holds at most 256 KiB for her before it stops reading the server, and the
            // slow-reader cut must not come first: this is about a client that goes away.
            configuration.webSocket.maxQueuedBytes = 256 << 10
            configuration.webSocket.slowReaderTimeout = .seconds(120)
        }
    }

    @Test(
        "a WebSocket that drops with XEP-0198 on: nothing bounced; the client resumes through another tether process and gets every message, in order, exactly once",
        arguments: [false, true])
    func webSocketDropResumes(offline: Bool) async throws {
        try await withProsodyAndTether(prosody: Self.prosody(offline: offline)) { prosody, tether, _ in
            let bob = try await WebSocketTestClient.connect(port: tether.port)
            try await bob.login(user: "bob", password: "secret", resource: "b")
            let alice = try await WebSocketTestClient.connect(port: tether.port)
            try await alice.login(user: "alice", password: "secret", resource: "a")
            let previd = try await Self.enableStreamManagement(alice)
            try await alice.channel.setOption(ChannelOptions.autoRead, value: false).get()
            try await Self.strandMany(bob: bob)
            await alice.drop()
            try await waitUntil(timeout: .seconds(30)) { tether.server.webSocketSessionCount == 1 }
            try await withTetherProcess(["--route", "localhost=127.0.0.1:\(prosody.c2sPort)"]) { other in
                let ids = try await Self.resume(previd: previd, port: other.port, until: "d\(Self.stranded)")
                #expect(ids == (1...Self.stranded).map { "d\($0)" }, "\(ids.count) ids: \(ids.prefix(5))…")
            }
            await Self.expectNoBounces(to: bob)
            await bob.drop()
        } configure: { configuration, _ in
            configuration.webSocket.maxQueuedBytes = 8 << 20
            configuration.webSocket.slowReaderTimeout = .seconds(120)
        }
    }
}
