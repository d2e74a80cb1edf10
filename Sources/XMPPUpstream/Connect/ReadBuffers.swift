import NIOCore

/// How big a connection's reads are, for the browser side and the upstream side alike.
///
/// NIO keeps each channel's read buffer for its next read and never shrinks it, so an idle
/// connection holds the largest read it ever made, for as long as it lives. BOSH requests,
/// WebSocket messages and most stanzas are small: reads start at 512 bytes (NIO's default is
/// 2 KiB, 1.5 KiB more per idle connection) and double while they fill the buffer, up to 16 KiB
/// (NIO's 64 KiB would stay with every session that once received a roster or archive burst, or
/// sent a big body); larger transfers take more reads.
public enum ReadBuffers {
    public static var allocator: AdaptiveRecvByteBufferAllocator {
        AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 512, maximum: 16384)
    }
}
