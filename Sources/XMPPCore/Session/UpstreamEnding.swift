/// How the upstream stream under a session ended, in the terms both transports tell their
/// clients: one mapping from the upstream's errors (`UpstreamEnding(_:)` in XMPPUpstreamCore) for
/// BOSH (a `terminate` condition, XEP-0124 §17.2) and WebSocket (a stream error, RFC 7395 §3.5),
/// so the two cannot drift apart.
public enum UpstreamEnding: Hashable, Sendable {
    /// `</stream:stream>` from the server: a normal end.
    case closed
    /// The domain did not resolve, or only to addresses the policy refuses: `host-unknown`.
    case unreachable
    /// Refused, lost, timed out, not securable, broken by the server: `remote-connection-failed`.
    case failed
    /// The server stopped reading and Tether's queue towards it filled: `policy-violation`.
    case serverNotReading

    /// The limit this ending counts as reached, for metrics and the log.
    public var limit: String? {
        switch self {
        case .serverNotReading: return "max-queued-bytes-to-server"
        case .closed, .unreachable, .failed: return nil
        }
    }
}
