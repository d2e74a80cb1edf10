import AsyncHTTPClient
import NIOCore
import Testing
import TetherServer
import XMPPUpstream

/// Slow readers on either side are cut off with `policy-violation` once their queue passes the
/// limit, instead of being buffered without end; everyone else carries on.
@Suite("Queue limits toward slow readers")
struct QueueLimitTests {
    static let filler = String(repeating: "x", count: 100_000)

    @Test("a server that stops reading mid-stream: its session ends with policy-violation past --max-queued-bytes-to-server; others unaffected")
    func serverStopsReading() async throws {
        let fake = try await FakeXMPPServer.start(stopsReading: true)
        do {
            try await withProsodyAndTether { _, tether, http in
                try await Self.stalledServer(tether: tether, http: http)
            } configure: { configuration, _ in
                configuration.upstream.routes["stall.test"] = UpstreamRoute(host: "127.0.0.1", port: fake.port)
                configuration.upstream.maxQueuedBytes = 64 * 1024
                configuration.upstream.slowReaderTimeout = .seconds(1)
            }
            await fake.stop()
        } catch {
            await fake.stop()
            throw error
        }
    }

    static func stalledServer(tether: TetherFixture, http: HTTPClient) async throws {
        let alice = BOSHTestClient(http: http, url: tether.boshURL)
        try await alice.login(user: "alice", password: "secret")
        let victim = try await WebSocketTestClient.connect(port: tether.port)
        try await victim.send("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='stall.test' version='1.0'/>")
        _ = try await victim.receive(until: { $0.contains("stream:features") })
        // Far more than the kernel buffers and the limit together can hold.
        for index in 0..<120 {
            do {
                try await victim.send("<message xmlns='jabber:client' to='x@stall.test' id='m\(index)'><body>\(Self.filler)</body></message>")
            } catch {
                break  // Tether closed the WebSocket after the stream error.
            }
            if tether.server.webSocketSessionCount == 0 { break }
        }
        let received = try await victim.receive(until: { $0.contains("urn:ietf:params:xml:ns:xmpp-streams") }, timeout: .seconds(20))
        #expect(received.contains { $0.contains("<policy-violation") })
        try await waitUntil { tether.server.webSocketSessionCount == 0 }
        #expect(tether.logs.all.contains { $0.contains("limit=max-queued-bytes-to-server") })
        // The session on the healthy server kept working.
        _ = try await alice.send(
            "<iq xmlns='jabber:client' type='get' id='still-fine' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>", thenReceiveUntil: { $0.contains("still-fine") })
    }

    @Test("a WebSocket client that stops reading: cut off with policy-violation past --max-queued-bytes-to-client; others unaffected")
    func clientStopsReading() async throws {
        try await withProsodyAndTether { _, tether, http in
            try await Self.stalledClient(tether: tether, http: http)
        } configure: { configuration, _ in
            configuration.webSocket.maxQueuedBytes = 64 * 1024
            configuration.webSocket.slowReaderTimeout = .seconds(1)
        }
    }

    static func stalledClient(tether: TetherFixture, http: HTTPClient) async throws {
        let alice = try await WebSocketTestClient.connect(port: tether.port)
        let aliceJID = try required(try await alice.login(user: "alice", password: "secret"), "alice's JID")
        let bob = try await WebSocketTestClient.connect(port: tether.port)
        try await bob.login(user: "bob", password: "secret")
        // Alice's page hangs: nothing more is read from her socket.
        try await alice.channel.setOption(ChannelOptions.autoRead, value: false).get()
        for index in 0..<120 {
            try await bob.send("<message xmlns='jabber:client' to='\(aliceJID)' id='flood\(index)'><body>\(Self.filler)</body></message>")
            if tether.server.webSocketSessionCount == 1 { break }
            try await Task.sleep(for: .milliseconds(5))
        }
        try await waitUntil(timeout: .seconds(20)) { tether.server.webSocketSessionCount == 1 }
        #expect(tether.logs.all.contains { $0.contains("limit=max-queued-bytes-to-client") })
        let metrics = try await rawHTTP(port: tether.port, "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        #expect(metrics.text.contains("tether_limit_hits_total{limit=\"max-queued-bytes-to-client\"} 1"))
        // What was still queued for her in Tether comes back to bob, one error per message
        // with its id (RFC 6120 §10.4.3; regression: dropped with the connection).
        let bounced = try await bob.receive(until: { $0.contains("service-unavailable") }, timeout: .seconds(20))
        let error = try required(bounced.last, "a bounce")
        #expect(error.hasPrefix("<message") && error.contains("id='flood") && error.contains("type='error'"), "\(error)")
        let after = try await rawHTTP(port: tether.port, "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        #expect(after.text.contains("tether_stanzas_bounced_total{transport=\"websocket\",reason=\"slow-reader\"}"), "\(after.text.prefix(3000))")
        // Bob, on the same server and the same Tether, carries on.
        try await bob.send("<iq xmlns='jabber:client' type='get' id='bob-fine' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        _ = try await bob.receive(until: { $0.contains("bob-fine") }, timeout: .seconds(20))
    }
}
