import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHPACK
import NIOHTTP1
import NIOHTTP2
import NIOPosix
import NIOSSL
import NIOWebSocket
import Synchronization
import WebSocketCore

@testable import TetherServer

/// A WebSocket client built on NIOWebSocket's client upgrader, with full control over frames:
/// what a browser does, plus what a broken or hostile one does (binary frames, abrupt drops).
final class WebSocketTestClient: Sendable {
    enum Event: Equatable, Sendable {
        case text(String)
        /// A text message that arrived compressed (permessage-deflate), already inflated.
        case compressedText(String)
        case binary
        case close(code: Int?)
        case ping
        case disconnected
    }

    let channel: any Channel
    let subprotocol: String?
    /// The server's `Sec-WebSocket-Extensions` answer.
    let extensions: String?
    private let inbox: Inbox

    /// Events as they arrive; tests take them in order.
    final class Inbox: Sendable {
        private let events = Mutex<[Event]>([])
        func append(_ event: Event) { self.events.withLock { $0.append(event) } }
        func take() -> Event? {
            self.events.withLock { $0.isEmpty ? nil : $0.removeFirst() }
        }
    }

    private init(channel: any Channel, subprotocol: String?, extensions: String?, inbox: Inbox) {
        self.channel = channel
        self.subprotocol = subprotocol
        self.extensions = extensions
        self.inbox = inbox
    }

