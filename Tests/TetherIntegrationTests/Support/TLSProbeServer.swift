import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS
import Synchronization

/// A scripted XMPP server that records what a client's TLS handshake carried: the SNI host
/// name and the ALPN protocol negotiated. `directTLS`: TLS from the first byte (ALPN
/// `xmpp-client` offered); `startTLS`: a plain stream that requires STARTTLS first. After TLS it
/// answers every stream header with SASL-less features. For what Prosody does not report (the
/// client's SNI and ALPN); never a stand-in for Prosody in protocol tests. Loopback only.
final class TLSProbeServer: Sendable {
    enum Mode: Sendable {
        case directTLS
        case startTLS
    }

    struct Handshake: Hashable, Sendable {
        var serverName: String?
        var negotiatedProtocol: String?
    }

    final class State: Sendable {
        let serverNames = Mutex<[String?]>([])
        let protocols = Mutex<[String?]>([])
        let proxyHeaders = Mutex<[String]>([])
    }

    /// The PROXY protocol v1 lines received in the clear before anything else (with `proxyHeader`).
    var proxyHeaders: [String] { self.state.proxyHeaders.withLock { $0 } }

    let port: Int
    private let server: any Channel
    private let state: State

    /// Every completed handshake, in order.
    var handshakes: [Handshake] {
        let names = self.state.serverNames.withLock { $0 }
        let protocols = self.state.protocols.withLock { $0 }
        return zip(names, protocols).map { Handshake(serverName: $0, negotiatedProtocol: $1) }
    }

    private init(port: Int, server: any Channel, state: State) {
        self.port = port
        self.server = server
        self.state = state
    }

    /// - Parameters: certificate and key: PEM files for the server (see `makeCertificates`).
    ///   - proxyHeader: expect a PROXY protocol v1 line first, in the clear (recorded, then removed).
    static func start(_ mode: Mode, certificate: String, key: String, proxyHeader: Bool = false) async throws -> TLSProbeServer {
        let state = State()
        var tls = TLSConfiguration.makeServerConfiguration(
            certificateChain: try NIOSSLCertificate.fromPEMFile(certificate).map { .certificate($0) },
            privateKey: .privateKey(try NIOSSLPrivateKey(file: key, format: .pem))
        )
        tls.applicationProtocols = ["xmpp-client"]
        tls.sslContextCallback = { values, promise in
            state.serverNames.withLock { $0.append(values.serverHostname) }
            promise.succeed(.noChanges)
        }
        let context = try NIOSSLContext(configuration: tls)
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    if proxyHeader { try sync.addHandler(ProxyLineReader(state: state)) }
                    if case .directTLS = mode { try sync.addHandler(NIOSSLServerHandler(context: context)) }
                    try sync.addHandler(Responder(state: state, context: context, tlsDone: false, mode: mode))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return TLSProbeServer(port: server.localAddress!.port!, server: server, state: state)
    }

    func stop() async {
        try? await self.server.close()
    }

    /// Reads one `PROXY …\r\n` line, passes on what follows it, and leaves the pipeline.
    private final class ProxyLineReader: ChannelInboundHandler, RemovableChannelHandler {
        typealias InboundIn = ByteBuffer
        typealias InboundOut = ByteBuffer
        let state: State
        var buffer = ByteBuffer()

        init(state: State) { self.state = state }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var bytes = self.unwrapInboundIn(data)
            self.buffer.writeBuffer(&bytes)
            guard let end = self.buffer.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) else {
                if self.buffer.readableBytes > 108 { context.close(promise: nil) }  // v1's longest line
                return
            }
            let length = end - self.buffer.readerIndex + 1
            let line = self.buffer.readString(length: length) ?? ""
            self.state.proxyHeaders.withLock { $0.append(line) }
            let rest = self.buffer
            self.buffer = ByteBuffer()
            // What followed the line (a ClientHello in the same segment) goes on first.
            if rest.readableBytes > 0 { context.fireChannelRead(self.wrapInboundOut(rest)) }
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
    }

    private final class Responder: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let state: State
        let context: NIOSSLContext
        let mode: Mode
        var tlsDone: Bool
        var received = ""

        init(state: State, context: NIOSSLContext, tlsDone: Bool, mode: Mode) {
            self.state = state
            self.context = context
            self.tlsDone = tlsDone
            self.mode = mode
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            self.received += String(buffer: self.unwrapInboundIn(data))
            let header = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='probe' from='probe.test' version='1.0'>"
            if self.received.contains("<stream:stream") {
                self.received = ""
                let features =
                    self.tlsDone || self.mode == .directTLS
                    ? "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>"
                    : "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>"
                context.writeAndFlush(self.wrapOutboundOut(ByteBuffer(string: header + features)), promise: nil)
            } else if self.received.contains("<starttls") && !self.tlsDone && self.mode == .startTLS {
                self.received = ""
                context.writeAndFlush(self.wrapOutboundOut(ByteBuffer(string: "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")), promise: nil)
                // In front before the ClientHello can arrive (this very read callback).
                try? context.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: self.context), position: .first)
            }
        }

        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            if let event = event as? TLSUserEvent, case .handshakeCompleted(let negotiated) = event {
                self.tlsDone = true
                self.state.protocols.withLock { $0.append(negotiated) }
            }
            context.fireUserInboundEventTriggered(event)
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
        }
    }
}

/// A probe server for `body`, stopped afterwards.
func withTLSProbe<T>(
    _ mode: TLSProbeServer.Mode, certificate: String, key: String, proxyHeader: Bool = false, _ body: (TLSProbeServer) async throws -> T
) async throws -> T {
    let probe = try await TLSProbeServer.start(mode, certificate: certificate, key: key, proxyHeader: proxyHeader)
    do {
        let result = try await body(probe)
        await probe.stop()
        return result
    } catch {
        await probe.stop()
        throw error
    }
}
