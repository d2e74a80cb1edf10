import AsyncHTTPClient
import BOSHCore
import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL
import Testing
import TetherServer
import XMPPCore
import XMPPUpstream

/// BOSH through Tether to a real Prosody over real HTTP.
@Suite("BOSH against Prosody", .serialized, .timeLimit(.minutes(3)))
struct BOSHIntegrationTests {
    @Test("two clients log in with SASL, restart, bind and exchange Unicode messages byte for byte", arguments: Edge.allCases)
    func messageExchange(edge: Edge) async throws {
        try await withEndpoints(edge) { endpoints in
            let alice = endpoints.bosh()
            let bob = endpoints.bosh()
            try await alice.login(user: "alice", password: "secret")
            try await bob.login(user: "bob", password: "secret")
            #expect(alice.jid == "alice@localhost/test")
            #expect(bob.jid == "bob@localhost/test")

            let text = "héllo 🦊👩‍👩‍👧 漢字かな 한국어 שלום עולם مرحبا &amp; &lt;tag&gt;"
            // No xmlns on the stanza: accepted as jabber:client (XEP-0206 §2).
            let sent = try await alice.send("<message to='bob@localhost/test' type='chat' id='m1'><body>\(text)</body></message>")
            #expect(sent.status == 200)
            let received = try await bob.receive(until: { $0.contains("id='m1'") })
            let message = try required(received.first { $0.contains("id='m1'") })
            #expect(message.hasPrefix("<message xmlns='jabber:client'"))
            #expect(BOSHTestClient.text(of: "body", in: message) == text)
        }
    }

    @Test("stanzas waiting for a client go out together in one response", arguments: Edge.allCases)
    func batching(edge: Edge) async throws {
        try await withEndpoints(edge) { endpoints in
            let alice = endpoints.bosh()
            let bob = endpoints.bosh()
            try await alice.login(user: "alice", password: "secret")
            try await bob.login(user: "bob", password: "secret")
            // Bob has no request open while three messages arrive.
            let three = (1...3).map { "<message xmlns='jabber:client' to='bob@localhost/test' id='b\($0)'><body>\($0)</body></message>" }.joined()
            _ = try await alice.send(three)
            let response = try await bob.send()
            #expect(response.children.filter { $0.hasPrefix("<message") }.count == 3)
            #expect(response.children.filter { $0.hasPrefix("<message") }.map { BOSHTestClient.text(of: "body", in: $0) } == ["1", "2", "3"])
        }
    }

    @Test("requests that arrive out of order on separate connections are relayed in rid order (§14.2)", arguments: Edge.allCases)
    func outOfOrder(edge: Edge) async throws {
        try await withEndpoints(edge) { endpoints in
            let alice = endpoints.bosh()
            let bob = endpoints.bosh()
            try await alice.login(user: "alice", password: "secret")
            try await bob.login(user: "bob", password: "secret")
            let first = alice.nextBody("<message xmlns='jabber:client' to='bob@localhost/test' id='o1'><body>first</body></message>")
            let second = alice.nextBody("<message xmlns='jabber:client' to='bob@localhost/test' id='o2'><body>second</body></message>")
            async let late = alice.post(second)
            try await Task.sleep(for: .milliseconds(300))
            async let early = alice.post(first)
            let answers = try await [early, late]
            #expect(answers.allSatisfy { $0.status == 200 && $0.type == nil })
            let received = try await bob.receive(until: { $0.contains("id='o2'") })
            let order = received.filter { $0.hasPrefix("<message") }.compactMap { BOSHTestClient.text(of: "body", in: $0) }
            #expect(order == ["first", "second"])
        }
    }

    @Test("a 60 KB message arrives whole", arguments: Edge.allCases)
    func largeMessage(edge: Edge) async throws {
        try await withEndpoints(edge) { endpoints in
            let alice = endpoints.bosh()
            let bob = endpoints.bosh()
            try await alice.login(user: "alice", password: "secret")
            try await bob.login(user: "bob", password: "secret")
            let text = String((0..<61_440).map { i in Character(UnicodeScalar(UInt8(97 + i % 26))) })
            _ = try await alice.send("<message xmlns='jabber:client' to='bob@localhost/test' id='big'><body>\(text)</body></message>")
            let received = try await bob.receive(until: { $0.contains("id='big'") })
            let message = try required(received.first { $0.contains("id='big'") })
            #expect(BOSHTestClient.text(of: "body", in: message)?.count == 61_440)
            #expect(BOSHTestClient.text(of: "body", in: message) == text)
        }
    }

