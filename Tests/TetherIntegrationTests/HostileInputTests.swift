import AsyncHTTPClient
import CompressNIO
import Foundation
import NIOCore
import NIOHTTP1
import NIOWebSocket
import Testing
import WebSocketCore

/// What an anonymous stranger can send the `tether` binary, with a real Prosody behind it:
/// each attack gets its spec-named refusal and nothing else is affected.
@Suite("Hostile input against the tether binary", .serialized, .timeLimit(.minutes(3)))
struct HostileInputTests {
    /// `text` compressed to the end of a DEFLATE stream (its last block has BFINAL set), as
    /// `zlib.compressobj(wbits=-15)`, `compress()`, `flush()` produce: valid permessage-deflate
    /// (RFC 7692 §7.2.3.3) that a receiver looping "while input remains" never finishes.
    static func finalBlock(_ text: String) throws -> [UInt8] {
        let compressor = try ZlibCompressor(algorithm: .deflate)
        var input = ByteBuffer(string: text)
        var output = ByteBufferAllocator().buffer(capacity: compressor.maxSize(from: input) + 64)
        try compressor.deflate(from: &input, to: &output, flush: .finish)
        return Array(buffer: output)
    }

    /// `/healthz` over a new connection (new connections take the event loops in turn); its time.
    static func health(port: Int) async throws -> Duration {
        let started = ContinuousClock.now
        let answer = try await rawHTTP(port: port, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        guard answer.status == 200 else { throw TestFailure("/healthz answered \(answer.text)") }
        return ContinuousClock.now - started
    }

    @Test("a compressed frame holding a whole DEFLATE stream (also with a flush marker or garbage after it) hangs no event loop (regression)")
    func deflateFinalBlock() async throws {
        try await withProsody { prosody in
            for user in ["alice", "bob"] { try await prosody.register(user: user, password: "secret") }
            try await withTetherProcess(["--route", "localhost=127.0.0.1:\(prosody.c2sPort)"]) { tether in
                let alice = try await WebSocketTestClient.connect(port: tether.port)
                let bob = try await WebSocketTestClient.connect(port: tether.port)
                try await alice.login(user: "alice", password: "secret", resource: "a")
                try await bob.login(user: "bob", password: "secret", resource: "b")

                let open = try Self.finalBlock(WebSocketTestClient.openTag)
                let attacks: [(name: String, payload: [UInt8], opens: Bool)] = [
                    ("final block", open, true),
                    ("final block + 00 00 ff ff", open + [0x00, 0x00, 0xFF, 0xFF], true),
                    ("final block + garbage", open + [0xDE, 0xAD, 0xBE, 0xEF, 0x42], false),
                ]
                var sent = 0
                for attack in attacks {
                    // Four connections: every event loop gets at least one (connections take the loops in turn).
                    var attackers: [WebSocketTestClient] = []
                    for _ in 0..<4 {
                        let attacker = try await WebSocketTestClient.connect(port: tether.port, offerCompression: true)
                        #expect(attacker.extensions?.contains("permessage-deflate") == true)
                        try await attacker.sendFrame(WebSocketFrame(fin: true, rsv1: true, opcode: .text, data: ByteBuffer(bytes: attack.payload)))
                        attackers.append(attacker)
                    }
                    for attacker in attackers {
                        if attack.opens {
                            // Inflated correctly: the stream opens and the server's features come back.
                            let answer = try await attacker.receive(until: { $0.contains("<mechanisms") })
                            #expect(answer.first?.hasPrefix("<open") == true, "\(attack.name): \(answer)")
                        } else {
                            let answer = try await attacker.receive(until: { $0.contains("<stream:error") })
                            #expect(answer.last?.contains("<not-well-formed") == true, "\(attack.name): \(answer)")
                        }
                    }
                    // Meanwhile the honest pair keeps talking and every loop answers /healthz.
                    for _ in 0..<5 {
                        sent += 1
                        try await alice.send("<message xmlns='jabber:client' to='bob@localhost/b' id='m\(sent)'><body>still here \(sent)</body></message>")
                        let received = try await bob.receive(until: { $0.contains("id='m\(sent)'") })
                        #expect(received.last?.contains("still here \(sent)") == true)
                    }
                    for _ in 0..<4 {
                        // A spinning loop never answers (health() then fails); the time is printed, not asserted.
                        let elapsed = try await Self.health(port: tether.port)
                        print("\(attack.name): /healthz answered in \(elapsed)")
                    }
                    for attacker in attackers { await attacker.drop() }
                }
                #expect(sent == 15)
                // A spinning loop also keeps SIGTERM from draining.
                await alice.drop()
                await bob.drop()
                let status = await tether.terminate()
                #expect(status == 0, "tether exit status \(String(describing: status))")
            }
        }
    }

    @Test("unmasked frames and reserved bits without an extension close the WebSocket with 1002 (RFC 6455 §5.1, §5.2)")
    func frameRules() async throws {
        try await withProsody { prosody in
            try await withTetherProcess(["--route", "localhost=127.0.0.1:\(prosody.c2sPort)"]) { tether in
                let frames: [(String, WebSocketFrame, Bool)] = [
                    ("unmasked", WebSocketFrame(fin: true, opcode: .text, data: ByteBuffer(string: WebSocketTestClient.openTag)), false),
                    ("RSV2", WebSocketFrame(fin: true, rsv2: true, opcode: .text, data: ByteBuffer(string: WebSocketTestClient.openTag)), true),
                    ("RSV3 on a ping", WebSocketFrame(fin: true, rsv3: true, opcode: .ping, data: ByteBuffer()), true),
                    ("RSV1 without permessage-deflate", WebSocketFrame(fin: true, rsv1: true, opcode: .text, data: ByteBuffer(string: WebSocketTestClient.openTag)), true),
                ]
                for (name, frame, masked) in frames {
                    let client = try await WebSocketTestClient.connect(port: tether.port)
                    try await client.sendFrame(frame, masked: masked)
                    let events = try await client.eventsUntilDisconnected()
                    #expect(events.contains(.close(code: 1002)), "\(name): \(events)")
                    #expect(!events.contains { if case .text = $0 { return true } else { return false } }, "\(name): \(events)")
                }
                // The server is fine: a proper client still opens a stream.
                let honest = try await WebSocketTestClient.connect(port: tether.port)
                try await honest.send(WebSocketTestClient.openTag)
                #expect(try await honest.receive(until: { $0.contains("<mechanisms") }).first?.hasPrefix("<open") == true)
            }
        }
    }

    @Test("a content attribute asking for HTML gets XML: queued stanzas never come back as a page of Tether's origin (regression)")
    func contentTypeHTML() async throws {
        try await withProsody { prosody in
            for user in ["alice", "bob"] { try await prosody.register(user: user, password: "secret") }
            try await withTetherProcess(["--route", "localhost=127.0.0.1:\(prosody.c2sPort)"]) { tether in
                try await withHTTPClient { http in
                    let alice = BOSHTestClient(http: http, url: tether.boshURL)
                    alice.creationAttributes = "ver='1.6' content='text/html'"
                    try await alice.login(user: "alice", password: "secret")
                    let bob = BOSHTestClient(http: http, url: tether.boshURL)
                    try await bob.login(user: "bob", password: "secret")
                    let xhtml =
                        "<html xmlns='http://jabber.org/protocol/xhtml-im'><body xmlns='http://www.w3.org/1999/xhtml'><img src='x' onerror='alert(document.domain)'/></body></html>"
                    let aliceJID = try required(alice.jid)
                    _ = try await bob.send("<message xmlns='jabber:client' to='\(aliceJID)' id='x1'><body>hi</body>\(xhtml)</message>")
                    // What a cross-site text/plain form POST (no preflight) would read back.
                    var delivered: ParsedBody?
                    for _ in 0..<8 {
                        let poll = try await alice.post(alice.nextBody(), headers: [("Content-Type", "text/plain"), ("Origin", "https://evil.example")])
                        #expect(poll.headers.first(name: "content-type") == "text/xml; charset=utf-8", "\(poll.headers)")
                        #expect(poll.headers.first(name: "x-content-type-options") == "nosniff")
                        #expect(poll.headers.first(name: "content-security-policy") == "default-src 'none'; frame-ancestors 'none'")
                        if poll.children.contains(where: { $0.contains("id='x1'") }) {
                            delivered = poll
                            break
                        }
                    }
                    // The stanza itself is delivered untouched, only never as HTML.
                    #expect(try required(delivered).children.contains { $0.contains("onerror") })
                }
            }
        }
    }

    @Test(
        "behind nginx a client cannot forge its address, its scheme or its way past per-address limits (regression)",
        arguments: [false, true]
    )
    /// - Parameter passForwarded: nginx passes the client's own `Forwarded` on (a config without
    ///   the shipped `proxy_set_header Forwarded "";`): Tether alone must ignore it.
    func forgedForwardingHeaders(passForwarded: Bool) async throws {
        try await withProsody { prosody in
            // nginx reaches Tether from 127.0.0.2, the only trusted proxy; the test client is 127.0.0.1.
            try await withTetherProcess([
                "--route", "localhost=127.0.0.1:\(prosody.c2sPort)", "--trusted-proxy", "127.0.0.2/32",
                "--max-new-sessions-per-second", "1", "--new-session-burst", "5",
            ]) { tether in
                try await NginxTests.withNginx(tetherPorts: [tether.port], plainHTTP: true, proxyBind: "127.0.0.2", passForwarded: passForwarded) { nginx, _, _ in
                    try await withHTTPClient { http in
                        let url = "http://localhost:\(nginx.port)/http-bind"
                        var admitted = 0
                        var refused = 0
                        let started = ContinuousClock.now
                        for index in 0..<20 {
                            let client = BOSHTestClient(http: http, url: url)
                            let created = try await client.post(
                                "<body rid='1' to='localhost' wait='5' hold='1' ver='1.6' xmlns='http://jabber.org/protocol/httpbind'/>",
                                headers: [
                                    ("Forwarded", "for=198.51.100.\(index);proto=https"),
                                    ("X-Forwarded-For", "203.0.113.\(index)"),
                                    ("X-Forwarded-Proto", "https"),
                                ]
                            )
                            if created.attributes["sid"] != nil { admitted += 1 }
                            if created.condition == "policy-violation" { refused += 1 }
                        }
                        // One client address, whatever it claims: one bucket (5 at once, then 1 a second),
                        // however long the 20 attempts took on this machine.
                        let elapsed = Int((ContinuousClock.now - started).components.seconds)
                        #expect(admitted <= 5 + elapsed + 1, "admitted \(admitted) of 20 in \(elapsed) s")
                        #expect(admitted + refused == 20)
                        if 5 + elapsed + 1 < 20 { #expect(refused > 0) }
                        let log = tether.stderr
                        #expect(log.contains("session created") && log.contains("client=127.0.0.1"))
                        #expect(!log.contains("198.51.100."), "a forged Forwarded address reached the log")
                        #expect(!log.contains("client=203.0.113."), "a forged X-Forwarded-For address was believed")

                        // Plain HTTP with a forged https scheme: the session is not secure, so a second plain
                        // request is served (a session marked secure would refuse it, XEP-0124 §19.1).
                        try await Task.sleep(for: .seconds(1.1))
                        let plain = BOSHTestClient(http: http, url: url, rid: 100)
                        let created = try await plain.post(
                            "<body rid='100' to='localhost' wait='1' hold='1' ver='1.6' xmlns='http://jabber.org/protocol/httpbind'/>",
                            headers: [("Forwarded", "for=198.51.100.1;proto=https"), ("X-Forwarded-Proto", "https")]
                        )
                        plain.sid = created.attributes["sid"]
                        #expect(plain.sid != nil, "\(created)")
                        let next = try await plain.post(plain.nextBody(), headers: [("Forwarded", "for=198.51.100.1;proto=http"), ("X-Forwarded-Proto", "http")])
                        #expect(next.status == 200)
                        #expect(next.type != "terminate", "\(next)")
                    }
                }
            }
        }
    }

    @Test(
        "WebSocket connections beyond the per-address limit are refused at once and closed by Tether; one that never sends <open/> is timed out (regression: held open without a word)"
    )
    func silentWebSocketsAreClosed() async throws {
        try await withProsody { prosody in
            try await withTetherProcess([
                "--route", "localhost=127.0.0.1:\(prosody.c2sPort)",
                "--max-sessions-per-address", "2",
                // The admitted two must still hold their places while the five others connect:
                // at 3 s a loaded machine let the first time out first, and a sixth was admitted.
                "--http-request-timeout", "15",
            ]) { tether in
                // Two admitted connections and five over the limit; none of them writes a frame.
                let admitted = [try await WebSocketTestClient.connect(port: tether.port), try await WebSocketTestClient.connect(port: tether.port)]
                var refused: [WebSocketTestClient] = []
                for _ in 0..<5 { refused.append(try await WebSocketTestClient.connect(port: tether.port)) }
                for client in refused {
                    let events = try await client.eventsUntilDisconnected(timeout: .seconds(60))
                    #expect(events.contains { if case .text(let text) = $0 { return text.contains("<policy-violation") } else { return false } }, "\(events)")
                }
                for client in admitted {
                    let events = try await client.eventsUntilDisconnected(timeout: .seconds(60))
                    #expect(events.contains { if case .text(let text) = $0 { return text.contains("<connection-timeout") } else { return false } }, "\(events)")
                }
                // Their places are free again: the next connection from the address gets a stream.
                let honest = try await WebSocketTestClient.connect(port: tether.port)
                try await honest.send(WebSocketTestClient.openTag)
                #expect(try await honest.receive(until: { $0.contains("<mechanisms") }).first?.hasPrefix("<open") == true)
            }
        }
    }
}

/// A plain HTTP client for `body`, shut down afterwards whatever happens. It drops idle pooled
/// connections after a second, before a server with a short `--http-request-timeout` closes them
/// (a request sent on a connection the server is closing fails with remoteConnectionClosed).
func withHTTPClient<T>(_ body: (HTTPClient) async throws -> T) async throws -> T {
    var configuration = HTTPClient.Configuration(timeout: .init(connect: .seconds(30)))
    configuration.connectionPool = .init(idleTimeout: .seconds(1), concurrentHTTP1ConnectionsPerHostSoftLimit: 64)
    let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    do {
        let result = try await body(http)
        try await http.shutdown()
        return result
    } catch {
        try? await http.shutdown()
        throw error
    }
}
