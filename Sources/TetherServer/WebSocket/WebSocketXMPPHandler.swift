import DequeModule
import Logging
import NIOCore
import NIOPosix
import NIOWebSocket
import Synchronization
import WebSocketCore
import XMPPCore
import XMPPUpstream

/// One XMPP-over-WebSocket session on an upgraded connection: performs what
/// `WebSocketSessionStateMachine` decides and tells it what happened. The upstream stream runs
/// on the same event loop, so nothing here needs a lock or a hop.
final class WebSocketXMPPHandler: ChannelInboundHandler, UpstreamStreamDelegate {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private var machine: WebSocketSessionStateMachine
    private let xmlLimits: XMLStreamFramer.Limits
    private let upstreamLinks: UpstreamLinks
    private let connector: UpstreamConnector
    private let compressionThreshold: Int
    private var logger: Logger
    private let registry: WebSocketRegistry
    private let gate: SessionGate
    private var upstream: UpstreamConnection?
    private let stateCell = SessionStateCell()
    private var context: ChannelHandlerContext?
    private var timers: [WebSocketSessionStateMachine.Timer: (generation: UInt64, scheduled: Scheduled<Void>)] = [:]
    /// Messages written to the client whose write has not completed, oldest first (writes
    /// complete in order). When the connection is lost they never reached the client: without
    /// XEP-0198 they are bounced to their senders (`WebSocketSessionStateMachine.connectionLost`).
    private var unwritten = Deque<ByteBuffer>()
    /// Messages whose write failed while the connection stayed up: never delivered either.
    private var failedWrites: [ByteBuffer] = []
    /// permessage-deflate was negotiated for this connection.
    private let compressed: Bool
    private var registryID: ObjectIdentifier { ObjectIdentifier(self) }

    private let client: ClientOrigin
    private let metrics: TetherMetrics
    private let redirectURI: String?
    private var admitted = false

    init(
        configuration: TetherConfiguration,
        client: ClientOrigin,
        compressed: Bool,
        upstream: UpstreamLinks,
        registry: WebSocketRegistry,
        gate: SessionGate,
        metrics: TetherMetrics,
        logger: Logger
    ) {
        self.metrics = metrics
        self.client = client
        self.gate = gate
        self.redirectURI = configuration.redirectURI
        self.compressed = compressed
        let settings = configuration.webSocket
        self.compressionThreshold = settings.compressionThreshold
        self.machine = WebSocketSessionStateMachine(
            configuration: .init(
                pingInterval: settings.pingInterval,
                closeTimeout: settings.closeTimeout,
                // The time an HTTP request gets to arrive is the time a WebSocket gets to say what it wants.
                openTimeout: configuration.httpRequestTimeout,
                slowReaderTimeout: settings.slowReaderTimeout,
                maxMessageBytes: configuration.xmlLimits.maxElementBytes,
                compressionNegotiated: compressed
            ),
            serves: configuration.servedDomains.contains
        )
        self.xmlLimits = configuration.xmlLimits
        self.upstreamLinks = upstream
        self.connector = upstream.connector(configuration.upstream)
        self.registry = registry
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.logger[metadataKey: "transport"] = "websocket"
        self.logger[metadataKey: "client"] = "\(self.client.description)"
        self.registry.add(WebSocketSessionHandle(handler: NIOLoopBound(self, eventLoop: context.eventLoop), stateCell: self.stateCell), for: self.registryID)
        // The upgrade has already replaced the HTTP handlers by WebSocket ones (NIO adds this
        // handler last), so a refusal is told at once, and the closing handshake's timeout closes
        // the connection: a refused client cannot keep connections open by never writing.
        let admission = self.gate.admit(self.client, transport: .websocket, redirect: self.redirectURI)
        if admission == .admitted {
            self.admitted = true
            self.logger.info("websocket session opened")
        }
        self.run(self.machine.start(admission))
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = self.unwrapInboundIn(data)
        let inbound = WebSocketInboundFrame(
            fin: frame.fin, opcode: .init(rawValue: UInt8(webSocketOpcode: frame.opcode)), rsv1: frame.rsv1, rsv2: frame.rsv2, rsv3: frame.rsv3,
            masked: frame.maskKey != nil, payload: frame.unmaskedData
        )
        let limits = self.xmlLimits
        self.run(
            self.machine.frameReceived(inbound, undelivered: self.takeUndelivered) { payload, compressed, limit in
                var payload = payload
                if compressed { payload = try Self.codec.decompress(payload, maxSize: limit) }
                return try Self.parser(limits: limits).parse(payload)
            }
        )
    }

