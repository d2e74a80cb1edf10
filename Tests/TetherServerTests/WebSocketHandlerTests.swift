import CompressNIO
import Logging
import NIOCore
import NIOEmbedded
import NIOWebSocket
import Testing
import WebSocketCore
import XMPPUpstream

@testable import TetherServer

#if canImport(Glibc)
    import Glibc
#endif

/// `WebSocketXMPPHandler` on an `EmbeddedChannel`, fed decoded frames as NIOWebSocket's decoder
/// would hand them over. No domain is served, so no upstream connection is ever attempted.
final class WebSocketHarness {
    let channel = EmbeddedChannel()

    init(compressed: Bool = false, limits: SessionLimiter.Limits = .init()) throws {
        var configuration = TetherConfiguration()
        configuration.domains = []
        let client = ClientOrigin(address: try SocketAddress(ipAddress: "203.0.113.9", port: 4000), isSecure: false, destination: nil)
        try self.channel.connect(to: client.address).wait()
        try self.channel.pipeline.syncOperations.addHandler(
            WebSocketXMPPHandler(
                configuration: configuration,
                client: client,
                compressed: compressed,
                upstream: UpstreamLinks(closing: ClosingStreams(), metrics: TetherMetrics()),
                registry: WebSocketRegistry(),
                gate: SessionGate(limiter: SessionLimiter(limits: limits), status: ServerStatus(), metrics: TetherMetrics(), logger: Logger(label: "test")),
                metrics: TetherMetrics(),
                logger: Logger(label: "test")
            )
        )
    }

    deinit {
        _ = try? self.channel.finish(acceptAlreadyClosed: true)
    }

    /// A frame as a client sends it: masked unless told otherwise.
    func send(_ opcode: WebSocketOpcode, _ text: String, fin: Bool = true, masked: Bool = true, rsv1: Bool = false, rsv2: Bool = false, rsv3: Bool = false) throws {
        var data = ByteBuffer(string: text)
        let key: WebSocketMaskingKey? = masked ? .random() : nil
        if let key { data.webSocketMask(key) }
        try self.channel.writeInbound(WebSocketFrame(fin: fin, rsv1: rsv1, rsv2: rsv2, rsv3: rsv3, opcode: opcode, maskKey: key, data: data))
    }

    /// A text message compressed to the end of its DEFLATE stream (BFINAL), as zlib's
    /// compress() + flush() does, in one masked frame with RSV1.
    func sendCompressed(_ text: String) throws {
        let compressor = try ZlibCompressor(algorithm: .deflate)
        var input = ByteBuffer(string: text)
        var payload = ByteBufferAllocator().buffer(capacity: compressor.maxSize(from: input) + 64)
        try compressor.deflate(from: &input, to: &payload, flush: .finish)
        let key = WebSocketMaskingKey.random()
        payload.webSocketMask(key)
        try self.channel.writeInbound(WebSocketFrame(fin: true, rsv1: true, opcode: .text, maskKey: key, data: payload))
    }

    /// Frames written to the client so far.
    func written() throws -> [WebSocketFrame] {
        var frames: [WebSocketFrame] = []
        while let frame = try self.channel.readOutbound(as: WebSocketFrame.self) { frames.append(frame) }
        return frames
    }

    /// Text messages to the client, inflated when they were sent compressed.
    func texts() throws -> [String] {
        try self.written().filter { $0.opcode == .text }.map { frame in
            frame.rsv1 ? String(buffer: try PerMessageDeflateCodec().decompress(frame.unmaskedData, maxSize: 1 << 20)) : String(buffer: frame.unmaskedData)
        }
    }

    static func closeCode(_ frames: [WebSocketFrame]) -> UInt16? {
        guard let close = frames.first(where: { $0.opcode == .connectionClose }) else { return nil }
        var data = close.unmaskedData
        return data.readInteger(as: UInt16.self)
    }
}

@Suite("WebSocket session handler (EmbeddedChannel)")
struct WebSocketHandlerTests {
    static let open = "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='unserved.example' version='1.0'/>"

    @Test("a message in many fragments is reassembled (in place, not copied per fragment)")
    func fragments() throws {
        let socket = try WebSocketHarness()
        let pieces = Self.open.map(String.init)
        try socket.send(.text, pieces[0], fin: false)
        for piece in pieces.dropFirst().dropLast() { try socket.send(.continuation, piece, fin: false) }
        try socket.send(.continuation, pieces.last!, fin: true)
        // The whole <open/> was read: it names a domain this Tether does not serve.
        let texts = try socket.texts()
        #expect(texts.first?.hasPrefix("<open") == true)
        #expect(texts.contains { $0.contains("<host-unknown") })
    }

