import Logging
import NIOCore
import NIOEmbedded
import NIOHPACK
import NIOHTTP2
import NIOPosix
import NIOWebSocket
import Testing
import XMPPUpstream

@testable import TetherServer

/// Tether's HTTP/2 connection pipeline (`EdgePipelines.configureHTTP2`) on an `EmbeddedChannel`,
/// against NIO's HTTP/2 client on another one; the test carries the bytes between them, so it
/// decides which frames cross on the wire.
final class HTTP2PipelinePair {
    let server = EmbeddedChannel()
    let client = EmbeddedChannel()
    private let recorder = GoAwayRecorder()

    /// The connection-level frames the client has read.
    final class GoAwayRecorder: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = HTTP2Frame
        var goAways: [HTTP2ErrorCode] = []

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            if case .goAway(_, let code, _) = self.unwrapInboundIn(data).payload { self.goAways.append(code) }
            context.fireChannelRead(data)
        }
    }

    var goAways: [HTTP2ErrorCode] { self.recorder.goAways }

    private var multiplexer: NIOHTTP2Handler.StreamMultiplexer!

    /// - Parameter clientWindow: the client's `SETTINGS_INITIAL_WINDOW_SIZE` (0: it takes no answer's body).
    init(clientWindow: Int? = nil, _ configure: (inout TetherConfiguration) -> Void = { _ in }) throws {
        var configuration = TetherConfiguration()
        configuration.domains = ["localhost"]
        configure(&configuration)
        let store = ConfigurationStore(configuration)
        let logger = Logger(label: "test")
        let metrics = TetherMetrics()
        let status = ServerStatus()
        let gate = SessionGate(limiter: SessionLimiter(limits: configuration.sessionLimits), status: status, metrics: metrics, logger: logger)
        let upstream = UpstreamLinks(closing: ClosingStreams(), metrics: metrics)
        let bosh = BOSHService(store: store, gate: gate, metrics: metrics, upstream: upstream, group: MultiThreadedEventLoopGroup.singleton, logger: logger)
        let pipelines = EdgePipelines(
            store: store, bosh: bosh, webSockets: WebSocketRegistry(), relay: PeerRelay(peers: [:], logger: logger),
            prebind: PrebindService(store: store, bosh: bosh, logger: logger), gate: gate, upstreamLinks: upstream, status: status, metrics: metrics,
            http2Connections: HTTP2Connections(), logger: logger)
        try self.server.connect(to: SocketAddress(ipAddress: "203.0.113.9", port: 4000)).wait()
        try pipelines.configureHTTP2(self.server, configuration: configuration)
        let sync = self.client.pipeline.syncOperations
        var client = NIOHTTP2Handler.ConnectionConfiguration()
        if let clientWindow { client.initialSettings.append(HTTP2Setting(parameter: .initialWindowSize, value: clientWindow)) }
        self.multiplexer = try sync.configureHTTP2Pipeline(mode: .client, connectionConfiguration: client, streamConfiguration: .init()) { $0.close() }
        try sync.addHandler(self.recorder)
        try self.client.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 443)).wait()
    }

    deinit {
        _ = try? self.server.finish(acceptAlreadyClosed: true)
        _ = try? self.client.finish(acceptAlreadyClosed: true)
    }

    /// Delivers everything the client has written to the server.
    func clientToServer() throws {
        while let bytes = try self.client.readOutbound(as: ByteBuffer.self) {
            guard self.server.isActive else { return }
            try self.server.writeInbound(bytes)
        }
    }

    /// Delivers everything the server has written to the client.
    func serverToClient() throws {
        while let bytes = try self.server.readOutbound(as: ByteBuffer.self) {
            guard self.client.isActive else { return }
            try self.client.writeInbound(bytes)
        }
    }

    /// Carries bytes both ways until neither side has anything more to say (flow-control
    /// windows reopened, answers written).
    func exchange() throws {
        for _ in 0..<10_000 {
            self.client.embeddedEventLoop.run()
            self.server.embeddedEventLoop.run()
            var moved = false
            while let bytes = try self.client.readOutbound(as: ByteBuffer.self) {
                moved = true
                if self.server.isActive { try self.server.writeInbound(bytes) }
            }
            while let bytes = try self.server.readOutbound(as: ByteBuffer.self) {
                moved = true
                if self.client.isActive { try self.client.writeInbound(bytes) }
            }
            if !moved { return }
        }
        Issue.record("the connection never went quiet")
    }

    /// What one client stream saw: the answer's status, and whether the server reset it.
    final class StreamOutcome: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = HTTP2Frame.FramePayload
        var status: Int?
        var reset = false

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch self.unwrapInboundIn(data) {
            case .headers(let headers):
                if let status = headers.headers.first(name: ":status").flatMap({ Int($0) }) { self.status = status }
            case .rstStream:
                self.reset = true
            default:
                break
            }
        }
    }

    /// Opens a stream carrying a POST of `bodyBytes` to `/http-bind`; its body ends only with `end`.
    func upload(bodyBytes: Int, end: Bool) throws -> (stream: any Channel, outcome: StreamOutcome) {
        let outcome = StreamOutcome()
        let created = self.multiplexer.createStreamChannel { stream in
            stream.eventLoop.makeCompletedFuture { try stream.pipeline.syncOperations.addHandler(outcome) }
        }
        self.client.embeddedEventLoop.run()
        let stream = try created.wait()
        let headers: HPACKHeaders = [
            ":method": "POST", ":path": "/http-bind", ":scheme": "https", ":authority": "localhost", "content-type": "text/xml",
            "content-length": String(bodyBytes),
        ]
        stream.write(HTTP2Frame.FramePayload.headers(.init(headers: headers)), promise: nil)
        var left = bodyBytes
        while left > 0 {
            let piece = min(left, 16_384)
            left -= piece
            let data = HTTP2Frame.FramePayload.Data(data: .byteBuffer(ByteBuffer(repeating: UInt8(ascii: "a"), count: piece)), endStream: end && left == 0)
            stream.write(HTTP2Frame.FramePayload.data(data), promise: nil)
        }
        stream.flush()
        try self.exchange()
        return (stream, outcome)
    }

    /// What a WebSocket stream of the client saw: the CONNECT's answer, then text messages.
    final class WebSocketOutcome: @unchecked Sendable {
        var answer: HPACKHeaders?
        var texts: [String] = []
    }

    /// Takes the CONNECT's answer (the first HEADERS) off the stream; DATA goes on.
    final class ConnectAnswerTaker: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = HTTP2Frame.FramePayload
        let outcome: WebSocketOutcome
        init(outcome: WebSocketOutcome) { self.outcome = outcome }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            if case .headers(let headers) = self.unwrapInboundIn(data), self.outcome.answer == nil {
                self.outcome.answer = headers.headers
                return
            }
            context.fireChannelRead(data)
        }
    }

    /// Opens a WebSocket with RFC 8441's extended CONNECT; the stream and what it sees.
    func webSocket(protocols: String? = "xmpp", version: String = "13", host: String? = nil) throws -> (stream: any Channel, outcome: WebSocketOutcome) {
        let outcome = WebSocketOutcome()
        let created = self.multiplexer.createStreamChannel { stream in
            stream.eventLoop.makeCompletedFuture {
                try stream.pipeline.syncOperations.addHandlers([
                    ConnectAnswerTaker(outcome: outcome), HTTP2WebSocketFrameBridge(), WebSocketFrameEncoder(),
                    ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: 1 << 20)), WebSocketFrameSink(outcome: outcome),
                ])
            }
        }
        self.client.embeddedEventLoop.run()
        let stream = try created.wait()
        var headers: HPACKHeaders = [":method": "CONNECT", ":protocol": "websocket", ":scheme": "https", ":path": "/xmpp-websocket", ":authority": "localhost"]
        headers.add(name: "sec-websocket-version", value: version)
        if let protocols { headers.add(name: "sec-websocket-protocol", value: protocols) }
        if let host { headers.add(name: "host", value: host) }
        // From the front of the stream's pipeline: behind it, writes are WebSocket frames.
        let front = try stream.pipeline.syncOperations.context(handlerType: ConnectAnswerTaker.self)
        front.writeAndFlush(NIOAny(HTTP2Frame.FramePayload.headers(.init(headers: headers))), promise: nil)
        try self.exchange()
        return (stream, outcome)
    }

    /// Hands decoded WebSocket frames back to the outcome.
    final class WebSocketFrameSink: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = WebSocketFrame
        let outcome: WebSocketOutcome
        init(outcome: WebSocketOutcome) { self.outcome = outcome }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let frame = self.unwrapInboundIn(data)
            if frame.opcode == .text { self.outcome.texts.append(String(buffer: frame.unmaskedData)) }
        }
    }

    /// Ends a stream's body (an empty DATA frame with END_STREAM).
    func endBody(_ stream: any Channel) throws {
        stream.writeAndFlush(HTTP2Frame.FramePayload.data(.init(data: .byteBuffer(ByteBuffer()), endStream: true)), promise: nil)
        try self.exchange()
    }

    /// Asks the server to wind the connection down, as shutdown does (`HTTP2Connections.quiesceAll`).
    func quiesce() {
        self.server.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        self.server.embeddedEventLoop.run()
    }
}

