import BOSHCore
import Foundation
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import NIOPosix
import Testing
import XMPPUpstream

@testable import TetherServer

/// The HTTP edge as Tether builds it (NIO's HTTP/1 server pipeline, then `HTTPEdgeHandler`), on
/// an `EmbeddedChannel`: raw request bytes in, raw response bytes out.
final class EdgeHarness {
    let channel = EmbeddedChannel()
    let configuration: TetherConfiguration
    let bosh: BOSHService
    let status: ServerStatus

    init(_ configure: (inout TetherConfiguration) -> Void = { _ in }) throws {
        var configuration = TetherConfiguration()
        configuration.domains = ["localhost"]
        configure(&configuration)
        self.configuration = configuration
        let store = ConfigurationStore(configuration)
        let logger = Logger(label: "test")
        let metrics = TetherMetrics()
        let status = ServerStatus()
        let gate = SessionGate(limiter: SessionLimiter(limits: configuration.sessionLimits), status: status, metrics: metrics, logger: logger)
        let bosh = BOSHService(
            store: store, gate: gate, metrics: metrics, upstream: UpstreamLinks(closing: ClosingStreams(), metrics: metrics), group: MultiThreadedEventLoopGroup.singleton,
            logger: logger)
        self.bosh = bosh
        self.status = status
        let sync = self.channel.pipeline.syncOperations
        try sync.configureHTTPServerPipeline(withPipeliningAssistance: true, withErrorHandling: true)
        try sync.addHandler(
            HTTPEdgeHandler(
                store: store,
                bosh: bosh,
                relay: PeerRelay(peers: [:], logger: logger),
                prebind: PrebindService(store: store, bosh: bosh, logger: logger),
                status: status,
                metrics: { Array("tether_up 1\n".utf8) },
                logger: logger
            ))
        try self.channel.connect(to: SocketAddress(ipAddress: "203.0.113.9", port: 4000)).wait()
    }

    deinit {
        _ = try? self.channel.finish(acceptAlreadyClosed: true)
    }

    /// Feeds bytes as one read; `false` once the channel no longer reads (closed).
    @discardableResult
    func send(_ text: String) throws -> Bool {
        try self.send(ByteBuffer(string: text))
    }

    /// Errors the pipeline raised (EmbeddedChannel has no half-close: closing the output after a
    /// refusal closes it all, and the HTTP decoder reports the request it was in the middle of).
    private(set) var errors: [any Error] = []

    @discardableResult
    func send(_ bytes: ByteBuffer) throws -> Bool {
        guard self.channel.isActive else { return false }
        do {
            try self.channel.writeInbound(bytes)
        } catch {
            self.errors.append(error)
        }
        return self.channel.isActive
    }

    /// Everything written to the client so far.
    func output() throws -> String {
        var text = ""
        while let buffer = try self.channel.readOutbound(as: ByteBuffer.self) {
            text += String(buffer: buffer)
        }
        return text
    }

    /// Waits (briefly, on the real event loop the BOSH service answers from) for a whole response.
    func response(timeout: Duration = .seconds(5)) async throws -> String {
        var text = ""
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            self.channel.embeddedEventLoop.run()
            text += try self.output()
            if let range = text.range(of: "\r\n\r\n"), Self.isComplete(text, headEnd: range.upperBound) { return text }
            try await Task.sleep(for: .milliseconds(5))
        }
        return text
    }

    private static func isComplete(_ text: String, headEnd: String.Index) -> Bool {
        let head = text[..<headEnd].lowercased()
        guard let line = head.split(separator: "\r\n").first(where: { $0.hasPrefix("content-length:") }),
            let length = Int(line.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces))
        else { return true }
        return text[headEnd...].utf8.count >= length
    }
}

@Suite("HTTP edge (EmbeddedChannel)")
struct HTTPEdgeTests {
    static func bosh(_ body: String, headers: String = "") -> String {
        "POST /http-bind HTTP/1.1\r\nHost: localhost\r\n\(headers)Content-Length: \(body.utf8.count)\r\n\r\n\(body)"
    }

