import NIOCore

/// Counts what a chunked request body costs on the wire, before the HTTP decoder sees it.
///
/// NIO's decoder hands over chunk data only: chunk-size lines, chunk extensions (RFC 9112
/// §7.1.1, which it skips without reporting) and trailers never reach `HTTPEdgeHandler`, so a
/// body charged by what it delivers could stream extension bytes without limit. The edge arms
/// this budget when a chunked request's head arrives and disarms it at its end; a read that
/// would overdraw it is not passed on, and `Exhausted` tells the edge to answer 413.
final class WireByteBudget: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    static let name = "tether-wire-byte-budget"

    /// Fired down the pipeline (to the edge) when a read overdraws the budget.
    struct Exhausted: Sendable {}

    /// Bytes the current request may still take; `nil` while disarmed.
    private var remaining: Int?

    /// Starts counting at the read after the one that carried the head: that read's bytes are
    /// already bounded by the read size, and the rest of the body must fit in `bytes`.
    func arm(_ bytes: Int) {
        self.remaining = bytes
    }

    func disarm() {
        self.remaining = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if let remaining = self.remaining {
            let left = remaining - self.unwrapInboundIn(data).readableBytes
            guard left >= 0 else {
                self.remaining = nil
                context.fireUserInboundEventTriggered(Exhausted())
                return
            }
            self.remaining = left
        }
        context.fireChannelRead(data)
    }
}
