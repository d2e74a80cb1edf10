import Logging
import NIOCore
import NIOHTTP1
import Synchronization
import Testing
import XMPPUpstream

@testable import TetherServer

@Suite("Forwarded headers")
struct ForwardedHeadersTests {
    let xff = ForwardedHeaders(trustedProxies: ForwardedHeaders.loopback)
    let rfc7239 = ForwardedHeaders(trustedProxies: ForwardedHeaders.loopback, header: .forwarded)
    let proxy = try! SocketAddress(ipAddress: "127.0.0.1", port: 40000)
    let stranger = try! SocketAddress(ipAddress: "198.51.100.9", port: 40000)

    @Test("a trusted proxy's X-Forwarded-For and X-Forwarded-Proto are believed; the rightmost untrusted hop is the client")
    func xForwardedFor() {
        let origin = xff.origin(peer: proxy, local: nil, headers: HTTPHeaders([("X-Forwarded-For", "10.9.9.9, 203.0.113.7, 127.0.0.1"), ("X-Forwarded-Proto", "https")]))
        #expect(origin.address.ipAddress == "203.0.113.7")
        #expect(origin.isSecure)
    }

    @Test(
        "a relayed request names its client in the header the owner believes, for both header forms and both address families (regression: the relay always wrote X-Forwarded-*)",
        arguments: ClientAddressHeader.allCases)
    func relayHeadersRoundTrip(header: ClientAddressHeader) throws {
        let owner = ForwardedHeaders(trustedProxies: ForwardedHeaders.loopback, header: header)
        for (address, secure) in [("203.0.113.7", true), ("2001:db8::7", false)] {
            let client = ClientOrigin(address: try SocketAddress(ipAddress: address, port: 5000), isSecure: secure, destination: nil)
            let relayed = HTTPHeaders(header.headers(naming: client))
            let origin = owner.origin(peer: proxy, local: nil, headers: relayed)
            #expect(origin.address.ipAddress == address, "\(header)")
            #expect(origin.isSecure == secure, "\(header)")
            // The other form is not believed: a node configured differently sees only its peer.
            let other = ForwardedHeaders(trustedProxies: ForwardedHeaders.loopback, header: header == .forwarded ? .xForwardedFor : .forwarded)
            #expect(other.origin(peer: proxy, local: nil, headers: relayed).address == proxy)
        }
    }

    @Test("by default a client's own Forwarded header is ignored: it cannot choose its address or look secure (regression)")
    func forgedForwardedIgnored() {
        // What nginx passes on when it sets X-Forwarded-* and leaves a client's Forwarded alone.
        let headers = HTTPHeaders([("Forwarded", "for=198.51.100.77;proto=https"), ("X-Forwarded-For", "203.0.113.5"), ("X-Forwarded-Proto", "http")])
        let origin = xff.origin(peer: proxy, local: nil, headers: headers)
        #expect(origin.address.ipAddress == "203.0.113.5")
        #expect(!origin.isSecure)
        // Without X-Forwarded-For the proxy itself is the client, still not the forged address.
        let bare = xff.origin(peer: proxy, local: nil, headers: HTTPHeaders([("Forwarded", "for=198.51.100.77;proto=https")]))
        #expect(bare.address == proxy)
        #expect(!bare.isSecure)
    }

    @Test("X-Forwarded-Proto is the nearest proxy's: a client's own value earlier in the list does not count")
    func protoFromNearestProxy() {
        let forged = xff.origin(peer: proxy, local: nil, headers: HTTPHeaders([("X-Forwarded-For", "203.0.113.5"), ("X-Forwarded-Proto", "https"), ("X-Forwarded-Proto", "http")]))
        #expect(!forged.isSecure)
        let listed = xff.origin(peer: proxy, local: nil, headers: HTTPHeaders([("X-Forwarded-For", "203.0.113.5"), ("X-Forwarded-Proto", "https, http")]))
        #expect(!listed.isSecure)
    }

