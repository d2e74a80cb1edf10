import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL
import Testing
import TetherServer
import XMPPUpstream

#if canImport(Glibc)
    import Glibc
#endif

/// `--listen-tls`: Tether's own HTTPS and WSS in front of a real Prosody, with a throwaway CA.
@Suite("Tether's own TLS listener", .serialized, .timeLimit(.minutes(3)))
struct EdgeTLSTests {
    /// A CA and a `localhost` certificate it signs, in a fresh directory.
    struct Certificates {
        let directory: URL
        let caFile: String
        var certificate: String { self.directory.appendingPathComponent("localhost.crt").path }
        var key: String { self.directory.appendingPathComponent("localhost.key").path }

        static func make() async throws -> Certificates {
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tether-edge-tls-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            let ca = try await makeCertificates(in: directory, hosts: ["localhost"])
            return Certificates(directory: directory, caFile: ca)
        }

        /// A client TLS configuration trusting only this CA.
        func clientTLS() throws -> TLSConfiguration {
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(self.caFile))
            return tls
        }
    }

    static func configure(_ configuration: inout TetherConfiguration, _ certificates: Certificates) throws {
        configuration.listenTLS = [UpstreamRoute(host: "127.0.0.1", port: 0)]
        configuration.edgeTLS = try EdgeTLSSettings(certificatePath: certificates.certificate, keyPath: certificates.key)
    }

    /// Prosody, a Tether with a plain and a TLS listener, and an HTTPS client trusting the CA
    /// (HTTP/2 when `http2`, by ALPN, else HTTP/1.1 only).
    static func withStack(
        http2: Bool = true, users: [String] = ["alice", "bob"], tweak: @escaping (inout TetherConfiguration) -> Void = { _ in },
        _ body: (ProsodyServer, TetherFixture, Int, HTTPClient, HTTPClient, Certificates) async throws -> Void
    ) async throws {
        let certificates = try await Certificates.make()
        defer { try? FileManager.default.removeItem(at: certificates.directory) }
        var client = HTTPClient.Configuration(tlsConfiguration: try certificates.clientTLS())
        client.httpVersion = http2 ? .automatic : .http1Only
        let https = HTTPClient(eventLoopGroupProvider: .singleton, configuration: client)
        do {
            try await withProsodyAndTether(users: users) { prosody, tether, http in
                guard tether.ports.count == 2 else { throw TestFailure("expected a plain and a TLS port, got \(tether.ports)") }
                try await body(prosody, tether, tether.ports[1], http, https, certificates)
            } configure: { configuration, _ in
                try! Self.configure(&configuration, certificates)
                tweak(&configuration)
            }
            try await https.shutdown()
        } catch {
            try? await https.shutdown()
            throw error
        }
    }

    @Test(
        "BOSH over HTTPS (HTTP/1.1, and HTTP/2 by ALPN): login and messages with a client on the plain listener; the session is secure, so its requests over plain HTTP are dropped unanswered (XEP-0124 §19.1)",
        arguments: [false, true])
    func bosh(http2: Bool) async throws {
        try await Self.withStack(http2: http2) { _, tether, tlsPort, http, https, _ in
            let alice = BOSHTestClient(http: https, url: "https://localhost:\(tlsPort)/http-bind")
            let bob = BOSHTestClient(http: http, url: tether.boshURL)
            try await alice.login(user: "alice", password: "secret")
            try await bob.login(user: "bob", password: "secret")
            _ = try await alice.send("<message xmlns='jabber:client' to='bob@localhost/test' id='tls1'><body>over the TLS listener</body></message>")
            #expect(try await bob.receive(until: { $0.contains("id='tls1'") }).contains { $0.contains("over the TLS listener") })
            _ = try await bob.send("<message xmlns='jabber:client' to='alice@localhost/test' id='tls2'><body>back</body></message>")
            #expect(try await alice.receive(until: { $0.contains("id='tls2'") }).contains { $0.contains("back") })
            // The protocol ALPN chose is the one asked for.
            #expect(tether.server.http2ConnectionCount == (http2 ? 1 : 0))
            // The same session's next request over plain HTTP: no answer, the connection closed.
            let body = alice.nextBody()
            let plain = try await rawHTTP(port: tether.port, "POST /http-bind HTTP/1.1\r\nHost: localhost\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")
            #expect(plain.text.isEmpty, "\(plain.text)")
        }
    }

    @Test("WebSocket over TLS (wss): login and a message to a client on the plain listener")
    func webSocket() async throws {
        try await Self.withStack { _, tether, tlsPort, http, _, certificates in
            let client = try await WebSocketTestClient.connect(port: tlsPort, tls: try NIOSSLContext(configuration: certificates.clientTLS()))
            let jid = try #require(try await client.login(user: "alice", password: "secret"))
            #expect(jid.hasPrefix("alice@localhost/"))
            let bob = BOSHTestClient(http: http, url: tether.boshURL)
            try await bob.login(user: "bob", password: "secret")
            try await client.send("<message xmlns='jabber:client' to='bob@localhost/test' id='wss1'><body>over wss</body></message>")
            #expect(try await bob.receive(until: { $0.contains("id='wss1'") }).contains { $0.contains("over wss") })
            await client.drop()
        }
    }

    @Test("a reload with a renewed certificate applies to new connections: a client trusting only the new CA gets in, one trusting only the old one is refused")
    func certificateReload() async throws {
        try await Self.withStack { prosody, tether, tlsPort, _, https, old in
            let renewed = try await Certificates.make()
            defer { try? FileManager.default.removeItem(at: renewed.directory) }
            var configuration = TetherFixture.configuration(c2sPort: prosody.c2sPort)
            try Self.configure(&configuration, renewed)
            try tether.server.reload(configuration)
            let fresh = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(tlsConfiguration: try renewed.clientTLS()))
            let stale = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(tlsConfiguration: try old.clientTLS()))
            do {
                let url = "https://localhost:\(tlsPort)/healthz"
                let answer = try await fresh.execute(HTTPClientRequest(url: url), timeout: .seconds(30))
                #expect(answer.status == .ok)
                await #expect(throws: (any Error).self) { _ = try await stale.execute(HTTPClientRequest(url: url), timeout: .seconds(30)) }
                try await fresh.shutdown()
                try await stale.shutdown()
            } catch {
                try? await fresh.shutdown()
                try? await stale.shutdown()
                throw error
            }
            _ = https
        }
    }

    @Test("a certificate or key that cannot be used is refused with a message naming the option")
    func badFiles() async throws {
        let certificates = try await Certificates.make()
        defer { try? FileManager.default.removeItem(at: certificates.directory) }
        #expect(throws: ConfigurationError.self) { try EdgeTLSSettings(certificatePath: "/nonexistent.pem", keyPath: certificates.key) }
        do {
            _ = try EdgeTLSSettings(certificatePath: certificates.certificate, keyPath: certificates.caFile)
            Issue.record("a certificate given as the key was accepted")
        } catch {
            #expect(error.message.hasPrefix("--tls-key '\(certificates.caFile)'"), "\(error.message)")
        }
        // The CA's key is a valid key, but not the certificate's.
        do {
            _ = try EdgeTLSSettings(certificatePath: certificates.certificate, keyPath: certificates.directory.appendingPathComponent("ca.key").path)
            Issue.record("a key that does not belong to the certificate was accepted")
        } catch {
            #expect(error.message.contains("does the key belong to the certificate?"), "\(error.message)")
        }
    }

    @Test(
        "the tether binary with the shipped deploy/tether-tls.conf.example: HTTPS and WSS on its TLS listener; after the certificate files are replaced, SIGHUP renews the certificate for new connections while a WSS session carries on"
    )
    func shippedConfigurationAndSIGHUP() async throws {
        let first = try await Certificates.make()
        let renewed = try await Certificates.make()
        defer {
            try? FileManager.default.removeItem(at: first.directory)
            try? FileManager.default.removeItem(at: renewed.directory)
        }
        let installed = first.directory.appendingPathComponent("installed")
        try FileManager.default.createDirectory(at: installed, withIntermediateDirectories: true)
        func install(_ certificates: Certificates) throws {
            for (source, name) in [(certificates.certificate, "fullchain.pem"), (certificates.key, "privkey.pem")] {
                let target = installed.appendingPathComponent(name)
                try? FileManager.default.removeItem(at: target)
                try FileManager.default.copyItem(atPath: source, toPath: target.path)
            }
        }
        try install(first)
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let shipped = try String(contentsOf: root.appendingPathComponent("deploy/tether-tls.conf.example"), encoding: .utf8)
        try await withProsody { prosody in
            try await prosody.register(user: "alice", password: "secret")
            // Only ports, paths and the upstream changed; TetherProcess adds the plain --listen.
            var text = shipped
            for (line, replacement) in [
                ("listen = 127.0.0.1:5280\n", ""),
                ("listen-tls = 0.0.0.0:5281", "listen-tls = 127.0.0.1:0"),
                ("/etc/tether/fullchain.pem", installed.appendingPathComponent("fullchain.pem").path),
                ("/etc/tether/privkey.pem", installed.appendingPathComponent("privkey.pem").path),
                ("route = example.org=xmpp.example.org:5222", "route = localhost=127.0.0.1:\(prosody.c2sPort)"),
                ("upstream-tls = required", "upstream-tls = off"),
            ] {
                #expect(text.contains(line), "the shipped file no longer has \(line)")
                text = text.replacingOccurrences(of: line, with: replacement)
            }
            let configuration = installed.appendingPathComponent("tether.conf")
            try text.write(to: configuration, atomically: true, encoding: .utf8)
            try await withTetherProcess(["--config", configuration.path], listeners: 2) { tether in
                let tlsPort = tether.ports[1]
                let url = "https://localhost:\(tlsPort)/healthz"
                try await Self.expectHealthy(url, trusting: first)
                let session = try await WebSocketTestClient.connect(port: tlsPort, tls: try NIOSSLContext(configuration: first.clientTLS()))
                #expect(try await session.login(user: "alice", password: "secret") != nil)

                try install(renewed)
                tether.process.signal(SIGHUP)
                let deadline = ContinuousClock.now + .seconds(20)
                while !tether.stderr.contains("configuration reloaded") && ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(50))
                }
                #expect(tether.stderr.contains("configuration reloaded"), "\(tether.stderr)")
                try await Self.expectHealthy(url, trusting: renewed)
                let stale = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(tlsConfiguration: try first.clientTLS()))
                await #expect(throws: (any Error).self) { _ = try await stale.execute(HTTPClientRequest(url: url), timeout: .seconds(30)) }
                try await stale.shutdown()
                // The session from before the reload is still served.
                try await session.send("<iq xmlns='jabber:client' type='get' id='after-reload'><ping xmlns='urn:xmpp:ping'/></iq>")
                #expect(try await session.receive(until: { $0.contains("after-reload") }).last?.contains("type='result'") == true)
                await session.drop()
            }
        }
    }

    static func expectHealthy(_ url: String, trusting certificates: Certificates) async throws {
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(tlsConfiguration: try certificates.clientTLS()))
        do {
            let answer = try await client.execute(HTTPClientRequest(url: url), timeout: .seconds(30))
            #expect(answer.status == .ok)
            try await client.shutdown()
        } catch {
            try? await client.shutdown()
            throw error
        }
    }
}