    /// - Parameter answersPings: `false` simulates a peer that stopped responding (half-open connection).
    static func connect(
        port: Int, path: String = "/xmpp-websocket", origin: String? = nil, protocols: String? = "xmpp", answersPings: Bool = true, offerCompression: Bool = false,
        forwardedFor: String? = nil, tls: NIOSSLContext? = nil, from source: String? = nil
    ) async throws -> WebSocketTestClient {
        let inbox = Inbox()
        let negotiated = NIOLockedValueBox<String?>(nil)
        let negotiatedExtensions = NIOLockedValueBox<String?>(nil)
        let upgraded = MultiThreadedEventLoopGroup.singleton.next().makePromise(of: Void.self)
        var bootstrap = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        // Another loopback address (all of 127/8 is this host's): another client to Tether.
        if let source { bootstrap = bootstrap.bind(to: try SocketAddress(ipAddress: source, port: 0)) }
        let channel =
            try await bootstrap
            .channelInitializer { channel in
                let upgrader = NIOWebSocketClientUpgrader(
                    requestKey: Data((0..<16).map { _ in UInt8.random(in: 0...255) }).base64EncodedString(),
                    maxFrameSize: 1 << 22,
                    automaticErrorHandling: false,
                    upgradePipelineHandler: { channel, response in
                        negotiated.withLockedValue { $0 = response.headers.first(name: "sec-websocket-protocol") }
                        negotiatedExtensions.withLockedValue { $0 = response.headers.first(name: "sec-websocket-extensions") }
                        return channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHandler(
                                NIOWebSocketFrameAggregator(minNonFinalFragmentSize: 0, maxAccumulatedFrameCount: 64, maxAccumulatedFrameSize: 1 << 22))
                            try channel.pipeline.syncOperations.addHandler(Collector(inbox: inbox, answersPings: answersPings))
                            upgraded.succeed()
                        }
                    }
                )
                return channel.eventLoop.makeCompletedFuture {
                    if let tls {
                        try channel.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: tls, serverHostname: "localhost"))
                    }
                    try channel.pipeline.syncOperations.addHTTPClientHandlers(
                        // Frames the server sends right behind its 101 can arrive in the same read:
                        // they belong to the WebSocket, not to be dropped with the HTTP decoder.
                        leftOverBytesStrategy: .forwardBytes,
                        withClientUpgrade: (upgraders: [upgrader], completionHandler: { _ in })
                    )
                }
            }
            .connect(host: "127.0.0.1", port: port)
            .get()
        var headers = HTTPHeaders([("Host", "127.0.0.1:\(port)"), ("Content-Length", "0")])
        if let origin { headers.add(name: "Origin", value: origin) }
        if let protocols { headers.add(name: "Sec-WebSocket-Protocol", value: protocols) }
        if let forwardedFor { headers.add(name: "X-Forwarded-For", value: forwardedFor) }
        if offerCompression { headers.add(name: "Sec-WebSocket-Extensions", value: "permessage-deflate; client_max_window_bits") }
        let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: path, headers: headers)
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        try await channel.writeAndFlush(HTTPClientRequestPart.end(nil))
        // Generous: a refusal answers at once, and a busy machine must not fail an accepted upgrade.
        let timeout = channel.eventLoop.scheduleTask(in: .seconds(20)) { upgraded.fail(TestFailure("WebSocket upgrade refused or timed out")) }
        channel.closeFuture.whenComplete { _ in upgraded.fail(TestFailure("connection closed during the upgrade")) }
        try await upgraded.futureResult.get()
        timeout.cancel()
        return WebSocketTestClient(
            channel: channel,
            subprotocol: negotiated.withLockedValue { $0 },
            extensions: negotiatedExtensions.withLockedValue { $0 },
            inbox: inbox
        )
    }

    /// Sends one text message (masked, as clients must), deflated when `compressed` (RFC 7692).
    func send(_ text: String, compressed: Bool = false) async throws {
        if compressed {
            let payload = try PerMessageDeflateCodec().compress(ByteBuffer(string: text))
            try await self.sendFrame(WebSocketFrame(fin: true, rsv1: true, opcode: .text, maskKey: .random(), data: payload))
        } else {
            try await self.sendFrame(WebSocketFrame(fin: true, opcode: .text, maskKey: .random(), data: ByteBuffer(string: text)))
        }
    }

    /// Sends a frame; NIO's encoder masks it with `maskKey` (clients must mask, RFC 6455 §5.3).
    /// `masked: false` sends it as a broken client would, in the clear.
    func sendFrame(_ frame: WebSocketFrame, masked: Bool = true) async throws {
        var frame = frame
        if masked && frame.maskKey == nil { frame.maskKey = .random() }
        if !masked { frame.maskKey = nil }
        try await self.channel.writeAndFlush(frame)
    }

    /// The events until the connection ends (or `timeout`), for tests of how a session ends.
    /// The waits here are generous: no test asserts a speed, and on a loaded machine a test
    /// process's threads can stall for seconds; a lost event still fails, at Tether's own
    /// timeouts (connect, stream open) if not at these.
    func eventsUntilDisconnected(timeout: Duration = .seconds(30)) async throws -> [Event] {
        var events: [Event] = []
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let event = try await self.next(timeout: deadline - ContinuousClock.now)
            events.append(event)
            if event == .disconnected { return events }
        }
        throw TestFailure("still connected after \(timeout): \(events)")
    }

    /// The next event, or a failure after `timeout`.
    func next(timeout: Duration = .seconds(30)) async throws -> Event {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let event = self.inbox.take() { return event }
            guard ContinuousClock.now < deadline else { break }
            try await Task.sleep(for: .milliseconds(5))
        }
        throw TestFailure("no WebSocket event within \(timeout)")
    }

    /// Reads text messages until one satisfies `predicate` within `timeout` in all; returns all of
    /// them. (Not per message: Tether's pings would restart a per-message wait forever.)
    func receive(until predicate: (String) -> Bool, timeout: Duration = .seconds(30)) async throws -> [String] {
        var texts: [String] = []
        let deadline = ContinuousClock.now + timeout
        while true {
            switch try await self.next(timeout: max(deadline - ContinuousClock.now, .zero)) {
            case .text(let text), .compressedText(let text):
                texts.append(text)
                if predicate(text) { return texts }
            case .ping:
                continue
            case let other:
                throw TestFailure("expected a message, got \(other) after \(texts)")
            }
        }
    }

    /// Drops the TCP connection without any closing handshake (a crashed tab, a lost network).
    func drop() async {
        try? await self.channel.close()
    }

    /// Sends a close frame (the WebSocket closing handshake).
    func sendClose(code: WebSocketErrorCode = .normalClosure) async throws {
        var data = ByteBuffer()
        data.write(webSocketErrorCode: code)
        try await self.sendFrame(WebSocketFrame(fin: true, opcode: .connectionClose, data: data))
    }

    /// A WebSocket opened on a new stream of an HTTP/2 connection with RFC 8441's extended
    /// CONNECT; the answer's status and headers, and the client once accepted (`nil` when refused).
    static func connect(
        overHTTP2 connection: HTTP2TestConnection, path: String = "/xmpp-websocket", origin: String? = nil, protocols: String? = "xmpp",
        version: String = "13", offerCompression: Bool = false
    ) async throws -> (status: Int, headers: HPACKHeaders, client: WebSocketTestClient?) {
        let inbox = Inbox()
        let answer = MultiThreadedEventLoopGroup.singleton.next().makePromise(of: HPACKHeaders.self)
        let stream = try await connection.openStream { stream in
            stream.eventLoop.makeCompletedFuture {
                try stream.pipeline.syncOperations.addHandlers([
                    ConnectAnswer(answer: answer),
                    HTTP2WebSocketFrameBridge(),
                    WebSocketFrameEncoder(),
                    ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: 1 << 22)),
                    NIOWebSocketFrameAggregator(minNonFinalFragmentSize: 0, maxAccumulatedFrameCount: 64, maxAccumulatedFrameSize: 1 << 22),
                    Collector(inbox: inbox, answersPings: true),
                ])
            }
        }
        var headers: HPACKHeaders = [":method": "CONNECT", ":protocol": "websocket", ":scheme": "https", ":path": path, ":authority": "localhost"]
        headers.add(name: "sec-websocket-version", value: version)
        if let protocols { headers.add(name: "sec-websocket-protocol", value: protocols) }
        if let origin { headers.add(name: "origin", value: origin) }
        if offerCompression { headers.add(name: "sec-websocket-extensions", value: "permessage-deflate; client_max_window_bits") }
        // From the front of the stream's pipeline: behind it, writes are WebSocket frames.
        try await stream.eventLoop.submit {
            let front = try stream.pipeline.syncOperations.context(handlerType: ConnectAnswer.self)
            front.writeAndFlush(NIOAny(HTTP2Frame.FramePayload.headers(.init(headers: headers))), promise: nil)
        }.get()
        let timeout = stream.eventLoop.scheduleTask(in: .seconds(30)) { answer.fail(TestFailure("no answer to the extended CONNECT")) }
        stream.closeFuture.whenComplete { _ in answer.fail(TestFailure("the stream closed before its answer")) }
        let response = try await answer.futureResult.get()
        timeout.cancel()
        let status = response.first(name: ":status").flatMap { Int($0) } ?? 0
        guard status == 200 else { return (status, response, nil) }
        let client = WebSocketTestClient(
            channel: stream, subprotocol: response.first(name: "sec-websocket-protocol"), extensions: response.first(name: "sec-websocket-extensions"),
            inbox: inbox)
        return (status, response, client)
    }

    /// Takes the answer to an extended CONNECT (its HEADERS) off the stream; DATA goes on.
    private final class ConnectAnswer: ChannelInboundHandler {
        typealias InboundIn = HTTP2Frame.FramePayload
        let answer: EventLoopPromise<HPACKHeaders>
        private var answered = false

        init(answer: EventLoopPromise<HPACKHeaders>) { self.answer = answer }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            if !self.answered, case .headers(let headers) = self.unwrapInboundIn(data) {
                self.answered = true
                self.answer.succeed(headers.headers)
                return
            }
            context.fireChannelRead(data)
        }
    }

    private final class Collector: ChannelInboundHandler {
        typealias InboundIn = WebSocketFrame
        let inbox: Inbox
        let answersPings: Bool

        init(inbox: Inbox, answersPings: Bool) {
            self.inbox = inbox
            self.answersPings = answersPings
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let frame = self.unwrapInboundIn(data)
            switch frame.opcode {
            case .text where frame.rsv1:
                let inflated = try? PerMessageDeflateCodec().decompress(frame.unmaskedData, maxSize: 1 << 22)
                self.inbox.append(.compressedText(inflated.map { String(buffer: $0) } ?? "<undecodable>"))
            case .text:
                self.inbox.append(.text(String(buffer: frame.unmaskedData)))
            case .binary:
                self.inbox.append(.binary)
            case .connectionClose:
                var data = frame.unmaskedData
                self.inbox.append(.close(code: data.readWebSocketErrorCode().map { Self.code($0) }))
            case .ping:
                self.inbox.append(.ping)
                guard self.answersPings else { return }
                let pong = WebSocketFrame(fin: true, opcode: .pong, maskKey: .random(), data: frame.unmaskedData)
                context.writeAndFlush(NIOAny(pong), promise: nil)
            default:
                break
            }
        }

        func channelInactive(context: ChannelHandlerContext) {
            self.inbox.append(.disconnected)
        }

        static func code(_ code: WebSocketErrorCode) -> Int {
            var buffer = ByteBuffer()
            buffer.write(webSocketErrorCode: code)
            return Int(buffer.readInteger(as: UInt16.self) ?? 0)
        }
    }
}