    @Test("a flood of one-byte chunks is refused with 413 once its parts, each charged at least minimumChunkCharge, pass the limit (regression)")
    func chunkFlood() throws {
        let edge = try EdgeHarness { $0.maxRequestBodyBytes = 6000 }
        try edge.send("POST /http-bind HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n")
        // "1\r\nX\r\n" is 6 bytes on the wire; packed 100 to a read, all but the first are charged
        // 512, so the read's 12th part crosses 6000 (charging bytes and framing only, 1000 chunks
        // would pass; charging the data only, 6000).
        try edge.send(String(repeating: "1\r\nX\r\n", count: 100))
        let answer = try edge.output()
        #expect(answer.hasPrefix("HTTP/1.1 413 Payload Too Large\r\n"), "\(answer)")
        #expect(answer.lowercased().contains("connection: close"))
        // Nothing after the refusal is parsed: more chunks and even a whole second request get no answer.
        try edge.send(String(repeating: "1\r\nX\r\n", count: 1000) + "0\r\n\r\n" + Self.bosh("<body/>"))
        #expect(try edge.output().isEmpty)
    }

    @Test("chunk extensions count against the body limit: a chunk-size line that never ends is refused with 413 (regression: NIO skips them unreported)")
    func chunkExtensionFlood() throws {
        let edge = try EdgeHarness {
            $0.maxRequestBodyBytes = 6000
            $0.maxHeaderBytes = 1024
        }
        try edge.send("POST /http-bind HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n")
        try edge.send("1;")
        var sent = 0
        var answer = ""
        while answer.isEmpty && sent < 1_000_000 {
            try edge.send(String(repeating: "a", count: 1000))
            sent += 1000
            answer = try edge.output()
        }
        #expect(answer.hasPrefix("HTTP/1.1 413 Payload Too Large\r\n"))
        // The budget is the body limit plus room for trailers and a pipelined request (one read).
        let budget = 6000 + HTTPEdgeHandler.wireSlack
        #expect(sent == ((budget - 2) / 1000 + 1) * 1000, "refused after \(sent) extension bytes")
    }

    @Test("a chunked body sent slowly, a small chunk or piece of one per read, is charged its bytes: served")
    func slowChunkedBody() async throws {
        let edge = try EdgeHarness { $0.maxRequestBodyBytes = 6000 }
        let body = "<body rid='1' to='unserved.example' wait='5' hold='1' ver='1.6' xmlns='http://jabber.org/protocol/httpbind'>" + String(repeating: " ", count: 1500) + "</body>"
        try edge.send("POST /http-bind HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n")
        // 100-byte chunks, each in its own read: 17 parts, charged about their 1,700 bytes (at
        // 512 each they would be 8,700, past the limit).
        let bytes = Array(body.utf8)
        for start in stride(from: 0, to: bytes.count, by: 100) {
            let piece = bytes[start..<min(start + 100, bytes.count)]
            try edge.send(String(piece.count, radix: 16) + "\r\n" + String(decoding: piece, as: UTF8.self) + "\r\n")
        }
        try edge.send("0\r\n\r\n")
        let answer = try await edge.response()
        #expect(answer.hasPrefix("HTTP/1.1 200 OK\r\n"), "\(answer)")
    }

    @Test("a chunked body of ordinary chunks within the limit is served")
    func chunkedBodyServed() async throws {
        let edge = try EdgeHarness { $0.maxRequestBodyBytes = 6000 }
        let body = "<body rid='1' to='unserved.example' wait='5' hold='1' ver='1.6' xmlns='http://jabber.org/protocol/httpbind'>" + String(repeating: " ", count: 3000) + "</body>"
        let bytes = Array(body.utf8)
        var request = "POST /http-bind HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
        for start in stride(from: 0, to: bytes.count, by: 1500) {
            let piece = bytes[start..<min(start + 1500, bytes.count)]
            request += String(piece.count, radix: 16) + ";note=ok\r\n" + String(decoding: piece, as: UTF8.self) + "\r\n"
        }
        try edge.send(request + "0\r\n\r\n")
        let answer = try await edge.response()
        #expect(answer.hasPrefix("HTTP/1.1 200 OK\r\n"), "\(answer)")
        #expect(answer.contains("condition='host-unknown'"))
    }

    @Test("RFC 9112 §3.2: two Host lines, or none in HTTP/1.1, get 400; HTTP/1.0 without Host is served (regression: the first Host won)")
    func hostLines() throws {
        let twice = try EdgeHarness()
        try twice.send("GET /healthz HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\n\r\n")
        #expect(try twice.output().hasPrefix("HTTP/1.1 400 Bad Request\r\n"))
        let none = try EdgeHarness()
        try none.send("GET /healthz HTTP/1.1\r\n\r\n")
        #expect(try none.output().hasPrefix("HTTP/1.1 400 Bad Request\r\n"))
        let old = try EdgeHarness()
        try old.send("GET /healthz HTTP/1.0\r\n\r\n")
        #expect(try old.output().hasPrefix("HTTP/1.1 200 OK\r\n"))
    }

