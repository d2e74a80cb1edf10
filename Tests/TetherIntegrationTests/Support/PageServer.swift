import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// The web application's own origin in browser tests: serves the test page and Strophe.js from
/// Debian's libjs-strophe on another loopback port than Tether's, so every request the page makes
/// to Tether is cross-origin.
final class PageServer: Sendable {
    static let stropheScript = "/usr/share/javascript/strophe/strophe.js"

    let port: Int
    private let channel: any Channel
    var origin: String { "http://127.0.0.1:\(self.port)" }

    private init(port: Int, channel: any Channel) {
        self.port = port
        self.channel = channel
    }

    static func start(pages: [String: String]) async throws -> PageServer {
        guard let strophe = FileManager.default.contents(atPath: Self.stropheScript) else {
            throw TestFailure("Strophe.js missing at \(Self.stropheScript) (scripts/install-deps.sh --with-browser installs libjs-strophe)")
        }
        var files: [String: (String, ByteBuffer)] = ["/strophe.js": ("text/javascript; charset=utf-8", ByteBuffer(bytes: strophe))]
        for (path, html) in pages {
            files[path] = ("text/html; charset=utf-8", ByteBuffer(string: html))
        }
        let served = files
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(FileHandler(files: served))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        guard let port = channel.localAddress?.port else { throw TestFailure("page server has no port") }
        return PageServer(port: port, channel: channel)
    }

    func stop() async {
        try? await self.channel.close()
    }

    private final class FileHandler: ChannelInboundHandler, Sendable {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        let files: [String: (String, ByteBuffer)]

        init(files: [String: (String, ByteBuffer)]) {
            self.files = files
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard case .head(let head) = self.unwrapInboundIn(data) else { return }
            let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
            var headers = HTTPHeaders([("Cache-Control", "no-store")])
            let body: ByteBuffer
            let status: HTTPResponseStatus
            if let (type, content) = self.files[path] {
                status = .ok
                headers.add(name: "Content-Type", value: type)
                body = content
            } else {
                status = .notFound
                body = ByteBuffer(string: "not found")
            }
            headers.add(name: "Content-Length", value: String(body.readableBytes))
            context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
            context.write(self.wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
            context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
        }
    }
}
