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
        let stopsReading: Bool
        init(state: State, silent: Bool, stopsReading: Bool) {
            self.state = state
            self.silent = silent
            self.stopsReading = stopsReading
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
                let reply =
                    "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='fake' from='localhost' version='1.0'><stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>"
                context.writeAndFlush(NIOAny(ByteBuffer(string: reply)), promise: nil)
                if self.stopsReading {
                    // A server that stalls mid-stream: from now on nothing is read from Tether.
                    context.channel.setOption(ChannelOptions.autoRead, value: false).whenComplete { _ in }
                }
            }
        }
    }

    private init(port: Int, server: any Channel, state: State) {
        self.port = port
        self.server = server
        self.state = state
    }

    /// - Parameters:
    ///   - silent: accept TCP and read, but never answer (a stalled server).
    ///   - stopsReading: answer the stream header, then stop reading (a server stalled mid-stream);
    ///     its receive buffer is kept small so Tether's queue toward it fills quickly.
    ///   - acceptsLate: accept nothing until `startAccepting()`, with an accept queue of one
    ///     (fill it with `fillAcceptQueue()`): further SYNs are dropped and the kernel retries
    ///     them after 1 s, 3 s, 7 s…, so a connect completes only after `startAccepting()`.
    ///   - host, port: where to listen (loopback only; port 0 picks a free one).
    ///   - group: where it runs (the test process's shared loops unless a test gives it its own).
    static func start(
        silent: Bool = false, stopsReading: Bool = false, acceptsLate: Bool = false, host: String = "127.0.0.1", port: Int = 0,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> FakeXMPPServer {
        let state = State()
        // A crowd of sessions connects upstream at once: a short accept queue would drop SYNs
        // (retried after 1 s, 3 s, …) and fail connects under load.
        var bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: acceptsLate ? 0 : 4096)
            .serverChannelOption(ChannelOptions.autoRead, value: !acceptsLate)
        if stopsReading {
            bootstrap = bootstrap.serverChannelOption(.socketOption(.so_rcvbuf), value: 4096)
        }
        let server =
            try await bootstrap
            .childChannelInitializer { channel in channel.pipeline.addHandler(Handler(state: state, silent: silent, stopsReading: stopsReading)) }
            .bind(host: host, port: port).get()
        return FakeXMPPServer(port: server.localAddress!.port!, server: server, state: state)
    }

    /// Starts accepting (after `start(acceptsLate: true)`).
    func startAccepting() async throws {
        try await self.server.setOption(ChannelOptions.autoRead, value: true).get()
    }

    /// Connections from the test itself that fill the accept queue of a server started with
    /// `acceptsLate`; returns once one of them is in the queue (then it is full), however long
    /// that takes on a loaded machine. The others hang until accepted.
    func fillAcceptQueue(count: Int = 2) async throws -> [EventLoopFuture<any Channel>] {
        final class Established: Sendable {
            let count = Atomic<Int>(0)
        }
        let established = Established()
        let fillers = (0..<count).map { _ in ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connect(host: "127.0.0.1", port: self.port) }
        for filler in fillers { filler.whenSuccess { _ in established.count.add(1, ordering: .relaxed) } }
        let deadline = ContinuousClock.now + .seconds(20)
        while established.count.load(ordering: .relaxed) == 0 {
            guard ContinuousClock.now < deadline else { throw TestFailure("no connection reached the accept queue") }
            try await Task.sleep(for: .milliseconds(10))
        }
        return fillers
    }

    /// Everything Tether has sent so far, as text.
    var received: String { String(decoding: self.receivedBytes, as: UTF8.self) }
    /// Everything Tether has sent so far, byte for byte.
    var receivedBytes: [UInt8] { self.state.received.withLock { $0 } }

    /// How many connections were accepted so far.
    var connectionCount: Int { self.state.clients.withLock { $0.count } }

    /// Sends raw bytes to every connected client.
    func send(_ text: String) async throws {
        for client in self.state.clients.withLock({ $0 }) {
            try await client.writeAndFlush(ByteBuffer(string: text))
        }
    }

    /// Waits until Tether's connection is closed (or `timeout`).
    /// Generous: a clean close waits up to the closing timeout (3 s) for the server's `</stream:stream>`, and a loaded machine adds to that.
    func waitForDisconnect(timeout: Duration = .seconds(30)) async throws {
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
func withFakeUpstream<T>(silent: Bool = false, acceptsLate: Bool = false, _ body: (FakeXMPPServer) async throws -> T) async throws -> T {
    let server = try await FakeXMPPServer.start(silent: silent, acceptsLate: acceptsLate)
    do {
        let result = try await body(server)
        await server.stop()
        return result
    } catch {
        // What the server saw, for failures that show only here (did Tether connect, and send what?).
        print("fake upstream (\(error)): \(server.connectionCount) connection(s), received: \(server.received.prefix(600))")
        await server.stop()
        throw error
    }
}
