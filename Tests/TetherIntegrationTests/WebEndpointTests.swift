import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Testing
import TetherServer

/// Prebind, XEP-0156 discovery and the demo page, over real HTTP against a real Prosody.
@Suite("Web endpoints: prebind, host-meta, demo page")
struct WebEndpointTests {
    static let secret = "prebind-secret-for-tests-0123456789"

    struct Prebound: Decodable {
        var jid: String
        var sid: String
        var rid: UInt64
    }

    static func prebind(_ tether: TetherFixture, http: HTTPClient, json: String, secret: String? = Self.secret) async throws -> (status: Int, body: String, headers: HTTPHeaders) {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(tether.port)/prebind")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        if let secret { request.headers.add(name: "Authorization", value: "Bearer \(secret)") }
        request.body = .bytes(ByteBuffer(string: json))
        let response = try await http.execute(request, timeout: .seconds(30))
        let body = try await response.body.collect(upTo: 1 << 20)
        return (Int(response.status.code), String(buffer: body), response.headers)
    }

    static func withPrebind(_ body: @escaping (TetherFixture, HTTPClient) async throws -> Void) async throws {
        try await withProsodyAndTether { _, tether, http in
            try await body(tether, http)
        } configure: { configuration, _ in
            configuration.prebind = PrebindSettings(secret: Self.secret, timeout: .seconds(15))
        }
    }

    @Test("prebind: Tether logs the user in and the returned sid/rid attach; messages flow both ways")
    func prebindThenAttach() async throws {
        try await Self.withPrebind { tether, http in try await Self.attachAndChat(tether, http) }
    }

