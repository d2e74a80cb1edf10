import Logging
import NIOCore
import NIOHPACK
import NIOHTTP1
import NIOHTTP2
import NIOWebSocket
import XMPPCore

/// First on every HTTP/2 stream: a WebSocket opened with RFC 8441's extended CONNECT
/// (`:method CONNECT`, `:protocol websocket`) becomes an XMPP-over-WebSocket session on that
/// stream, so a browser's WSS and BOSH requests share one connection; any other request goes
/// on to the stream's HTTP/1 codec and `HTTPEdgeHandler`, and this handler leaves.
///
/// The opening is judged by the same `WebSocketUpgradePolicy` as an RFC 6455 upgrade (path,
/// Host, Origin, the `xmpp` subprotocol, head size), on the request as HTTP/1.1 would carry
/// it; RFC 8441 §5 replaces the 101 and its `Sec-WebSocket-Key`/`-Accept` by a 200, and the
/// WebSocket frames travel in the stream's DATA frames (`HTTP2WebSocketFrameBridge`).
final class HTTP2StreamRouter: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias OutboundOut = HTTP2Frame.FramePayload

    /// Everything the session on an accepted stream needs, made by the connection's pipeline.
    struct WebSocketOpening: Sendable {
        let configuration: TetherConfiguration
        /// The WebSocket session for an accepted request (its head as HTTP/1.1 would carry it).
        let session: @Sendable (_ head: HTTPRequestHead, _ channel: any Channel) -> WebSocketXMPPHandler
        /// The handlers a plain request goes through, removed when the stream is a WebSocket.
        let requestHandlers: [String]
    }

    private let opening: WebSocketOpening
    private let logger: Logger

    init(opening: WebSocketOpening, logger: Logger) {
        self.opening = opening
        self.logger = logger
    }

    /// `:method CONNECT` with `:protocol websocket` (RFC 8441 §4).
    static func isWebSocketConnect(_ headers: HPACKHeaders) -> Bool {
        headers.first(name: ":method") == "CONNECT" && headers.first(name: ":protocol")?.lowercased() == "websocket"
    }

    /// The extended CONNECT as the HTTP/1.1 upgrade it stands for: a GET of `:path` with
    /// `Host: :authority` and `Upgrade: websocket`, its regular fields unchanged. A `Host` field
    /// equal to `:authority` is the same line (RFC 9113 §8.3.1 allows both); one that differs
    /// stays, and the upgrade policy refuses two Host lines.
    static func upgradeHead(_ headers: HPACKHeaders) -> HTTPRequestHead {
        var fields = HTTPHeaders()
        let authority = headers.first(name: ":authority")
        if let authority { fields.add(name: "Host", value: authority) }
        for (name, value, _) in headers where !name.hasPrefix(":") {
            if let authority, name.lowercased() == "host", value == authority { continue }
            fields.add(name: name, value: value)
        }
        fields.replaceOrAdd(name: "Upgrade", value: "websocket")
        return HTTPRequestHead(version: .http1_1, method: .GET, uri: headers.first(name: ":path") ?? "", headers: fields)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .headers(let request) = self.unwrapInboundIn(data), Self.isWebSocketConnect(request.headers) else {
            context.fireChannelRead(data)
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
            return
        }
        let head = Self.upgradeHead(request.headers)
        let configuration = self.opening.configuration
        let secure = configuration.forwardedHeaders.origin(
            peer: context.channel.remoteAddress, local: context.channel.localAddress, headers: head.headers, overTLS: true
        ).isSecure
        // RFC 6455 §4.1: version 13 is the only one; RFC 8441 §5 keeps the field.
        let version = head.headers.first(name: "sec-websocket-version")
        guard version == "13", !request.endStream, let accepted = WebSocketUpgradePolicy.accept(head, secure: secure, configuration: configuration) else {
            let refusal: (status: HTTPResponseStatus, reason: String)
            if version != "13" {
                refusal = (.badRequest, "Sec-WebSocket-Version: 13 is required.")
            } else if request.endStream {
                refusal = (.badRequest, "A WebSocket stream cannot end with its request.")
            } else {
                refusal = WebSocketUpgradePolicy.refusal(head, secure: secure, configuration: configuration)
            }
            self.refuse(refusal.status, reason: refusal.reason, version: version == "13" ? nil : "13", context: context)
            return
        }
        do {
            try self.accept(head, answer: accepted, context: context)
        } catch {
            self.logger.warning("websocket over HTTP/2 could not be set up", metadata: ["error": "\(error)"])
            context.close(promise: nil)
        }
    }

    private func accept(_ head: HTTPRequestHead, answer: HTTPHeaders, context: ChannelHandlerContext) throws {
        var response = HPACKHeaders([(":status", "200")])
        for (name, value) in answer { response.add(name: name.lowercased(), value: value) }
        context.writeAndFlush(self.wrapOutboundOut(.headers(.init(headers: response))), promise: nil)
        let sync = context.pipeline.syncOperations
        for name in self.opening.requestHandlers {
            try sync.removeHandler(context: try sync.context(name: name))
        }
        // As the RFC 6455 upgrader does: slack above the stanza limit, so a message just over it
        // gets the XMPP `policy-violation` stream error rather than a bare close 1009.
        let maxFrameSize = self.opening.configuration.xmlLimits.maxElementBytes + 64 * 1024
        try sync.addHandlers(
            [
                HTTP2WebSocketFrameBridge(),
                WebSocketFrameEncoder(),
                ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: maxFrameSize)),
                self.opening.session(head, context.channel),
            ], position: .after(self))
        sync.removeHandler(context: context, promise: nil)
    }

    /// A refused opening: its status and reason, then the stream ends.
    private func refuse(_ status: HTTPResponseStatus, reason: String, version: String?, context: ChannelHandlerContext) {
        self.logger.info(
            "refused HTTP request",
            metadata: ["status": "\(status.code)", "client": "\(context.channel.remoteAddress?.ipAddress ?? "?")", "uri": "websocket over HTTP/2"])
        let answer = HTTPAnswer.text(status, reason + "\n")
        var headers = HPACKHeaders([(":status", String(status.code))])
        if let contentType = answer.contentType { headers.add(name: "content-type", value: contentType) }
        headers.add(name: "content-length", value: String(answer.body.readableBytes))
        for (name, value) in HTTPEdgeHandler.securityHeaders + HTTPEdgeHandler.dataOnlyHeaders {
            headers.add(name: name.lowercased(), value: value)
        }
        if let version { headers.add(name: "sec-websocket-version", value: version) }
        context.write(self.wrapOutboundOut(.headers(.init(headers: headers))), promise: nil)
        let channel = context.channel
        // The rest of the stream is not wanted: reset once answered, as a refused request is,
        // or when a client that opens no flow-control window has not taken the answer in the
        // time a request gets (the stream would otherwise stay open, and the connection busy).
        let stalled = context.eventLoop.assumeIsolated().scheduleTask(in: self.opening.configuration.httpRequestTimeout) {
            channel.close(promise: nil)
        }
        context.writeAndFlush(self.wrapOutboundOut(.data(.init(data: .byteBuffer(answer.body), endStream: true)))).whenComplete { _ in
            stalled.cancel()
            channel.close(promise: nil)
        }
        // Nothing more is read from this stream.
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        for name in self.opening.requestHandlers {
            if let handler = try? context.pipeline.syncOperations.context(name: name) {
                context.pipeline.syncOperations.removeHandler(context: handler, promise: nil)
            }
        }
    }
}

