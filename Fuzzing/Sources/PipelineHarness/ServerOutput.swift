// Readers for what Tether writes to a client, strict enough that anything a browser or a
// WebSocket library could read differently from the intended answer breaks an invariant.

import NIOCore
import NIOHTTP1
import WebSocketCore
import XMPPCore

/// One HTTP/1.1 response as it appeared on the wire.
public struct WireResponse {
    public var status: Int
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]
    /// The request this answers, when known (see `readResponses`).
    public var request: HTTPRequestHead?

    public func values(_ name: String) -> [String] {
        self.headers.filter { $0.name.lowercased() == name }.map(\.value)
    }

    public func value(_ name: String) -> String? { self.values(name).first }
}

/// Parses `bytes` as consecutive HTTP/1.1 responses framed by Content-Length, up to a 101
/// (whose remaining bytes are returned as WebSocket output). Breaks an invariant on anything
/// else: a status line that is not `HTTP/1.1 NNN reason`, a header line that is not
/// `token: value` with visible characters, a bare CR or LF, a missing, repeated or non-numeric
/// Content-Length (none on 1xx, 204 and 304), a body cut short, or bytes after a
/// `Connection: close` answer.
/// `requests` are the heads Tether answered, in order: one per final response other than NIO's
/// own 400 (an answer to HEAD has a Content-Length and no body).
public func readResponses(_ bytes: [UInt8], requests: [HTTPRequestHead] = []) -> (responses: [WireResponse], upgraded: ArraySlice<UInt8>?) {
    var responses: [WireResponse] = []
    var answered = 0
    var position = 0
    while position < bytes.count {
        if toleratesRepeatedParserError, let last = responses.last, isNIOProtocolError(last),
            bytes[position...].starts(with: nioBadRequest)
        {
            // NIO's decoder reports a request line with a version other than 1.x twice (its own
            // invalidVersion, then the parser callback's failure): the same 400 comes twice.
            position += nioBadRequest.count
            continue
        }
        if let last = responses.last {
            check(last.value("connection")?.lowercased() != "close", "bytes after a Connection: close response: \(printable(bytes[position...].prefix(300)))")
        }
        guard let headEnd = find([13, 10, 13, 10], in: bytes, from: position) else {
            fatalError("invariant broken: response head without its blank line: \(printable(bytes[position...].prefix(300)))")
        }
        let lines = split(bytes[position..<headEnd], on: [13, 10])
        let statusLine = lines[0]
        check(statusLine.count >= 13 && Array(statusLine.prefix(9)) == Array("HTTP/1.1 ".utf8), "status line \(printable(statusLine))")
        let code = statusLine.dropFirst(9).prefix(3)
        check(code.allSatisfy { $0 >= 0x30 && $0 <= 0x39 } && statusLine[statusLine.startIndex + 12] == 0x20, "status line \(printable(statusLine))")
        let status = Int(String(decoding: code, as: UTF8.self))!
        check((100...599).contains(status), "status \(status)")
        check(statusLine.dropFirst(13).allSatisfy(isFieldValueByte), "reason phrase \(printable(statusLine))")
        var headers: [(name: String, value: String)] = []
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else {
                fatalError("invariant broken: header line without a colon: \(printable(line))")
            }
            let name = line[line.startIndex..<colon]
            let value = line[(colon + 1)...]
            check(!name.isEmpty && name.allSatisfy(isTokenByte), "header name \(printable(name))")
            check(value.allSatisfy(isFieldValueByte), "header value with a control character (CR, LF, NUL…): \(printable(line))")
            headers.append((String(decoding: name, as: UTF8.self), String(decoding: value, as: UTF8.self).trimmingSpaces()))
        }
        position = headEnd + 4
        var response = WireResponse(status: status, headers: headers, body: [], request: nil)
        check(response.values("transfer-encoding").isEmpty, "Tether frames every body with Content-Length, got Transfer-Encoding")
        if status == 101 {
            responses.append(response)
            return (responses, bytes[position...])
        }
        if status < 200 {
            check(response.values("content-length").isEmpty, "\(status) with a Content-Length")
            responses.append(response)
            continue
        }
        if !isNIOProtocolError(response) {
            response.request = answered < requests.count ? requests[answered] : nil
            answered += 1
        }
        if status == 204 || status == 304 {
            // RFC 9110 §8.6: no Content-Length and no body (NIO's encoder drops the header).
            check(response.values("content-length").isEmpty, "\(status) with a Content-Length")
            responses.append(response)
            continue
        }
        let lengths = response.values("content-length")
        check(lengths.count == 1, "\(lengths.count) Content-Length headers on a \(status)")
        guard let length = Int(lengths[0]), lengths[0].utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else {
            fatalError("invariant broken: Content-Length '\(lengths[0])'")
        }
        if response.request?.method == .HEAD {
            responses.append(response)
            continue
        }
        check(position + length <= bytes.count, "body shorter than its Content-Length \(length)")
        response.body = Array(bytes[position..<(position + length)])
        position += length
        responses.append(response)
    }
    return (responses, nil)
}

