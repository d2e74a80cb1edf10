// libFuzzer target for the WebSocket side of a connection as Tether builds it: a fixed upgrade
// request (GET /xmpp-websocket, subprotocol xmpp, permessage-deflate offered or not), then client
// frames through NIOWebSocket's decoder, WebSocketSessionStateMachine's frame rules, fragment reassembly,
// permessage-deflate inflating, RFC 7395 message validation and XML framing.
// Broken invariants stop the process with fatalError; see Fuzzing/README.md.

import NIOCore
import PipelineHarness
import WebSocketCore
import XMPPCore

@testable import TetherServer

/// RFC 6455 §5.2: "If an unknown opcode is received, the receiving endpoint MUST _Fail the
/// WebSocket Connection_." Tether used to ignore frames with a reserved opcode (3–7, 11–15)
/// (regression-reserved-opcode in the corpus); fixed, with a handler test in Tests/TetherServerTests.
let checksReservedOpcodes = true

/// Also while a refusal is pending (session limit, draining): the handler used to answer the
/// first frame with the refusal before looking at its opcode, so a reserved opcode got
/// `policy-violation` instead of a failed connection
/// (Corpus/WebSocketFrameFuzzer/regression-reserved-opcode-refused.bin). Fixed in the frame rules.
let checksReservedOpcodesWhenRefused = true

/// Input: byte 0 chooses the connection (bit 0 offers permessage-deflate, bit 1 structured
/// frames instead of raw bytes, bit 2 small XML limits, bit 3 the server compresses every message,
/// bit 4 served domains with no session room, bit 5 deflate switched off, bits 6–7 the chunking);
/// the rest is the client's bytes after the upgrade, raw or as frame records (see `ClientFrames`).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let input = [UInt8](UnsafeRawBufferPointer(start: start, count: count))
    guard let flags = input.first else { return 0 }
    let offersDeflate = flags & 0x01 != 0
    var configuration = fuzzConfiguration(servedButFull: flags & 0x10 != 0)
    if flags & 0x04 != 0 {
        configuration.xmlLimits = XMLStreamFramer.Limits(maxElementBytes: 200, maxDepth: 4)
    }
    if flags & 0x08 != 0 {
        configuration.webSocket.compressionThreshold = 0
    }
    if flags & 0x20 != 0 {
        configuration.webSocket.perMessageDeflate = false
    }
    let compressed = offersDeflate && configuration.webSocket.perMessageDeflate
    let connection = FuzzConnection(configuration: configuration, peer: FuzzConnection.untrustedPeer)
    connection.send(Array(upgradeRequest(offersDeflate: offersDeflate).utf8))
    let (responses, afterUpgrade) = readResponses(connection.output)
    check(responses.count == 1 && afterUpgrade != nil, "the upgrade got \(responses.map(\.status)) instead of one 101")
    checkUpgradeResponse(responses[0], compressed: compressed)
    let upgradeLength = connection.output.count - afterUpgrade!.count

    let client =
        flags & 0x02 != 0
        ? ClientFrames(input.dropFirst(), compressionNegotiated: compressed)
        : ClientFrames(raw: input.dropFirst())
    var random = SplitMix64(seed: fnv1a(input))
    sending: for segment in client.segments {
        for chunk in chunks(segment.bytes, mode: Int(flags >> 6), random: &random) {
            guard connection.send(chunk) else { break sending }
        }
        if segment.advanceSeconds > 0 {
            connection.advance(by: .seconds(segment.advanceSeconds))
        }
    }
    // The server's timers must end a connection the client stops using (pings unanswered).
    connection.finishSilently(configuration)

    let frames = readFrames(connection.output[upgradeLength...])
    let pongs = checkServerFrames(frames, compressed: compressed)
    for pong in pongs {
        check(client.isRaw || client.pingPayloads.contains(pong), "a pong whose payload no ping carried: \(printable(pong))")
    }
    if client.brokeFrameRules {
        check(firstCloseCode(frames) != nil, "a frame broke RFC 6455 §5.1/§5.2 and the server sent no close frame")
    }
    // A session refused at admission (served but full) answers the first frame with the refusal,
    // whatever its opcode: see `checksReservedOpcodesWhenRefused`.
    if checksReservedOpcodes && client.sentReservedOpcode && (checksReservedOpcodesWhenRefused || flags & 0x10 == 0) {
        check(firstCloseCode(frames) != nil, "a frame with a reserved opcode and the server sent no close frame")
    }
    return 0
}