    @Test("creation response: session attributes, features with xmlns:stream, no starttls, exact Content-Type")
    func creationResponse() async throws {
        try await withProsodyAndTether { _, tether, http in
            let client = BOSHTestClient(http: http, url: tether.boshURL)
            let response = try await client.create(wait: 60, hold: 3)
            #expect(response.status == 200)
            #expect(response.headers.first(name: "content-type") == "text/xml; charset=utf-8")
            #expect(response.attributes["sid"]?.count == 32)
            #expect(response.attributes["wait"] == "50")
            #expect(response.attributes["hold"] == "1")
            #expect(response.attributes["requests"] == "2")
            #expect(response.attributes["ver"] == "1.6")
            #expect(response.attributes["xmpp:restartlogic"] == "true")
            #expect(response.attributes["xmpp:version"] == "1.0")
            #expect(response.attributes["from"] == "localhost")
            #expect(response.attributes["authid"] != nil)
            #expect(response.attributes["secure"] == "true")  // loopback upstream
            let features = try required(response.children.first)
            #expect(features.hasPrefix("<stream:features xmlns:stream='http://etherx.jabber.org/streams'"))
            #expect(features.contains("<mechanism>PLAIN</mechanism>"))
            #expect(!features.contains("starttls"))
            #expect(response.raw.contains("xmlns:stream='http://etherx.jabber.org/streams'"))
        }
    }

    @Test("the client's content attribute becomes the response Content-Type (§7.1) when it is an XML type; any other falls back to text/xml")
    func contentAttribute() async throws {
        try await withProsodyAndTether { _, tether, http in
            let client = BOSHTestClient(http: http, url: tether.boshURL)
            let response = try await client.create(extra: "ver='1.6' content='application/xml; charset=utf-8'")
            #expect(response.headers.first(name: "content-type") == "application/xml; charset=utf-8")
            let next = try await client.send(attributes: "pause='1'")
            #expect(next.headers.first(name: "content-type") == "application/xml; charset=utf-8")

            // A type a browser would render or sniff is never honoured (it would make Tether's origin serve stanzas as a page).
            let plain = BOSHTestClient(http: http, url: tether.boshURL)
            let refused = try await plain.create(extra: "ver='1.6' content='text/plain; charset=utf-8'")
            #expect(refused.headers.first(name: "content-type") == "text/xml; charset=utf-8")
        }
    }

    @Test("unknown domain: host-unknown; missing to: improper-addressing; unknown sid: item-not-found (404 for legacy sessions)")
    func refusals() async throws {
        try await withProsodyAndTether(users: []) { _, tether, http in
            let client = BOSHTestClient(http: http, url: tether.boshURL)
            let unknown = try await client.create(to: "example.org")
            #expect(unknown.type == "terminate")
            #expect(unknown.condition == "host-unknown")
            let noTo = try await client.post("<body rid='5' wait='10' hold='1' ver='1.6' xmlns='http://jabber.org/protocol/httpbind'/>")
            #expect(noTo.condition == "improper-addressing")
            let badSid = try await client.post("<body rid='6' sid='nope' xmlns='http://jabber.org/protocol/httpbind'/>")
            #expect(badSid.status == 200)
            #expect(badSid.condition == "item-not-found")
            // A legacy client (no ver at creation) learns item-not-found as HTTP 404 (§17.2).
            let legacy = BOSHTestClient(http: http, url: tether.boshURL)
            let created = try await legacy.create(extra: "")
            #expect(created.attributes["sid"] != nil)
            legacy.rid += 10
            let beyond = try await legacy.send()
            #expect(beyond.status == 404)
            let garbage = try await client.post("<body rid='1' xmlns='http://jabber.org/protocol/httpbind'>text</body>")
            #expect(garbage.condition == "bad-request")
            let route = try await client.post("<body rid='7' to='localhost' route='xmpp:127.0.0.1:22' wait='10' hold='1' ver='1.6' xmlns='http://jabber.org/protocol/httpbind'/>")
            #expect(route.condition == "host-unknown")
        }
    }

