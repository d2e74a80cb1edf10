import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization
import XMPPUpstream

/// The connection manager: HTTP listeners in front, one upstream XMPP stream per session behind.
public final class TetherServer: Sendable {
    public let configuration: TetherConfiguration
    private let group: any EventLoopGroup
    private let logger: Logger
    private let bosh: BOSHService
    private let listeners = Mutex<[any Channel]>([])

    public init(configuration: TetherConfiguration, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, logger: Logger = Logger(label: "tether")) {
        self.configuration = configuration
        self.group = group
        self.logger = logger
        self.bosh = BOSHService(configuration: configuration, group: group, logger: logger)
    }

    /// Live BOSH sessions.
    public var sessionCount: Int { self.bosh.sessionCount }

    /// Binds every `listen` address; returns the bound addresses (port 0 becomes the real port).
    @discardableResult
    public func start() async throws -> [SocketAddress] {
        var bound: [SocketAddress] = []
        for listen in self.configuration.listen {
            let channel = try await self.bootstrap().bind(host: listen.host, port: listen.port).get()
            self.listeners.withLock { $0.append(channel) }
            if let address = channel.localAddress {
                bound.append(address)
                self.logger.info("listening", metadata: ["address": "\(address)"])
            }
        }
        return bound
    }

    /// Stops accepting, ends every session with `system-shutdown` (or `see-other-uri`), closes upstreams.
    public func shutdown() async {
        let listeners = self.listeners.withLock { channels in
            defer { channels.removeAll() }
            return channels
        }
        for listener in listeners {
            try? await listener.close()
        }
        await self.bosh.shutdown()
        // Give the answers a moment to reach the clients before the process goes.
        let deadline = NIODeadline.now() + self.configuration.shutdownGracePeriod
        while self.bosh.sessionCount > 0 && NIODeadline.now() < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        self.logger.info("stopped")
    }

    private func bootstrap() -> ServerBootstrap {
        let configuration = self.configuration
        let bosh = self.bosh
        let logger = self.logger
        return ServerBootstrap(group: self.group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.configureHTTPServerPipeline(withPipeliningAssistance: true, withErrorHandling: true)
                    try sync.addHandler(HTTPEdgeHandler(configuration: configuration, bosh: bosh, logger: logger))
                }
            }
    }
}