    static func attachAndChat(_ tether: TetherFixture, _ http: HTTPClient) async throws {
        let answer = try await Self.prebind(tether, http: http, json: #"{"jid": "alice@localhost", "password": "secret", "resource": "prebound"}"#)
        #expect(answer.status == 200)
        #expect(answer.headers.first(name: "access-control-allow-origin") == nil)
        let prebound = try JSONDecoder().decode(Prebound.self, from: Data(answer.body.utf8))
        #expect(prebound.jid == "alice@localhost/prebound")
        #expect(tether.server.sessionCount == 1)
        // The browser attaches: its first request uses the returned rid (the client adds one before each request).
        let alice = BOSHTestClient(http: http, url: tether.boshURL, rid: prebound.rid - 1)
        alice.sid = prebound.sid
        let bob = BOSHTestClient(http: http, url: tether.boshURL)
        try await bob.login(user: "bob", password: "secret")
        _ = try await bob.send("<message xmlns='jabber:client' to='alice@localhost/prebound' id='to-prebound'><body>hello prebound</body></message>")
        let received = try await alice.receive(until: { $0.contains("hello prebound") })
        #expect(received.contains { $0.contains("id='to-prebound'") })
        // Alice's request stays held (hold=1) until bob's reply arrives in it.
        async let held = alice.send("<message xmlns='jabber:client' to='bob@localhost/test' id='from-prebound'><body>from the browser</body></message>")
        let atBob = try await bob.receive(until: { $0.contains("from the browser") })
        #expect(atBob.contains { $0.contains("id='from-prebound'") })
        _ = try await bob.send("<message xmlns='jabber:client' to='alice@localhost/prebound' id='reply'><body>got it</body></message>")
        let answered = try await held
        #expect(answered.children.contains { $0.contains("id='reply'") })
    }

    @Test("prebind: wrong or missing secret is 401 and creates no session; a wrong password is 403 not-authorized")
    func prebindRefusals() async throws {
        try await Self.withPrebind { tether, http in try await Self.refusals(tether, http) }
    }

    static func refusals(_ tether: TetherFixture, _ http: HTTPClient) async throws {
        let wrong = try await Self.prebind(tether, http: http, json: #"{"jid": "alice@localhost", "password": "secret"}"#, secret: "not-the-secret-at-all-000000000000")
        #expect(wrong.status == 401)
        #expect(wrong.headers.first(name: "www-authenticate")?.hasPrefix("Bearer") == true)
        let missing = try await Self.prebind(tether, http: http, json: #"{"jid": "alice@localhost", "password": "secret"}"#, secret: nil)
        #expect(missing.status == 401)
        #expect(tether.server.sessionCount == 0)
        let badPassword = try await Self.prebind(tether, http: http, json: #"{"jid": "alice@localhost", "password": "wrong"}"#)
        #expect(badPassword.status == 403)
        #expect(badPassword.body.contains(#""error":"not-authorized""#))
        let badJSON = try await Self.prebind(tether, http: http, json: "jid=alice")
        #expect(badJSON.status == 400)
        let unserved = try await Self.prebind(tether, http: http, json: #"{"jid": "alice@elsewhere.example", "password": "secret"}"#)
        #expect(unserved.status == 404)
        #expect(unserved.body.contains("host-unknown"))
        // The failed login's session was terminated, not left to time out.
        try await waitUntil { tether.server.sessionCount == 0 }
    }

    @Test("prebind: attaching with a rid outside the window is item-not-found, as for any BOSH session")
    func prebindWrongRID() async throws {
        try await Self.withPrebind { tether, http in
            let answer = try await Self.prebind(tether, http: http, json: #"{"jid": "bob@localhost", "password": "secret"}"#)
            let prebound = try JSONDecoder().decode(Prebound.self, from: Data(answer.body.utf8))
            let intruder = BOSHTestClient(http: http, url: tether.boshURL, rid: prebound.rid + 1000)
            intruder.sid = prebound.sid
            let refused = try await intruder.send()
            #expect(refused.type == "terminate")
            #expect(refused.condition == "item-not-found")
        }
    }

    @Test("prebind is off unless configured: 404")
    func prebindOffByDefault() async throws {
        try await withProsodyAndTether { _, tether, http in
            let answer = try await Self.prebind(tether, http: http, json: #"{"jid": "alice@localhost", "password": "secret"}"#)
            #expect(answer.status == 404)
            #expect(tether.server.sessionCount == 0)
        }
    }

    @Test("XEP-0156 host-meta (XRD and JRD) for a served domain, with Access-Control-Allow-Origin * on those files only")
    func hostMeta() async throws {
        var configuration = TetherFixture.configuration(c2sPort: 1)
        configuration.cors = CORSPolicy(origins: ["https://app.example"], disabled: false)
        configuration.hostMeta = HostMetaSettings(boshURL: "https://chat.example/http-bind", webSocketURL: "wss://chat.example/xmpp-websocket")
        try await withTether(configuration) { tether, _ in
            let xrd = try await rawHTTP(port: tether.port, "GET /.well-known/host-meta HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            #expect(xrd.status == 200)
            #expect(xrd.text.lowercased().contains("access-control-allow-origin: *"))
            #expect(xrd.text.contains("content-type: application/xrd+xml") || xrd.text.lowercased().contains("content-type: application/xrd+xml"))
            #expect(xrd.text.contains("<Link rel='urn:xmpp:alt-connections:xbosh' href='https://chat.example/http-bind'/>"))
            #expect(xrd.text.contains("<Link rel='urn:xmpp:alt-connections:websocket' href='wss://chat.example/xmpp-websocket'/>"))
            let jrd = try await rawHTTP(port: tether.port, "GET /.well-known/host-meta.json HTTP/1.1\r\nHost: localhost:5280\r\nConnection: close\r\n\r\n")
            #expect(jrd.status == 200)
            #expect(jrd.text.contains(#"{"rel": "urn:xmpp:alt-connections:websocket", "href": "wss://chat.example/xmpp-websocket"}"#))
            let otherDomain = try await rawHTTP(port: tether.port, "GET /.well-known/host-meta HTTP/1.1\r\nHost: not-served.example\r\nConnection: close\r\n\r\n")
            #expect(otherDomain.status == 404)
            // The BOSH endpoint keeps its own CORS policy.
            let bosh = try await rawHTTP(port: tether.port, "GET /http-bind HTTP/1.1\r\nHost: localhost\r\nOrigin: https://evil.example\r\nConnection: close\r\n\r\n")
            #expect(!bosh.text.lowercased().contains("access-control-allow-origin"))
        }
    }

    @Test("host-meta and the demo page are off by default; when enabled the demo serves its page and Strophe.js")
    func demoPage() async throws {
        try await withTether(TetherFixture.configuration(c2sPort: 1)) { tether, _ in
            let demo = try await rawHTTP(port: tether.port, "GET /demo/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            #expect(demo.status == 404)
            let hostMeta = try await rawHTTP(port: tether.port, "GET /.well-known/host-meta HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            #expect(hostMeta.status == 404)
        }
        var configuration = TetherFixture.configuration(c2sPort: 1)
        configuration.demo = DemoSettings()
        try await withTether(configuration) { tether, _ in
            let page = try await rawHTTP(port: tether.port, "GET /demo/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            #expect(page.status == 200)
            #expect(page.text.contains("<title>Tether demo</title>"))
            let script = try await rawHTTP(port: tether.port, "GET /demo/strophe.js HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            #expect(script.status == 200)
            #expect(script.text.contains("Strophe"))
        }
    }
}

/// Polls `condition` for up to `timeout`.
func waitUntil(timeout: Duration = .seconds(10), _ condition: () -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while !condition() {
        guard ContinuousClock.now < deadline else { throw TestFailure("condition not met within \(timeout)") }
        try await Task.sleep(for: .milliseconds(50))
    }
}