@Suite("HTTP/2 connection pipeline (EmbeddedChannel)")
struct HTTP2PipelineTests {
    @Test("a quiet connection is wound down with GOAWAY NO_ERROR and a PING, then closed once the PING is answered (RFC 9113 §6.8)")
    func gracefulGoAway() throws {
        let pair = try HTTP2PipelinePair()
        try pair.clientToServer()
        try pair.serverToClient()
        // The client's SETTINGS ACK reaches the server before the shutdown does.
        try pair.clientToServer()
        pair.quiesce()
        try pair.serverToClient()
        #expect(pair.goAways == [.noError])
        try pair.clientToServer()
        pair.server.embeddedEventLoop.run()
        #expect(!pair.server.isActive)
        #expect(pair.goAways.allSatisfy { $0 == .noError }, "\(pair.goAways)")
    }

    @Test(
        "a frame of the client's that crosses the GOAWAY of a connection with no stream (its SETTINGS ACK) gets GOAWAY PROTOCOL_ERROR from the HTTP/2 handler, and the connection is closed at once (regression: it stayed open until the deadline)"
    )
    func frameCrossingGoAway() throws {
        let pair = try HTTP2PipelinePair()
        try pair.clientToServer()
        // The client reads the server's SETTINGS and acknowledges them, but its ACK is still on
        // the wire when the server winds down.
        try pair.serverToClient()
        pair.quiesce()
        try pair.clientToServer()
        #expect(!pair.server.isActive)
        try pair.serverToClient()
        #expect(pair.goAways == [.noError, .protocolError])
    }

