import Foundation
import NIOCore
import NIOPosix
import Synchronization

/// A TCP relay in front of Tether that, once, drops the first server→client chunk containing a
/// marker and closes both sides instead: a BOSH response lost on the way (XEP-0124 §18). Or,
/// with a rewrite, changes the first client→server chunk containing the marker (same length, so
/// HTTP framing holds): a request altered on the way. Every other byte passes untouched.
final class ResponseCuttingProxy: Sendable {
    let port: Int
    private let server: any Channel
    private let state: State

    final class State: Sendable {
        let marker: String
        let rewrite: (from: String, to: String)?
        let cuts = Mutex(0)

        init(marker: String, rewrite: (from: String, to: String)? = nil) {
            self.marker = marker
            self.rewrite = rewrite
        }

        /// The client's chunk, rewritten once when it is the first to contain the marker.
        func rewritten(_ bytes: ByteBuffer) -> ByteBuffer {
            guard let rewrite = self.rewrite else { return bytes }
            let text = String(buffer: bytes)
            guard text.contains(self.marker), let range = text.range(of: rewrite.from) else { return bytes }
            let first = self.cuts.withLock { cuts in
                defer { cuts += 1 }
                return cuts == 0
            }
            guard first else { return bytes }
            return ByteBuffer(string: text.replacingCharacters(in: range, with: rewrite.to))
        }

        /// Whether this chunk is the one to lose (the first that contains the marker).
        func shouldCut(_ bytes: ByteBuffer) -> Bool {
            guard self.rewrite == nil, String(buffer: bytes).contains(self.marker) else { return false }
            return self.cuts.withLock { cuts in
                guard cuts == 0 else { return false }
                cuts += 1
                return true
            }
        }
    }

    private final class Relay: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer

        let partner: Mutex<(any Channel)?> = Mutex(nil)
        let fromServer: Bool
        let state: State

        init(fromServer: Bool, state: State) {
            self.fromServer = fromServer
            self.state = state
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let bytes = self.unwrapInboundIn(data)
            let partner = self.partner.withLock { $0 }
            if self.fromServer, self.state.shouldCut(bytes) {
                context.close(promise: nil)
                partner?.close(promise: nil)
                return
            }
            partner?.writeAndFlush(self.fromServer ? bytes : self.state.rewritten(bytes), promise: nil)
        }

        func channelInactive(context: ChannelHandlerContext) {
            self.partner.withLock { $0 }?.close(promise: nil)
            context.fireChannelInactive()
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
        }
    }

    private init(port: Int, server: any Channel, state: State) {
        self.port = port
        self.server = server
        self.state = state
    }

    var cuts: Int { self.state.cuts.withLock { $0 } }

    static func start(to targetPort: Int, cuttingFirstChunkContaining marker: String) async throws -> ResponseCuttingProxy {
        try await Self.start(to: targetPort, state: State(marker: marker))
    }

    /// Rewrites `from` to `to` (same length) in the first client chunk that contains `marker`.
    static func start(to targetPort: Int, rewritingFirstRequestContaining marker: String, from: String, to: String) async throws -> ResponseCuttingProxy {
        precondition(from.utf8.count == to.utf8.count, "a rewrite must keep the length")
        return try await Self.start(to: targetPort, state: State(marker: marker, rewrite: (from, to)))
    }

    private static func start(to targetPort: Int, state: State) async throws -> ResponseCuttingProxy {
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelOption(.autoRead, value: false)
            .childChannelInitializer { client in
                let clientRelay = Relay(fromServer: false, state: state)
                let serverRelay = Relay(fromServer: true, state: state)
                return client.pipeline.addHandler(clientRelay).flatMap {
                    ClientBootstrap(group: client.eventLoop)
                        .channelInitializer { upstream in upstream.pipeline.addHandler(serverRelay) }
                        .connect(host: "127.0.0.1", port: targetPort)
                }.flatMap { upstream in
                    clientRelay.partner.withLock { $0 = upstream }
                    serverRelay.partner.withLock { $0 = client }
                    return client.setOption(.autoRead, value: true)
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return ResponseCuttingProxy(port: server.localAddress!.port!, server: server, state: state)
    }

    func stop() async {
        try? await self.server.close()
    }
}
