import Synchronization

/// How many upstream streams are still closing: waiting for the server to answer the closing
/// ping, bouncing what it sends meanwhile (`UpstreamStreamStateMachine.close(barrierID:)`). A
/// process that is shutting down waits for them, or those bounces would die with it.
///
/// Each holds a socket and a timer for up to `UpstreamConfiguration.closingTimeout` after its
/// session is gone, outside the session limits: past `limit` at once, streams close without
/// waiting (an attacker churning sessions cannot make them pile up).
public final class ClosingStreams: Sendable {
    private let count = Atomic<Int>(0)
    public let limit: Int

    public init(limit: Int = 4096) {
        self.limit = limit
    }

    public var current: Int { self.count.load(ordering: .relaxed) }

    /// `false` (and not counted) when `limit` streams are closing already.
    func begin() -> Bool {
        let (_, now) = self.count.add(1, ordering: .relaxed)
        guard now <= self.limit else {
            self.count.subtract(1, ordering: .relaxed)
            return false
        }
        return true
    }

    func end() { self.count.subtract(1, ordering: .relaxed) }
}