    @Test(
        "a forged port outside 0–65535 does not crash the process (regression: it trapped in SocketAddress)",
        arguments: ["1.2.3.4:70000", "[2001:db8::1]:-1", "[2001:db8::1]:99999999999999999999", "1.2.3.4:-5"])
    func forgedPort(hop: String) {
        let origin = xff.origin(peer: proxy, local: nil, headers: HTTPHeaders([("X-Forwarded-For", "\(hop), 127.0.0.1")]))
        #expect(origin.address.port == 0 || origin.address == proxy)
        let forwarded = rfc7239.origin(peer: proxy, local: nil, headers: HTTPHeaders([("Forwarded", "for=\"\(hop)\"")]))
        #expect(forwarded.address.port == 0 || forwarded.address == proxy)
    }

    @Test("an unparsable X-Forwarded-For hop ends the walk: no forged entry left of it is taken")
    func unparsableHop() {
        let origin = xff.origin(peer: proxy, local: nil, headers: HTTPHeaders([("X-Forwarded-For", "198.51.100.77, not-an-address")]))
        #expect(origin.address == proxy)
    }

    @Test("with --client-address-header forwarded, RFC 7239 is read (quoted IPv6 and port) and X-Forwarded-* is ignored")
    func forwarded() {
        let origin = rfc7239.origin(
            peer: proxy, local: nil,
            headers: HTTPHeaders([("Forwarded", "for=192.0.2.60;proto=http, for=\"[2001:db8:cafe::17]:4711\";proto=https"), ("X-Forwarded-For", "1.2.3.4")]))
        #expect(origin.address.ipAddress == "2001:db8:cafe::17")
        #expect(origin.address.port == 4711)
        #expect(origin.isSecure)
        let onlyXFF = rfc7239.origin(peer: proxy, local: nil, headers: HTTPHeaders([("X-Forwarded-For", "1.2.3.4"), ("X-Forwarded-Proto", "https")]))
        #expect(onlyXFF.address == proxy)
        #expect(!onlyXFF.isSecure)
        // `for=unknown` or an obfuscated identifier names no address: the proxy is all we know.
        let hidden = rfc7239.origin(peer: proxy, local: nil, headers: HTTPHeaders([("Forwarded", "for=198.51.100.1, for=_hidden;proto=https")]))
        #expect(hidden.address == proxy)
        #expect(!hidden.isSecure)
    }

    @Test("an untrusted peer's headers are ignored, whichever header is configured", arguments: ClientAddressHeader.allCases)
    func forged(header: ClientAddressHeader) {
        let policy = ForwardedHeaders(trustedProxies: ForwardedHeaders.loopback, header: header)
        let origin = policy.origin(
            peer: stranger, local: nil, headers: HTTPHeaders([("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https"), ("Forwarded", "for=203.0.113.8;proto=https")]))
        #expect(origin.address == stranger)
        #expect(!origin.isSecure)
    }
}

@Suite("Host names and same-origin")
struct HTTPHostTests {
    @Test(
        "host part of a Host header",
        arguments: [
            ("chat.example.org", "chat.example.org"),
            ("Chat.Example.ORG.:443", "chat.example.org"),
            ("127.0.0.1:5280", "127.0.0.1"),
            ("[2001:db8::1]:80", "2001:db8::1"),
            ("[::1]", "::1"),
        ])
    func name(header: String, expected: String) {
        #expect(HTTPHost.name(of: header) == expected)
    }