    @Test("while draining, a request for a session that is gone gets system-shutdown (or see-other-uri), not item-not-found (regression)")
    func drainingUnknownSession() async throws {
        for redirect in [nil, "https://other.example/http-bind"] as [String?] {
            let edge = try EdgeHarness { $0.redirectURI = redirect }
            let body = "<body rid='7' sid='gone' xmlns='http://jabber.org/protocol/httpbind'/>"
            try edge.send(Self.bosh(body))
            #expect(try await edge.response().contains("condition='item-not-found'"))
            // As TetherServer.shutdown() does: draining first, then every session told.
            _ = edge.status.beginDraining()
            await edge.bosh.shutdown()
            try edge.send(Self.bosh(body))
            let answer = try await edge.response()
            #expect(answer.contains(redirect == nil ? "condition='system-shutdown'" : "condition='see-other-uri'"), "\(answer)")
        }
    }

    @Test("a body declared larger than the limit gets 413 at once, before any of it is sent")
    func oversizedContentLength() throws {
        let edge = try EdgeHarness { $0.maxRequestBodyBytes = 1000 }
        try edge.send("POST /http-bind HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000000\r\n\r\n")
        let answer = try edge.output()
        #expect(answer.hasPrefix("HTTP/1.1 413 Payload Too Large\r\n"))
        #expect(answer.contains("X-Content-Type-Options: nosniff"))
        // Beyond what Int holds, still refused at once (regression: it read as no length).
        let huge = try EdgeHarness { $0.maxRequestBodyBytes = 1000 }
        try huge.send("POST /http-bind HTTP/1.1\r\nHost: localhost\r\nContent-Length: 9223372036854775808\r\n\r\n")
        #expect(try huge.output().hasPrefix("HTTP/1.1 413 Payload Too Large\r\n"))
    }

    @Test("Expect: 100-continue gets 100 Continue, then the answer; beyond the body limit 417; other expectations 417")
    func expectContinue() async throws {
        let edge = try EdgeHarness { $0.maxRequestBodyBytes = 1000 }
        let body = "<body rid='1' to='unserved.example' wait='5' hold='1' ver='1.6' xmlns='http://jabber.org/protocol/httpbind'/>"
        try edge.send("POST /http-bind HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: \(body.utf8.count)\r\n\r\n")
        #expect(try edge.output() == "HTTP/1.1 100 Continue\r\n\r\n")
        try edge.send(body)
        let answer = try await edge.response()
        #expect(answer.hasPrefix("HTTP/1.1 200 OK\r\n"))
        #expect(answer.contains("condition='host-unknown'"))

        let large = try EdgeHarness { $0.maxRequestBodyBytes = 1000 }
        try large.send("POST /http-bind HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n")
        #expect(try large.output().hasPrefix("HTTP/1.1 417 Expectation Failed\r\n"))

        // RFC 9110 §10.1.1: HTTP/1.0 has no expectations, so an oversized body is simply 413.
        let old = try EdgeHarness { $0.maxRequestBodyBytes = 1000 }
        try old.send("POST /http-bind HTTP/1.0\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n")
        #expect(try old.output().hasPrefix("HTTP/1.1 413 Payload Too Large\r\n"))

        let other = try EdgeHarness()
        try other.send("POST /http-bind HTTP/1.1\r\nHost: localhost\r\nExpect: something-else\r\nContent-Length: 7\r\n\r\n<body/>")
        #expect(try other.output().hasPrefix("HTTP/1.1 417 Expectation Failed\r\n"))
    }

