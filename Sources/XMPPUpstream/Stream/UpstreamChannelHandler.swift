import Logging
import NIOCore
import NIOSSL
import NIOTLS
import XMPPCore

/// What an upstream stream tells its session. Called on the upstream channel's event loop.
public protocol UpstreamStreamDelegate: AnyObject {
    /// The server's stream is open and negotiated (after STARTTLS when used).
    func upstreamOpened(_ info: StreamInfo, secure: Bool)
    /// Self-contained elements from the server, batched per read burst; `streamElements` when
    /// one of them is a `stream:` element (features); `streamManagement`: whether XEP-0198 is on
    /// for the stream after them (`UpstreamStreamStateMachine.streamManagementEnabled`, the one
    /// judgment of it: sessions decide by it whether a dying session bounces or stays resumable).
    func upstreamReceived(_ elements: [ByteBuffer], streamElements: Bool, streamManagement: Bool)
    /// The server sent `<stream:error/>`; the connection is closing.
    func upstreamStreamError(_ error: ByteBuffer)
    /// The connection ended: `nil` after a clean `</stream:stream>`.
    func upstreamClosed(_ error: UpstreamError?)
    /// The server fell behind (`false`) or caught up again (`true`): a session that can, stops
    /// reading its client meanwhile.
    func upstreamWritabilityChanged(_ isWritable: Bool)
}

extension UpstreamStreamDelegate {
    public func upstreamWritabilityChanged(_ isWritable: Bool) {}
}

