import NIOCore

/// A frame as the client sent it: the header bits of RFC 6455 §5.2 and the unmasked payload.
///
/// NIOWebSocket decodes the wire format; what the bits mean for the session is decided by
/// `WebSocketSessionStateMachine`, which sees only this type (no NIOWebSocket in the rules).
public struct WebSocketInboundFrame: Sendable, Hashable {
    /// RFC 6455 §5.2 opcodes.
    public enum Opcode: Sendable, Hashable {
        case continuation
        case text
        case binary
        case close
        case ping
        case pong
        /// 3–7 and 11–15: no extension Tether negotiates defines one.
        case reserved(UInt8)

        public init(rawValue: UInt8) {
            switch rawValue {
            case 0x0: self = .continuation
            case 0x1: self = .text
            case 0x2: self = .binary
            case 0x8: self = .close
            case 0x9: self = .ping
            case 0xA: self = .pong
            default: self = .reserved(rawValue)
            }
        }

        /// Where a frame with this opcode may appear, for `WebSocketFrameRules`.
        public var kind: WebSocketFrameRules.FrameKind {
            switch self {
            case .text, .binary: return .messageStart
            case .continuation: return .continuation
            case .close, .ping, .pong: return .control
            case .reserved: return .reserved
            }
        }
    }

    public var fin: Bool
    public var opcode: Opcode
    public var rsv1: Bool
    public var rsv2: Bool
    public var rsv3: Bool
    public var masked: Bool
    /// Unmasked.
    public var payload: ByteBuffer

    public init(fin: Bool = true, opcode: Opcode, rsv1: Bool = false, rsv2: Bool = false, rsv3: Bool = false, masked: Bool = true, payload: ByteBuffer = ByteBuffer()) {
        self.fin = fin
        self.opcode = opcode
        self.rsv1 = rsv1
        self.rsv2 = rsv2
        self.rsv3 = rsv3
        self.masked = masked
        self.payload = payload
    }
}