func upgradeRequest(offersDeflate: Bool) -> String {
    "GET /xmpp-websocket HTTP/1.1\r\nHost: localhost:5280\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        + "Sec-WebSocket-Key: \(webSocketKey)\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: xmpp\r\n"
        + "Origin: http://localhost:5280\r\n"
        + (offersDeflate ? "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" : "")
        + "\r\n"
}

/// What the client sends after the upgrade, as reads separated by pauses.
///
/// Structured input is a list of records `header mode length payload…`:
/// - header: FIN 0x80, RSV1–3 0x40/0x20/0x10, opcode in the low nibble;
/// - mode: bits 1–2 how the payload is deflated (0 not, 1 `PerMessageDeflateCodec().compress`
///   (sync flush, RFC 7692 §7.2.1), 2 the same ended by an empty final fixed-Huffman block
///   (BFINAL=1), 3 one final stored block (BFINAL=1)); 0x08 appends an empty sync-flush marker;
///   0x10 splits the message into 2–3 frames (continuations; RSV bits on the first only);
///   0x20 writes the length in a longer form than needed; 0x40 leaves the frame unmasked;
///   0x80 pauses after the record for the seconds in the next byte (timers fire);
/// - length: payload bytes taken from the input (0–255).
struct ClientFrames {
    struct Segment {
        var bytes: [UInt8]
        var advanceSeconds: Int64
    }

    var segments: [Segment] = []
    var pingPayloads: Set<[UInt8]> = []
    /// A frame broke the RFC 6455 rules at a point the server reads it: after frames the decoder
    /// accepts, with no pause (a ping timeout may close the connection silently).
    var brokeFrameRules = false
    /// Likewise, a frame with a reserved opcode.
    var sentReservedOpcode = false
    let isRaw: Bool

    init(raw: ArraySlice<UInt8>) {
        self.segments = [Segment(bytes: Array(raw), advanceSeconds: 0)]
        self.isRaw = true
    }

