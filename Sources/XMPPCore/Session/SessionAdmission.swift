/// What the session limits and the server's state say about a new session, in the same terms for
/// both transports: BOSH answers a refusal with a `terminate` body (XEP-0124 §17.2), WebSocket
/// with a stream error (RFC 7395 §3.5).
public enum SessionAdmission: Sendable, Hashable {
    case admitted
    /// Refused by the named limit: told `policy-violation`.
    case refused(limit: String)
    /// Tether is draining: told `system-shutdown`, or sent to `redirect` (`see-other-uri`).
    case draining(redirect: String?)
}
