import CompressNIO
import NIOCore
import Testing

@testable import WebSocketCore

@Suite("permessage-deflate (RFC 7692)")
struct PerMessageDeflateTests {
    @Test(
        "offers are accepted with no context takeover; unknown parameters and small server windows are declined",
        arguments: [
            (["permessage-deflate; client_max_window_bits"], true),
            (["permessage-deflate"], true),
            (["x-webkit-deflate-frame, permessage-deflate; server_no_context_takeover"], true),
            (["permessage-deflate; server_max_window_bits=10"], false),
            (["permessage-deflate; unknown_parameter"], false),
            (["x-webkit-deflate-frame"], false),
            ([], false),
        ])
    func negotiation(offers: [String], accepted: Bool) {
        #expect((PerMessageDeflate.negotiate(offers: offers) == "permessage-deflate; server_no_context_takeover; client_no_context_takeover") == accepted)
    }

    @Test("a message survives compression, without the 00 00 FF FF tail")
    func roundTrip() throws {
        let codec = try PerMessageDeflateCodec()
        let message = "<message xmlns='jabber:client'><body>" + String(repeating: "héllo 🦊 ", count: 200) + "</body></message>"
        let compressed = try codec.compress(ByteBuffer(string: message))
        #expect(compressed.readableBytes < message.utf8.count / 4)
        #expect(compressed.getBytes(at: compressed.writerIndex - 4, length: 4) != [0, 0, 0xFF, 0xFF])
        #expect(String(buffer: try codec.decompress(compressed, maxSize: 1 << 20)) == message)
        // Independent messages: no shared history between them.
        let second = try codec.compress(ByteBuffer(string: "<presence/>"))
        #expect(String(buffer: try PerMessageDeflateCodec().decompress(second, maxSize: 100)) == "<presence/>")
    }

    @Test("a decompression bomb stops at the limit with policy-violation; garbage is not-well-formed")
    func limits() throws {
        let codec = try PerMessageDeflateCodec()
        let bomb = try codec.compress(ByteBuffer(repeating: UInt8(ascii: "a"), count: 1 << 20))
        #expect(bomb.readableBytes < 5000)
        #expect(throws: StreamErrorCondition.policyViolation) { try codec.decompress(bomb, maxSize: 64 * 1024) }
        #expect(throws: StreamErrorCondition.notWellFormed) { try codec.decompress(ByteBuffer(bytes: [0xFF, 0xFF, 0xFF, 0x12, 0x34]), maxSize: 1024) }
    }

    /// A whole message in one DEFLATE stream ending with a BFINAL block (what
    /// `zlib.compressobj(wbits=-15)`, `compress()`, `flush()` produce). RFC 7692 §7.2.3.3 allows it.
    static let finalBlockMessage = "<message xmlns='jabber:client' to='bob@localhost' id='x'><body>hi</body></message>"
    static let finalBlockPayload: [UInt8] = [
        0xB3, 0xC9, 0x4D, 0x2D, 0x2E, 0x4E, 0x4C, 0x4F, 0x55, 0xA8, 0xC8, 0xCD, 0xC9, 0x2B, 0xB6, 0x55, 0xCF, 0x4A, 0x4C,
        0x4A, 0x4A, 0x2D, 0xB2, 0x4A, 0xCE, 0xC9, 0x4C, 0xCD, 0x2B, 0x51, 0x57, 0x28, 0xC9, 0xB7, 0x55, 0x4F, 0xCA, 0x4F,
        0x72, 0xC8, 0xC9, 0x4F, 0x4E, 0xCC, 0xC9, 0xC8, 0x2F, 0x06, 0x0A, 0x65, 0xA6, 0xD8, 0xAA, 0x57, 0xA8, 0xDB, 0xD9,
        0x24, 0xE5, 0xA7, 0x54, 0xDA, 0x65, 0x64, 0xDA, 0xE8, 0x83, 0x19, 0x36, 0xFA, 0x50, 0x83, 0xEC, 0x00,
    ]

    /// A message compressed to the end of the DEFLATE stream (BFINAL set), as another zlib user would.
    static func finished(_ message: String) throws -> ByteBuffer {
        let compressor = try ZlibCompressor(algorithm: .deflate)
        var input = ByteBuffer(string: message)
        var output = ByteBufferAllocator().buffer(capacity: compressor.maxSize(from: input) + 64)
        try compressor.deflate(from: &input, to: &output, flush: .finish)
        return output
    }

