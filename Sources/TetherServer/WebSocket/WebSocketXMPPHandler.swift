import DequeModule
import Logging
import NIOCore
import NIOPosix
import NIOWebSocket
import WebSocketCore
import XMPPCore
import Synchronization
import XMPPUpstream

/// One XMPP-over-WebSocket session on an upgraded connection. The upstream stream runs on the
/// same event loop, so nothing here needs a lock or a hop.
final class WebSocketXMPPHandler: ChannelInboundHandler, UpstreamStreamDelegate {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private var machine: WebSocketSessionStateMachine
    private let xmlLimits: XMLStreamFramer.Limits
    private let connector: UpstreamConnector
    private let settings: WebSocketSettings
    private var logger: Logger
    private let registry: WebSocketRegistry
    private var upstream: UpstreamConnection?
    private var slowClientTimer: Scheduled<Void>?
    private let stateCell = SessionStateCell()
    private var context: ChannelHandlerContext?
    private var closeTimer: Scheduled<Void>?
    private var pingTimer: Scheduled<Void>?
    /// Ends a session whose client has not sent `<open/>` within `openTimeout`.
    private var openTimer: Scheduled<Void>?
    private let openTimeout: TimeAmount
    private var awaitingPong = false
    /// Messages written to the client whose write has not completed, oldest first (writes
    /// complete in order). When the connection is lost they never reached the client: without
    /// XEP-0198 they are bounced to their senders (`WebSocketSessionStateMachine.connectionLost`).
    private var unwritten = Deque<ByteBuffer>()
    /// Messages whose write failed while the connection stayed up: never delivered either.
    private var failedWrites: [ByteBuffer] = []
    /// Why the connection went, for the bounce metric.
    private var lostReason = "connection-lost"
    private var closeFrameSent = false
    private var peerSentClose = false
    /// The connection is failed (RFC 6455 §7.1.7): close TCP once our close frame is written.
    private var closeAfterCloseFrame = false
    /// permessage-deflate was negotiated for this connection.
    private let compressed: Bool
    private let frameRules: WebSocketFrameRules
    /// A fragmented message being reassembled: its opcode, whether it is compressed, its bytes
    /// and frames so far.
    private var fragments: (opcode: WebSocketOpcode, compressed: Bool, data: ByteBuffer, count: Int)?
    /// Most frames one message may come in (RFC 6455 §5.4 sets no limit; browsers send a message
    /// in one frame). Beyond it, `policy-violation`: per-frame work stays bounded per message.
    static let maxFragments = 1024
    private let maxMessageBytes: Int
    private var registryID: ObjectIdentifier { ObjectIdentifier(self) }

    private let client: ClientOrigin
    private let limiter: SessionLimiter
    private let status: ServerStatus
    private let metrics: TetherMetrics
    /// How the session ended, for metrics: a stream error condition, or `normal`.
    private var endCondition = "normal"
    private let redirectURI: String?
    private var admitted = false

