import Synchronization

/// How many upstream streams are still closing: waiting for the server to answer the closing
/// ping, bouncing what it sends meanwhile (`UpstreamStreamStateMachine.close(barrierID:)`). A
/// process that is shutting down waits for them, or those bounces would die with it.
public final class ClosingStreams: Sendable {
    private let count = Atomic<Int>(0)

    public init() {}

    public var current: Int { self.count.load(ordering: .relaxed) }

    func begin() { self.count.add(1, ordering: .relaxed) }
    func end() { self.count.subtract(1, ordering: .relaxed) }
}
