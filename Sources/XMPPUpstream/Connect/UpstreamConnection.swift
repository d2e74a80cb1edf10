import NIOCore
import XMPPCore

/// One live client-to-server stream. All methods must be called on `eventLoop` (hence the unchecked Sendable).
public final class UpstreamConnection: @unchecked Sendable {
    public let channel: any Channel
    public var eventLoop: any EventLoop { self.channel.eventLoop }
    /// The address connected to, for logs.
    public let remoteAddress: SocketAddress
    private let handler: UpstreamChannelHandler
    private var closed = false

    init(channel: any Channel, remoteAddress: SocketAddress, handler: UpstreamChannelHandler) {
        self.channel = channel
        self.remoteAddress = remoteAddress
        self.handler = handler
    }

    /// Writes client payloads in order, with one flush.
    public func send(_ payloads: [ByteBuffer]) {
        guard !self.closed else { return }
        for payload in payloads {
            self.channel.write(payload, promise: nil)
        }
        self.channel.flush()
        if !self.channel.isWritable {
            self.handler.checkQueue()
        }
    }

    /// Opens a new stream on the same connection (after SASL success).
    public func restart() {
        guard !self.closed else { return }
        self.handler.restart()
    }

    /// Ends the stream. Graceful ends it as RFC 6120 §4.4 says, so the server ends the session
    /// normally, after bouncing whatever the server still sends until it has answered a closing
    /// ping (`UpstreamStreamStateMachine.close(barrierID:)`); `bounced` is then told how many,
    /// once. Otherwise the TCP connection just drops, which keeps an XEP-0198 session resumable.
    public func close(graceful: Bool, bounced: @escaping (Int) -> Void = { _ in }) {
        guard !self.closed else { return }
        self.closed = true
        if graceful && self.channel.isActive {
            self.handler.beginClosing(barrierID: "tether-close-\(String(UInt64.random(in: 0...UInt64.max), radix: 36))", bounced: bounced)
        } else {
            self.handler.detach()
            self.channel.close(promise: nil)
        }
    }
}
