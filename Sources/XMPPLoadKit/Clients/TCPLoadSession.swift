import NIOCore
import NIOPosix
import XMPPClientCore
import XMPPCore

/// A client on a plain RFC 6120 stream (no TLS): the reference transport.
final class TCPLoadSession: LoadSession {
    private var channel: (any Channel)?
    private let framer = XMLStreamFramer(limits: .init(maxElementBytes: 1 << 20, maxDepth: 64))
    private var header: String { StreamHeader(to: self.worker.scenario.domain).serialized }

    override func connect() {
        let endpoint = self.endpoint
        let bound = NIOLoopBound(self, eventLoop: self.eventLoop)
        ClientBootstrap(group: self.eventLoop)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .connectTimeout(.seconds(10))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let session = bound.value
                    try channel.pipeline.syncOperations.addHandler(
                        LoadConnectionHandler<ByteBuffer>(read: { session.bytesReceived($0) }, closed: { session.connectionClosed() }))
                }
            }
            .connect(host: endpoint.host, port: endpoint.port)
            .assumeIsolated()
            .whenComplete { result in
                let session = bound.value
                switch result {
                case .success(let channel):
                    session.channel = channel
                    if session.isFinished {
                        channel.close(promise: nil)
                    } else {
                        session.transportConnected()
                    }
                case .failure(let error):
                    session.transportFailed(ClientFailure(.connect, Self.describe(error)))
                }
            }
    }

    static func describe(_ error: any Error) -> String {
        if let error = error as? IOError { return "errno-\(error.errnoCode)" }
        if error is ChannelError { return "\(error)" }
        return String(describing: type(of: error))
    }

    override func openStream() {
        self.channel?.writeAndFlush(ByteBuffer(string: self.header), promise: nil)
    }

    override func restartStream() {
        self.framer.reset()
        self.channel?.writeAndFlush(ByteBuffer(string: self.header), promise: nil)
    }

    override func send(_ element: ByteBuffer) {
        self.channel?.writeAndFlush(element, promise: nil)
    }

    override func closeStream() {
        self.channel?.writeAndFlush(ByteBuffer(string: StreamHeader.closing), promise: nil)
    }

    override func abort() {
        self.channel?.close(promise: nil)
    }

    fileprivate func bytesReceived(_ bytes: ByteBuffer) {
        let events: [XMLStreamFramer.Event]
        do {
            events = try self.framer.feed(bytes)
        } catch {
            self.transportFailed(ClientFailure(.protocolViolation, "xml"))
            return
        }
        for event in events {
            switch event {
            case .rootOpened: break
            case .element(let element): self.received(element)
            case .rootClosed: self.streamClosed()
            }
        }
    }

    fileprivate func connectionClosed() {
        self.channel = nil
        self.streamClosed()
    }
}