    @Test(
        "a BOSH content attribute may choose only an XML media type; every answer has nosniff and a CSP (regression)",
        arguments: [
            ("text/html", "text/xml; charset=utf-8"),
            ("text/html; charset=utf-8", "text/xml; charset=utf-8"),
            ("image/svg+xml", "text/xml; charset=utf-8"),
            ("application/xhtml+xml", "text/xml; charset=utf-8"),
            ("application/xml; charset=utf-8", "application/xml; charset=utf-8"),
            ("text/xml; charset=utf-8", "text/xml; charset=utf-8"),
        ])
    func contentType(requested: String, served: String) async throws {
        let edge = try EdgeHarness()
        // An unserved domain: the refusal honours `content` like any BOSH answer does.
        try edge.send(Self.bosh("<body rid='1' to='unserved.example' content='\(requested)' wait='5' hold='1' ver='1.6' xmlns='http://jabber.org/protocol/httpbind'/>"))
        let answer = try await edge.response()
        #expect(answer.contains("\r\nContent-Type: \(served)\r\n"), "\(answer)")
        #expect(answer.contains("\r\nX-Content-Type-Options: nosniff\r\n"))
        #expect(answer.contains("\r\nContent-Security-Policy: default-src 'none'; frame-ancestors 'none'\r\n"))
    }

    @Test("whoever chooses a BOSH answer's type (a client, a peer node), only XML types reach the header")
    func xmlContentType() {
        #expect(BOSHHTTPResponse(body: ByteBuffer(), contentType: "text/html").contentType == "text/xml; charset=utf-8")
        #expect(BOSHHTTPResponse(body: ByteBuffer(), contentType: "TEXT/XML; charset=UTF-8").contentType.lowercased() == "text/xml; charset=utf-8")
        #expect(BOSHHTTPResponse(body: ByteBuffer(), contentType: "text/xmlx").contentType == "text/xml; charset=utf-8")
        #expect(BOSHHTTPResponse(body: ByteBuffer(), contentType: "text/xml\r\nSet-Cookie: a=b").contentType == "text/xml; charset=utf-8")
    }

    @Test("metrics, health and errors carry nosniff and the data-only CSP", arguments: ["/metrics", "/healthz", "/nothing-here"])
    func securityHeaders(path: String) throws {
        let edge = try EdgeHarness()
        try edge.send("GET \(path) HTTP/1.1\r\nHost: localhost\r\n\r\n")
        let answer = try edge.output()
        #expect(answer.contains("\r\nX-Content-Type-Options: nosniff\r\n"))
        #expect(answer.contains("\r\nContent-Security-Policy: default-src 'none'; frame-ancestors 'none'\r\n"))
    }

