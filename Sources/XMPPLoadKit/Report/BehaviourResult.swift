/// One behaviour of one population over the run: counts, latency, errors and its SLO.
///
/// What counts as an attempt and a success: chat, a message sent / delivered once; idle, a
/// session that logged in / stayed up to the end; reload, a page that left / came back (BOSH:
/// the ping on its first request answered; WebSocket: `<resumed/>`); tab-close, a tab closed /
/// its session found gone when asked again after the advertised timeout (or just closed,
/// without `verify`).
public struct BehaviourResult: Sendable, Codable, Hashable {
    public var population: String
    public var behaviour: Behaviour.Kind
    public var attempts: UInt64
    public var successes: UInt64
    public var failures: UInt64
    /// What `latency` measures: `delivery`, `login-to-end`, `reattach` or `close-to-expiry`.
    public var latencyOf: String
    public var latency: LatencySummary
    /// Failures by `kind:condition`.
    public var errors: [String: Int]
    public var slo: [SLOVerdict]
    public var passed: Bool
    /// Reload of a population that chats: messages sent to a page while it was gone, and how many
    /// of them arrived after it came back (all of them, when nothing is lost).
    public var messagesWhileAway: UInt64?
    public var messagesWhileAwayDelivered: UInt64?
}