/// See `readResponses`: found by HTTPRequestFuzzer (Corpus/HTTPRequestFuzzer/
/// regression-nio-invalid-version-twice.bin); a NIO bug, not Tether's. Turn off to see it again.
let toleratesRepeatedParserError = true

/// The answer NIO's HTTPServerProtocolErrorHandler writes to bytes its parser refuses (Tether never
/// sees the request): `400`, `Connection: close`, `Content-Length: 0`, nothing else.
let nioBadRequest = Array("HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n".utf8)

public func isNIOProtocolError(_ response: WireResponse) -> Bool {
    response.status == 400 && response.body.isEmpty
        && response.headers.map { $0.name.lowercased() }.sorted() == ["connection", "content-length"]
        && response.value("connection")?.lowercased() == "close"
}

/// A frame as a server wrote it.
public struct ServerFrame {
    public var fin: Bool
    public var rsv1: Bool
    public var rsv2: Bool
    public var rsv3: Bool
    public var opcode: UInt8
    public var payload: [UInt8]
}

/// Splits a server's WebSocket output into frames. Breaks an invariant on a masked frame
/// (RFC 6455 §5.1: a server MUST NOT mask), a length not in its minimal form or with the top bit
/// set (§5.2), a control frame that is fragmented or longer than 125 bytes (§5.5), or output
/// that ends inside a frame.
public func readFrames(_ bytes: ArraySlice<UInt8>) -> [ServerFrame] {
    var frames: [ServerFrame] = []
    var rest = bytes
    while !rest.isEmpty {
        check(rest.count >= 2, "output ends inside a frame header")
        let first = rest[rest.startIndex]
        let second = rest[rest.startIndex + 1]
        check(second & 0x80 == 0, "the server masked a frame")
        var length = Int(second & 0x7F)
        var headerSize = 2
        if length == 126 {
            check(rest.count >= 4, "output ends inside a frame length")
            length = Int(rest[rest.startIndex + 2]) << 8 | Int(rest[rest.startIndex + 3])
            check(length >= 126, "16-bit length \(length) where 7 bits suffice")
            headerSize = 4
        } else if length == 127 {
            check(rest.count >= 10, "output ends inside a frame length")
            var long: UInt64 = 0
            for index in 2..<10 { long = long << 8 | UInt64(rest[rest.startIndex + index]) }
            check(long >> 63 == 0, "64-bit length with the top bit set")
            check(long > 0xFFFF, "64-bit length \(long) where 16 bits suffice")
            check(long <= UInt64(rest.count), "output ends inside a frame payload")
            length = Int(long)
            headerSize = 10
        }
        check(rest.count >= headerSize + length, "output ends inside a frame payload")
        let payloadStart = rest.startIndex + headerSize
        let frame = ServerFrame(
            fin: first & 0x80 != 0, rsv1: first & 0x40 != 0, rsv2: first & 0x20 != 0, rsv3: first & 0x10 != 0,
            opcode: first & 0x0F, payload: Array(rest[payloadStart..<(payloadStart + length)])
        )
        if frame.opcode >= 8 {
            check(frame.fin && frame.payload.count <= 125, "control frame \(frame.opcode) fragmented or \(frame.payload.count) bytes long")
        }
        frames.append(frame)
        rest = rest[(payloadStart + length)...]
    }
    return frames
}

/// What Tether's frames must be: final text, close, ping and pong frames only (it never
/// fragments nor sends binary); RSV1 only on a text frame of a connection that negotiated
/// permessage-deflate; every text message (inflated) one RFC 7395 message that parses; a close
/// payload empty or a code a server may send plus UTF-8; after a close frame, no data frame.
/// Returns the pong payloads.
@discardableResult
public func checkServerFrames(_ frames: [ServerFrame], compressed: Bool) -> [[UInt8]] {
    var closeSent = false
    var pongs: [[UInt8]] = []
    for frame in frames {
        check(frame.fin, "Tether sent a fragment (opcode \(frame.opcode))")
        check(!frame.rsv2 && !frame.rsv3, "Tether set RSV2/RSV3")
        check(!frame.rsv1 || (compressed && frame.opcode == 1), "RSV1 on opcode \(frame.opcode), compression negotiated: \(compressed)")
        check([1, 8, 9, 10].contains(frame.opcode), "Tether sent opcode \(frame.opcode)")
        if frame.opcode < 8 {
            check(!closeSent, "a data frame after the server's close frame")
        }
        switch frame.opcode {
        case 1:
            var message = ByteBuffer(bytes: frame.payload)
            if frame.rsv1 {
                do throws(StreamErrorCondition) {
                    message = try inflater.decompress(message, maxSize: 1 << 24)
                } catch {
                    fatalError("invariant broken: a compressed server message does not inflate: \(error)")
                }
            }
            check(String(validating: message.readableBytesView, as: UTF8.self) != nil, "a server text message that is not UTF-8")
            do throws(StreamErrorCondition) {
                _ = try messageParser.parse(message)
            } catch {
                fatalError("invariant broken: a server message is not one RFC 7395 message (\(error)): \(printable(message.readableBytesView))")
            }
        case 8:
            closeSent = true
            if !frame.payload.isEmpty {
                check(frame.payload.count >= 2, "a one-byte close payload")
                let code = Int(frame.payload[0]) << 8 | Int(frame.payload[1])
                check((1000...1003).contains(code) || (1007...1011).contains(code) || (3000...4999).contains(code), "close code \(code)")
                check(String(validating: frame.payload.dropFirst(2), as: UTF8.self) != nil, "close reason that is not UTF-8")
            }
        case 10:
            pongs.append(frame.payload)
        default:
            break
        }
    }
    return pongs
}