    /// Everything sent to the client that it did not get: failed writes, then pending ones.
    private func takeUndelivered() -> [ByteBuffer] {
        defer {
            self.failedWrites.removeAll()
            self.unwritten.removeAll()
        }
        return self.failedWrites + Array(self.unwritten)
    }

    /// Client messages are whole elements, parsed synchronously: one parser per event-loop
    /// thread serves every session on it (an expat parser is ~10 KiB; per session it would be
    /// the largest part of an idle WebSocket session's memory).
    private static let parsers = ThreadSpecificVariable<ParserCache>()

    /// Touched only by the thread it belongs to.
    private final class ParserCache: @unchecked Sendable {
        var parsers: [XMLStreamFramer.Limits: WebSocketMessageParser] = [:]
    }

    private static func parser(limits: XMLStreamFramer.Limits) -> WebSocketMessageParser {
        let cache: ParserCache
        if let existing = Self.parsers.currentValue {
            cache = existing
        } else {
            cache = ParserCache()
            Self.parsers.currentValue = cache
        }
        if let parser = cache.parsers[limits] { return parser }
        let parser = WebSocketMessageParser(limits: limits)
        cache.parsers[limits] = parser
        return parser
    }

    /// One zlib state per event-loop thread: with no context takeover, messages do not share history.
    private static let codecs = ThreadSpecificVariable<PerMessageDeflateCodec>()
    private static var codec: PerMessageDeflateCodec {
        if let codec = Self.codecs.currentValue { return codec }
        let codec = try! PerMessageDeflateCodec()
        Self.codecs.currentValue = codec
        return codec
    }

    /// Unwritable: more than `maxQueuedBytes` wait for the client. The server's side is not read
    /// meanwhile (it keeps its stanzas); the machine decides when a client that does not catch
    /// up is cut.
    func channelWritabilityChanged(context: ChannelHandlerContext) {
        let writable = context.channel.isWritable
        self.upstream?.channel.setOption(ChannelOptions.autoRead, value: writable).whenComplete { _ in }
        self.run(self.machine.writabilityChanged(isWritable: writable))
        context.fireChannelWritabilityChanged()
    }

    /// The server fell behind: stop reading the client until it catches up.
    func upstreamWritabilityChanged(_ isWritable: Bool) {
        self.context?.channel.setOption(ChannelOptions.autoRead, value: isWritable).whenComplete { _ in }
    }

    func channelInactive(context: ChannelHandlerContext) {
        // Writes still pending when the socket closed have failed by now; what is left is
        // everything that never reached the client.
        self.run(self.machine.connectionLost(unwritten: self.takeUndelivered()))
        self.finish()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if Self.isConnectionFailure(error) {
            // The socket itself failed (reset, broken pipe): a lost connection, handled by
            // channelInactive, not a client breaking the rules. Regression: a reset closed the
            // upstream stream as a policy violation, which ended XEP-0198 sessions for good
            // and left the unwritten stanzas unbounced.
            self.logger.debug("websocket connection failed", metadata: ["error": "\(error)"])
            context.close(promise: nil)
            return
        }
        if case ByteToMessageDecoderError.dataReceivedInErrorState = error {
            // The decoder failed before and reports every later read: already answered.
            return
        }
        // Oversized or malformed frames. The decoder decodes nothing after its first error:
        // stop reading, so a client that keeps sending costs nothing until the close timer.
        self.logger.info("websocket error", metadata: ["error": "\(error)"])
        context.channel.setOption(ChannelOptions.autoRead, value: false).whenComplete { _ in }
        self.run(self.machine.decoderFailed(Self.decoderFailure(error)))
    }

