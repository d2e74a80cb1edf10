// One client connection through Tether's production pipeline (TetherServer.connectionInitializer,
// the same code the listener's bootstrap runs) on an EmbeddedChannel: bytes in, bytes out, time
// advanced by hand. Shared by HTTPRequestFuzzer, WebSocketFrameFuzzer and HTTP2FrameFuzzer.

import Logging
import NIOEmbedded
import NIOHTTP1

@testable import NIOCore
@testable import TetherServer

#if canImport(Glibc)
    import Glibc
#endif

/// A connection on its own server and event loop, so no state carries over from one input to
/// the next (limiter buckets, registries, metrics).
public final class FuzzConnection {
    public let channel: EmbeddedChannel
    public let server: TetherServer
    /// Everything written to the client so far, in order.
    public private(set) var output: [UInt8] = []
    /// The requests the HTTP edge was handed, in order (the order of its answers).
    public let requests = RequestRecorder()
    /// Errors the pipeline passed to its end (EmbeddedChannel rethrows them from writeInbound).
    public private(set) var inboundErrors = 0

    public static let untrustedPeer = try! SocketAddress(ipAddress: "203.0.113.9", port: 40_000)
    public static let trustedPeer = try! SocketAddress(ipAddress: "127.0.0.1", port: 40_000)
    public static let listener = try! SocketAddress(ipAddress: "127.0.0.1", port: 5280)

    /// Logging goes nowhere: a run prints only what libFuzzer prints.
    static let logger = Logger(label: "fuzz", factory: { _ in SwiftLogNoOpLogHandler() })

    /// The longest a silent connection may stay open: the HTTP request timeout, two WebSocket ping
    /// intervals, the closing handshake and the lingering close, with room to spare.
    public static func silenceLimit(_ configuration: TetherConfiguration) -> TimeAmount {
        configuration.httpRequestTimeout + configuration.webSocket.pingInterval * 3 + configuration.webSocket.closeTimeout
            + configuration.webSocket.slowReaderTimeout + .seconds(10)
    }

    /// - Parameter http2: the pipeline of a TLS connection that chose `h2` by ALPN, set up once
    ///   connected as ALPN does (the bytes are the decrypted ones; `requests` stays empty: every
    ///   stream has its own edge handler); otherwise the plain HTTP/1.1 listener's.
    public init(configuration: TetherConfiguration, peer: SocketAddress, http2: Bool = false) {
        let loop = EmbeddedEventLoop()
        self.channel = EmbeddedChannel(loop: loop)
        // The group only serves BOSH sessions, which the fuzz configurations never create.
        self.server = TetherServer(configuration: configuration, group: loop, logger: Self.logger)
        self.channel.localAddress = Self.listener
        self.channel.remoteAddress = peer
        do {
            let sync = self.channel.pipeline.syncOperations
            if http2 {
                try self.channel.connect(to: peer).wait()
                try self.server.http2ConnectionInitializer()(self.channel)
                try sync.addHandler(ClosedSocketGate(), position: .first)
            } else {
                try self.server.connectionInitializer()(self.channel)
                try sync.addHandler(ClosedSocketGate(), position: .first)
                try sync.addHandler(self.requests, position: .before(try sync.handler(type: HTTPEdgeHandler.self)))
                try self.channel.connect(to: peer).wait()
            }
        } catch {
            fatalError("the production pipeline could not be set up: \(error)")
        }
        self.collect()
    }

    /// One read of `bytes` from the client, then whatever it set off; `false` once closed.
    @discardableResult
    public func send(_ bytes: some Collection<UInt8>) -> Bool {
        guard self.channel.isActive else { return false }
        do {
            try self.channel.writeInbound(ByteBuffer(bytes: bytes))
        } catch {
            self.inboundErrors += 1
        }
        self.channel.embeddedEventLoop.run()
        self.collect()
        return self.channel.isActive
    }

    /// Moves the clock, firing every timer due (a timer that keeps rescheduling itself without
    /// delay would never return here: libFuzzer's -timeout reports it).
    public func advance(by amount: TimeAmount) {
        self.channel.embeddedEventLoop.advanceTime(by: amount)
        self.collect()
    }

    public var isActive: Bool { self.channel.isActive }

    /// Ends the connection as a silent client would: nothing more is sent and time passes. The
    /// server's own timers must close it; then nothing may be left running.
    public func finishSilently(_ configuration: TetherConfiguration, limit: TimeAmount? = nil) {
        let limit = limit ?? Self.silenceLimit(configuration)
        self.advance(by: limit)
        check(!self.channel.isActive, "a silent connection was still open after \(limit)")
        self.finish()
    }

    /// `TETHER_FUZZ_PRINT=1` makes a replay print what the server wrote (for reading a crash input).
    static let prints = getenv("TETHER_FUZZ_PRINT") != nil