    @Test("HEAD gets the headers of GET and no body, so a kept-alive connection's next answer is not misread (regression: the body was written)")
    func headHasNoBody() throws {
        let edge = try EdgeHarness()
        try edge.send("HEAD /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        let answer = try edge.output()
        #expect(answer.hasPrefix("HTTP/1.1 200 OK\r\n"))
        let parts = answer.components(separatedBy: "\r\n\r\n")
        #expect(parts.count == 2 && parts[1].isEmpty, "\(answer)")
        #expect(answer.contains("\r\nContent-Length: "), "\(answer)")
        // The next request on the connection is answered as its own.
        try edge.send("GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        #expect(try edge.output().hasPrefix("HTTP/1.1 200 OK\r\n"))
    }

    @Test("with --public-host, another Host gets 421 Misdirected Request; the public name and IP literals are served")
    func publicHost() throws {
        for (host, status) in [("rebind.attacker.example:5280", "421 Misdirected Request"), ("chat.example.org", "200 OK"), ("127.0.0.1:5280", "200 OK")] {
            let edge = try EdgeHarness { $0.publicHosts = ["chat.example.org"] }
            try edge.send("GET /healthz HTTP/1.1\r\nHost: \(host)\r\n\r\n")
            #expect(try edge.output().hasPrefix("HTTP/1.1 \(status)\r\n"), "Host: \(host)")
        }
    }
}

@Suite("Connection pipeline (EmbeddedChannel)")
struct ConnectionPipelineTests {
    /// Whether an object is still alive.
    final class Weak: @unchecked Sendable {
        weak var object: AnyObject?
        init(_ object: AnyObject) { self.object = object }
    }

    @Test("an upgrade request declaring a body is refused with 400, and nothing of the connection outlives it (regression: leaked per connection)")
    func upgradeWithBody() throws {
        var configuration = TetherConfiguration()
        configuration.domains = ["localhost"]
        let server = TetherServer(configuration: configuration)
        var weakHandlers: [Weak] = []
        do {
            let channel = EmbeddedChannel()
            try server.connectionInitializer()(channel)
            try channel.connect(to: SocketAddress(ipAddress: "203.0.113.9", port: 4000)).wait()
            let upgrade =
                "GET /xmpp-websocket HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: xmpp\r\nContent-Length: 10\r\n\r\n"
            weakHandlers.append(Weak(try channel.pipeline.syncOperations.handler(type: HTTPServerUpgradeHandler.self)))
            weakHandlers.append(Weak(try channel.pipeline.syncOperations.handler(type: HTTPEdgeHandler.self)))
            // The upgrader reports the refusal as an error (EmbeddedChannel rethrows it) and passes the request on.
            _ = try? channel.writeInbound(ByteBuffer(string: upgrade))
            var answer = ""
            while let buffer = try channel.readOutbound(as: ByteBuffer.self) { answer += String(buffer: buffer) }
            #expect(answer.hasPrefix("HTTP/1.1 400 Bad Request\r\n"), "\(answer)")
            #expect(answer.contains("carries no body"))
            // The body never comes; the connection ends (a request timeout, or the client going).
            _ = try? channel.close().wait()
            _ = try? channel.finish(acceptAlreadyClosed: true)
        }
        #expect(!weakHandlers.isEmpty)
        #expect(weakHandlers.allSatisfy { $0.object == nil }, "handlers still alive after close: \(weakHandlers.compactMap { $0.object.map { String(describing: type(of: $0)) } })")
    }
    static let upgradeRequest =
        "GET /xmpp-websocket HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: xmpp\r\n\r\n"

    @Test("a WebSocket upgrade after other requests on a kept-alive connection is accepted (RFC 6455 §4.1; regression: 400 after the first request)")
    func upgradeAfterOtherRequests() throws {
        var configuration = TetherConfiguration()
        configuration.domains = ["localhost"]
        let server = TetherServer(configuration: configuration)
        let channel = EmbeddedChannel()
        try server.connectionInitializer()(channel)
        try channel.connect(to: SocketAddress(ipAddress: "203.0.113.9", port: 4000)).wait()
        func output(_ of: EmbeddedChannel? = nil) throws -> String {
            var text = ""
            while let buffer = try (of ?? channel).readOutbound(as: ByteBuffer.self) { text += String(buffer: buffer) }
            return text
        }
        for _ in 0..<2 {
            try channel.writeInbound(ByteBuffer(string: "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"))
            #expect(try output().hasPrefix("HTTP/1.1 200 OK\r\n"))
        }
        // A refused upgrade is answered, and the connection stays usable.
        // (The fresh upgrade handler reports its refusal as an error, which EmbeddedChannel rethrows.)
        _ = try? channel.writeInbound(ByteBuffer(string: Self.upgradeRequest.replacingOccurrences(of: "Sec-WebSocket-Protocol: xmpp\r\n", with: "")))
        #expect(try output().hasPrefix("HTTP/1.1 400 Bad Request\r\n"))
        let fresh = EmbeddedChannel()
        try server.connectionInitializer()(fresh)
        try fresh.connect(to: SocketAddress(ipAddress: "203.0.113.9", port: 4000)).wait()
        try fresh.writeInbound(ByteBuffer(string: "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"))
        #expect(try output(fresh).hasPrefix("HTTP/1.1 200 OK\r\n"))
        try fresh.writeInbound(ByteBuffer(string: Self.upgradeRequest))
        fresh.embeddedEventLoop.run()
        let answer = try output(fresh)
        #expect(answer.hasPrefix("HTTP/1.1 101 Switching Protocols\r\n"), "\(answer)")
        #expect(answer.lowercased().contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="))
        // The pipeline is now WebSocket's: no HTTP edge, no HTTP handler of any kind (regression:
        // the response-header validator stayed, and crashed the process on a WebSocket frame
        // written with a separate header buffer).
        #expect((try? fresh.pipeline.syncOperations.handler(type: HTTPEdgeHandler.self)) == nil)
        #expect((try? fresh.pipeline.syncOperations.handler(type: NIOHTTPResponseHeadersValidator.self)) == nil)
        #expect((try? fresh.pipeline.syncOperations.handler(type: HTTPResponseEncoder.self)) == nil)
        #expect((try? fresh.pipeline.syncOperations.handler(type: HTTPServerProtocolErrorHandler.self)) == nil)
        #expect((try? fresh.pipeline.syncOperations.handler(type: WebSocketXMPPHandler.self)) != nil)
        _ = try? fresh.finish(acceptAlreadyClosed: true)
        _ = try? channel.finish(acceptAlreadyClosed: true)
    }
}
