import NIOCore
import XMPPClientCore

extension StanzaScanner {
    /// Finds `tl:<seq>:<timestamp>` in a message and returns the two numbers, or nil.
    ///
    /// This is the hot path of every delivered message: a byte scan, no String, no allocation.
    public static func probe(in bytes: ByteBuffer) -> (sequence: UInt64, timestamp: UInt64)? {
        bytes.withUnsafeReadableBytes { raw -> (UInt64, UInt64)? in
            let count = raw.count
            var index = 0
            while index + 3 < count {
                if raw[index] == UInt8(ascii: "t"), raw[index + 1] == UInt8(ascii: "l"), raw[index + 2] == UInt8(ascii: ":") {
                    var cursor = index + 3
                    var sequence: UInt64 = 0
                    var digits = 0
                    while cursor < count, raw[cursor] >= 0x30, raw[cursor] <= 0x39 {
                        sequence = sequence &* 10 &+ UInt64(raw[cursor] - 0x30)
                        cursor += 1
                        digits += 1
                    }
                    guard digits > 0, cursor < count, raw[cursor] == UInt8(ascii: ":") else {
                        index += 1
                        continue
                    }
                    cursor += 1
                    var timestamp: UInt64 = 0
                    digits = 0
                    while cursor < count, raw[cursor] >= 0x30, raw[cursor] <= 0x39 {
                        timestamp = timestamp &* 10 &+ UInt64(raw[cursor] - 0x30)
                        cursor += 1
                        digits += 1
                    }
                    if digits > 0 { return (sequence, timestamp) }
                }
                index += 1
            }
            return nil
        }
    }
}
