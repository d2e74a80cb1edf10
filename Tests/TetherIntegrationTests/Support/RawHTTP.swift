import Foundation
import NIOCore
import NIOPosix
import Synchronization

/// Sends raw request bytes and returns the raw response (headers and a Content-Length body).
/// For requests an HTTP client library rewrites or refuses to send, like a refused WebSocket upgrade.
func rawHTTP(port: Int, _ request: String) async throws -> (status: Int, text: String) {
    final class Collected: Sendable {
        let buffer = Mutex(ByteBuffer())
    }
    let collected = Collected()
    let done = MultiThreadedEventLoopGroup.singleton.next().makePromise(of: Void.self)
    final class Reader: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let collected: Collected
        let done: EventLoopPromise<Void>
        init(collected: Collected, done: EventLoopPromise<Void>) {
            self.collected = collected
            self.done = done
        }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var bytes = self.unwrapInboundIn(data)
            let text = self.collected.buffer.withLock { buffer -> String in
                buffer.writeBuffer(&bytes)
                return String(buffer: buffer)
            }
            if let split = text.range(of: "\r\n\r\n") {
                let head = text[..<split.lowerBound].lowercased()
                let length = head.split(separator: "\r\n").first { $0.hasPrefix("content-length:") }.flatMap { Int($0.dropFirst(15).trimmingPrefix(" ")) } ?? 0
                if text.utf8.count - text[..<split.upperBound].utf8.count >= length { self.done.succeed() }
            }
        }
        func channelInactive(context: ChannelHandlerContext) { self.done.succeed() }
    }
    let reader = Reader(collected: collected, done: done)
    let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .channelInitializer { $0.pipeline.addHandler(reader) }
        .connect(host: "127.0.0.1", port: port).get()
    try await channel.writeAndFlush(ByteBuffer(string: request))
    let timeout = channel.eventLoop.scheduleTask(in: TimeAmount.seconds(30)) { done.fail(TestFailure("no complete response in 30 s")) }
    try await done.futureResult.get()
    timeout.cancel()
    try? await channel.close()
    let text = collected.buffer.withLock { String(buffer: $0) }
    let status = Int(text.split(separator: " ").dropFirst().first ?? "") ?? 0
    return (status, text)
}