/// Runs `UpstreamStreamStateMachine` on a connection: frames bytes with expat, negotiates
/// STARTTLS and restarts, and relays elements to the delegate. On a Direct TLS connection the
/// TLS handler is already in front of it: the stream header waits for the handshake's end.
final class UpstreamChannelHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var machine: UpstreamStreamStateMachine
    private let framer: XMLStreamFramer
    private let tlsContext: NIOSSLContext?
    private let serverHostname: String
    private let addressIsLoopback: Bool
    let maxQueuedBytes: Int
    private let slowReaderTimeout: TimeAmount
    private var slowReaderTimer: Scheduled<Void>?
    private let closingStreams: ClosingStreams
    /// The machine's timers, by kind, with the generation each was scheduled with.
    private var timers: [UpstreamStreamStateMachine.Timer: (generation: UInt64, scheduled: Scheduled<Void>)] = [:]
    /// Told once how many in-flight stanzas were bounced while closing.
    private var closingReport: ((Int) -> Void)?
    private var bouncedWhileClosing = 0
    private var tlsStarted: ContinuousClock.Instant?
    /// TLS from the first byte (XEP-0368): the handshake runs before the stream header.
    private let directTLS: Bool
    private let tlsHandshakeObserver: (@Sendable (UpstreamTLSHandshake) -> Void)?
    private let logger: Logger
    private var delegate: (any UpstreamStreamDelegate)?
    private var batch: [ByteBuffer] = []
    private var batchHasStreamElements = false
    private var finished = false
    private var context: ChannelHandlerContext?

    init(
        machine: UpstreamStreamStateMachine,
        framerLimits: XMLStreamFramer.Limits,
        tlsContext: NIOSSLContext?,
        serverHostname: String,
        addressIsLoopback: Bool,
        maxQueuedBytes: Int = 1 << 20,
        slowReaderTimeout: TimeAmount = .seconds(10),
        closingStreams: ClosingStreams = ClosingStreams(),
        directTLS: Bool = false,
        tlsHandshakeObserver: (@Sendable (UpstreamTLSHandshake) -> Void)? = nil,
        logger: Logger = Logger(label: "tether.upstream"),
        delegate: any UpstreamStreamDelegate
    ) {
        self.directTLS = directTLS
        self.tlsHandshakeObserver = tlsHandshakeObserver
        self.logger = logger
        self.closingStreams = closingStreams
        self.maxQueuedBytes = maxQueuedBytes
        self.slowReaderTimeout = slowReaderTimeout
        self.machine = machine
        self.framer = XMLStreamFramer(limits: framerLimits)
        self.tlsContext = tlsContext
        self.serverHostname = serverHostname
        self.addressIsLoopback = addressIsLoopback
        self.delegate = delegate
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive {
            self.start(context: context)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        self.start(context: context)
        context.fireChannelActive()
    }

    /// Called from `handlerAdded` and `channelActive`, whichever sees the channel active: the
    /// machine starts the stream once.
    private func start(context: ChannelHandlerContext) {
        let actions = self.directTLS ? self.machine.connectedOverTLS() : self.machine.connected()
        if self.directTLS && !actions.isEmpty { self.tlsStarted = .now }
        self.run(actions, context: context)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !self.finished || self.machine.isClosing else { return }
        let bytes = self.unwrapInboundIn(data)
        let events: [XMLStreamFramer.Event]
        do {
            events = try self.framer.feed(bytes)
        } catch {
            self.run(self.machine.fail(.malformedXML(error)), context: context)
            return
        }
        for event in events where !self.finished || self.machine.isClosing {
            self.run(self.machine.receive(event, bufferedBytes: self.framer.bufferedBytes), context: context)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.flushBatch()
        // Between stanzas expat's ~10 KiB is freed; rebuilding it costs ~2 µs on the next read.
        // Most sessions are idle most of the time, so this is what an idle session weighs.
        self.framer.hibernate()
        context.fireChannelReadComplete()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? TLSUserEvent, case .handshakeCompleted(let negotiatedProtocol) = event {
            if let started = self.tlsStarted {
                self.tlsStarted = nil
                let handshake = UpstreamTLSHandshake(
                    transport: self.directTLS ? .directTLS : .startTLS,
                    duration: ContinuousClock.now - started,
                    tlsVersion: try? context.pipeline.syncOperations.handler(type: NIOSSLClientHandler.self).tlsVersion,
                    negotiatedProtocol: negotiatedProtocol
                )
                // swift-nio-ssl does not expose the negotiated cipher suite; the version and ALPN are logged.
                self.logger.debug(
                    "upstream TLS established",
                    metadata: [
                        "kind": "\(handshake.kind)", "domain": "\(self.serverHostname)",
                        "tls_version": "\(handshake.tlsVersion.map { "\($0)" } ?? "unknown")",
                        "alpn": "\(negotiatedProtocol ?? "none")", "duration": "\(handshake.duration)",
                    ]
                )
                self.tlsHandshakeObserver?(handshake)
            }
            self.run(self.machine.tlsHandshakeCompleted(), context: context)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let upstreamError: UpstreamError
        if let error = error as? NIOSSLError {
            upstreamError = .tlsHandshakeFailed(String(describing: error))
        } else if let error = error as? BoringSSLError {
            upstreamError = .tlsHandshakeFailed(String(describing: error))
        } else {
            upstreamError = .connectFailed(String(describing: error))
        }
        self.run(self.machine.fail(upstreamError), context: context)
    }

    /// Unwritable: more than `maxQueuedBytes` wait for the server. It gets `slowReaderTimeout`
    /// to catch up before the stream is cut.
    func channelWritabilityChanged(context: ChannelHandlerContext) {
        let writable = context.channel.isWritable
        if writable {
            self.slowReaderTimer?.cancel()
            self.slowReaderTimer = nil
        } else if self.slowReaderTimer == nil && !self.finished {
            self.slowReaderTimer = context.eventLoop.assumeIsolated().scheduleTask(in: self.slowReaderTimeout) { [weak self] in
                guard let self, let context = self.context, !context.channel.isWritable else { return }
                self.serverNotReading(context: context)
            }
        }
        if !self.finished { self.delegate?.upstreamWritabilityChanged(writable) }
        context.fireChannelWritabilityChanged()
    }

    /// Ends the stream because the server is not reading what is queued for it.
    func serverNotReading(context: ChannelHandlerContext) {
        guard !self.finished else { return }
        self.run(self.machine.fail(.serverNotReading(queuedBytes: self.maxQueuedBytes)), context: context)
    }

    /// Called after each write: four times the limit is cut at once, whatever the timer says.
    func checkQueue() {
        guard let context = self.context, !self.finished,
            let queued = try? context.channel.syncOptions?.getOption(.bufferedWritableBytes),
            queued > 4 * self.maxQueuedBytes
        else { return }
        self.serverNotReading(context: context)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.flushBatch()
        self.finish(error: .closedByPeer)
        self.reportClosing()
        // The connection is gone: nothing is left to wait for.
        for timer in self.timers.values { timer.scheduled.cancel() }
        self.timers.removeAll()
        context.fireChannelInactive()
    }

    // MARK: Commands from the session (on the event loop)

    func restart() {
        guard let context = self.context else { return }
        self.run(self.machine.restart(), context: context)
    }

    private func run(_ actions: [UpstreamStreamStateMachine.Action], context: ChannelHandlerContext) {
        for action in actions {
            switch action {
            case .send(let text):
                context.writeAndFlush(self.wrapOutboundOut(ByteBuffer(string: text)), promise: nil)
            case .resetFramer:
                self.framer.reset()
            case .startTLS:
                guard let tlsContext = self.tlsContext else {
                    self.run(self.machine.fail(.tlsHandshakeFailed("no TLS configuration")), context: context)
                    return
                }
                do {
                    self.tlsStarted = .now
                    let handler = try NIOSSLClientHandler(context: tlsContext, serverHostname: self.serverHostname)
                    try context.pipeline.syncOperations.addHandler(handler, position: .first)
                } catch {
                    self.run(self.machine.fail(.tlsHandshakeFailed(String(describing: error))), context: context)
                }
            case .opened(let info):
                self.delegate?.upstreamOpened(info, secure: self.machine.tlsEstablished || self.addressIsLoopback)
            case .deliver(let element):
                let isStreamElement = element.name.namespace == XMLNamespaces.streams
                self.batchHasStreamElements = self.batchHasStreamElements || isStreamElement
                self.batch.append(
                    element.standaloneBytes { $0.name.namespace == XMLNamespaces.tls && $0.name.localName == "starttls" }
                )
            case .streamError(let error):
                self.flushBatch()
                self.delegate?.upstreamStreamError(error)
                self.delegate = nil
                self.finished = true
                context.close(promise: nil)
            case .fail(let error):
                self.flushBatch()
                self.finish(error: error)
                context.close(promise: nil)
            case .closed:
                self.flushBatch()
                self.finish(error: nil)
                context.close(promise: nil)
            case .bounce(let error):
                self.bouncedWhileClosing += 1
                context.writeAndFlush(self.wrapOutboundOut(error), promise: nil)
                // A server that sends without reading would make the bounces pile up: stop.
                if let queued = try? context.channel.syncOptions?.getOption(.bufferedWritableBytes), queued > self.maxQueuedBytes {
                    self.run(self.machine.closingTimedOut(), context: context)
                    return
                }
            case .finishClosing:
                self.reportClosing()
                guard context.channel.isActive else { continue }
                // RFC 6120 §4.4: then wait for the server's closing tag (it closes the connection),
                // reading and dropping what still comes: closing over unread bytes would reset the
                // connection and could destroy the bounces before the server reads them. A server
                // that never closes is closed when the machine's linger timer fires.
                context.writeAndFlush(self.wrapOutboundOut(ByteBuffer(string: StreamHeader.closing)), promise: nil)
            case .sendPrelude(let bytes):
                context.write(self.wrapOutboundOut(bytes), promise: nil)
            case .scheduleTimer(let timer, let delay):
                self.timers[timer.kind]?.scheduled.cancel()
                let scheduled = context.eventLoop.assumeIsolated().scheduleTask(in: delay) { [weak self] in
                    guard let self, let context = self.context else { return }
                    if self.timers[timer.kind]?.generation == timer.generation { self.timers[timer.kind] = nil }
                    self.run(self.machine.timerFired(timer), context: context)
                }
                self.timers[timer.kind] = (timer.generation, scheduled)
            case .cancelTimer(let timer):
                self.timers.removeValue(forKey: timer)?.scheduled.cancel()
            case .closeConnection:
                context.close(promise: nil)
            }
        }
    }

    private func flushBatch() {
        guard !self.batch.isEmpty else { return }
        let batch = self.batch
        let streamElements = self.batchHasStreamElements
        self.batch = []
        self.batchHasStreamElements = false
        self.delegate?.upstreamReceived(batch, streamElements: streamElements, streamManagement: self.machine.streamManagementEnabled)
    }

    private func finish(error: UpstreamError?) {
        guard !self.finished else { return }
        self.finished = true
        self.slowReaderTimer?.cancel()
        let delegate = self.delegate
        self.delegate = nil
        delegate?.upstreamClosed(error)
    }

    /// Ends the stream of a client that is gone (without XEP-0198): what the server is still
    /// sending is read and bounced until it answers the closing ping, then `</stream:stream>`
    /// (`UpstreamStreamStateMachine.close(barrierID:)`). `bounced` is told how many, once.
    func beginClosing(barrierID: String, bounced: @escaping (Int) -> Void) {
        guard self.closingReport == nil, !self.machine.isClosing else { return }
        self.detach()
        guard let context = self.context, context.channel.isActive else {
            bounced(0)
            self.context?.close(promise: nil)
            return
        }
        // Past the cap of streams closing at once, close at once (bounded sockets and timers).
        let started = self.closingStreams.begin()
        let actions = self.machine.close(barrierID: started ? barrierID : nil)
        if self.machine.isClosing {
            self.closingReport = bounced
            // A session whose client stopped reading paused this side: it must be read now.
            context.channel.setOption(ChannelOptions.autoRead, value: true).whenComplete { _ in }
        } else {
            if started { self.closingStreams.end() }
            bounced(0)
        }
        self.run(actions, context: context)
    }

    private func reportClosing() {
        guard let report = self.closingReport else { return }
        self.closingReport = nil
        self.closingStreams.end()
        report(self.bouncedWhileClosing)
    }

    /// Stop reporting: the session is going away on its own terms.
    func detach() {
        self.finished = true
        self.delegate = nil
    }
}