    @Test(
        "a socket error (connection reset) closes the connection as lost, with no stream error; a decoder error fails it with 1009 or 1002 and nothing after the close frame (regression: a reset was a violation, which closed XEP-0198 streams for good; NIO's own close frame was followed by a stream error)"
    )
    func socketErrors() throws {
        let reset = try WebSocketHarness()
        reset.channel.pipeline.fireErrorCaught(IOError(errnoCode: ECONNRESET, reason: "read"))
        #expect(try reset.texts().isEmpty)
        #expect(!reset.channel.isActive)
        for (error, code) in [(NIOWebSocketError.invalidFrameLength, UInt16(1009)), (.fragmentedControlFrame, 1002), (.multiByteControlFrameLength, 1002)] {
            let violated = try WebSocketHarness()
            violated.channel.pipeline.fireErrorCaught(error)
            let frames = try violated.written()
            #expect(frames.map(\.opcode) == [.connectionClose], "\(error)")
            #expect(WebSocketHarness.closeCode(frames) == code, "\(error)")
            #expect(!violated.channel.isActive, "\(error): closed once the close frame is written")
        }
        // After its first error NIO's decoder reports every later read: answered once.
        let failed = try WebSocketHarness()
        failed.channel.pipeline.fireErrorCaught(NIOWebSocketError.invalidFrameLength)
        for _ in 0..<3 {
            failed.channel.pipeline.fireErrorCaught(ByteToMessageDecoderError.dataReceivedInErrorState(NIOWebSocketError.invalidFrameLength, ByteBuffer(string: "more")))
        }
        #expect(try failed.written().map(\.opcode) == [.connectionClose])
    }

    @Test("a message in more than maxFragments frames is policy-violation")
    func tooManyFragments() throws {
        let socket = try WebSocketHarness()
        try socket.send(.text, "<", fin: false)
        for _ in 0..<WebSocketSessionStateMachine.Configuration().maxFragments { try socket.send(.continuation, " ", fin: false) }
        #expect(try socket.texts().contains { $0.contains("<policy-violation") })
    }

    @Test(
        "unmasked frames and undefined reserved bits fail the connection with 1002 and close it (RFC 6455 §5.1, §5.2, §7.1.7)",
        arguments: [
            ("unmasked", false, false, false, false),
            ("rsv1 without permessage-deflate", true, true, false, false),
            ("rsv2", true, false, true, false),
            ("rsv3", true, false, false, true),
        ])
    func frameRules(name: String, masked: Bool, rsv1: Bool, rsv2: Bool, rsv3: Bool) throws {
        let socket = try WebSocketHarness()
        try socket.send(.text, Self.open, masked: masked, rsv1: rsv1, rsv2: rsv2, rsv3: rsv3)
        let frames = try socket.written()
        #expect(WebSocketHarness.closeCode(frames) == 1002, "\(name)")
        #expect(!frames.contains { $0.opcode == .text }, "\(name)")
        #expect(!socket.channel.isActive, "\(name): still open")
    }

    @Test("a frame with a reserved opcode fails the connection with 1002 (RFC 6455 §5.2; found by WebSocketFrameFuzzer)", arguments: [0x3, 0x7, 0xB, 0xF] as [UInt8])
    func reservedOpcode(code: UInt8) throws {
        let socket = try WebSocketHarness()
        let opcode = try #require(WebSocketOpcode(encodedWebSocketOpcode: code))
        try socket.send(opcode, "junk")
        let frames = try socket.written()
        #expect(WebSocketHarness.closeCode(frames) == 1002)
        #expect(!socket.channel.isActive)
    }

    @Test("with permessage-deflate, a compressed message ending its DEFLATE stream is read; RSV1 on a continuation is 1002")
    func compressed() throws {
        let socket = try WebSocketHarness(compressed: true)
        // Compressed to the end of the DEFLATE stream (BFINAL), as zlib's compress() + flush() does.
        let compressor = try ZlibCompressor(algorithm: .deflate)
        var input = ByteBuffer(string: Self.open)
        var payload = ByteBufferAllocator().buffer(capacity: compressor.maxSize(from: input) + 64)
        try compressor.deflate(from: &input, to: &payload, flush: .finish)
        let key = WebSocketMaskingKey.random()
        payload.webSocketMask(key)
        try socket.channel.writeInbound(WebSocketFrame(fin: true, rsv1: true, opcode: .text, maskKey: key, data: payload))
        #expect(try socket.texts().contains { $0.contains("<host-unknown") })

        let other = try WebSocketHarness(compressed: true)
        try other.send(.text, "<open", fin: false)
        try other.send(.continuation, "/>", rsv1: true)
        #expect(WebSocketHarness.closeCode(try other.written()) == 1002)
    }