    init(_ input: ArraySlice<UInt8>, compressionNegotiated: Bool) {
        self.isRaw = false
        var rest = input
        func byte() -> UInt8? { rest.popFirst() }
        var readsCleanly = true
        var current: [UInt8] = []
        var index: UInt8 = 0
        while let header = byte() {
            let mode = byte() ?? 0
            let length = Int(byte() ?? 0)
            let payload = Array(rest.prefix(length))
            rest = rest.dropFirst(length)
            index &+= 1
            let message = Self.deflated(payload, kind: Int(mode >> 1) & 3, flushMarker: mode & 0x08 != 0)
            let opcode = header & 0x0F
            let rsv = (header >> 4) & 0x07
            let masked = mode & 0x40 == 0
            var parts = [message]
            if mode & 0x10 != 0 {
                let cut = byte().map { Int($0) } ?? 0
                let first = message.isEmpty ? 0 : cut % (message.count + 1)
                let second = first + (message.count - first) / 2
                parts = [Array(message[..<first]), Array(message[first..<second]), Array(message[second...])]
                if cut & 1 == 0 { parts = [parts[0], parts[1] + parts[2]] }
            }
            for (position, part) in parts.enumerated() {
                let isFirst = position == 0
                let isLast = position == parts.count - 1
                let frameOpcode = isFirst ? opcode : 0
                let frameRSV = isFirst ? rsv : 0
                let fin = isLast ? header & 0x80 != 0 : false
                current += Self.frame(
                    fin: fin, rsv: frameRSV, opcode: frameOpcode, masked: masked, key: [0x37 ^ index, 0xFA, 0x21, 0x3D], payload: part, longLength: mode & 0x20 != 0)
                if readsCleanly {
                    let kind: WebSocketFrameRules.FrameKind = frameOpcode == 0 ? .continuation : (frameOpcode >= 8 ? .control : .messageStart)
                    let allowed = WebSocketFrameRules(compressionNegotiated: compressionNegotiated)
                        .allows(kind: kind, masked: masked, rsv1: frameRSV & 4 != 0, rsv2: frameRSV & 2 != 0, rsv3: frameRSV & 1 != 0)
                    // Independent of Tether's rules type: the RFC's own conditions.
                    let rfcAllows = masked && frameRSV & 3 == 0 && (frameRSV & 4 == 0 || (compressionNegotiated && (1...7).contains(frameOpcode)))
                    check(allowed == rfcAllows, "WebSocketFrameRules disagrees with RFC 6455/7692 on opcode \(frameOpcode) rsv \(frameRSV) masked \(masked)")
                    if !allowed { self.brokeFrameRules = true }
                    if (3...7).contains(frameOpcode) || frameOpcode >= 11 { self.sentReservedOpcode = true }
                    // The decoder refuses fragmented or long control frames before Tether sees them.
                    if frameOpcode >= 8 && (!fin || part.count > 125) || !allowed { readsCleanly = false }
                }
                if frameOpcode == 9 && fin && part.count <= 125 { self.pingPayloads.insert(part) }
            }
            if mode & 0x80 != 0 {
                let seconds = Int64(byte() ?? 0)
                self.segments.append(Segment(bytes: current, advanceSeconds: seconds))
                current = []
                if seconds > 0 { readsCleanly = false }
            }
        }
        if !current.isEmpty || self.segments.isEmpty {
            self.segments.append(Segment(bytes: current, advanceSeconds: 0))
        }
    }

    /// A codec for the client side; per-message, no context takeover.
    static let codec = try! PerMessageDeflateCodec()

    static func deflated(_ payload: [UInt8], kind: Int, flushMarker: Bool) -> [UInt8] {
        var bytes: [UInt8]
        switch kind {
        case 1, 2:
            bytes = Array(try! Self.codec.compress(ByteBuffer(bytes: payload)).readableBytesView)
            // After the sync flush the stream is byte-aligned: `03 00` is an empty final block.
            if kind == 2 { bytes += [0x03, 0x00] }
        case 3:
            let length = UInt16(payload.count)
            bytes = [0x01, UInt8(length & 0xFF), UInt8(length >> 8), UInt8(~length & 0xFF), UInt8(~length >> 8)] + payload
        default:
            bytes = payload
        }
        if flushMarker { bytes += [0x00, 0x00, 0xFF, 0xFF] }
        return bytes
    }

    static func frame(fin: Bool, rsv: UInt8, opcode: UInt8, masked: Bool, key: [UInt8], payload: [UInt8], longLength: Bool) -> [UInt8] {
        var bytes: [UInt8] = [(fin ? 0x80 : 0) | rsv << 4 | opcode]
        let maskBit: UInt8 = masked ? 0x80 : 0
        if payload.count < 126 && !longLength {
            bytes.append(maskBit | UInt8(payload.count))
        } else if payload.count < 126 || (payload.count <= 0xFFFF && !longLength) {
            bytes += [maskBit | 126, UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)]
        } else {
            bytes.append(maskBit | 127)
            for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8((payload.count >> shift) & 0xFF)) }
        }
        guard masked else { return bytes + payload }
        bytes += key
        for (index, byte) in payload.enumerated() { bytes.append(byte ^ key[index % 4]) }
        return bytes
    }
}