/// The bytes of a WebSocket on an HTTP/2 stream (RFC 8441 §5): DATA frames in, the WebSocket
/// encoder's bytes out as DATA frames. The client ending its side (END_STREAM) or resetting the
/// stream is the connection lost; when the session closes, the stream ends with an empty
/// END_STREAM DATA frame first.
final class HTTP2WebSocketFrameBridge: ChannelDuplexHandler {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = HTTP2Frame.FramePayload

    private var ended = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .data(let payload):
            if case .byteBuffer(let bytes) = payload.data, bytes.readableBytes > 0 {
                context.fireChannelRead(self.wrapInboundOut(bytes))
            }
            // Through this handler's `close`, so the stream ends with END_STREAM, not a reset.
            if payload.endStream { context.channel.close(promise: nil) }
        case .headers:
            // Trailers: a WebSocket stream has none (RFC 8441 §5).
            context.channel.close(promise: nil)
        default:
            break
        }
    }

    /// A stream that ends with a reset (the client's `RST_STREAM`, or the close of a stream the
    /// client had not ended) reports `StreamClosed` before it goes inactive: that is the
    /// connection lost, which `channelInactive` tells the session, not a malformed frame
    /// (regression: it ended XEP-0198 sessions upstream and left unwritten stanzas unbounced).
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard !(error is NIOHTTP2Errors.StreamClosed) else { return }
        context.fireErrorCaught(error)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let bytes = self.unwrapOutboundIn(data)
        context.write(self.wrapOutboundOut(.data(.init(data: .byteBuffer(bytes)))), promise: promise)
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        if !self.ended, context.channel.isActive {
            self.ended = true
            context.writeAndFlush(self.wrapOutboundOut(.data(.init(data: .byteBuffer(ByteBuffer()), endStream: true))), promise: nil)
        }
        context.close(mode: mode, promise: promise)
    }
}
