import NIOCore
import NIOHTTP2

/// Closes an HTTP/2 connection that has been told `GOAWAY` and is still open `grace` later.
///
/// `NIOHTTP2ServerConnectionManagementHandler` winds a connection down in two steps: `GOAWAY`
/// with the largest stream id and a PING, then, once the PING is answered, the real `GOAWAY`
/// and its own grace timer. A client that never answers the PING would keep the connection
/// open for ever (idle or at shutdown); this bounds every wind-down, answered or not.
/// Sits between the HTTP/2 handler and the management handler, seeing the frames it writes.
final class HTTP2GoAwayDeadline: ChannelOutboundHandler {
    typealias OutboundIn = HTTP2Frame
    typealias OutboundOut = HTTP2Frame

    private let grace: TimeAmount
    private var deadline: Scheduled<Void>?

    init(grace: TimeAmount) {
        self.grace = grace
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if self.deadline == nil, case .goAway = self.unwrapOutboundIn(data).payload {
            let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
            self.deadline = context.eventLoop.assumeIsolated().scheduleTask(in: self.grace) {
                bound.value.close(promise: nil)
            }
        }
        context.write(data, promise: promise)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.deadline?.cancel()
    }
}
