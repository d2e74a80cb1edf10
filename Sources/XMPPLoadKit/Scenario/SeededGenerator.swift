/// SplitMix64: a small, fast, seedable generator, so Poisson arrivals and jittered schedules are
/// the same on every run of a scenario (and in tests).
public struct SeededGenerator: RandomNumberGenerator, Sendable, Hashable {
    private var state: UInt64

    public init(seed: UInt64) {
        self.state = seed
    }

    public mutating func next() -> UInt64 {
        self.state &+= 0x9E37_79B9_7F4A_7C15
        var z = self.state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    public mutating func nextUnit() -> Double {
        Double(self.next() >> 11) / Double(1 << 53)
    }

    /// Uniform in [base − jitter, base + jitter], never below zero.
    public mutating func jittered(_ base: Double, by jitter: Double) -> Double {
        guard jitter > 0 else { return base }
        return Swift.max(0, base + (self.nextUnit() * 2 - 1) * jitter)
    }
}
