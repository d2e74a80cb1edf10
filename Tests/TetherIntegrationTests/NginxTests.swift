import AsyncHTTPClient
import BOSHCore
import NIOHTTP1
import Foundation
import NIOCore
import NIOSSL
import Testing
import TetherServer

/// The shipped `nginx/tether.conf` in front of Tether, over HTTPS and WSS, with a real Prosody behind.
@Suite("Behind nginx", .serialized, .timeLimit(.minutes(3)))
struct NginxTests {
    /// Prosody, Tether and nginx (the shipped config), plus an HTTPS client trusting the throwaway CA.
    static func withStack(
        configure: (inout TetherConfiguration) -> Void = { _ in },
        _ body: (ProsodyServer, TetherFixture, NginxServer, HTTPClient, NIOSSLContext) async throws -> Void
    ) async throws {
        try await withProsodyAndTether { prosody, tether, _ in
            let nginx = try await NginxServer.start(tetherPort: tether.port)
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(nginx.caFile))
            let https = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(tlsConfiguration: tls))
            do {
                try await body(prosody, tether, nginx, https, try NIOSSLContext(configuration: tls))
                try await https.shutdown()
                await nginx.stop()
            } catch {
                print("nginx error log:\n\(nginx.errorLog)")
                try? await https.shutdown()
                await nginx.stop()
                throw error
            }
        } configure: { configuration, _ in
            configure(&configuration)
        }
    }

    @Test("nginx -t accepts the shipped configuration")
    func syntax() throws {
        let (directory, _) = try NginxServer.makeDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let shipped = try String(contentsOf: NginxServer.shippedConfig, encoding: .utf8)
            .replacingOccurrences(of: "/etc/ssl/certs/chat.example.org.pem", with: directory.appendingPathComponent("localhost.crt").path)
            .replacingOccurrences(of: "/etc/ssl/private/chat.example.org.key", with: directory.appendingPathComponent("localhost.key").path)
        try shipped.write(to: directory.appendingPathComponent("tether.conf"), atomically: true, encoding: .utf8)
        let (status, output) = try NginxServer.check(mainConfig: try NginxServer.writeMainConfig(in: directory), directory: directory)
        #expect(status == 0, "\(output)")
        #expect(output.contains("syntax is ok"))
        #expect(output.contains("test is successful"))
    }

    @Test("BOSH over HTTPS: login and a message round trip; the client address from X-Forwarded-For reaches the logs")
    func bosh() async throws {
        try await Self.withStack { _, tether, nginx, https, _ in
            let url = "https://localhost:\(nginx.port)/http-bind"
            let alice = BOSHTestClient(http: https, url: url)
            let bob = BOSHTestClient(http: https, url: url)
            try await alice.login(user: "alice", password: "secret")
            try await bob.login(user: "bob", password: "secret")
            _ = try await alice.send("<message xmlns='jabber:client' to='bob@localhost/test' id='tls1'><body>through nginx</body></message>")
            let received = try await bob.receive(until: { $0.contains("id='tls1'") })
            #expect(received.contains { $0.contains("through nginx") })

            // nginx appends its peer (127.0.0.1, trusted) to what the client sent; Tether takes the rightmost untrusted hop.
            let forwarded = BOSHTestClient(http: https, url: url)
            let body = "<body rid='1' to='localhost' wait='5' hold='1' ver='1.6' xmlns='http://jabber.org/protocol/httpbind'/>"
            let created = try await forwarded.post(body, headers: [("X-Forwarded-For", "203.0.113.50")])
            #expect(created.attributes["sid"] != nil)
            #expect(tether.logs.all.contains { $0.contains("session created") && $0.contains("client=203.0.113.50") })
        }
    }

    @Test("WebSocket over WSS through nginx: login and a message round trip")
    func webSocket() async throws {
        try await Self.withStack { _, _, nginx, _, tls in
            let alice = try await WebSocketTestClient.connect(port: nginx.port, tls: tls)
            #expect(alice.subprotocol == "xmpp")
            try await alice.login(user: "alice", password: "secret")
            try await alice.send("<message xmlns='jabber:client' to='alice@localhost/ws' id='wss1'><body>through nginx</body></message>")
            let received = try await alice.receive(until: { $0.contains("id='wss1'") })
            #expect(received.last?.contains("through nginx") == true)
        }
    }

    @Test("a 55-second idle long-poll through nginx completes normally with an empty body")
    func longPoll() async throws {
        try await Self.withStack(configure: { $0.bosh.maxWait = 55 }) { _, _, nginx, https, _ in
            let client = BOSHTestClient(http: https, url: "https://localhost:\(nginx.port)/http-bind")
            let created = try await client.create(wait: 55)
            #expect(created.attributes["wait"] == "55")
            let started = ContinuousClock.now
            let response = try await client.send()
            let elapsed = ContinuousClock.now - started
            #expect(response.status == 200)
            #expect(response.type == nil)
            #expect(response.children.isEmpty)
            #expect(elapsed >= .seconds(54))
        }
    }

    @Test("with Tether down, BOSH clients get remote-connection-failed from nginx, not an HTML page")
    func tetherDown() async throws {
        try await Self.withStack { _, tether, nginx, https, _ in
            await tether.server.shutdown()
            let client = BOSHTestClient(http: https, url: "https://localhost:\(nginx.port)/http-bind")
            let response = try await client.create()
            #expect(response.status == 200)
            #expect(response.headers.first(name: "content-type") == "text/xml; charset=utf-8")
            #expect(response.raw == "<body xmlns='http://jabber.org/protocol/httpbind' type='terminate' condition='remote-connection-failed'/>")
        }
    }
}
