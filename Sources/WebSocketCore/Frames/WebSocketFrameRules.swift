/// The RFC 6455 rules a client frame must keep before its payload means anything, checked on
/// every frame the decoder hands over (NIOWebSocket decodes frames but leaves these to us).
public struct WebSocketFrameRules: Sendable, Hashable {
    /// permessage-deflate (RFC 7692) was negotiated: RSV1 then marks a compressed message.
    public var compressionNegotiated: Bool

    public init(compressionNegotiated: Bool) {
        self.compressionNegotiated = compressionNegotiated
    }

    /// What a frame's header says about where it may appear.
    public enum FrameKind: Sendable, Hashable {
        /// The first (or only) frame of a text or binary message.
        case messageStart
        /// A continuation frame.
        case continuation
        /// Close, ping or pong.
        case control
        /// An opcode RFC 6455 §5.2 reserves (3–7, 11–15): no extension Tether negotiates defines one.
        case reserved
    }

    /// Whether a client frame keeps the rules; `false` means the connection is failed with 1002.
    ///
    /// - §5.1: "a client MUST mask all frames that it sends"; a server MUST close on an unmasked one.
    /// - §5.2: RSV1–3 "MUST be 0 unless an extension is negotiated that defines meanings"; none
    ///   Tether negotiates defines RSV2 or RSV3.
    /// - §5.2: "If an unknown opcode is received, the receiving endpoint MUST _Fail the WebSocket
    ///   Connection_."
    /// - RFC 7692 §6: RSV1 ("Per-Message Compressed") only on the first frame of a data message,
    ///   never on control frames or continuations, and only when the extension was negotiated.
    public func allows(kind: FrameKind, masked: Bool, rsv1: Bool, rsv2: Bool, rsv3: Bool) -> Bool {
        guard masked, !rsv2, !rsv3, kind != .reserved else { return false }
        guard rsv1 else { return true }
        switch kind {
        case .messageStart: return self.compressionNegotiated
        case .continuation, .control, .reserved: return false
        }
    }
}