    init(
        configuration: TetherConfiguration,
        client: ClientOrigin,
        compressed: Bool,
        connector: UpstreamConnector,
        registry: WebSocketRegistry,
        limiter: SessionLimiter,
        status: ServerStatus,
        metrics: TetherMetrics,
        logger: Logger
    ) {
        self.metrics = metrics
        self.client = client
        self.limiter = limiter
        self.status = status
        self.redirectURI = configuration.redirectURI
        // The time an HTTP request gets to arrive is the time a WebSocket gets to say what it wants.
        self.openTimeout = configuration.httpRequestTimeout
        self.compressed = compressed
        self.frameRules = WebSocketFrameRules(compressionNegotiated: compressed)
        self.maxMessageBytes = configuration.xmlLimits.maxElementBytes
        self.machine = WebSocketSessionStateMachine(serves: configuration.serves(domain:))
        self.xmlLimits = configuration.xmlLimits
        self.connector = connector
        self.settings = configuration.webSocket
        self.registry = registry
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.logger[metadataKey: "transport"] = "websocket"
        self.logger[metadataKey: "client"] = "\(self.client.description)"
        self.registry.add(self, id: self.registryID, state: self.stateCell, eventLoop: context.eventLoop)
        self.schedulePing(context: context)
        // The upgrade has already replaced the HTTP handlers by WebSocket ones (NIO adds this
        // handler last), so a refusal is told at once, and the closing handshake's timeout closes
        // the connection: a refused client cannot keep connections open by never writing.
        if self.status.isDraining {
            self.run(self.machine.shutdown(redirect: self.redirectURI))
        } else if let refusal = self.limiter.admit(self.client.description) {
            self.logger.notice("limit reached", metadata: ["limit": "\(refusal.rawValue)"])
            self.metrics.limitHit(refusal.rawValue)
            self.endCondition = "policy-violation"
            self.run(self.machine.violation(.policyViolation))
        } else {
            self.admitted = true
            self.metrics.sessionCreated(.websocket)
            self.logger.info("websocket session opened")
            self.openTimer = context.eventLoop.assumeIsolated().scheduleTask(in: self.openTimeout) { [weak self] in
                guard let self else { return }
                let actions = self.machine.openTimeoutFired()
                if !actions.isEmpty {
                    self.logger.info("no <open/> in time")
                    self.endCondition = "connection-timeout"
                }
                self.run(actions)
            }
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = self.unwrapInboundIn(data)
        let kind = Self.kind(of: frame.opcode)
        guard self.frameRules.allows(kind: kind, masked: frame.maskKey != nil, rsv1: frame.rsv1, rsv2: frame.rsv2, rsv3: frame.rsv3) else {
            self.logger.info("client broke the frame rules", metadata: ["opcode": "\(frame.opcode)", "masked": "\(frame.maskKey != nil)"])
            self.endCondition = "protocol-error"
            self.fragments = nil
            // §7.1.7: a failed connection is closed once the close frame is out, not after a handshake.
            self.closeAfterCloseFrame = true
            self.run(self.machine.frameRulesBroken())
            return
        }
        // What the session can still use: nothing once closed, only framing elements while not
        // open (see `largestUsefulMessage`), so a broken session does not inflate every frame.
        let messageLimit = self.machine.largestUsefulMessage(within: self.maxMessageBytes)
        if !frame.opcode.isControlOpcode && messageLimit == 0 {
            self.fragments = nil
            return
        }
        switch frame.opcode {
        case .text, .binary:
            guard self.fragments == nil else {
                // A new data frame inside a fragmented message (RFC 6455 §5.4).
                self.run(self.machine.violation(.notWellFormed))
                return
            }
            if frame.fin {
                self.message(opcode: frame.opcode, compressed: frame.rsv1, data: frame.unmaskedData, limit: messageLimit)
            } else {
                self.fragments = (frame.opcode, frame.rsv1, frame.unmaskedData, 1)
            }
        case .continuation:
            guard var fragments = self.fragments else {
                self.run(self.machine.violation(.notWellFormed))
                return
            }
            // Release the stored copy first: `fragments.data` then grows in place instead of
            // being copied for every frame (which made many small fragments quadratic).
            self.fragments = nil
            var data = frame.unmaskedData
            fragments.count += 1
            // The uncompressed bytes are bounded here; what they inflate to, in `message`.
            guard fragments.data.readableBytes + data.readableBytes <= messageLimit, fragments.count <= Self.maxFragments else {
                self.run(self.machine.violation(.policyViolation))
                return
            }
            fragments.data.writeBuffer(&data)
            if frame.fin {
                self.message(opcode: fragments.opcode, compressed: fragments.compressed, data: fragments.data, limit: messageLimit)
            } else {
                self.fragments = fragments
            }
        case .connectionClose:
            self.peerSentClose = true
            // A browser that closes (a tab going away) reads nothing after its close frame.
            self.run(self.machine.webSocketCloseReceived(unwritten: self.takeUndelivered()))
        case .ping:
            // RFC 6455 §5.5.3 lets a pong answer only the latest ping: a client that floods pings
            // without reading the pongs gets none while its queue is full, not unbounded memory.
            guard context.channel.isWritable else { return }
            let pong = WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)
            context.writeAndFlush(self.wrapOutboundOut(pong), promise: nil)
        case .pong:
            self.awaitingPong = false
        default:
            // Reserved opcodes never get here: the frame rules above failed the connection.
            break
        }
    }

