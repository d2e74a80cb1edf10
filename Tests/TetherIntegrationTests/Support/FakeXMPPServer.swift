import NIOCore
import NIOPosix
import Synchronization

/// A scripted XMPP server for what Prosody cannot be made to do on demand (whitespace keepalives,
/// inspecting exactly what Tether sends). It answers every stream header with a header and
/// SASL-less features, records all bytes received, and sends what the test tells it to.
/// Never a stand-in for Prosody in protocol tests.
final class FakeXMPPServer: Sendable {
    let port: Int
    private let server: any Channel
    private let state: State

    final class State: Sendable {
        let received = Mutex<[UInt8]>([])
        let clients = Mutex<[any Channel]>([])
    }

    private final class Handler: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let state: State
        let silent: Bool
        init(state: State, silent: Bool) {
            self.state = state
            self.silent = silent
        }

        func channelActive(context: ChannelHandlerContext) {
            let channel = context.channel
            self.state.clients.withLock { $0.append(channel) }
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let bytes = self.unwrapInboundIn(data)
            let text = String(buffer: bytes)
            self.state.received.withLock { $0 += bytes.readableBytesView }
            if text.contains("<stream:stream") && !self.silent {
                let reply = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='fake' from='localhost' version='1.0'><stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>"
                context.writeAndFlush(NIOAny(ByteBuffer(string: reply)), promise: nil)
            }
        }
    }

    private init(port: Int, server: any Channel, state: State) {
        self.port = port
        self.server = server
        self.state = state
    }

    /// - Parameter silent: accept TCP and read, but never answer (a stalled server).
    static func start(silent: Bool = false) async throws -> FakeXMPPServer {
        let state = State()
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in channel.pipeline.addHandler(Handler(state: state, silent: silent)) }
            .bind(host: "127.0.0.1", port: 0).get()
        return FakeXMPPServer(port: server.localAddress!.port!, server: server, state: state)
    }

    /// Everything Tether has sent so far, as text.
    var received: String { String(decoding: self.receivedBytes, as: UTF8.self) }
    /// Everything Tether has sent so far, byte for byte.
    var receivedBytes: [UInt8] { self.state.received.withLock { $0 } }

    /// Sends raw bytes to every connected client.
    func send(_ text: String) async throws {
        for client in self.state.clients.withLock({ $0 }) {
            try await client.writeAndFlush(ByteBuffer(string: text))
        }
    }

    /// Waits until Tether's connection is closed (or `timeout`).
    func waitForDisconnect(timeout: Duration = .seconds(5)) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if self.state.clients.withLock({ $0.allSatisfy { !$0.isActive } && !$0.isEmpty }) { return }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw TestFailure("Tether did not close its upstream connection")
    }

    func stop() async {
        for client in self.state.clients.withLock({ $0 }) { try? await client.close() }
        try? await self.server.close()
    }
}

/// A fake upstream for `body`, stopped afterwards.
func withFakeUpstream<T>(silent: Bool = false, _ body: (FakeXMPPServer) async throws -> T) async throws -> T {
    let server = try await FakeXMPPServer.start(silent: silent)
    do {
        let result = try await body(server)
        await server.stop()
        return result
    } catch {
        await server.stop()
        throw error
    }
}
