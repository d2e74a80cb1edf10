import XMPPClientCore

/// One behaviour's counts on one worker (or, added up, in the whole run): what was tried, what
/// worked, how long it took, and why the rest failed.
struct BehaviourTally: Sendable {
    var attempts: UInt64 = 0
    var successes: UInt64 = 0
    var failures: UInt64 = 0
    /// Chat: delivery; reload: re-attach or resume; suspend: waking to the session proven; flap:
    /// cut to recovered; storm: drop to logged in again; tab-close: from the close to the check
    /// that found the session gone.
    var latency = LatencyHistogram()
    var errors: [String: Int] = [:]
    /// Reload, suspend, flap: chat messages sent to the page while it was away, and how many of
    /// them arrived.
    var sentWhileAway: UInt64 = 0
    var deliveredAfterReturn: UInt64 = 0
    /// Flap (BOSH): answers given on the cut connection that came again, byte for byte, for the
    /// request sent again.
    var replayed: UInt64 = 0
    /// Presence, muc: stanzas sent (each expected by several receivers: the attempts).
    var fanoutSent: UInt64 = 0

    mutating func add(_ other: BehaviourTally) {
        self.sentWhileAway += other.sentWhileAway
        self.deliveredAfterReturn += other.deliveredAfterReturn
        self.replayed += other.replayed
        self.fanoutSent += other.fanoutSent
        self.attempts += other.attempts
        self.successes += other.successes
        self.failures += other.failures
        self.latency.add(other.latency)
        for (key, count) in other.errors { self.errors[key, default: 0] += count }
    }

    mutating func failed(_ failure: ClientFailure) {
        self.failures += 1
        self.errors[failure.key, default: 0] += 1
    }
}
