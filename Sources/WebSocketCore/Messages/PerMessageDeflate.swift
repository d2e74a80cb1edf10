import CompressNIO
import NIOCore

/// permessage-deflate (RFC 7692) with no context takeover in either direction.
///
/// Without context takeover every message is compressed and decompressed on its own, so the
/// zlib state (about 300 KiB) need not live per session: one codec per event loop serves every
/// session on it, and a session costs no compression memory between messages.
public enum PerMessageDeflate {
    /// The `Sec-WebSocket-Extensions` answer for the client's offers, or `nil` to decline.
    public static func negotiate(offers headerValues: [String]) -> String? {
        for offer in headerValues.flatMap({ $0.split(separator: ",") }) {
            let parts = offer.split(separator: ";").map { $0.trimmingCharacters() }
            guard parts.first?.lowercased() == "permessage-deflate" else { continue }
            var acceptable = true
            var serverWindow: Int?
            for parameter in parts.dropFirst() {
                let pair = parameter.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters().lowercased() }
                switch pair[0] {
                case "server_no_context_takeover", "client_no_context_takeover", "client_max_window_bits":
                    break
                case "server_max_window_bits":
                    // We compress with a 32 KiB window; a client asking for less gets another offer or none.
                    guard pair.count == 2, let bits = Int(pair[1].trimmingCharacters(in: "\"")), (8...15).contains(bits) else {
                        acceptable = false
                        break
                    }
                    serverWindow = bits
                default:
                    acceptable = false
                }
            }
            guard acceptable, serverWindow == nil || serverWindow == 15 else { continue }
            return "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        }
        return nil
    }
}

/// Compresses and decompresses whole messages. Not thread-safe: keep one per thread (it is
/// `Sendable` only so a thread-local variable may hold it).
public final class PerMessageDeflateCodec: @unchecked Sendable {
    private let compressor: ZlibCompressor
    private let decompressor: ZlibDecompressor
    private static let tail: [UInt8] = [0x00, 0x00, 0xFF, 0xFF]

    public init() throws {
        self.compressor = try ZlibCompressor(
            algorithm: .deflate,
            configuration: ZlibConfiguration(windowSize: 15, compressionLevel: 6, memoryLevel: 8, strategy: .default)
        )
        self.decompressor = try ZlibDecompressor(algorithm: .deflate, windowSize: 15)
    }

    /// The compressed payload of one message (RFC 7692 §7.2.1: sync flush, trailing 00 00 FF FF removed).
    public func compress(_ message: ByteBuffer) throws -> ByteBuffer {
        try self.compressor.reset()
        var input = message
        var output = ByteBufferAllocator().buffer(capacity: self.compressor.maxSize(from: input))
        try self.compressor.deflate(from: &input, to: &output, flush: .sync)
        if output.readableBytes >= 4, output.getBytes(at: output.writerIndex - 4, length: 4) == Self.tail {
            output.moveWriterIndex(to: output.writerIndex - 4)
        }
        return output
    }

    /// The message a compressed payload carries, refusing to inflate beyond `maxSize` bytes.
    ///
    /// RFC 7692 §7.2.2: append 00 00 FF FF and inflate. The payload usually ends in a sync-flushed
    /// block (§7.2.1), so inflating consumes every byte; it may instead end the DEFLATE stream with
    /// a block that has BFINAL set (§7.2.3.3), and then the appended tail — plus any flush markers
    /// the client added itself — follows the end of the stream and is not inflated. Anything else
    /// after the end is not a compressed message.
    ///
    /// Every pass of the loop consumes input, produces output or grows the output buffer (which is
    /// bounded by `maxSize`); a pass that does none of these ends the message as malformed. The
    /// loop therefore ends after at most `payload.readableBytes + 4` passes plus log2(`maxSize`)
    /// growths, whatever the client sends. (compress-nio's own `decompressStream` loops while input
    /// remains, which never ends for a stream that finished early: it is not used here.)
    public func decompress(_ payload: ByteBuffer, maxSize: Int) throws(StreamErrorCondition) -> ByteBuffer {
        var input = payload
        input.writeBytes(Self.tail)
        var output = ByteBufferAllocator().buffer(capacity: min(maxSize, max(256, payload.readableBytes * 4)))
        do {
            try self.decompressor.reset()
        } catch {
            throw .internalServerError
        }
        while input.readableBytes > 0 {
            let consumedBefore = input.readerIndex
            let producedBefore = output.writerIndex
            let capacityBefore = output.capacity
            do {
                try self.decompressor.inflate(from: &input, to: &output)
                // inflate returns without an error with input left only when the stream ended.
                if input.readableBytes > 0 {
                    guard Self.isOnlyFlushMarkers(input) else { throw StreamErrorCondition.notWellFormed }
                    break
                }
            } catch let error as CompressNIOError where error == .bufferOverflow {
                guard output.capacity < maxSize else { throw StreamErrorCondition.policyViolation }
                output.reserveCapacity(min(maxSize, output.capacity * 2))
            } catch let error as CompressNIOError where error == .inputBufferOverflow {
                // Every byte was consumed without the stream ending: a sync-flushed message.
                break
            } catch let error as StreamErrorCondition {
                throw error
            } catch {
                throw .notWellFormed
            }
            guard input.readerIndex != consumedBefore || output.writerIndex != producedBefore || output.capacity != capacityBefore else {
                throw .notWellFormed
            }
        }
        guard output.readableBytes <= maxSize else { throw .policyViolation }
        return output
    }

    /// What may follow a DEFLATE stream that ended early: empty sync-flush markers (the tail this
    /// codec appended, and any the client appended itself).
    static func isOnlyFlushMarkers(_ bytes: ByteBuffer) -> Bool {
        guard bytes.readableBytes % 4 == 0 else { return false }
        var rest = bytes
        while let marker = rest.readBytes(length: 4) {
            guard marker == Self.tail else { return false }
        }
        return true
    }
}

extension StringProtocol {
    fileprivate func trimmingCharacters(in characters: Character = " ") -> String {
        var text = Substring(self)
        while let first = text.first, first == characters || first == " " || first == "\t" { text = text.dropFirst() }
        while let last = text.last, last == characters || last == " " || last == "\t" { text = text.dropLast() }
        return String(text)
    }
}
