import NIOCore
import NIOPosix
import Synchronization

/// A plain TCP connection for what no well-behaved client sends: half requests, floods, raw
/// frames. Keeps what the server writes back and whether it has closed.
final class RawConnection: Sendable {
    let channel: any Channel
    private let received: Received

    final class Received: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let bytes = Mutex(ByteBuffer())
        let closed = Mutex(false)

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var buffer = self.unwrapInboundIn(data)
            self.bytes.withLock { _ = $0.writeBuffer(&buffer) }
        }

        func channelInactive(context: ChannelHandlerContext) {
            self.closed.withLock { $0 = true }
            context.fireChannelInactive()
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            // A reset after the server closed is an ending like any other here.
            context.close(promise: nil)
        }
    }

    private init(channel: any Channel, received: Received) {
        self.channel = channel
        self.received = received
    }

    static func connect(port: Int) async throws -> RawConnection {
        let received = Received()
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(received) } }
            .connect(host: "127.0.0.1", port: port)
            .get()
        return RawConnection(channel: channel, received: received)
    }

    var text: String { self.received.bytes.withLock { String(buffer: $0) } }
    var isClosed: Bool { self.received.closed.withLock { $0 } }

    /// Writes bytes; `false` once the server has closed (the write then fails).
    @discardableResult
    func write(_ bytes: ByteBuffer) async -> Bool {
        guard !self.isClosed else { return false }
        do {
            try await self.channel.writeAndFlush(bytes)
            return true
        } catch {
            return false
        }
    }

    func write(_ text: String) async -> Bool { await self.write(ByteBuffer(string: text)) }

    /// Waits until the server closes; `false` on timeout.
    func waitClosed(timeout: Duration) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while !self.isClosed && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        return self.isClosed
    }

    /// Waits until what the server wrote satisfies `predicate`; `false` on timeout.
    func waitFor(timeout: Duration, _ predicate: (String) -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if predicate(self.text) { return true }
            if self.isClosed { return predicate(self.text) }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return predicate(self.text)
    }

    func close() async {
        try? await self.channel.close()
    }
}
