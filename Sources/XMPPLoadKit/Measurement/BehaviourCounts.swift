/// A behaviour's running counts, as the live figures show them.
public struct BehaviourCounts: Sendable, Hashable {
    public var attempts: UInt64
    public var successes: UInt64
    public var failures: UInt64

    public init(attempts: UInt64 = 0, successes: UInt64 = 0, failures: UInt64 = 0) {
        self.attempts = attempts
        self.successes = successes
        self.failures = failures
    }

    mutating func add(_ other: BehaviourCounts) {
        self.attempts += other.attempts
        self.successes += other.successes
        self.failures += other.failures
    }
}