    /// Everything sent to the client that it did not get: failed writes, then pending ones.
    private func takeUndelivered() -> [ByteBuffer] {
        defer {
            self.failedWrites.removeAll()
            self.unwritten.removeAll()
        }
        return self.failedWrites + Array(self.unwritten)
    }

    static func kind(of opcode: WebSocketOpcode) -> WebSocketFrameRules.FrameKind {
        switch opcode {
        case .text, .binary: return .messageStart
        case .continuation: return .continuation
        case .connectionClose, .ping, .pong: return .control
        default: return .reserved
        }
    }

    /// One complete client message (RFC 7395 §3.3.3: one element per message), read only up to
    /// `limit` bytes (inflated).
    private func message(opcode: WebSocketOpcode, compressed: Bool, data: ByteBuffer, limit: Int) {
        guard opcode == .text else {
            self.run(self.machine.binaryReceived())
            return
        }
        do {
            var data = data
            if compressed {
                guard self.compressed else { throw StreamErrorCondition.notWellFormed }
                data = try Self.codec.decompress(data, maxSize: limit)
            } else if data.readableBytes > limit {
                throw StreamErrorCondition.policyViolation
            }
            let message = try Self.parser(limits: self.xmlLimits).parse(data)
            self.run(self.machine.received(message))
        } catch {
            self.logger.info("client broke the framing rules", metadata: ["condition": "\(error)"])
            let condition = error as? StreamErrorCondition ?? .notWellFormed
            self.endCondition = condition.rawValue
            self.run(self.machine.violation(condition))
        }
    }

    /// One zlib state per event-loop thread: with no context takeover, messages do not share history.
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

    private static let codecs = ThreadSpecificVariable<PerMessageDeflateCodec>()
    private static var codec: PerMessageDeflateCodec {
        if let codec = Self.codecs.currentValue { return codec }
        let codec = try! PerMessageDeflateCodec()
        Self.codecs.currentValue = codec
        return codec
    }

    /// Unwritable: more than `maxQueuedBytes` wait for the client. The server's side is not read
    /// meanwhile (it keeps its stanzas), and a client that has not caught up within
    /// `slowReaderTimeout` is cut off.
    func channelWritabilityChanged(context: ChannelHandlerContext) {
        let writable = context.channel.isWritable
        self.upstream?.channel.setOption(ChannelOptions.autoRead, value: writable).whenComplete { _ in }
        if writable {
            self.slowClientTimer?.cancel()
            self.slowClientTimer = nil
        } else if self.slowClientTimer == nil {
            self.slowClientTimer = context.eventLoop.assumeIsolated().scheduleTask(in: self.settings.slowReaderTimeout) { [weak self] in
                guard let self, let context = self.context, !context.channel.isWritable, self.endCondition == "normal" else { return }
                self.logger.notice("limit reached", metadata: ["limit": "max-queued-bytes-to-client"])
                self.metrics.limitHit("max-queued-bytes-to-client")
                self.endCondition = "policy-violation"
                // It is not reading: a stream error or a closing handshake would wait behind what
                // it does not read. Cut it; what was queued for it is bounced (channelInactive).
                self.lostReason = "slow-reader"
                context.close(promise: nil)
            }
        }
        context.fireChannelWritabilityChanged()
    }

    /// The server fell behind: stop reading the client until it catches up.
    func upstreamWritabilityChanged(_ isWritable: Bool) {
        self.context?.channel.setOption(ChannelOptions.autoRead, value: isWritable).whenComplete { _ in }
    }

    func channelInactive(context: ChannelHandlerContext) {
        // Writes still pending when the socket closed have failed by now; what is left is
        // everything that never reached the client.
        let unwritten = self.takeUndelivered()
        self.run(self.machine.connectionLost(unwritten: unwritten, reason: self.lostReason))
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
        // Oversized or malformed frames (the aggregator and decoder report them here).
        self.logger.info("websocket error", metadata: ["error": "\(error)"])
        self.run(self.machine.violation(.policyViolation))
    }