    @Test("upstream unreachable: remote-connection-failed")
    func upstreamUnreachable() async throws {
        try await withProsodyAndTether(users: []) { _, tether, http in
            let client = BOSHTestClient(http: http, url: tether.boshURL)
            let response = try await client.create(to: "unreachable.test")
            #expect(response.condition == "remote-connection-failed")
        } configure: { configuration, _ in
            // A port nothing listens on.
            configuration.upstream.routes["unreachable.test"] = UpstreamRoute(host: "127.0.0.1", port: 1)
        }
    }

    @Test("a retransmitted rid gets the same response; a rid beyond the window ends the session", arguments: Edge.allCases)
    func retransmission(edge: Edge) async throws {
        try await withEndpoints(edge) { endpoints in
            let client = endpoints.bosh()
            try await client.login(user: "alice", password: "secret")
            let body = client.nextBody("<iq type='get' id='ping1' xmlns='jabber:client'><ping xmlns='urn:xmpp:ping'/></iq>")
            let first = try await client.post(body)
            var answer = first.children
            if !answer.contains(where: { $0.contains("ping1") }) {
                answer += try await client.receive(until: { $0.contains("ping1") })
            }
            // The same rid again (a "lost" response): the cached body comes back verbatim.
            let again = try await client.post(body)
            #expect(again.raw == first.raw)
            client.rid += 5
            let beyond = try await client.send()
            #expect(beyond.condition == "item-not-found")
        }
    }

    @Test("terminate ends the session; later requests get item-not-found", arguments: Edge.allCases)
    func terminate(edge: Edge) async throws {
        try await withEndpoints(edge) { endpoints in
            let client = endpoints.bosh()
            try await client.login(user: "alice", password: "secret")
            let bye = try await client.send("<presence type='unavailable' xmlns='jabber:client'/>", attributes: "type='terminate'")
            #expect(bye.type == "terminate")
            #expect(bye.condition == nil)
            let after = try await client.send()
            #expect(after.condition == "item-not-found")
            // The session's end runs on its own loop, which can be seconds behind under the whole suite.
            let deadline = ContinuousClock.now + .seconds(10)
            while endpoints.tether.server.sessionCount > 0 && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(endpoints.tether.server.sessionCount == 0)
        }
    }

    @Test("an upstream stream error reaches the client as remote-stream-error with the error inside", arguments: Edge.allCases)
    func streamError(edge: Edge) async throws {
        try await withEndpoints(edge) { endpoints in
            let first = endpoints.bosh()
            try await first.login(user: "alice", password: "secret", resource: "same")
            // The same full JID logs in again: Prosody replaces the old session with a <conflict/> stream error.
            let second = endpoints.bosh()
            try await second.login(user: "alice", password: "secret", resource: "same")
            var response = try await first.send()
            for _ in 0..<5 where response.type != "terminate" {
                response = try await first.send()
            }
            #expect(response.type == "terminate")
            #expect(response.condition == "remote-stream-error")
            #expect(response.raw.contains("<stream:error"))
            #expect(response.raw.contains("conflict"))
            #expect(response.raw.contains("xmlns:stream='http://etherx.jabber.org/streams'"))
        }
    }

    @Test("a held request is answered with an empty body when wait expires")
    func waitExpiry() async throws {
        try await withProsodyAndTether { _, tether, http in
            let client = BOSHTestClient(http: http, url: tether.boshURL)
            try await client.login(user: "alice", password: "secret")
            // Drain anything pending (presence reflections), then wait out one long-poll.
            _ = try? await client.send()
            let started = ContinuousClock.now
            let response = try await client.send()
            let elapsed = ContinuousClock.now - started
            #expect(response.status == 200)
            #expect(response.children.isEmpty)
            #expect(response.type == nil)
            #expect(elapsed >= .seconds(2))
        } configure: { configuration, _ in
            configuration.bosh.maxWait = 2
        }
    }