    /// RFC 6455 §7.4.1: a frame over the size limit is 1009, any other framing error 1002.
    static func decoderFailure(_ error: any Error) -> WebSocketSessionStateMachine.DecoderFailure {
        if let error = error as? NIOWebSocketError, error == .invalidFrameLength { return .frameTooLarge }
        return .malformedFrame
    }

    /// Errors of the connection rather than of what the client sent.
    static func isConnectionFailure(_ error: any Error) -> Bool {
        error is IOError || error is ChannelError
    }

    /// Shutdown or draining.
    func shutdown(redirect: String?) {
        self.run(self.machine.shutdown(redirect: redirect))
    }

    private func finish() {
        for timer in self.timers.values { timer.scheduled.cancel() }
        self.timers.removeAll()
        self.registry.remove(self.registryID)
        guard self.admitted else { return }
        self.admitted = false
        self.gate.release(self.client)
        let condition = self.machine.end?.label ?? "normal"
        self.metrics.terminated(.websocket, condition: condition)
        self.logger.info("websocket session closed", metadata: ["condition": "\(condition)", "connection": "\(self.machine.lostReason)"])
    }

    // MARK: UpstreamStreamDelegate

    func upstreamOpened(_ info: StreamInfo, secure: Bool) {
        self.stateCell.set(.open)
        self.run(self.machine.upstreamOpened(info))
    }

    func upstreamReceived(_ elements: [ByteBuffer], streamElements: Bool, streamManagement: Bool) {
        self.metrics.relayed(.toClient, count: elements.count, bytes: elements.reduce(0) { $0 + $1.readableBytes })
        self.run(self.machine.upstreamReceived(elements, streamManagement: streamManagement))
    }

    func upstreamStreamError(_ error: ByteBuffer) {
        self.upstream = nil
        self.run(self.machine.upstreamStreamError(error))
    }

    func upstreamClosed(_ error: UpstreamError?) {
        self.upstream = nil
        if let error { self.logger.info("upstream closed", metadata: ["error": "\(error)"]) }
        self.run(self.machine.upstreamEnded(UpstreamEnding(error)))
    }

    // MARK: Actions

    /// Performs the machine's actions. Those on the upstream connection and the counters do not
    /// need the client's connection: once this handler is removed (the client gone), an upstream
    /// connection that completes late is still closed (regression: it was kept open for good).
    private func run(_ actions: [WebSocketSessionStateMachine.Action]) {
        defer {
            if self.machine.isClosing { self.stateCell.set(.closing) }
        }
        var wrote = false
        for action in actions {
            switch action {
            case .restartUpstream:
                self.upstream?.restart()
            case .forwardUpstream(let bytes):
                self.metrics.relayed(.toServer, count: 1, bytes: bytes.readableBytes)
                self.upstream?.send([bytes])
            case .closeUpstream(let graceful):
                self.upstream?.close(graceful: graceful, bounced: self.metrics.reportingInFlightBounces(.websocket, logger: self.logger))
                self.upstream = nil
            case .cancelTimer(let timer):
                self.timers.removeValue(forKey: timer)?.scheduled.cancel()
            case .stanzasBounced(let count, let reason):
                // Counts only: what the stanzas said stays out of the log.
                self.logger.notice("undelivered stanzas bounced", metadata: ["count": "\(count)", "reason": "\(reason)"])
                self.metrics.bounced(.websocket, count: count, reason: reason)
            case .limitReached(let limit):
                self.logger.notice("limit reached", metadata: ["limit": "\(limit)"])
                self.metrics.limitHit(limit)
            case .connectUpstream, .sendText, .sendPing, .sendPong, .sendClose, .closeConnection, .scheduleTimer:
                guard let context = self.context else { continue }
                wrote = self.perform(action, context: context) || wrote
            }
        }
        if wrote { self.context?.flush() }
    }