    /// Errors of the connection rather than of what the client sent.
    static func isConnectionFailure(_ error: any Error) -> Bool {
        error is IOError || error is ChannelError
    }

    /// Shutdown or draining.
    func shutdown(redirect: String?) {
        self.endCondition = redirect == nil ? "system-shutdown" : "see-other-uri"
        self.run(self.machine.shutdown(redirect: redirect))
    }

    private func schedulePing(context: ChannelHandlerContext) {
        self.pingTimer = context.eventLoop.assumeIsolated().scheduleTask(in: self.settings.pingInterval) { [weak self] in
            self?.ping()
        }
    }

    private func ping() {
        guard let context = self.context else { return }
        self.schedulePing(context: context)
        if self.awaitingPong {
            self.logger.info("peer stopped answering pings")
            self.lostReason = "ping-timeout"
            context.close(promise: nil)
            return
        }
        self.awaitingPong = true
        context.writeAndFlush(self.wrapOutboundOut(WebSocketFrame(fin: true, opcode: .ping, data: ByteBuffer())), promise: nil)
    }

    private func finish() {
        self.pingTimer?.cancel()
        self.openTimer?.cancel()
        self.closeTimer?.cancel()
        self.registry.remove(self.registryID)
        if self.admitted {
            self.admitted = false
            self.limiter.release(self.client.description)
            self.metrics.terminated(.websocket, condition: self.endCondition)
        }
    }

    // MARK: UpstreamStreamDelegate

    func upstreamOpened(_ info: StreamInfo, secure: Bool) {
        self.openTimer?.cancel()
        self.stateCell.set(.open)
        self.run(self.machine.upstreamOpened(info))
    }

    func upstreamTLSEstablished(after duration: Duration) {
        self.metrics.upstreamTLSEstablished(after: duration)
    }

    func upstreamReceived(_ elements: [ByteBuffer], streamElements: Bool) {
        self.metrics.relayed(.toClient, count: elements.count, bytes: elements.reduce(0) { $0 + $1.readableBytes })
        self.run(self.machine.upstreamReceived(elements))
    }

    func upstreamStreamError(_ error: ByteBuffer) {
        self.endCondition = "remote-stream-error"
        self.upstream = nil
        self.run(self.machine.upstreamStreamError(error))
    }

    func upstreamClosed(_ error: UpstreamError?) {
        self.upstream = nil
        if case .serverNotReading = error {
            self.logger.notice("limit reached", metadata: ["limit": "max-queued-bytes-to-server"])
            self.metrics.limitHit("max-queued-bytes-to-server")
            self.endCondition = "policy-violation"
            self.run(self.machine.violation(.policyViolation))
        } else if let error {
            self.logger.info("upstream closed", metadata: ["error": "\(error)"])
            self.endCondition = error.isResolutionFailure ? "host-unknown" : "remote-connection-failed"
            self.run(self.machine.upstreamEnded(.failed(unreachable: error.isResolutionFailure)))
        } else {
            self.run(self.machine.upstreamEnded(.closed))
        }
    }

    // MARK: Actions