    @Test("pause: the session survives the client's absence and queued stanzas wait for its return", arguments: Edge.allCases)
    func pauseAndReturn(edge: Edge) async throws {
        try await withEndpoints(edge) { endpoints in
            let alice = endpoints.bosh()
            let bob = endpoints.bosh()
            try await alice.login(user: "alice", password: "secret")
            try await bob.login(user: "bob", password: "secret")
            let paused = try await bob.send(attributes: "pause='20'")
            #expect(paused.status == 200)
            #expect(paused.type == nil)
            _ = try await alice.send("<message xmlns='jabber:client' to='bob@localhost/test' id='away'><body>while you were away</body></message>")
            try await Task.sleep(for: .seconds(4))  // longer than the 3 s inactivity configured below
            let received = try await bob.receive(until: { $0.contains("id='away'") })
            #expect(received.contains { $0.contains("while you were away") })
        } configure: { configuration, _ in
            configuration.bosh.inactivity = 3
            configuration.bosh.polling = 1
        }
    }

    @Test("inactivity ends an abandoned session; the server closes it")
    func inactivity() async throws {
        try await withProsodyAndTether { _, tether, http in
            let client = BOSHTestClient(http: http, url: tether.boshURL)
            try await client.login(user: "alice", password: "secret")
            #expect(tether.server.sessionCount == 1)
            try await Task.sleep(for: .seconds(4))
            #expect(tether.server.sessionCount == 0)
            let late = try await client.send()
            #expect(late.condition == "item-not-found")
        } configure: { configuration, _ in
            configuration.bosh.inactivity = 3
            configuration.bosh.polling = 1
        }
    }

    @Test("CORS: preflight for an allowed origin, 403 for others, and no headers at all when disabled")
    func cors() async throws {
        try await withProsodyAndTether(users: []) { _, tether, http in
            var preflight = HTTPClientRequest(url: tether.boshURL)
            preflight.method = .OPTIONS
            preflight.headers.add(name: "Origin", value: "https://app.example")
            preflight.headers.add(name: "Access-Control-Request-Method", value: "POST")
            preflight.headers.add(name: "Access-Control-Request-Headers", value: "content-type")
            let allowed = try await http.execute(preflight, timeout: .seconds(5))
            #expect(allowed.status == .noContent)
            #expect(allowed.headers.first(name: "access-control-allow-origin") == "https://app.example")
            #expect(allowed.headers.first(name: "access-control-allow-methods")?.contains("POST") == true)
            #expect(allowed.headers.first(name: "access-control-allow-headers") == "content-type")
            #expect(allowed.headers.first(name: "vary") == "Origin")

            preflight.headers.replaceOrAdd(name: "Origin", value: "https://evil.example")
            let refused = try await http.execute(preflight, timeout: .seconds(5))
            #expect(refused.status == .forbidden)
            #expect(refused.headers.first(name: "access-control-allow-origin") == nil)

            let client = BOSHTestClient(http: http, url: tether.boshURL)
            client.origin = "https://app.example"
            let created = try await client.create()
            #expect(created.headers.first(name: "access-control-allow-origin") == "https://app.example")
            client.origin = "https://evil.example"
            let evil = try await client.create()
            #expect(evil.status == 403)
        } configure: { configuration, _ in
            configuration.cors = .origins(["https://app.example"])
        }
        try await withProsodyAndTether(users: []) { _, tether, http in
            let client = BOSHTestClient(http: http, url: tether.boshURL)
            client.origin = "https://app.example"
            let created = try await client.create()
            #expect(created.status == 200)
            #expect(created.headers.first(name: "access-control-allow-origin") == nil)
        } configure: { configuration, _ in
            configuration.cors = .disabled(origins: nil)
        }
    }

