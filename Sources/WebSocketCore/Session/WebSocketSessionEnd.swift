/// Why a WebSocket session ended, when it was not a normal `<close/>` or a lost connection:
/// the label of `tether_terminations_total` and of the log line that ends a session.
public enum WebSocketSessionEnd: Sendable, Hashable {
    /// Tether told the client this stream error (RFC 6120 §4.9.3, RFC 7395 §3.5).
    case streamError(StreamErrorCondition)
    /// The server's `<stream:error/>` was relayed.
    case serverStreamError
    /// The WebSocket connection was failed with this close code (RFC 6455 §7.1.7).
    case webSocketFailed(code: UInt16)
    /// Sent elsewhere with `see-other-uri` (RFC 7395 §3.6.1).
    case redirected

    public var label: String {
        switch self {
        case .streamError(let condition): return condition.rawValue
        case .serverStreamError: return "remote-stream-error"
        case .webSocketFailed(let code):
            switch code {
            case WebSocketCloseStatus.unsupportedData: return "unsupported-data"
            case WebSocketCloseStatus.invalidPayload: return "invalid-payload"
            case WebSocketCloseStatus.messageTooBig: return "message-too-big"
            default: return "protocol-error"
            }
        case .redirected: return "see-other-uri"
        }
    }
}