    @Test(
        "the request bodies of one connection's streams together are bounded: the stream that would overdraw the budget gets 413 and is reset, the others are served, and bytes given back are taken again"
    )
    func connectionBodyBudget() throws {
        // 60 KiB bodies, each under the 64 KiB body limit; the connection's budget is 1 MiB.
        let pair = try HTTP2PipelinePair { $0.maxRequestBodyBytes = 64 * 1024 }
        try pair.exchange()
        let budget = HTTP2BodyBudget.limit(maxRequestBodyBytes: 64 * 1024)
        let body = 60 * 1024
        let fitting = budget / body
        var open: [(stream: any Channel, outcome: HTTP2PipelinePair.StreamOutcome)] = []
        for _ in 0..<fitting {
            open.append(try pair.upload(bodyBytes: body, end: false))
        }
        #expect(open.allSatisfy { $0.outcome.status == nil && !$0.outcome.reset })
        let over = try pair.upload(bodyBytes: body, end: false)
        #expect(over.outcome.status == 413)
        #expect(over.outcome.reset)
        #expect(pair.server.isActive)
        // The held bodies complete and reach BOSH (200: a terminate, they are not XML), giving
        // their bytes back; then a body as large is taken again.
        for upload in open { try pair.endBody(upload.stream) }
        #expect(open.allSatisfy { $0.outcome.status == 200 && !$0.outcome.reset }, "\(open.map { $0.outcome.status ?? 0 })")
        let again = try pair.upload(bodyBytes: body, end: true)
        #expect(again.outcome.status == 200)
    }

