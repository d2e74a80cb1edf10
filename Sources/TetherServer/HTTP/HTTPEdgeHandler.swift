import BOSHCore
import Logging
import NIOCore
import NIOHTTP1
import NIOWebSocket
import XMPPCore

/// Serves one HTTP/1.1 connection, or one HTTP/2 stream (one request, translated to HTTP/1
/// parts by `HTTP2FramePayloadToHTTP1ServerCodec`): routes requests, enforces the body limit,
/// applies CORS, and writes BOSH answers when their session produces them (possibly from
/// another event loop). A BOSH request behaves the same over both.
final class HTTPEdgeHandler: ChannelInboundHandler, RemovableChannelHandler {
    static let name = "tether-http-edge"
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private enum State {
        case idle
        /// A request whose body is arriving; `charged` counts its bytes and chunk framing
        /// against `--max-body-bytes`.
        case receiving(HTTPRequestHead, ByteBuffer, chunked: Bool, charged: Int)
        /// Refused before its end (head, host or body): the answer is out or going out, and the
        /// rest of the request is not read (see `LingeringCloseHandler`).
        case refused
        case responding(keepAlive: Bool)
    }

    /// What each chunk of a chunked body costs beyond its data: at least `1\r\n` before and `\r\n`
    /// after.
    static let chunkFramingBytes = 5
    /// The least a part of a chunked body is charged when it is not the first of its read. Each
    /// part costs a trip through the pipeline whatever its size, so one read packed with
    /// one-byte chunks (six bytes on the wire each) would buy a trip per six bytes up to the
    /// limit; charged this much, a body holds at most `--max-body-bytes / 512` such parts. The
    /// first part of every read is charged its bytes only: NIO's decoder gives a chunk that spans
    /// reads one part per read, and a slow sender pays with a packet per part anyway. Browsers
    /// never send chunked bodies (nginx turns them into `Content-Length` ones).
    static let minimumChunkCharge = 512
    /// Room in the raw-byte budget beyond the body limit: the read that ends a chunked body may
    /// also carry trailers and the next pipelined request (reads go up to 64 KiB).
    static let wireSlack = 64 * 1024
    /// The request being answered is a HEAD: its answer has the headers of a GET and no body
    /// (RFC 9110 §9.3.2; over HTTP/2 a body there breaks the declared length and the stream).
    private var answeringHEAD = false
    /// Parts of a chunked body delivered in the current read.
    private var chunkedPartsThisRead = 0

    /// Counts the raw bytes of chunked bodies (extensions, size lines) before the decoder.
    /// HTTP/2 has no chunked framing (RFC 9113 §8.2.2): its DATA frames are charged as parts
    /// (`minimumChunkCharge`) instead.
    private let wireBudget = WireByteBudget()

    /// What carries the requests.
    enum Transport {
        /// An HTTP/1.x connection: keep-alive, pipelining, a WebSocket upgrade on a later request.
        case http1(laterUpgrade: LaterUpgrade?)
        /// One HTTP/2 stream: one request; the stream ends with the answer, and a refused
        /// request's stream is reset after its answer (RFC 9113 §8.1). Its body's bytes are
        /// taken from the connection's budget, shared by all its streams.
        case http2Stream(HTTP2BodyBudget)
    }

    private let transport: Transport
    private var isHTTP2Stream: Bool {
        if case .http2Stream = self.transport { return true }
        return false
    }
    /// The bytes of this stream's body held against its connection's budget.
    private var heldFromConnection = 0

    private let store: ConfigurationStore
    /// Taken from the store as each request starts, so a reload applies to the next request on a
    /// kept-alive connection and one request sees one configuration (one lock, not one per use).
    private var snapshot: ConfigurationStore.Snapshot
    private var configuration: TetherConfiguration {
        _read { yield self.snapshot.value }
    }
    private let bosh: BOSHEndpoint
    private let prebind: PrebindEndpoint
    private let status: ServerStatus
    /// The Prometheus exposition, produced on demand.
    private let metrics: @Sendable () -> [UInt8]
    private let logger: Logger
    private var state = State.idle
    /// Closes a connection that does not deliver a complete request in time (idle or slowloris).
    private var requestTimer: DeadlineTimer?
    /// Out of the pipeline: nothing is scheduled any more.
    private var removed = false
    /// The BOSH request this connection is waiting to answer, if any.
    private var heldRequest: BOSHConnectionWatch?