/// The close code of the server's first close frame, if it sent one.
public func firstCloseCode(_ frames: [ServerFrame]) -> Int?? {
    guard let close = frames.first(where: { $0.opcode == 8 }) else { return nil }
    guard close.payload.count >= 2 else { return .some(nil) }
    return .some(Int(close.payload[0]) << 8 | Int(close.payload[1]))
}

/// Checks the 101 answer to an upgrade request: the `xmpp` subprotocol, the accept key for the
/// harness's fixed Sec-WebSocket-Key, nosniff, and the deflate answer exactly when negotiated.
public func checkUpgradeResponse(_ response: WireResponse, compressed: Bool) {
    check(response.status == 101, "upgrade answered \(response.status)")
    check(response.value("sec-websocket-protocol") == "xmpp", "101 without Sec-WebSocket-Protocol: xmpp")
    check(response.value("sec-websocket-accept") == webSocketAccept, "101 with the wrong Sec-WebSocket-Accept")
    check(response.values("x-content-type-options") == ["nosniff"], "101 without nosniff")
    check((response.value("sec-websocket-extensions") != nil) == compressed, "Sec-WebSocket-Extensions on the 101 disagrees with negotiation")
}

/// The key of RFC 6455 §1.3 and its accept value.
public let webSocketKey = "dGhlIHNhbXBsZSBub25jZQ=="
public let webSocketAccept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

private let inflater = try! PerMessageDeflateCodec()
nonisolated(unsafe) private let messageParser = WebSocketMessageParser(limits: XMLStreamFramer.Limits(maxElementBytes: 1 << 24, maxDepth: 1000))

/// RFC 9110 §5.6.2 tchar.
func isTokenByte(_ byte: UInt8) -> Bool {
    switch byte {
    case 0x30...0x39, 0x41...0x5A, 0x61...0x7A: return true
    default: return Array("!#$%&'*+-.^_`|~".utf8).contains(byte)
    }
}

/// RFC 9110 §5.5 field-vchar, SP and HTAB: no CR, LF, NUL or other control character.
func isFieldValueByte(_ byte: UInt8) -> Bool {
    byte == 0x09 || (byte >= 0x20 && byte != 0x7F)
}

func find(_ needle: [UInt8], in bytes: [UInt8], from start: Int) -> Int? {
    guard bytes.count >= needle.count else { return nil }
    var index = start
    while index + needle.count <= bytes.count {
        if bytes[index] == needle[0] && Array(bytes[index..<(index + needle.count)]) == needle { return index }
        index += 1
    }
    return nil
}

func split(_ bytes: ArraySlice<UInt8>, on separator: [UInt8]) -> [ArraySlice<UInt8>] {
    var parts: [ArraySlice<UInt8>] = []
    var start = bytes.startIndex
    var index = bytes.startIndex
    while index + separator.count <= bytes.endIndex {
        if Array(bytes[index..<(index + separator.count)]) == separator {
            parts.append(bytes[start..<index])
            index += separator.count
            start = index
        } else {
            index += 1
        }
    }
    parts.append(bytes[start...])
    return parts
}

/// For messages: bytes with anything unprintable escaped.
public func printable(_ bytes: some Collection<UInt8>) -> String {
    bytes.map { byte in
        byte >= 0x20 && byte < 0x7F && byte != UInt8(ascii: "\\") ? String(UnicodeScalar(byte)) : "\\x" + String(byte, radix: 16)
    }.joined()
}

extension String {
    fileprivate func trimmingSpaces() -> String {
        var text = Substring(self)
        while text.first == " " || text.first == "\t" { text = text.dropFirst() }
        while text.last == " " || text.last == "\t" { text = text.dropLast() }
        return String(text)
    }
}
