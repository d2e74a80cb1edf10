// libFuzzer target for the bytes of an HTTP/2 connection (RFC 9113) through the pipeline a
// `--listen-tls` connection gets once ALPN chose `h2` (EdgePipelines.configureHTTP2): NIO's HTTP/2
// handler with Tether's settings and limits, the connection management (idle timeout, GOAWAY),
// HTTP2GoAwayDeadline, HTTP2ConnectionErrorHandler, and per stream the HTTP/1 codec and
// HTTPEdgeHandler. The bytes are the decrypted ones (TLS is swift-nio-ssl's, not fuzzed here).
// Broken invariants stop the process with fatalError; see Fuzzing/README.md.

import NIOCore
import NIOHPACK
import PipelineHarness
import XMPPCore

@testable import TetherServer

/// RFC 9113 §3.4: what every HTTP/2 client sends first.
let clientPreface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

/// Input: byte 0 chooses the connection (bit 0 the peer is a trusted proxy, bit 1 the input is
/// sent as it is, without the client preface put in front of it, bit 4 served domains with no
/// session room, bit 5 small limits, bits 6–7 the chunking); the rest is what the client sends
/// after the preface: frames.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let input = [UInt8](UnsafeRawBufferPointer(start: start, count: count))
    guard let flags = input.first else { return 0 }
    var configuration = fuzzConfiguration(servedButFull: flags & 0x10 != 0)
    if flags & 0x20 != 0 {
        configuration.maxRequestBodyBytes = 256
        configuration.maxHeaderBytes = 512
        configuration.xmlLimits = XMLStreamFramer.Limits(maxElementBytes: 128, maxDepth: 3)
    }
    let peer = flags & 0x01 != 0 ? FuzzConnection.trustedPeer : FuzzConnection.untrustedPeer
    let connection = FuzzConnection(configuration: configuration, peer: peer, http2: true)
    let bytes = (flags & 0x02 != 0 ? [] : clientPreface) + input.dropFirst()
    var random = SplitMix64(seed: fnv1a(input))
    for chunk in chunks(bytes, mode: Int(flags >> 6), random: &random) {
        guard connection.send(chunk) else { break }
    }
    // A stream waiting for its request (the request timeout), then for a flow-control window to
    // answer in (as long again), or an RFC 8441 WebSocket stream closing by its own timers (the
    // HTTP/1.1 pipeline's limit); then the idle connection's timeout, then its GOAWAY's deadline.
    let limit = FuzzConnection.silenceLimit(configuration) + configuration.httpRequestTimeout * 2 + configuration.shutdownGracePeriod * 2
    connection.finishSilently(configuration, limit: limit)
    checkServerFrames(connection.output)
    return 0
}

/// What the server wrote is a sequence of whole frames: SETTINGS first (its preface, RFC 9113
/// §3.4), every header block decodable in order (one HPACK context for the connection), and every
/// response a Tether response: `nosniff`, and no connection-specific field (§8.2.2).
func checkServerFrames(_ output: [UInt8]) {
    var buffer = ByteBuffer(bytes: output)
    var decoder = HPACKDecoder(allocator: ByteBufferAllocator(), maxDynamicTableSize: 1 << 24, maxHeaderListSize: 1 << 24)
    var block: ByteBuffer?
    var first = true
    while buffer.readableBytes > 0 {
        guard buffer.readableBytes >= 9, let header = buffer.readBytes(length: 9) else {
            fatalError("invariant broken: \(buffer.readableBytes) bytes at the end are not a frame header")
        }
        let length = Int(header[0]) << 16 | Int(header[1]) << 8 | Int(header[2])
        let type = header[3]
        let flags = header[4]
        check(length <= 1 << 14, "a frame of \(length) bytes: more than SETTINGS_MAX_FRAME_SIZE's initial value")
        guard var payload = buffer.readSlice(length: length) else {
            fatalError("invariant broken: a frame of \(length) bytes with \(buffer.readableBytes) left")
        }
        if first {
            check(type == 0x4 && flags & 0x1 == 0, "the server's first frame is not its SETTINGS (type \(type))")
            first = false
        }
        switch type {
        case 0x1:  // HEADERS (the server neither pads nor sends priority)
            check(flags & 0x28 == 0, "a padded or prioritised HEADERS frame")
            check(block == nil, "HEADERS inside another header block")
            block = payload
        case 0x9:  // CONTINUATION
            check(block != nil, "CONTINUATION outside a header block")
            block!.writeBuffer(&payload)
        default:
            check(block == nil, "frame type \(type) inside a header block")
        }
        if (type == 0x1 || type == 0x9) && flags & 0x4 != 0, var complete = block {
            block = nil
            let headers: HPACKHeaders
            do {
                headers = try decoder.decodeHeaders(from: &complete)
            } catch {
                fatalError("invariant broken: a header block does not decode: \(error)")
            }
            checkResponseHeaders(headers)
        }
    }
    check(block == nil, "the output ends inside a header block")
}

func checkResponseHeaders(_ headers: HPACKHeaders) {
    guard let status = headers.first(name: ":status").flatMap({ Int($0) }) else {
        // Trailers: Tether sends none.
        fatalError("invariant broken: a header block without :status: \(headers)")
    }
    check(status >= 200 && status < 600, "status \(status)")
    for field in ["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"] {
        check(!headers.contains(name: field), "a connection-specific field in an HTTP/2 response: \(field)")
    }
    check(headers[canonicalForm: "x-content-type-options"] == ["nosniff"], "a \(status) without exactly one X-Content-Type-Options: nosniff")
    for (name, _, _) in headers {
        check(name == name.lowercased(), "an upper-case field name in an HTTP/2 response: \(name)")
    }
}