    @Test("RFC 8441: a WebSocket opened with extended CONNECT on an HTTP/2 stream is answered 200 with the xmpp subprotocol and speaks RFC 7395 in the stream's DATA frames")
    func webSocketOverHTTP2() throws {
        let pair = try HTTP2PipelinePair()
        try pair.exchange()
        let (stream, outcome) = try pair.webSocket()
        #expect(outcome.answer?.first(name: ":status") == "200", "\(String(describing: outcome.answer))")
        #expect(outcome.answer?.first(name: "sec-websocket-protocol") == "xmpp")
        #expect(outcome.answer?.first(name: "x-content-type-options") == "nosniff")
        // A domain this Tether does not serve: answered without an upstream (RFC 7395 §3.3).
        let open = "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='unserved.example' version='1.0'/>"
        stream.writeAndFlush(WebSocketFrame(fin: true, opcode: .text, maskKey: .random(), data: ByteBuffer(string: open)), promise: nil)
        try pair.exchange()
        #expect(outcome.texts.count == 3, "\(outcome.texts)")
        #expect(outcome.texts.first?.hasPrefix("<open ") == true)
        #expect(outcome.texts.dropFirst().first?.contains("host-unknown") == true)
        #expect(outcome.texts.last?.hasPrefix("<close ") == true)
        #expect(pair.server.isActive)
    }

    @Test("RFC 8441: an extended CONNECT without the xmpp subprotocol is refused with 400, one with another WebSocket version with 400 naming version 13; the connection goes on")
    func webSocketOverHTTP2Refused() throws {
        let pair = try HTTP2PipelinePair()
        try pair.exchange()
        let noProtocol = try pair.webSocket(protocols: nil)
        #expect(noProtocol.outcome.answer?.first(name: ":status") == "400")
        let oldVersion = try pair.webSocket(version: "8")
        #expect(oldVersion.outcome.answer?.first(name: ":status") == "400")
        #expect(oldVersion.outcome.answer?.first(name: "sec-websocket-version") == "13")
        #expect(pair.server.isActive)
        let accepted = try pair.webSocket()
        #expect(accepted.outcome.answer?.first(name: ":status") == "200")
    }

    @Test("RFC 8441: a Host field equal to :authority is the same line (accepted); one that differs is refused with 400")
    func webSocketOverHTTP2Host() throws {
        let pair = try HTTP2PipelinePair()
        try pair.exchange()
        #expect(try pair.webSocket(host: "localhost").outcome.answer?.first(name: ":status") == "200")
        #expect(try pair.webSocket(host: "elsewhere.example").outcome.answer?.first(name: ":status") == "400")
    }

    /// One HTTP/2 frame as bytes (RFC 9113 §4.1).
    static func frame(type: UInt8, flags: UInt8, stream: UInt32, _ payload: [UInt8] = []) -> [UInt8] {
        var bytes: [UInt8] = []
        let length = UInt32(payload.count)
        bytes.append(UInt8(truncatingIfNeeded: length >> 16))
        bytes.append(UInt8(truncatingIfNeeded: length >> 8))
        bytes.append(UInt8(truncatingIfNeeded: length))
        bytes.append(type)
        bytes.append(flags)
        bytes.append(UInt8(truncatingIfNeeded: stream >> 24) & 0x7F)
        bytes.append(UInt8(truncatingIfNeeded: stream >> 16))
        bytes.append(UInt8(truncatingIfNeeded: stream >> 8))
        bytes.append(UInt8(truncatingIfNeeded: stream))
        return bytes + payload
    }

    /// A header block of literal fields without indexing or Huffman (RFC 7541 §6.2.2).
    static func literals(_ fields: [(String, String)]) -> [UInt8] {
        var bytes: [UInt8] = []
        for (name, value) in fields {
            bytes.append(0)
            bytes.append(UInt8(name.utf8.count))
            bytes.append(contentsOf: name.utf8)
            bytes.append(UInt8(value.utf8.count))
            bytes.append(contentsOf: value.utf8)
        }
        return bytes
    }