    /// What a WebSocket upgrade on a later request of the connection needs (see `upgradeLater`).
    struct LaterUpgrade: Sendable {
        /// Builds the upgrader for the configuration in effect.
        let upgrader: @Sendable (TetherConfiguration) -> NIOWebSocketServerUpgrader
        let completion: @Sendable (ChannelHandlerContext) -> Void
    }

    /// The connection is Tether's own TLS: its requests are secure (XEP-0124 §19.1).
    private let overTLS: Bool
    /// An upgrade head is being replayed into a fresh upgrade handler: if it comes back here, that
    /// handler refused it, and it is answered like any refused upgrade.
    private var replayingUpgrade = false

    init(
        store: ConfigurationStore,
        bosh: BOSHService,
        relay: PeerRelay,
        prebind: PrebindService,
        status: ServerStatus,
        metrics: @escaping @Sendable () -> [UInt8],
        transport: Transport = .http1(laterUpgrade: nil),
        overTLS: Bool = false,
        logger: Logger
    ) {
        self.transport = transport
        self.overTLS = overTLS
        self.store = store
        self.snapshot = store.snapshot
        self.bosh = BOSHEndpoint(service: bosh, relay: relay)
        self.prebind = PrebindEndpoint(service: prebind)
        self.status = status
        self.metrics = metrics
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.armRequestTimer(context: context)
        guard !self.isHTTP2Stream else { return }
        // First in the pipeline, so on a --listen-tls connection it counts TLS records: their
        // overhead (under 0.2 %) stays far inside `wireSlack`.
        try? context.pipeline.syncOperations.addHandler(self.wireBudget, name: WireByteBudget.name, position: .first)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.removed = true
        self.requestTimer?.cancel()
        self.requestTimer = nil
        self.releaseConnectionBudget()
        // Upgraded to WebSocket: frames are bounded by their own rules.
        if !self.isHTTP2Stream, context.channel.isActive {
            context.pipeline.syncOperations.removeHandler(name: WireByteBudget.name, promise: nil)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.chunkedPartsThisRead = 0
        context.fireChannelReadComplete()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard event is WireByteBudget.Exhausted else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        guard case .receiving(let head, _, _, _) = self.state else { return }
        self.refuseOversizedBody(head, context: context)
    }

    private func refuseOversizedBody(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        self.wireBudget.disarm()
        let limit = self.configuration.maxRequestBodyBytes
        self.refuse(head, status: .payloadTooLarge, reason: "Request body larger than \(limit) bytes\n", context: context)
    }

    /// Gives the body's bytes back to the connection (HTTP/2): it has been handed on, refused,
    /// or its stream is gone.
    private func releaseConnectionBudget() {
        guard case .http2Stream(let budget) = self.transport, self.heldFromConnection > 0 else { return }
        budget.giveBack(self.heldFromConnection)
        self.heldFromConnection = 0
    }

    func channelInactive(context: ChannelHandlerContext) {
        // A held BOSH request whose client went away (page reload, dropped connection).
        self.heldRequest?.closed()
        self.heldRequest = nil
        context.fireChannelInactive()
    }

    private func armRequestTimer(context: ChannelHandlerContext) {
        // An answer completing after the connection went (prebind, the demo script) must not
        // make a timer again: it would hold the context, and so this handler, for good.
        guard !self.removed else { return }
        if self.requestTimer == nil {
            self.requestTimer = DeadlineTimer(on: context.eventLoop) { [weak self, weak context] in
                guard let self, let context else { return }
                switch self.state {
                case .idle, .receiving:
                    context.close(promise: nil)
                case .refused, .responding:
                    break
                }
            }
        }
        // Re-armed after every answer on a kept-alive connection: a deadline moved, not a timer.
        self.requestTimer?.arm(in: self.configuration.httpRequestTimeout)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch (self.unwrapInboundIn(data), self.state) {
        case (.head(let head), .idle):
            self.snapshot = self.store.snapshot
            // Set here, so a HEAD refused from its head alone gets no body either.
            self.answeringHEAD = head.method == .HEAD
            if self.replayingUpgrade {
                self.replayingUpgrade = false
            } else if self.upgradeLater(head, context: context) {
                return
            }
            if let (status, reason, headers) = self.refusal(of: head, context: context) {
                self.refuse(head, status: status, reason: reason, headers: headers, context: context)
                return
            }
            if head.honoursExpectations && head.headers.contains(name: "expect") {
                // RFC 9110 §10.1.1: the client waits for this before sending its body.
                context.writeAndFlush(self.wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .continue))), promise: nil)
            }
            // The HTTP/2 codec marks a body without a declared length as chunked; no chunk framing
            // is on the wire there.
            let chunked =
                !self.isHTTP2Stream && head.headers.contains(name: "transfer-encoding")
                && head.headers[canonicalForm: "transfer-encoding"].contains { $0.lowercased().contains("chunked") }
            if chunked {
                // The body with all its framing, plus room for trailers and a pipelined next head.
                self.wireBudget.arm(self.configuration.maxRequestBodyBytes + max(self.configuration.maxHeaderBytes, Self.wireSlack))
            }
            self.state = .receiving(head, context.channel.allocator.buffer(capacity: 0), chunked: chunked, charged: 0)
        case (.body(var chunk), .receiving(let head, var body, let chunked, let charged)):
            // Drop the state's reference first, so `body` grows in place instead of being copied
            // for every chunk (which made a body of many small chunks quadratic).
            self.state = .idle
            var partCost = chunk.readableBytes
            if chunked || self.isHTTP2Stream {
                // HTTP/2 DATA frames are parts too: one-byte frames (ten bytes on the wire each)
                // would buy a trip through the stream's pipeline per byte.
                self.chunkedPartsThisRead += 1
                if chunked { partCost += Self.chunkFramingBytes }
                if self.chunkedPartsThisRead > 1 { partCost = max(partCost, Self.minimumChunkCharge) }
            }
            let cost = charged + partCost
            guard cost <= self.configuration.maxRequestBodyBytes else {
                self.releaseConnectionBudget()
                self.refuseOversizedBody(head, context: context)
                return
            }
            if case .http2Stream(let budget) = self.transport {
                guard budget.take(partCost) else {
                    self.releaseConnectionBudget()
                    self.refuse(
                        head, status: .payloadTooLarge, reason: "The request bodies of this connection together exceed \(budget.limit) bytes\n",
                        context: context)
                    return
                }
                self.heldFromConnection += partCost
            }
            body.writeBuffer(&chunk)
            self.state = .receiving(head, body, chunked: chunked, charged: cost)
        case (.end, .receiving(let head, let body, _, _)):
            self.wireBudget.disarm()
            self.releaseConnectionBudget()
            self.requestTimer?.disarm()
            // HTTP/2 has no keep-alive: its stream ends with the answer.
            self.state = .responding(keepAlive: self.isHTTP2Stream || head.isKeepAlive)
            self.route(head: head, body: body, context: context)
        case (.body, .refused), (.end, .refused):
            // What the decoder had already buffered when the request was refused.
            break
        case (.head, _), (.body, _), (.end, _):
            // Pipelined requests are serialized by HTTPServerPipelineHandler; anything else is a bug in the peer.
            context.close(promise: nil)
        }
    }

    /// RFC 6455 §4.1 allows the opening handshake on any request of a kept-alive connection, but
    /// NIO's `HTTPServerUpgradeHandler` looks only at the first and then leaves the pipeline. An
    /// upgrade after other requests (nginx hands its upstream keep-alive connections, used by
    /// BOSH, to upgrades too) gets a fresh upgrade handler where the first stood, and its head
    /// is replayed into it; the rest of the request follows through it. `true` when replayed.
    private func upgradeLater(_ head: HTTPRequestHead, context: ChannelHandlerContext) -> Bool {
        guard case .http1(let later?) = self.transport, head.path == WebSocketUpgradePolicy.path,
            head.headers[canonicalForm: "upgrade"].contains(where: { $0.lowercased() == "websocket" })
        else { return false }
        let sync = context.pipeline.syncOperations
        // Still there when this is not the first request: the first one's handler already left.
        guard (try? sync.handler(type: HTTPServerUpgradeHandler.self)) == nil,
            let encoder = try? sync.handler(type: HTTPResponseEncoder.self),
            let decoder = try? sync.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self),
            let errorHandler = try? sync.handler(type: HTTPServerProtocolErrorHandler.self),
            let errors = try? sync.context(handlerType: HTTPServerProtocolErrorHandler.self)
        else { return false }
        // The handlers the upgrade removes, as configureHTTPServerPipeline lists them.
        var extra: [any RemovableChannelHandler] = [decoder]
        if let pipelining = try? sync.handler(type: HTTPServerPipelineHandler.self) { extra.append(pipelining) }
        // Regression: left in place, the response-header validator met the WebSocket encoder's
        // bytes, and a frame written with a separate header buffer (IOData) crashed the process.
        if let validator = try? sync.handler(type: NIOHTTPResponseHeadersValidator.self) { extra.append(validator) }
        extra.append(errorHandler)
        let handler = HTTPServerUpgradeHandler(
            upgraders: [later.upgrader(self.configuration)], httpEncoder: encoder, extraHTTPHandlers: extra, upgradeCompletionHandler: later.completion)
        do {
            try sync.addHandler(handler, position: .after(errorHandler))
        } catch {
            return false
        }
        self.requestTimer?.disarm()
        self.replayingUpgrade = true
        errors.fireChannelRead(NIOAny(HTTPServerRequestPart.head(head)))
        // Upgraded (this handler is leaving) or refused (answered here through the replay).
        self.replayingUpgrade = false
        return true
    }

    /// Why a request is refused from its head alone, before any of its body is read.
    private func refusal(of head: HTTPRequestHead, context: ChannelHandlerContext) -> (HTTPResponseStatus, String, [(String, String)])? {
        let headLimit = self.configuration.maxHeaderBytes
        if Self.headBytes(head) > headLimit {
            return (.requestHeaderFieldsTooLarge, "Request head larger than \(headLimit) bytes\n", [])
        }
        if let problem = head.hostLinesProblem {
            return (.badRequest, problem + "\n", [])
        }
        if !self.configuration.acceptsHost(head.headers.first(name: "host")) {
            // RFC 9110 §15.5.20: not a host this server answers for (DNS rebinding, stray names).
            return (.misdirectedRequest, "This server does not serve that host.\n", [])
        }
        if head.path == WebSocketUpgradePolicy.path {
            // Only what the upgrader refused gets here: said at once, without waiting for a body.
            let secure = self.configuration.forwardedHeaders.origin(
                peer: context.channel.remoteAddress, local: context.channel.localAddress, headers: head.headers, overTLS: self.overTLS
            ).isSecure
            let refusal = WebSocketUpgradePolicy.refusal(head, secure: secure, configuration: self.configuration)
            return (refusal.status, refusal.reason + "\n", refusal.status == .upgradeRequired ? [("Upgrade", "websocket")] : [])
        }
        // Split into its values only when present (splitting allocates; browsers send no Expect).
        let expectation = head.headers.contains(name: "expect") ? head.headers[canonicalForm: "expect"].map { $0.lowercased() } : []
        if head.honoursExpectations, !expectation.isEmpty, expectation != ["100-continue"] {
            // RFC 9110 §10.1.1: an expectation other than 100-continue cannot be met.
            return (.expectationFailed, "Only the 100-continue expectation is supported.\n", [])
        }
        let bodyLimit = self.configuration.maxRequestBodyBytes
        // A length Int cannot hold (NIO's parser accepts up to 2^64 - 1) is beyond any limit too.
        if let declared = head.headers.first(name: "content-length").map({ Int($0) ?? .max }), declared > bodyLimit {
            // Refused at once, without reading a byte of it; a client waiting for 100 Continue
            // is told its expectation fails (RFC 9110 §10.1.1), one speaking HTTP/1.0 has none
            // (the server MUST ignore it there).
            let expects = head.honoursExpectations && !expectation.isEmpty
            return (expects ? .expectationFailed : .payloadTooLarge, "Request body larger than \(bodyLimit) bytes\n", [])
        }
        return nil
    }

    /// Answers a request before its end and closes the connection: the output side once the
    /// answer is written, the input side after `LingeringCloseHandler` has let the client read it.
    private func refuse(_ head: HTTPRequestHead, status: HTTPResponseStatus, reason: String, headers: [(String, String)] = [], context: ChannelHandlerContext) {
        self.requestTimer?.disarm()
        self.logger.info(
            "refused HTTP request",
            metadata: [
                "status": "\(status.code)", "client": "\(context.channel.remoteAddress?.ipAddress ?? "?")", "uri": "\(head.uri.prefix(200))",
            ])
        self.state = .responding(keepAlive: false)
        let answer = HTTPAnswer.text(status, reason, headers: headers)
        self.write(
            status: answer.status, contentType: answer.contentType, body: answer.body,
            headers: answer.headers, cors: self.configuration.cors.responseHeaders(origin: head.headers.first(name: "origin")), lingering: true, context: context
        )
        self.state = .refused
    }

    private func route(head: HTTPRequestHead, body: ByteBuffer, context: ChannelHandlerContext) {
        let origin = head.headers.first(name: "origin")
        switch HTTPEndpoint(path: String(head.path), nodeID: self.configuration.nodeID) {
        case .bosh:
            switch head.method {
            case .POST:
                self.handleBOSH(head: head, body: body, origin: origin, context: context)
            case .OPTIONS:
                self.preflight(head: head, origin: origin, context: context)
            case .GET:
                self.write(.text(.ok, "Tether XMPP connection manager: POST XEP-0124/XEP-0206 <body/> elements here.\n"), corsOrigin: origin, context: context)
            default:
                self.write(.text(.methodNotAllowed, "Use POST.\n", headers: [("Allow", "POST, GET, OPTIONS")]), corsOrigin: origin, context: context)
            }
        case .prebind:
            let client = self.clientOrigin(head, context: context)
            let answer = self.prebind.answer(
                method: head.method, headers: head.headers, body: body, client: client, settings: self.configuration.prebind, on: context.eventLoop, logger: self.logger
            )
            self.write(later: answer, context: context)
        case .hostMeta(let json):
            self.write(HostMetaEndpoint.answer(method: head.method, host: head.headers.first(name: "host"), json: json, configuration: self.configuration), context: context)
        case .demo(.script) where self.configuration.demo != nil && head.method == .GET:
            self.write(later: DemoEndpoint.scriptAnswer(settings: self.configuration.demo, on: context.eventLoop), context: context)
        case .demo(let asset):
            self.write(DemoEndpoint.answer(asset, method: head.method, settings: self.configuration.demo), context: context)
        case .metrics:
            self.write(OperationsEndpoint.metrics(self.metrics()), context: context)
        case .health:
            self.write(OperationsEndpoint.health, corsOrigin: nil, context: context)
        case .ready:
            self.write(OperationsEndpoint.ready(isDraining: self.status.isDraining), corsOrigin: nil, context: context)
        case .notFound:
            self.write(.notFound, corsOrigin: origin, context: context)
        }
    }

    private func clientOrigin(_ head: HTTPRequestHead, context: ChannelHandlerContext) -> ClientOrigin {
        self.configuration.forwardedHeaders.origin(peer: context.channel.remoteAddress, local: context.channel.localAddress, headers: head.headers, overTLS: self.overTLS)
    }

    private func handleBOSH(head: HTTPRequestHead, body: ByteBuffer, origin: String?, context: ChannelHandlerContext) {
        let client = self.clientOrigin(head, context: context)
        guard self.configuration.cors.allows(origin: origin, host: head.headers.first(name: "host"), publicHosts: self.configuration.publicHosts, secure: client.isSecure) else {
            self.write(.text(.forbidden, "Origin not allowed.\n"), corsOrigin: origin, context: context)
            return
        }
        self.bosh.handle(
            body: body, headers: head.headers, client: client, configuration: self.configuration,
            responder: self.boshResponder(origin: origin, context: context), on: context.eventLoop,
            // An HTTP/2 connection may be a proxy's, carrying every client: sessions it creates
            // are spread over the loops. An HTTP/1 connection carries one request at a time.
            newSessionsHere: !self.isHTTP2Stream, logger: self.logger
        )
    }

    /// The way back for this connection's BOSH request, usable from the session's event loop:
    /// each answer hops to this connection's loop (unless the session lives there too) and is
    /// written with the CORS headers `origin` gets. `delivered` is false when the connection had
    /// gone (the session then keeps the payloads for the client's next request).
    private func boshResponder(origin: String?, context: ChannelHandlerContext) -> BOSHResponder {
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        let watch = BOSHConnectionWatch()
        self.heldRequest = watch
        return BOSHResponder(
            connection: watch,
            write: { response, delivered in
                watch.answered()
                eventLoop.executeHere {
                    let (handler, context) = loopBound.value
                    handler.heldRequest = nil
                    guard let written = handler.writeBOSH(response, origin: origin, context: context) else {
                        delivered(false)
                        return
                    }
                    written.whenComplete { result in
                        if case .success = result { delivered(true) } else { delivered(false) }
                    }
                }
            },
            close: {
                eventLoop.executeHere {
                    loopBound.value.1.close(promise: nil)
                }
            }
        )
    }

    /// Writes an answer that is not ready yet (a prebind login, a file read off the event loop),
    /// when it is; this handler's loop is the future's.
    private func write(later answer: EventLoopFuture<HTTPAnswer>, context: ChannelHandlerContext) {
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        answer.hop(to: context.eventLoop).whenSuccess { answer in
            let (handler, context) = loopBound.value
            handler.write(answer, context: context)
        }
    }

    /// The size of a request head as sent: request line and header lines.
    static func headBytes(_ head: HTTPRequestHead) -> Int {
        head.headers.reduce(head.method.rawValue.utf8.count + head.uri.utf8.count + 12) { total, header in
            total + header.name.utf8.count + header.value.utf8.count + 4
        }
    }

    private func preflight(head: HTTPRequestHead, origin: String?, context: ChannelHandlerContext) {
        guard let headers = self.configuration.cors.preflightHeaders(origin: origin, requestedHeaders: head.headers.first(name: "access-control-request-headers")) else {
            self.write(.text(.forbidden, "Origin not allowed.\n"), corsOrigin: nil, context: context)
            return
        }
        self.write(status: .noContent, contentType: nil, body: ByteBuffer(), headers: headers, context: context)
    }

    @discardableResult
    private func writeBOSH(_ response: BOSHHTTPResponse, origin: String?, context: ChannelHandlerContext) -> EventLoopFuture<Void>? {
        guard case .responding = self.state, context.channel.isActive else { return nil }
        return self.write(
            status: HTTPResponseStatus(statusCode: response.status),
            // Always text/xml or application/xml: BOSHHTTPResponse admits nothing else.
            contentType: response.contentType,
            body: response.body,
            headers: Self.boshHeaders, cors: self.configuration.cors.responseHeaders(origin: origin), context: context
        )
    }

    /// Writes an endpoint's answer as it is (no CORS headers: monitoring, discovery, the demo).
    private func write(_ answer: HTTPAnswer, context: ChannelHandlerContext) {
        self.write(status: answer.status, contentType: answer.contentType, body: answer.body, headers: answer.headers, document: answer.document, context: context)
    }

    /// Writes an endpoint's answer with the CORS headers `origin` gets.
    private func write(_ answer: HTTPAnswer, corsOrigin origin: String?, context: ChannelHandlerContext) {
        self.write(
            status: answer.status, contentType: answer.contentType, body: answer.body,
            headers: answer.headers, cors: self.configuration.cors.responseHeaders(origin: origin), document: answer.document, context: context
        )
    }

    /// Every answer tells browsers not to guess its type (an XML body sniffed as HTML would run
    /// a client's stanza as script on this origin).
    static let securityHeaders = [("X-Content-Type-Options", "nosniff")]
    /// For answers that are data, never documents: BOSH, metrics, host-meta, plain-text errors.
    static let dataOnlyHeaders = [("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")]
    /// A BOSH answer is for the one request that carried it.
    static let boshHeaders = [("Cache-Control", "no-store")]

    /// - Parameter document: the answer is a page meant to render (the demo), so it gets no
    ///   `default-src 'none'` policy.
    /// - Parameter lingering: the request is refused before its end: close the output once this is
    ///   written and read (and drop) what the client still sends for a while, so it sees the answer.
    @discardableResult
    private func write(
        status: HTTPResponseStatus,
        contentType: String?,
        body: ByteBuffer,
        headers extra: [(String, String)],
        cors: [(String, String)] = [],
        document: Bool = false,
        lingering: Bool = false,
        context: ChannelHandlerContext
    ) -> EventLoopFuture<Void>? {
        guard case .responding(let keepAlive) = self.state else { return nil }
        self.state = .idle
        var headers = HTTPHeaders()
        // Every field below in one allocation (adding them one by one grew the list four times).
        headers.reserveCapacity(6 + extra.count + cors.count)
        if let contentType { headers.add(name: "Content-Type", value: contentType) }
        headers.add(name: "Content-Length", value: String(body.readableBytes))
        headers.add(contentsOf: Self.securityHeaders)
        if !document { headers.add(contentsOf: Self.dataOnlyHeaders) }
        headers.add(contentsOf: cors)
        headers.add(contentsOf: extra)
        // HTTP/2 forbids connection-specific fields (RFC 9113 §8.2.2); a stream ends by itself.
        if !keepAlive, !self.isHTTP2Stream { headers.add(name: "Connection", value: "close") }
        let head = HTTPResponseHead(version: .http1_1, status: status, headers: headers)
        context.write(self.wrapOutboundOut(.head(head)), promise: nil)
        if body.readableBytes > 0, !self.answeringHEAD {
            context.write(self.wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        }
        let done = context.writeAndFlush(self.wrapOutboundOut(.end(nil)))
        if self.isHTTP2Stream {
            let channel = context.channel
            // A client that opens no flow-control window would hold the answer, and the stream,
            // forever: the answer gets as long as a request to be taken (regression: a refused
            // request's answer had no such bound).
            let stalled = context.eventLoop.assumeIsolated().scheduleTask(in: self.configuration.httpRequestTimeout) {
                channel.close(promise: nil)
            }
            done.whenComplete { _ in
                stalled.cancel()
                // The rest of a refused request is not wanted: reset the stream once answered.
                if lingering { channel.close(promise: nil) }
            }
        } else if lingering {
            LingeringCloseHandler.install(on: context.channel, after: done)
        } else if keepAlive {
            self.armRequestTimer(context: context)
        } else {
            done.whenComplete { [channel = context.channel] _ in channel.close(promise: nil) }
        }
        return done
    }
}
