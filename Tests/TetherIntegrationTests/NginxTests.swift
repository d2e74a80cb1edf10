import AsyncHTTPClient
import BOSHCore
import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL
import Testing
import TetherServer
import XMPPUpstream

/// The shipped `nginx/tether.conf` in front of Tether, over HTTPS and WSS, with a real Prosody behind.
@Suite("Behind nginx", .serialized, .timeLimit(.minutes(3)))
struct NginxTests {
    /// nginx with a shipped configuration in front of the given Tether ports, and an HTTPS client
    /// trusting its throwaway CA; both stopped afterwards whatever happens.
    static func withNginx(
        tetherPorts: [Int],
        config: String = "tether.conf",
        plainHTTP: Bool = false,
        proxyBind: String? = nil,
        passForwarded: Bool = false,
        _ body: (NginxServer, HTTPClient, NIOSSLContext) async throws -> Void
    ) async throws {
        let nginx = try await NginxServer.start(tetherPorts: tetherPorts, config: config, plainHTTP: plainHTTP, proxyBind: proxyBind, passForwarded: passForwarded)
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(nginx.caFile))
        let https = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(tlsConfiguration: tls))
        do {
            try await body(nginx, https, try NIOSSLContext(configuration: tls))
            try await https.shutdown()
            await nginx.stop()
        } catch {
            print("nginx error log:\n\(nginx.errorLog)")
            try? await https.shutdown()
            await nginx.stop()
            throw error
        }
    }

    /// Prosody, Tether and nginx (the shipped config).
    static func withStack(
        configure: (inout TetherConfiguration) -> Void = { _ in },
        _ body: (ProsodyServer, TetherFixture, NginxServer, HTTPClient, NIOSSLContext) async throws -> Void
    ) async throws {
        try await withProsodyAndTether { prosody, tether, _ in
            try await Self.withNginx(tetherPorts: [tether.port]) { nginx, https, tls in
                try await body(prosody, tether, nginx, https, tls)
            }
        } configure: { configuration, _ in
            configure(&configuration)
        }
    }

    @Test("nginx -t accepts the shipped configurations", arguments: ["tether.conf", "tether-cluster.conf"])
    func syntax(config: String) async throws {
        let (directory, _) = try await NginxServer.makeDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        try FileManager.default.copyItem(at: NginxServer.kit.appendingPathComponent("tether-bosh-proxy.conf"), to: directory.appendingPathComponent("tether-bosh-proxy.conf"))
        let shipped = try String(contentsOf: NginxServer.kit.appendingPathComponent(config), encoding: .utf8)
            .replacingOccurrences(of: "/etc/ssl/certs/chat.example.org.pem", with: directory.appendingPathComponent("localhost.crt").path)
            .replacingOccurrences(of: "/etc/ssl/private/chat.example.org.key", with: directory.appendingPathComponent("localhost.key").path)
        try shipped.write(to: directory.appendingPathComponent("tether.conf"), atomically: true, encoding: .utf8)
        let (status, output) = try await NginxServer.check(mainConfig: try NginxServer.writeMainConfig(in: directory), directory: directory)
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

    @Test(
        "the shipped config speaks HTTP/2 to browsers (curl negotiates h2); eight BOSH tabs of one user on one HTTP/2 client all log in, hold long-polls and receive their messages"
    )
    func http2Tabs() async throws {
        try await Self.withStack { _, _, nginx, https, _ in
            let url = "https://localhost:\(nginx.port)/http-bind"
            // curl reports the protocol it used: 2 for HTTP/2 (ALPN h2).
            let output = FileManager.default.temporaryDirectory.appendingPathComponent("tether-h2-\(UUID().uuidString)")
            defer { try? FileManager.default.removeItem(at: output) }
            let curl = try ChildProcess.spawn(
                "/usr/bin/curl",
                [
                    "--http2", "-sS", "--cacert", nginx.caFile, "-o", "/dev/null", "-w", "%{http_version}", "-H", "Content-Type: text/xml; charset=utf-8",
                    "--data",
                    "<body rid='1' to='localhost' wait='5' hold='1' ver='1.6' xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh' xmpp:version='1.0'/>",
                    url,
                ],
                stdout: output.path
            )
            #expect(await curl.wait(timeout: .seconds(30)) == 0)
            #expect((try? String(contentsOf: output, encoding: .utf8)) == "2")
            // Eight tabs, one HTTP/2 connection pool: each holds a long-poll while the others send.
            let tabs = (0..<8).map { _ in BOSHTestClient(http: https, url: url) }
            for (index, tab) in tabs.enumerated() { try await tab.login(user: "alice", password: "secret", resource: "tab\(index)") }
            let bob = BOSHTestClient(http: https, url: url)
            try await bob.login(user: "bob", password: "secret")
            for index in tabs.indices {
                _ = try await bob.send("<message xmlns='jabber:client' to='alice@localhost/tab\(index)' id='h2-\(index)'><body>tab \(index)</body></message>")
            }
            try await withThrowingTaskGroup(of: Bool.self) { group in
                for (index, tab) in tabs.enumerated() {
                    group.addTask { try await tab.receive(until: { $0.contains("id='h2-\(index)'") }).contains { $0.contains("tab \(index)") } }
                }
                for try await received in group { #expect(received) }
            }
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

    @Test("BOSH requests and WebSocket upgrades interleaved from many clients through nginx: every upgrade gets 101 and a stream (regression: 400 after BOSH traffic)")
    func webSocketAfterBOSH() async throws {
        try await Self.withStack { _, tether, nginx, https, tls in
            let url = "https://localhost:\(nginx.port)/http-bind"
            for round in 0..<4 {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for _ in 0..<6 {
                        group.addTask {
                            // BOSH creations keep nginx's upstream keep-alive connections busy.
                            let creation = try await BOSHTestClient(http: https, url: url).create()
                            #expect(creation.attributes["sid"] != nil, "round \(round): \(creation)")
                        }
                        group.addTask {
                            let client = try await WebSocketTestClient.connect(port: nginx.port, tls: tls)
                            try await client.send(WebSocketTestClient.openTag)
                            let opened = try await client.receive(until: { $0.contains("<mechanisms") })
                            #expect(opened.first?.hasPrefix("<open") == true, "round \(round): \(opened)")
                            await client.drop()
                        }
                    }
                    try await group.waitForAll()
                }
            }
            _ = tether
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
        // A port held bound but not listening: connections are refused, and no other test can take it meanwhile.
        let down = try ReservedPort()
        defer { down.release() }
        try await Self.withNginx(tetherPorts: [down.port]) { nginx, https, _ in
            let client = BOSHTestClient(http: https, url: "https://localhost:\(nginx.port)/http-bind")
            let response = try await client.create()
            #expect(response.status == 200)
            #expect(response.headers.first(name: "content-type") == "text/xml; charset=utf-8")
            #expect(response.raw == "<body xmlns='http://jabber.org/protocol/httpbind' type='terminate' condition='remote-connection-failed'/>")
        }
    }

    @Test("scale-out: sessions on two nodes exchange messages; a request that reaches the wrong node is relayed to the owner")
    func twoNodes() async throws {
        try await withProsody { prosody in
            for user in ["alice", "bob", "carol"] { try await prosody.register(user: user, password: "secret") }
            let ports = [try freePort(), try freePort()]
            func node(_ index: Int) -> TetherConfiguration {
                var configuration = TetherFixture.configuration(c2sPort: prosody.c2sPort)
                configuration.listen = [UpstreamRoute(host: "127.0.0.1", port: ports[index])]
                configuration.nodeID = "node\(index + 1)"
                let other = 1 - index
                configuration.peers = ["node\(other + 1)": "http://127.0.0.1:\(ports[other])"]
                return configuration
            }
            try await withTether(node(0)) { node1, _ in
                try await withTether(node(1)) { node2, _ in
                    try await Self.withNginx(tetherPorts: ports, config: "tether-cluster.conf") { nginx, https, _ in
                        let base = "https://localhost:\(nginx.port)/http-bind"

                        let alice = BOSHTestClient(http: https, url: base + "/node1")
                        try await alice.login(user: "alice", password: "secret")
                        let bob = BOSHTestClient(http: https, url: base + "/node2")
                        try await bob.login(user: "bob", password: "secret")
                        #expect(alice.sid?.hasPrefix("node1.") == true)
                        #expect(bob.sid?.hasPrefix("node2.") == true)
                        #expect(node1.server.sessionCount == 1)
                        #expect(node2.server.sessionCount == 1)

                        _ = try await alice.send("<message xmlns='jabber:client' to='bob@localhost/test' id='n1'><body>from node1</body></message>")
                        #expect(try await bob.receive(until: { $0.contains("id='n1'") }).contains { $0.contains("from node1") })

                        // Alice's requests now reach node2 (a balancer change, a new client address): relayed to node1.
                        alice.url = base + "/node2"
                        _ = try await alice.send("<message xmlns='jabber:client' to='bob@localhost/test' id='n2'><body>relayed</body></message>")
                        #expect(try await bob.receive(until: { $0.contains("id='n2'") }).contains { $0.contains("relayed") })
                        #expect(node1.server.sessionCount == 1)
                        #expect(node2.server.sessionCount == 1)

                        // The generic path reaches a node of the pool.
                        let carol = BOSHTestClient(http: https, url: base)
                        try await carol.login(user: "carol", password: "secret")
                        #expect(carol.sid?.hasPrefix("node") == true)
                        #expect(node1.server.sessionCount + node2.server.sessionCount == 3)
                    }
                }
            }
        }
    }
}
