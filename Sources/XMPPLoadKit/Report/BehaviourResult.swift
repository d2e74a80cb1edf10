/// One behaviour of one population over the run: counts, latency, errors and its SLO.
///
/// What counts as an attempt and a success: chat, a message sent / delivered once; idle, a
/// session that logged in / stayed up to the end; reload, a page that left / came back (BOSH:
/// the ping on its first request answered; WebSocket: `<resumed/>`); tab-close, a tab closed /
/// its session found gone when asked again after the advertised timeout (or just closed,
/// without `verify`); suspend, a page that slept / whose ping was answered on waking (or whose
/// session resumed); flap, a connection cut / the session recovered (BOSH: the request sent
/// again was answered; WebSocket: `<resumed/>`); storm, a session dropped / logged in again.
public struct BehaviourResult: Sendable, Codable, Hashable {
    public var population: String
    public var behaviour: Behaviour.Kind
    public var attempts: UInt64
    public var successes: UInt64
    public var failures: UInt64
    /// What `latency` measures: `delivery`, `none`, `reattach`, `close-to-expiry`,
    /// `wake-to-proven`, `cut-to-recovered` or `drop-to-relogin`.
    public var latencyOf: String
    public var latency: LatencySummary
    /// Failures by `kind:condition`.
    public var errors: [String: Int]
    public var slo: [SLOVerdict]
    public var passed: Bool
    /// Reload, suspend or flap of a population that chats: messages sent to a page while it was
    /// away, and how many of them arrived after it came back (all of them, when nothing is lost).
    public var messagesWhileAway: UInt64?
    public var messagesWhileAwayDelivered: UInt64?
    /// Flap over BOSH: answers the server had given on the cut connection that it gave again,
    /// byte for byte, to the request sent again (XEP-0124 §14.3).
    public var replayedAnswers: UInt64?
    /// Presence and muc: presence changes or room messages sent. Attempts are the deliveries
    /// they called for (one per contact, one per occupant), successes those that arrived.
    public var stanzasSent: UInt64?
}
