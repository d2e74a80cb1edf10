import NIOCore

/// Closes a connection whose request was refused before its end, the way a careful server does
/// (nginx's `lingering_close`): once the answer is written the output side is shut, and what
/// the client still sends is read and dropped, unparsed, until it stops or a short time is up.
///
/// Closing at once would make the kernel reset the connection over the unread request bytes,
/// and a reset can destroy the answer before the client reads it. Dropping raw reads here, in
/// front of the HTTP decoder, costs nothing per byte: a refused body is never parsed.
final class LingeringCloseHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    /// Longest time a refused client is read for.
    static let lingeringTime: TimeAmount = .seconds(2)
    /// Most bytes read and dropped before the connection is closed anyway.
    static let lingeringBytes = 1 << 20

    private var dropped = 0
    private var timer: Scheduled<Void>?

    /// Puts the handler in front of everything once `written` (the refusal) completes.
    static func install(on channel: any Channel, after written: EventLoopFuture<Void>) {
        // Stop decoding at once: nothing after the refusal is parsed, even before it is written.
        try? channel.pipeline.syncOperations.addHandler(LingeringCloseHandler(), position: .first)
        written.whenComplete { _ in
            channel.close(mode: .output, promise: nil)
        }
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.timer = context.eventLoop.assumeIsolated().scheduleTask(in: Self.lingeringTime) {
            context.close(promise: nil)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.timer?.cancel()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.dropped += self.unwrapInboundIn(data).readableBytes
        if self.dropped > Self.lingeringBytes {
            context.close(promise: nil)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed = event {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.timer?.cancel()
        context.fireChannelInactive()
    }
}