    @Test("with --public-host only those names (and IP literals) are served, and only those names are same-origin")
    func publicHosts() {
        var configuration = TetherConfiguration()
        #expect(configuration.acceptsHost("rebind.attacker.example:5280"))
        configuration.publicHosts = ["chat.example.org"]
        #expect(configuration.acceptsHost("chat.example.org"))
        #expect(configuration.acceptsHost("CHAT.example.org:443"))
        #expect(configuration.acceptsHost("127.0.0.1:5280"))
        #expect(configuration.acceptsHost("[::1]:5280"))
        #expect(configuration.acceptsHost("localhost:5280"))
        #expect(!configuration.acceptsHost("rebind.attacker.example:5280"))
        #expect(!configuration.acceptsHost(nil))

        let cors = CORSPolicy.origins(["https://app.example.org"])
        // A name could be a rebinding page's own: never same-origin unless the operator named it
        // (regression: Origin == Host passed whatever the allowlist said).
        #expect(!cors.allows(origin: "http://rebind.attacker.example:5280", host: "rebind.attacker.example:5280"))
        #expect(!cors.allows(origin: "http://rebind.attacker.example:5280", host: "rebind.attacker.example:5280", publicHosts: ["chat.example.org"]))
        // The demo page on localhost or an address literal stays same-origin.
        #expect(cors.allows(origin: "http://localhost:5280", host: "localhost:5280"))
        #expect(cors.allows(origin: "http://127.0.0.1:5280", host: "127.0.0.1:5280"))
        #expect(cors.allows(origin: "http://[::1]:5280", host: "[::1]:5280"))
        #expect(cors.allows(origin: "https://chat.example.org", host: "chat.example.org", publicHosts: ["chat.example.org"]))
        #expect(cors.allows(origin: "https://app.example.org", host: "chat.example.org", publicHosts: ["chat.example.org"]))
    }

    @Test("over TLS only an https page is same-origin: an http page of the same name is another origin (regression)")
    func secureSameOrigin() {
        let cors = CORSPolicy.origins(["https://app.example.org"])
        let hosts: Set<String> = ["chat.example.org"]
        #expect(cors.allows(origin: "https://chat.example.org", host: "chat.example.org", publicHosts: hosts, secure: true))
        #expect(!cors.allows(origin: "http://chat.example.org", host: "chat.example.org", publicHosts: hosts, secure: true))
        #expect(cors.allows(origin: "http://chat.example.org", host: "chat.example.org", publicHosts: hosts, secure: false))
    }

    @Test("--no-cors only stops Tether writing CORS headers: a configured origin list is still enforced, for WebSocket upgrades too (regression)")
    func noCORSStillChecksOrigins() {
        let cors = CORSPolicy(origins: ["https://app.example.org"], disabled: true)
        #expect(cors.restrictsOrigins)
        #expect(cors.allows(origin: "https://APP.example.org"))
        #expect(!cors.allows(origin: "https://evil.example"))
        #expect(cors.allows(origin: nil))
        #expect(cors.responseHeaders(origin: "https://app.example.org").isEmpty)
        #expect(cors.preflightHeaders(origin: "https://app.example.org", requestedHeaders: nil)?.isEmpty == true)
        var configuration = TetherConfiguration()
        configuration.cors = cors
        let upgrade = HTTPRequestHead(
            version: .http1_1, method: .GET, uri: "/xmpp-websocket",
            headers: HTTPHeaders([
                ("Host", "chat.example.org"), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
                ("Sec-WebSocket-Protocol", "xmpp"), ("Origin", "https://evil.example"),
            ]))
        #expect(WebSocketUpgradePolicy.accept(upgrade, secure: false, configuration: configuration) == nil)
        #expect(WebSocketUpgradePolicy.refusal(upgrade, secure: false, configuration: configuration).status == .forbidden)
        var allowed = upgrade
        allowed.headers.replaceOrAdd(name: "Origin", value: "https://app.example.org")
        #expect(WebSocketUpgradePolicy.accept(allowed, secure: false, configuration: configuration) != nil)
        // Without a list, --no-cors checks nothing, as before.
        #expect(!CORSPolicy(origins: [], disabled: true).restrictsOrigins)
        #expect(!CORSPolicy(origins: ["*"], disabled: true).restrictsOrigins)
    }
}