    @Test("a payload that ends the DEFLATE stream (BFINAL) is a complete message, not an endless loop (regression)", .timeLimit(.minutes(1)))
    func finalBlock() throws {
        let codec = try PerMessageDeflateCodec()
        let exact = try codec.decompress(ByteBuffer(bytes: Self.finalBlockPayload), maxSize: 1 << 20)
        #expect(String(buffer: exact) == Self.finalBlockMessage)
        // The client's own flush marker after the final block is tolerated too.
        let flushed = try codec.decompress(ByteBuffer(bytes: Self.finalBlockPayload + [0x00, 0x00, 0xFF, 0xFF]), maxSize: 1 << 20)
        #expect(String(buffer: flushed) == Self.finalBlockMessage)
        // Larger messages (dynamic Huffman blocks, several output growths) end the same way.
        let large = "<message xmlns='jabber:client'><body>" + String(repeating: "fox 🦊 ", count: 5000) + "</body></message>"
        #expect(String(buffer: try codec.decompress(try Self.finished(large), maxSize: 1 << 20)) == large)
        // The codec is reusable afterwards: the next message starts from a fresh stream.
        let next = try codec.compress(ByteBuffer(string: "<presence/>"))
        #expect(String(buffer: try codec.decompress(next, maxSize: 100)) == "<presence/>")
    }

    @Test(
        "bytes after the end of the DEFLATE stream, other than flush markers, are not-well-formed (regression)",
        arguments: [
            [0x41] as [UInt8],
            [0xDE, 0xAD, 0xBE, 0xEF, 0x01],
            [0x00, 0x00, 0xFF, 0xFF, 0x12],
            [UInt8](repeating: 0x07, count: 4096),
        ])
    func garbageAfterFinalBlock(trailer: [UInt8]) throws {
        let codec = try PerMessageDeflateCodec()
        #expect(throws: StreamErrorCondition.notWellFormed) {
            try codec.decompress(ByteBuffer(bytes: Self.finalBlockPayload + trailer), maxSize: 1 << 20)
        }
        // A stream that ends and is followed by another complete stream is refused too.
        let twice = Self.finalBlockPayload + Self.finalBlockPayload
        #expect(throws: StreamErrorCondition.notWellFormed) { try codec.decompress(ByteBuffer(bytes: twice), maxSize: 1 << 20) }
    }

    @Test("a final block that inflates past the limit is policy-violation, even when it ends the stream")
    func finalBlockBomb() throws {
        let codec = try PerMessageDeflateCodec()
        let bomb = try Self.finished(String(repeating: "a", count: 1 << 20))
        #expect(throws: StreamErrorCondition.policyViolation) { try codec.decompress(bomb, maxSize: 64 * 1024) }
    }

    @Test("every prefix and every one-byte corruption of a payload ends (no input makes the inflater spin)", .timeLimit(.minutes(1)))
    func everyPrefixAndCorruptionTerminates() throws {
        let codec = try PerMessageDeflateCodec()
        let payloads = [Self.finalBlockPayload, Array(buffer: try codec.compress(ByteBuffer(string: Self.finalBlockMessage)))]
        var outcomes = 0
        for payload in payloads {
            for length in 0...payload.count {
                _ = try? codec.decompress(ByteBuffer(bytes: payload.prefix(length)), maxSize: 4096)
                outcomes += 1
            }
            for index in payload.indices {
                for flip: UInt8 in [0x01, 0x80, 0xFF] {
                    var corrupted = payload
                    corrupted[index] ^= flip
                    _ = try? codec.decompress(ByteBuffer(bytes: corrupted), maxSize: 4096)
                    outcomes += 1
                }
            }
        }
        // Reaching this line is the assertion that matters; count the cases to be sure they ran.
        #expect(outcomes == payloads.reduce(0) { $0 + ($1.count + 1) + $1.count * 3 })
        // And the codec still works after all of that.
        #expect(String(buffer: try codec.decompress(ByteBuffer(bytes: Self.finalBlockPayload), maxSize: 4096)) == Self.finalBlockMessage)
    }
}

@Suite("RFC 6455 frame rules")
struct WebSocketFrameRulesTests {
    typealias Kind = WebSocketFrameRules.FrameKind

    @Test(
        "unmasked frames and reserved bits no extension defines fail the connection",
        arguments: [
            // (kind, masked, rsv1, rsv2, rsv3, compression negotiated, allowed)
            (Kind.messageStart, true, false, false, false, false, true),
            (.messageStart, false, false, false, false, false, false),
            (.control, false, false, false, false, true, false),
            (.continuation, false, false, false, false, true, false),
            (.messageStart, true, false, true, false, true, false),
            (.messageStart, true, false, false, true, true, false),
            (.control, true, false, false, true, false, false),
            (.messageStart, true, true, false, false, true, true),
            (.messageStart, true, true, false, false, false, false),
            (.continuation, true, true, false, false, true, false),
            (.control, true, true, false, false, true, false),
            (.continuation, true, false, false, false, true, true),
            (.control, true, false, false, false, false, true),
            (.reserved, true, false, false, false, false, false),
            (.reserved, true, false, false, false, true, false),
            (.reserved, true, true, false, false, true, false),
        ])
    func rules(kind: Kind, masked: Bool, rsv1: Bool, rsv2: Bool, rsv3: Bool, negotiated: Bool, allowed: Bool) {
        let rules = WebSocketFrameRules(compressionNegotiated: negotiated)
        #expect(rules.allows(kind: kind, masked: masked, rsv1: rsv1, rsv2: rsv2, rsv3: rsv3) == allowed)
    }
}
