import NIOCore
import Testing

@testable import WebSocketCore

@Suite("permessage-deflate (RFC 7692)")
struct PerMessageDeflateTests {
    @Test("offers are accepted with no context takeover; unknown parameters and small server windows are declined", arguments: [
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
}