@Suite("Log lines")
struct LogTextTests {
    @Test(
        "control characters in client values cannot start a new log line (regression)",
        arguments: [
            ("localhost\r\n2026-12-01T00:00:00Z critical tether : forged", "localhost\\r\\n2026-12-01T00:00:00Z critical tether : forged"),
            ("a\u{0}b\u{1B}[31m", "a\\u0000b\\u001b[31m"),
            ("x\u{2028}y\u{85}z\u{7F}", "x\\u2028y\\u0085z\\u007f"),
            ("back\\slash", "back\\\\slash"),
            ("plain@example.org", "plain@example.org"),
            ("abc\u{202E}gpj.exe\u{2066}", "abc\\u202egpj.exe\\u2066"),
        ])
    func escaped(raw: String, expected: String) {
        #expect(LogText.escaped(raw) == expected)
    }

    @Test(
        "a text field holding spaces, = or quotes is quoted: a client value cannot forge another field (regression)",
        arguments: [
            ("a b=c", "\"a b=c\""),
            ("x\" level=critical", "\"x\\\" level=critical\""),
            ("", "\"\""),
            ("bob@example.org/web", "bob@example.org/web"),
        ])
    func quotedFields(raw: String, expected: String) {
        #expect(LogText.field(raw) == expected)
    }

    @Test("text and JSON log lines stay one line whatever the metadata and message hold")
    func handlersWriteOneLine() {
        let lines = LockedLines()
        var text = Logger(label: "tether") { label in LineLogHandler(label: label, format: .text, write: { lines.append($0) }) }
        text[metadataKey: "to"] = "evil\nINFO forged"
        text.info("session created\r\nfake", metadata: ["route": "xmpp:a\n"])
        let json = Logger(label: "tether") { label in LineLogHandler(label: label, format: .json, write: { lines.append($0) }) }
        json.info("m\u{2028}", metadata: ["jid": "a\u{85}b\n"])
        let written = lines.all
        #expect(written.count == 2)
        for line in written {
            #expect(line.hasSuffix("\n"))
            #expect(!line.dropLast().unicodeScalars.contains { $0.value < 0x20 || (0x7F..<0xA0).contains($0.value) || $0 == "\u{2028}" })
        }
        #expect(written[0].contains("to=\"evil\\nINFO forged\""))
        #expect(written[0].contains("route=xmpp:a\\n"))
        #expect(written[0].hasSuffix("] session created\\r\\nfake\n"))
        #expect(written[1].contains("\"jid\":\"a\\u0085b\\n\""))
    }
}

extension LogTextTests {
    @Test("a logger's metadata is set, replaced and removed by key, printed sorted, and an event's own metadata wins")
    func metadataByKey() {
        let lines = LockedLines()
        var logger = Logger(label: "tether") { label in LineLogHandler(label: label, format: .text, write: { lines.append($0) }) }
        logger[metadataKey: "sid"] = "s1"
        logger[metadataKey: "client"] = "203.0.113.9"
        logger[metadataKey: "transport"] = "bosh"
        logger[metadataKey: "sid"] = "s2"
        logger[metadataKey: "transport"] = nil
        logger[metadataKey: "absent"] = nil
        #expect(logger[metadataKey: "sid"] == "s2")
        #expect(logger[metadataKey: "transport"] == nil)
        #expect(logger.handler.metadata == ["client": "203.0.113.9", "sid": "s2"])
        logger.info("plain")
        logger.info("with its own", metadata: ["sid": "s3", "a": "1"])
        logger.handler.metadata = ["z": "1", "b": "2"]
        logger.info("replaced")
        let written = lines.all
        #expect(written.count == 3)
        #expect(written[0].contains(" : client=203.0.113.9 sid=s2 ["))
        #expect(written[1].contains(" : a=1 client=203.0.113.9 sid=s3 ["))
        #expect(written[2].contains(" : b=2 z=1 ["))
    }
}

final class LockedLines: Sendable {
    private let lines = Mutex<[String]>([])
    func append(_ line: String) { self.lines.withLock { $0.append(line) } }
    var all: [String] { self.lines.withLock { $0 } }
}