    /// Closes from the client's side (if still open), then checks nothing outlives the connection.
    public func finish() {
        _ = try? self.channel.finish(acceptAlreadyClosed: true)
        self.collect()
        if Self.prints {
            // To stderr, unbuffered: a failing check right after must not swallow it.
            let text = "server wrote \(self.output.count) bytes:\n\(printable(self.output.prefix(4000)))\n"
            _ = text.withCString { write(2, $0, strlen($0)) }
        }
        // Timers of a closed connection are cancelled or harmless: an hour of time must pass.
        self.channel.embeddedEventLoop.advanceTime(by: .hours(1))
        self.collect()
        check(self.server.webSocketSessionCount == 0, "\(self.server.webSocketSessionCount) WebSocket session(s) registered after the connection closed")
        check(self.server.sessionCount == 0, "\(self.server.sessionCount) BOSH session(s) left after the connection closed")
    }

    private func collect() {
        while true {
            let buffer: ByteBuffer?
            do {
                buffer = try self.channel.readOutbound(as: ByteBuffer.self)
            } catch {
                // A handler wrote something the pipeline never encoded (e.g. a frame reaching the
                // HTTP encoder during the upgrade).
                fatalError("invariant broken: the pipeline wrote a non-byte message to the socket: \(error)")
            }
            guard let buffer else { return }
            self.output += buffer.readableBytesView
        }
    }
}

/// Fails writes on a closed channel, as a socket does. EmbeddedChannel keeps them (and has no
/// half-close: closing the output closes it all), so without this a handler writing while the
/// connection closes (NIO's HTTP error handler answering the request cut short, for one) would
/// put bytes on the "wire" that a real client never receives.
final class ClosedSocketGate: ChannelOutboundHandler {
    typealias OutboundIn = NIOAny

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard context.channel.isActive else {
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        context.write(data, promise: promise)
    }
}

/// Notes each request head on its way to the HTTP edge (a response to HEAD has no body, and the
/// BOSH rules apply to answers of POST /http-bind); leaves the pipeline when it is upgraded.
public final class RequestRecorder: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = NIOAny
    public private(set) var heads: [HTTPRequestHead] = []

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head(let head) = data.tryAs(type: HTTPServerRequestPart.self) {
            self.heads.append(head)
        }
        context.fireChannelRead(data)
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is HTTPServerUpgradeEvents {
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
        context.fireUserInboundEventTriggered(event)
    }
}

public func check(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String) {
    if !condition() { fatalError("invariant broken: \(message())") }
}

/// The configuration every pipeline input starts from: nothing is served, so no `<open/>` or
/// session creation ever reaches for an upstream connection (EmbeddedEventLoop cannot run a
/// ClientBootstrap). `servedButFull` serves `localhost` and `example.com` (host-meta, BOSH
/// past its domain check) with `maxSessions = 0`: the limiter refuses every session before any
/// connect, so those paths stay in memory too.
public func fuzzConfiguration(servedButFull: Bool) -> TetherConfiguration {
    var configuration = TetherConfiguration()
    if servedButFull {
        configuration.domains = ["localhost", "example.com"]
        configuration.maxSessions = 0
        configuration.nodeID = "node1"
        configuration.hostMeta = HostMetaSettings(boshURL: "https://example.com/http-bind", webSocketURL: "wss://example.com/xmpp-websocket")
    }
    return configuration
}

/// 64-bit FNV-1a of the input: the seed of its chunking.
public func fnv1a(_ bytes: some Sequence<UInt8>) -> UInt64 {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in bytes {
        hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3
    }
    return hash
}

/// A small deterministic generator: the same input always gets the same chunks.
public struct SplitMix64 {
    var state: UInt64
    public init(seed: UInt64) { self.state = seed }
    public mutating func next() -> UInt64 {
        self.state &+= 0x9e37_79b9_7f4a_7c15
        var z = self.state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}

/// Splits `bytes` into TCP-sized reads: `mode` 0 one read, 1 reads of 1–4 bytes (splitting every
/// header and length field), 2 reads of 1–64 bytes, 3 reads of 1–1500 bytes.
public func chunks(_ bytes: [UInt8], mode: Int, random: inout SplitMix64) -> [ArraySlice<UInt8>] {
    guard mode != 0, !bytes.isEmpty else { return [bytes[...]] }
    let largest = [1, 4, 64, 1500][min(mode, 3)]
    var result: [ArraySlice<UInt8>] = []
    var start = 0
    while start < bytes.count {
        let size = 1 + Int(random.next() % UInt64(largest))
        let end = min(bytes.count, start + size)
        result.append(bytes[start..<end])
        start = end
    }
    return result
}