    static let framing = "urn:ietf:params:xml:ns:xmpp-framing"
    /// A well-formed `<close/>` longer than any framing element needs to be.
    static let paddedClose = "<close xmlns='\(framing)' pad='\(String(repeating: "x", count: WebSocketSessionStateMachine.framingMessageBytes))'/>"

    @Test(
        "a session refused at admission is told at once and closed after the closing handshake's timeout, without a word from the client (regression: told on its first frame, never closed)"
    )
    func refusedAtOnce() throws {
        let socket = try WebSocketHarness(limits: .init(maxSessions: 0))
        let texts = try socket.texts()
        #expect(texts.first?.hasPrefix("<open") == true)
        #expect(texts.contains { $0.contains("<policy-violation") })
        #expect(texts.last?.hasPrefix("<close") == true)
        #expect(socket.channel.isActive)
        socket.channel.embeddedEventLoop.advanceTime(by: WebSocketSettings().closeTimeout)
        #expect(!socket.channel.isActive)
    }

    @Test("a reserved opcode on a session refused at admission closes it at once (found by WebSocketFrameFuzzer)")
    func reservedOpcodeWhenRefused() throws {
        let socket = try WebSocketHarness(limits: .init(maxSessions: 0))
        #expect(try socket.texts().contains { $0.contains("<policy-violation") })
        try socket.send(try #require(WebSocketOpcode(encodedWebSocketOpcode: 0x3)), "junk")
        #expect(!socket.channel.isActive)
    }

    @Test("a connection that never sends <open/> gets connection-timeout after the HTTP request timeout, then is closed (regression: held open forever)")
    func openTimeout() throws {
        let socket = try WebSocketHarness()
        #expect(try socket.written().isEmpty)
        let configuration = TetherConfiguration()
        // Pings are answered, as an attacker's client would: only the missing <open/> counts.
        socket.channel.embeddedEventLoop.advanceTime(by: configuration.httpRequestTimeout - .seconds(1))
        let pings = try socket.written()
        #expect(pings.allSatisfy { $0.opcode == .ping })
        for _ in pings { try socket.send(.pong, "") }
        socket.channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        let texts = try socket.texts()
        #expect(texts.contains { $0.contains("<connection-timeout") })
        #expect(texts.last?.hasPrefix("<close") == true)
        socket.channel.embeddedEventLoop.advanceTime(by: WebSocketSettings().closeTimeout)
        #expect(!socket.channel.isActive)
    }

    @Test(
        "while closing, a message longer than a framing element is not inflated or read; a plain <close/> still ends the handshake (regression: every frame of a broken session was inflated in full)"
    )
    func closingReadsOnlyFramingElements() throws {
        let socket = try WebSocketHarness(compressed: true)
        try socket.send(.text, "<presence/>")
        #expect(try socket.texts().contains { $0.contains("<not-well-formed") })
        try socket.sendCompressed(Self.paddedClose)
        #expect(WebSocketHarness.closeCode(try socket.written()) == nil)
        #expect(socket.channel.isActive)
        try socket.sendCompressed("<close xmlns='\(Self.framing)'/>")
        #expect(WebSocketHarness.closeCode(try socket.written()) == 1000)
    }

    @Test("before <open/>, a message longer than a framing element is policy-violation, compressed or not")
    func oversizedBeforeOpen() throws {
        let padded = "<open xmlns='\(Self.framing)' to='unserved.example' version='1.0' pad='\(String(repeating: "x", count: WebSocketSessionStateMachine.framingMessageBytes))'/>"
        for compressed in [true, false] {
            let socket = try WebSocketHarness(compressed: true)
            if compressed { try socket.sendCompressed(padded) } else { try socket.send(.text, padded) }
            let texts = try socket.texts()
            #expect(texts.contains { $0.contains("<policy-violation") }, "compressed: \(compressed)")
            #expect(!texts.contains { $0.contains("<host-unknown") }, "compressed: \(compressed)")
        }
    }
}