    @Test("an oversized body gets 413 and an oversized stanza policy-violation; other sessions keep working")
    func limits() async throws {
        try await withProsodyAndTether { _, tether, http in
            let alice = BOSHTestClient(http: http, url: tether.boshURL)
            let bob = BOSHTestClient(http: http, url: tether.boshURL)
            try await alice.login(user: "alice", password: "secret")
            try await bob.login(user: "bob", password: "secret")
            let huge = String(repeating: "x", count: 20_000)
            let stanza = try await alice.send("<message xmlns='jabber:client' to='bob@localhost/test'><body>\(huge)</body></message>")
            #expect(stanza.condition == "policy-violation")
            let body = try await bob.post(bob.nextBody("<message><body>\(String(repeating: "y", count: 70_000))</body></message>"))
            #expect(body.status == 413)
            bob.rid -= 1
            let received = try await bob.send(
                "<message xmlns='jabber:client' to='bob@localhost/test' id='self'><body>still here</body></message>",
                thenReceiveUntil: { $0.contains("id='self'") }
            )
            #expect(received.contains { $0.contains("still here") })
        } configure: { configuration, _ in
            configuration.xmlLimits = .init(maxElementBytes: 10_000, maxDepth: 32)
            configuration.maxRequestBodyBytes = 64_000
        }
    }

    @Test("§11 an empty request while all are outstanding, too soon after the last: policy-violation")
    func overactivity() async throws {
        try await withProsodyAndTether { _, tether, http in
            let client = BOSHTestClient(http: http, url: tether.boshURL)
            try await client.login(user: "alice", password: "secret")
            _ = try? await client.send()
            async let first = client.post(client.nextBody())
            try await Task.sleep(for: .milliseconds(200))
            let second = try await client.post(client.nextBody())
            #expect(second.condition == "policy-violation")
            #expect(try await first.condition == "policy-violation")
        }
    }

    @Test("IPv6 end to end: Tether listens on ::1 and reaches the server over ::1")
    func ipv6() async throws {
        try await withProsodyAndTether(prosody: .init(ipv6: true)) { _, tether, http in
            let client = BOSHTestClient(http: http, url: "http://[::1]:\(tether.port)/http-bind")
            try await client.login(user: "alice", password: "secret")
            #expect(client.jid == "alice@localhost/test")
        } configure: { configuration, prosody in
            configuration.listen = [UpstreamRoute(host: "::1", port: 0)]
            configuration.upstream.routes = ["localhost": UpstreamRoute(host: "::1", port: prosody.c2sPort)]
        }
    }

    @Test("shutdown answers held requests with system-shutdown")
    func shutdown() async throws {
        try await withProsodyAndTether { _, tether, http in
            let client = BOSHTestClient(http: http, url: tether.boshURL)
            try await client.login(user: "alice", password: "secret")
            _ = try? await client.send()
            async let held = client.send()
            try await Task.sleep(for: .milliseconds(300))
            await tether.server.shutdown()
            let response = try await held
            #expect(response.condition == "system-shutdown")
        }
    }

    @Test("upstream TLS: a self-signed server is refused without the CA file and accepted with it")
    func upstreamTLS() async throws {
        try await withProsodyAndTether(prosody: .init(tls: true)) { _, tether, http in
            let client = BOSHTestClient(http: http, url: tether.boshURL)
            let response = try await client.create()
            #expect(response.condition == "remote-connection-failed")
        } configure: { configuration, _ in
            configuration.upstream.tlsPolicy = .required
        }
        try await withProsodyAndTether(prosody: .init(tls: true)) { _, tether, http in
            let client = BOSHTestClient(http: http, url: tether.boshURL)
            try await client.login(user: "alice", password: "secret")
            #expect(client.jid == "alice@localhost/test")
            let creation = BOSHTestClient(http: http, url: tether.boshURL)
            let response = try await creation.create()
            #expect(response.attributes["secure"] == "true")
            #expect(!response.raw.contains("starttls"))
            // Both sessions did a STARTTLS handshake, and the histogram counted each.
            let metrics = try await rawHTTP(port: tether.port, "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            #expect(metrics.text.contains("tether_upstream_tls_handshake_seconds_count{kind=\"starttls\"} 2"))
        } configure: { configuration, prosody in
            configuration.upstream.tlsPolicy = .required
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.trustRoots = .certificates(try! NIOSSLCertificate.fromPEMFile(prosody.caFile!))
            configuration.upstream.tlsContext = try! NIOSSLContext(configuration: tls)
        }
    }
}
