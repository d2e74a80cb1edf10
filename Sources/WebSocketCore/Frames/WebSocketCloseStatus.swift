import NIOCore

/// The body of a close frame (RFC 6455 §5.5.1): an optional status code, then an optional
/// UTF-8 reason, and what Tether answers to it.
public enum WebSocketCloseStatus: Sendable, Hashable {
    /// An empty body: no code given (reported as 1005 to applications, never sent, §7.4.1).
    case noCode
    case code(UInt16)
    /// A body that breaks §5.5.1/§7.4: fails the connection with `failureCode`.
    case invalid(failureCode: UInt16)

    /// Status codes of RFC 6455 §7.4.1.
    public static let normalClosure: UInt16 = 1000
    public static let protocolError: UInt16 = 1002
    public static let unsupportedData: UInt16 = 1003
    public static let invalidPayload: UInt16 = 1007
    public static let messageTooBig: UInt16 = 1009

    public init(body: ByteBuffer) {
        guard body.readableBytes > 0 else {
            self = .noCode
            return
        }
        // "the first two bytes MUST be a 2-byte unsigned integer": one byte is not a code.
        guard let code = body.getInteger(at: body.readerIndex, as: UInt16.self) else {
            self = .invalid(failureCode: Self.protocolError)
            return
        }
        guard Self.mayBeReceived(code) else {
            self = .invalid(failureCode: Self.protocolError)
            return
        }
        // §5.5.1: the reason "is not guaranteed to be human readable" but is UTF-8; §8.1 fails
        // the connection on invalid UTF-8 with 1007.
        let reason = body.getBytes(at: body.readerIndex + 2, length: body.readableBytes - 2) ?? []
        guard String(validating: reason, as: UTF8.self) != nil else {
            self = .invalid(failureCode: Self.invalidPayload)
            return
        }
        self = .code(code)
    }

    /// §7.4.1/§7.4.2 and the IANA registry: 1000–1003 and 1007–1014 are defined and may be sent;
    /// 1004 is reserved, 1005/1006/1015 "MUST NOT be set as a status code in a Close control
    /// frame", 1016–2999 are reserved for this protocol's future, 3000–4999 belong to libraries
    /// and applications; anything else is not a status code.
    static func mayBeReceived(_ code: UInt16) -> Bool {
        switch code {
        case 1000...1003, 1007...1014, 3000...4999: return true
        default: return false
        }
    }

    /// The code of the close frame that answers this one (§5.5.1: "typically echos the status
    /// code it received"; 1000 when none was given).
    public var answerCode: UInt16 {
        switch self {
        case .noCode: return Self.normalClosure
        case .code(let code): return code
        case .invalid(let failureCode): return failureCode
        }
    }
}
