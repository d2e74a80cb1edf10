import NIOCore

/// Hands what a load session's connection reads (stream bytes, WebSocket frames) to the session
/// and tells it when the connection closes; any error closes the connection. One handler for
/// every transport whose reads go straight to its session.
final class LoadConnectionHandler<Inbound>: ChannelInboundHandler {
    typealias InboundIn = Inbound

    private let read: (Inbound) -> Void
    private let closed: () -> Void

    init(read: @escaping (Inbound) -> Void, closed: @escaping () -> Void) {
        self.read = read
        self.closed = closed
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.read(self.unwrapInboundIn(data))
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.closed()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