    private func run(_ actions: [WebSocketSessionStateMachine.Action]) {
        defer {
            if self.machine.isClosing { self.stateCell.set(.closing) }
        }
        guard let context = self.context else { return }
        var wrote = false
        for action in actions {
            switch action {
            case .connectUpstream(let header):
                self.connect(header, context: context)
            case .restartUpstream:
                self.upstream?.restart()
            case .forwardUpstream(let bytes):
                self.metrics.relayed(.toServer, count: 1, bytes: bytes.readableBytes)
                self.upstream?.send([bytes])
            case .send(let bytes):
                let frame: WebSocketFrame
                if self.compressed, bytes.readableBytes >= self.settings.compressionThreshold, let deflated = try? Self.codec.compress(bytes) {
                    frame = WebSocketFrame(fin: true, rsv1: true, opcode: .text, data: deflated)
                } else {
                    frame = WebSocketFrame(fin: true, opcode: .text, data: bytes)
                }
                self.unwritten.append(bytes)
                context.write(self.wrapOutboundOut(frame)).assumeIsolated().whenComplete { [weak self] result in
                    guard let self, let bytes = self.unwritten.popFirst() else { return }
                    if case .failure = result { self.failedWrites.append(bytes) }
                }
                wrote = true
            case .stanzasBounced(let count, let reason):
                // Counts only: what the stanzas said stays out of the log.
                self.logger.notice("undelivered stanzas bounced", metadata: ["count": "\(count)", "reason": "\(reason)"])
                self.metrics.bounced(.websocket, count: count, reason: reason)
            case .closeUpstream(let graceful):
                self.upstream?.close(graceful: graceful, bounced: self.metrics.reportingInFlightBounces(.websocket, logger: self.logger))
                self.upstream = nil
            case .closeWebSocket(let code):
                guard !self.closeFrameSent else { continue }
                self.closeFrameSent = true
                var data = context.channel.allocator.buffer(capacity: 2)
                data.write(webSocketErrorCode: WebSocketErrorCode(codeNumber: Int(code)))
                let frame = WebSocketFrame(fin: true, opcode: .connectionClose, data: data)
                let written = context.writeAndFlush(self.wrapOutboundOut(frame))
                wrote = false
                if self.peerSentClose || self.closeAfterCloseFrame {
                    written.whenComplete { _ in context.close(promise: nil) }
                } else {
                    self.startCloseTimer(context: context)
                }
            case .startCloseTimer:
                self.startCloseTimer(context: context)
            case .dropConnection:
                context.close(promise: nil)
            }
        }
        if wrote { context.flush() }
    }

    private func startCloseTimer(context: ChannelHandlerContext) {
        self.closeTimer?.cancel()
        self.closeTimer = context.eventLoop.assumeIsolated().scheduleTask(in: self.settings.closeTimeout) { [weak self] in
            guard let self else { return }
            self.run(self.machine.closeTimeoutFired())
        }
    }

    private func connect(_ header: StreamHeader, context: ChannelHandlerContext) {
        self.logger[metadataKey: "to"] = "\(header.to)"
        let proxyHeader = self.client.destination.map { ProxyProtocolHeader(source: self.client.address, destination: $0) }
        let started = ContinuousClock.now
        self.connector.connect(header: header, client: proxyHeader, on: context.eventLoop, delegate: self, logger: self.logger).assumeIsolated().whenComplete { result in
            switch result {
            case .success(let connection):
                self.metrics.upstreamConnected(after: ContinuousClock.now - started)
                if self.machine.isClosed {
                    connection.close(graceful: true, bounced: self.metrics.reportingInFlightBounces(.websocket, logger: self.logger))
                } else {
                    self.upstream = connection
                }
            case .failure(let error):
                self.logger.warning("upstream unavailable", metadata: ["error": "\(error)"])
                self.run(self.machine.upstreamEnded(.failed(unreachable: (error as? UpstreamError)?.isResolutionFailure == true)))
            }
        }
    }
}

/// Live WebSocket sessions, for shutdown and counting.
final class WebSocketRegistry: Sendable {
    private let sessions = Mutex<[ObjectIdentifier: (handler: NIOLoopBound<WebSocketXMPPHandler>, state: SessionStateCell)]>([:])

    var count: Int { self.sessions.withLock { $0.count } }

    /// Every live session's state, for the metrics scrape.
    var sessionStates: [SessionState] { self.sessions.withLock { $0.values.map(\.state.state) } }

    func add(_ handler: WebSocketXMPPHandler, id: ObjectIdentifier, state: SessionStateCell, eventLoop: any EventLoop) {
        let bound = NIOLoopBound(handler, eventLoop: eventLoop)
        self.sessions.withLock { $0[id] = (bound, state) }
    }

    func remove(_ id: ObjectIdentifier) {
        _ = self.sessions.withLock { $0.removeValue(forKey: id) }
    }

    func shutdown(redirect: String?) async {
        let sessions = self.sessions.withLock { $0.values.map(\.handler) }
        for session in sessions {
            try? await session.eventLoop.submit { session.value.shutdown(redirect: redirect) }.get()
        }
    }
}