    /// An action on the client's connection; `true` when it wrote something not yet flushed.
    private func perform(_ action: WebSocketSessionStateMachine.Action, context: ChannelHandlerContext) -> Bool {
        switch action {
        case .connectUpstream(let header):
            self.connect(header, context: context)
        case .sendText(let bytes):
            self.sendText(bytes, context: context)
            return true
        case .sendPing(let payload):
            context.write(self.wrapOutboundOut(WebSocketFrame(fin: true, opcode: .ping, data: payload)), promise: nil)
            return true
        case .sendPong(let payload):
            context.write(self.wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: payload)), promise: nil)
            return true
        case .sendClose(let code, let thenClose):
            var data = context.channel.allocator.buffer(capacity: 2)
            data.write(webSocketErrorCode: WebSocketErrorCode(codeNumber: Int(code)))
            // Flushes what was written before it too.
            let written = context.writeAndFlush(self.wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: data)))
            if thenClose {
                written.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
            }
        case .closeConnection:
            context.close(promise: nil)
        case .scheduleTimer(let timer, let delay):
            self.timers[timer.kind]?.scheduled.cancel()
            let scheduled = context.eventLoop.assumeIsolated().scheduleTask(in: delay) { [weak self] in
                guard let self else { return }
                // A newer scheduling of the same kind stays in place.
                if self.timers[timer.kind]?.generation == timer.generation { self.timers[timer.kind] = nil }
                self.run(self.machine.timerFired(timer))
            }
            self.timers[timer.kind] = (timer.generation, scheduled)
        case .restartUpstream, .forwardUpstream, .closeUpstream, .cancelTimer, .stanzasBounced, .limitReached:
            preconditionFailure("performed by run(_:)")
        }
        return false
    }

    /// One text message, compressed when negotiated and long enough, remembered until written.
    private func sendText(_ bytes: ByteBuffer, context: ChannelHandlerContext) {
        let frame: WebSocketFrame
        if self.compressed, bytes.readableBytes >= self.compressionThreshold, let deflated = try? Self.codec.compress(bytes) {
            frame = WebSocketFrame(fin: true, rsv1: true, opcode: .text, data: deflated)
        } else {
            frame = WebSocketFrame(fin: true, opcode: .text, data: bytes)
        }
        self.unwritten.append(bytes)
        context.write(self.wrapOutboundOut(frame)).assumeIsolated().whenComplete { [weak self] result in
            guard let self, let bytes = self.unwritten.popFirst() else { return }
            if case .failure = result { self.failedWrites.append(bytes) }
        }
    }

    private func connect(_ header: StreamHeader, context: ChannelHandlerContext) {
        self.logger[metadataKey: "to"] = "\(header.to)"
        let proxyHeader = self.client.destination.map { ProxyProtocolHeader(source: self.client.address, destination: $0) }
        self.upstreamLinks.open(self.connector, header: header, client: proxyHeader, on: context.eventLoop, delegate: self, logger: self.logger).assumeIsolated().whenComplete {
            result in
            switch result {
            case .success(let connection):
                self.upstream = connection
                self.run(self.machine.upstreamConnected())
            case .failure(let error):
                self.run(self.machine.upstreamEnded(UpstreamEnding(connectFailure: error)))
            }
        }
    }
}

/// Live WebSocket sessions, for shutdown and counting, by handler.
typealias WebSocketRegistry = SessionRegistry<ObjectIdentifier, WebSocketSessionHandle>

/// A WebSocket session in the registry: its handler, touched only on its event loop.
struct WebSocketSessionHandle: RegisteredSession {
    let handler: NIOLoopBound<WebSocketXMPPHandler>
    let stateCell: SessionStateCell

    var eventLoop: any EventLoop { self.handler.eventLoop }

    func shutdown(redirect: String?) {
        self.handler.value.shutdown(redirect: redirect)
    }
}
