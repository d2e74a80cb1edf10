import NIOCore
import NIOHPACK
import NIOHTTP2
import NIOPosix
import NIOSSL
import Synchronization

/// A raw HTTP/2 connection over TLS (ALPN `h2`) that can do what browsers' stacks never let a
/// test do: reset streams at will, and see the connection-level frames the server sends
/// (`GOAWAY` and its error code).
final class HTTP2TestConnection: Sendable {
    struct GoAway: Sendable, Equatable {
        var lastStreamID: HTTP2StreamID
        var errorCode: HTTP2ErrorCode
    }

    /// Records connection-level frames, after the HTTP/2 handler.
    private final class FrameRecorder: ChannelInboundHandler, Sendable {
        typealias InboundIn = HTTP2Frame
        let goAways = Mutex<[GoAway]>([])
        let pingAcks = Mutex<[HTTP2PingData]>([])

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let frame = self.unwrapInboundIn(data)
            switch frame.payload {
            case .goAway(let lastStreamID, let errorCode, _):
                self.goAways.withLock { $0.append(GoAway(lastStreamID: lastStreamID, errorCode: errorCode)) }
            case .ping(let data, ack: true):
                self.pingAcks.withLock { $0.append(data) }
            default:
                break
            }
            context.fireChannelRead(data)
        }
    }

    /// Collects one stream's answer.
    fileprivate final class StreamCollector: ChannelInboundHandler, Sendable {
        typealias InboundIn = HTTP2Frame.FramePayload
        let status = Mutex<Int?>(nil)
        let body = Mutex(ByteBuffer())
        let done: EventLoopPromise<Void>

        init(done: EventLoopPromise<Void>) { self.done = done }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch self.unwrapInboundIn(data) {
            case .headers(let headers):
                if let status = headers.headers.first(name: ":status").flatMap({ Int($0) }), status >= 200 {
                    self.status.withLock { $0 = status }
                }
                if headers.endStream { self.done.succeed() }
            case .data(let data):
                if case .byteBuffer(var bytes) = data.data {
                    self.body.withLock { _ = $0.writeBuffer(&bytes) }
                }
                if data.endStream { self.done.succeed() }
            default:
                break
            }
        }

        func channelInactive(context: ChannelHandlerContext) {
            self.done.fail(ChannelError.eof)
            context.fireChannelInactive()
        }
    }

    let channel: any Channel
    private let multiplexer: NIOHTTP2Handler.StreamMultiplexer
    private let recorder: FrameRecorder

    private init(channel: any Channel, multiplexer: NIOHTTP2Handler.StreamMultiplexer, recorder: FrameRecorder) {
        self.channel = channel
        self.multiplexer = multiplexer
        self.recorder = recorder
    }

    var goAways: [GoAway] { self.recorder.goAways.withLock { $0 } }
    var isOpen: Bool { self.channel.isActive }

    /// Connects with ALPN offering `h2` only; fails if the server does not choose it.
    static func connect(port: Int, tls configuration: TLSConfiguration) async throws -> HTTP2TestConnection {
        var tls = configuration
        tls.applicationProtocols = ["h2"]
        let context = try NIOSSLContext(configuration: tls)
        let recorder = FrameRecorder()
        let (channel, multiplexer) = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(NIOSSLClientHandler(context: context, serverHostname: "localhost"))
                    let multiplexer = try sync.configureHTTP2Pipeline(
                        mode: .client, connectionConfiguration: .init(), streamConfiguration: .init(), inboundStreamInitializer: { $0.close() })
                    try sync.addHandler(recorder)
                    return (channel, multiplexer)
                }
            }
        return HTTP2TestConnection(channel: channel, multiplexer: multiplexer, recorder: recorder)
    }

    /// A PING round trip: once it returns, the server has read every frame sent before it (the
    /// client's `SETTINGS` ACK among them: frames are processed in order).
    func ping(timeout: Duration = .seconds(30)) async throws {
        let data = HTTP2PingData(withInteger: UInt64.random(in: 1...UInt64.max))
        try await self.channel.writeAndFlush(HTTP2Frame(streamID: .rootStream, payload: .ping(data, ack: false)))
        let deadline = ContinuousClock.now + timeout
        while !self.recorder.pingAcks.withLock({ $0.contains(data) }) {
            guard ContinuousClock.now < deadline else { throw TestFailure("no PING ACK within \(timeout)") }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    static func requestHeaders(method: String, path: String, bodyLength: Int?) -> HPACKHeaders {
        var headers: HPACKHeaders = [":method": method, ":path": path, ":scheme": "https", ":authority": "localhost"]
        if let bodyLength {
            headers.add(name: "content-type", value: "text/xml; charset=utf-8")
            headers.add(name: "content-length", value: String(bodyLength))
        }
        return headers
    }

    /// One request on a new stream; its status and body.
    func request(method: String = "GET", path: String, body: String? = nil) async throws -> (status: Int, body: String) {
        let (_, collector) = try await self.send(method: method, path: path, body: body)
        try await collector.done.futureResult.get()
        let status = collector.status.withLock { $0 } ?? 0
        return (status, String(buffer: collector.body.withLock { $0 }))
    }

    /// A POST whose body goes out as `frames` DATA frames of `frameBytes` each, all in one flush;
    /// its status.
    func postInFrames(path: String, frames: Int, frameBytes: Int) async throws -> Int {
        let collector = StreamCollector(done: self.channel.eventLoop.makePromise(of: Void.self))
        let stream = try await self.multiplexer.createStreamChannel { stream in
            stream.eventLoop.makeCompletedFuture {
                try stream.pipeline.syncOperations.addHandler(collector)
            }
        }.get()
        let headers = Self.requestHeaders(method: "POST", path: path, bodyLength: frames * frameBytes)
        stream.write(HTTP2Frame.FramePayload.headers(.init(headers: headers, endStream: false)), promise: nil)
        let piece = ByteBuffer(repeating: UInt8(ascii: "a"), count: frameBytes)
        for index in 0..<frames {
            stream.write(HTTP2Frame.FramePayload.data(.init(data: .byteBuffer(piece), endStream: index == frames - 1)), promise: nil)
        }
        stream.flush()
        try? await collector.done.futureResult.get()
        return collector.status.withLock { $0 } ?? 0
    }

    /// Sends a request on a new stream without waiting for its answer; the stream, to reset it.
    func startRequest(method: String, path: String, body: String) async throws -> any Channel {
        try await self.send(method: method, path: path, body: body).stream
    }

    private func send(method: String, path: String, body: String?) async throws -> (stream: any Channel, collector: StreamCollector) {
        let collector = StreamCollector(done: self.channel.eventLoop.makePromise(of: Void.self))
        let stream = try await self.multiplexer.createStreamChannel { stream in
            stream.eventLoop.makeCompletedFuture {
                try stream.pipeline.syncOperations.addHandler(collector)
            }
        }.get()
        let bytes = body.map { ByteBuffer(string: $0) }
        let headers = Self.requestHeaders(method: method, path: path, bodyLength: bytes?.readableBytes)
        stream.write(HTTP2Frame.FramePayload.headers(.init(headers: headers, endStream: bytes == nil)), promise: nil)
        if let bytes { stream.write(HTTP2Frame.FramePayload.data(.init(data: .byteBuffer(bytes), endStream: true)), promise: nil) }
        stream.flush()
        return (stream, collector)
    }

    /// A `POST /http-bind` upload whose body (`bodyBytes` of `a`) is on the wire when this returns
    /// (its last frame written, so the flow-control windows let it through); the body ends
    /// only with `end`, or later with `endUpload`.
    struct Upload {
        let stream: any Channel
        fileprivate let collector: StreamCollector
        /// The answer's status once the stream is over (answered, reset or closed); 0 if none.
        func status() async -> Int {
            try? await self.collector.done.futureResult.get()
            return self.collector.status.withLock { $0 } ?? 0
        }
        /// Whether the answer is in (the stream may still be open).
        var answered: Bool { self.collector.status.withLock { $0 } != nil }
    }

    func upload(path: String = "/http-bind", bodyBytes: Int, end: Bool) async throws -> Upload {
        let collector = StreamCollector(done: self.channel.eventLoop.makePromise(of: Void.self))
        let stream = try await self.multiplexer.createStreamChannel { stream in
            stream.eventLoop.makeCompletedFuture { try stream.pipeline.syncOperations.addHandler(collector) }
        }.get()
        let headers = Self.requestHeaders(method: "POST", path: path, bodyLength: bodyBytes)
        stream.write(HTTP2Frame.FramePayload.headers(.init(headers: headers, endStream: false)), promise: nil)
        var left = bodyBytes
        var last: EventLoopFuture<Void>?
        while left > 0 {
            let piece = min(left, 16_384)
            left -= piece
            let data = HTTP2Frame.FramePayload.Data(data: .byteBuffer(ByteBuffer(repeating: UInt8(ascii: "a"), count: piece)), endStream: end && left == 0)
            last = stream.write(HTTP2Frame.FramePayload.data(data))
        }
        stream.flush()
        try? await last?.get()
        return Upload(stream: stream, collector: collector)
    }

    /// A new stream set up by `initializer`, for protocols other than request and answer.
    func openStream(_ initializer: @escaping NIOHTTP2Handler.StreamInitializer) async throws -> any Channel {
        try await self.multiplexer.createStreamChannel(initializer).get()
    }

    /// Ends an upload's body (an empty DATA frame with END_STREAM).
    func endUpload(_ upload: Upload) async throws {
        try await upload.stream.writeAndFlush(HTTP2Frame.FramePayload.data(.init(data: .byteBuffer(ByteBuffer()), endStream: true)))
    }

    /// Opens `count` streams that each start a `POST /http-bind` and are reset at once
    /// (`RST_STREAM CANCEL`), as fast as the connection takes them: the rapid-reset attack.
    func resetFlood(count: Int) async throws {
        for _ in 0..<count {
            guard self.channel.isActive else { return }
            let stream = try? await self.multiplexer.createStreamChannel { stream in stream.eventLoop.makeSucceededVoidFuture() }.get()
            guard let stream else { return }
            let headers = Self.requestHeaders(method: "POST", path: "/http-bind", bodyLength: 1000)
            stream.writeAndFlush(HTTP2Frame.FramePayload.headers(.init(headers: headers, endStream: false)), promise: nil)
            // Closing a stream that is still open sends RST_STREAM CANCEL.
            stream.close(promise: nil)
        }
    }

    func close() async {
        try? await self.channel.close()
    }
}