    @Test(
        "a refused answer a client opens no flow-control window for does not hold its stream: it is reset after --http-request-timeout, for a refused extended CONNECT, a refused request and an answered one alike (regression)"
    )
    func stalledRefusals() throws {
        let pair = try HTTP2PipelinePair()
        // A client whose windows are all 0 (SETTINGS_INITIAL_WINDOW_SIZE), written byte by byte:
        // NIO's own client would open them again.
        // The server's SETTINGS (sent as the connection starts) are acknowledged, so extended
        // CONNECT is allowed.
        var bytes = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8) + Self.frame(type: 0x4, flags: 0, stream: 0, [0, 0x4, 0, 0, 0, 0])
        bytes += Self.frame(type: 0x4, flags: 0x1, stream: 0)
        bytes += Self.frame(
            type: 0x1, flags: 0x4, stream: 1,
            Self.literals([
                (":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "https"), (":authority", "localhost"), (":path", "/xmpp-websocket"),
                ("sec-websocket-version", "8"),
            ]))
        bytes += Self.frame(
            type: 0x1, flags: 0x4, stream: 3,
            Self.literals([(":method", "POST"), (":scheme", "https"), (":authority", "localhost"), (":path", "/http-bind"), ("content-length", "900000")]))
        bytes += Self.frame(type: 0x1, flags: 0x5, stream: 5, Self.literals([(":method", "GET"), (":scheme", "https"), (":authority", "localhost"), (":path", "/healthz")]))
        try pair.server.writeInbound(ByteBuffer(bytes: bytes))
        pair.server.embeddedEventLoop.run()
        func resets() throws -> [UInt32] {
            var found: [UInt32] = []
            while var buffer = try pair.server.readOutbound(as: ByteBuffer.self) {
                while let header = buffer.readBytes(length: 9) {
                    let length = Int(header[0]) << 16 | Int(header[1]) << 8 | Int(header[2])
                    _ = buffer.readBytes(length: length)
                    if header[3] == 0x3 { found.append(UInt32(header[5] & 0x7F) << 24 | UInt32(header[6]) << 16 | UInt32(header[7]) << 8 | UInt32(header[8])) }
                }
            }
            return found
        }
        // Answered (the heads of the 400, the 413 and the 200 are not flow-controlled), their
        // bodies held.
        #expect(try resets().isEmpty)
        pair.server.embeddedEventLoop.advanceTime(by: TetherConfiguration().httpRequestTimeout)
        #expect(try resets().sorted() == [1, 3, 5])
        #expect(pair.server.isActive)
    }
}

@Suite("RFC 8441 WebSocket frame bridge (EmbeddedChannel)")
struct HTTP2WebSocketFrameBridgeTests {
    /// Errors that get past the bridge.
    final class ErrorRecorder: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        var errors: [any Error] = []
        func errorCaught(context: ChannelHandlerContext, error: any Error) { self.errors.append(error) }
    }

    @Test(
        "a stream that ends with a reset is the connection lost, not a malformed frame: StreamClosed stops at the bridge, other errors go on (regression: the session took it for a framing error)"
    )
    func streamClosedIsNotAFramingError() throws {
        let recorder = ErrorRecorder()
        let channel = EmbeddedChannel(handlers: [HTTP2WebSocketFrameBridge(), recorder])
        channel.pipeline.syncOperations.fireErrorCaught(NIOHTTP2Errors.streamClosed(streamID: 1, errorCode: .cancel))
        #expect(recorder.errors.isEmpty)
        channel.pipeline.syncOperations.fireErrorCaught(ChannelError.ioOnClosedChannel)
        #expect(recorder.errors.count == 1)
        _ = try? channel.finish()
    }

    @Test("the client ending its side (END_STREAM) ends the stream with END_STREAM too, then closes it")
    func endStreamIsAnsweredWithEndStream() throws {
        let channel = EmbeddedChannel(handlers: [HTTP2WebSocketFrameBridge()])
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try channel.writeInbound(HTTP2Frame.FramePayload.data(.init(data: .byteBuffer(ByteBuffer(string: "x")), endStream: true)))
        #expect(try channel.readInbound(as: ByteBuffer.self) == ByteBuffer(string: "x"))
        guard case .data(let last) = try channel.readOutbound(as: HTTP2Frame.FramePayload.self) else {
            Issue.record("no DATA frame written")
            return
        }
        #expect(last.endStream)
        #expect(!channel.isActive)
    }
}
