import Foundation

/// How a population's sessions arrive: when each one starts, as seconds after the run began.
///
/// Pure: `startOffsets(count:)` gives the whole schedule up front, so a run is reproducible and
/// the schedule can be tested without a clock (Poisson draws from a seeded generator).
public enum Arrival: Sendable, Codable, Hashable {
    /// Evenly spaced at `rate` sessions per second from `start` (`--ramp-rate`).
    case constant(rate: Double, start: Double)
    /// The arrival rate rises linearly from `from` to `to` sessions per second over `over`
    /// seconds, then stays at `to`.
    case ramp(from: Double, to: Double, over: Double, start: Double)
    /// Exponentially distributed gaps with mean 1/`rate`, from a generator seeded with `seed`.
    case poisson(rate: Double, seed: UInt64, start: Double)
    /// Every session at `at`, spread evenly over `spread` seconds (0: all at once).
    case burst(at: Double, spread: Double)

    /// When each of `count` sessions starts, ascending, seconds after the run began.
    public func startOffsets(count: Int) -> [Double] {
        guard count > 0 else { return [] }
        switch self {
        case .constant(let rate, let start):
            return (0..<count).map { start + Double($0) / rate }
        case .ramp(let from, let to, let over, let start):
            return (0..<count).map { start + Self.rampTime(forArrival: Double($0), from: from, to: to, over: over) }
        case .poisson(let rate, let seed, let start):
            var generator = SeededGenerator(seed: seed)
            var time = start
            var offsets: [Double] = []
            offsets.reserveCapacity(count)
            for index in 0..<count {
                // The first session starts at `start`; each later one after an exponential gap.
                if index > 0 { time += -log(1 - generator.nextUnit()) / rate }
                offsets.append(time)
            }
            return offsets
        case .burst(let at, let spread):
            guard count > 1, spread > 0 else { return Array(repeating: at, count: count) }
            return (0..<count).map { at + spread * Double($0) / Double(count - 1) }
        }
    }

    /// The time at which `n` sessions have arrived under a linear ramp: solves
    /// `from·t + (to − from)·t²/(2·over) = n` within the ramp, then continues at `to`.
    static func rampTime(forArrival n: Double, from: Double, to: Double, over: Double) -> Double {
        let slope = (to - from) / over
        let duringRamp = from * over + slope * over * over / 2
        guard n < duringRamp else { return over + (n - duringRamp) / to }
        if abs(slope) < 1e-12 { return n / from }
        // slope/2·t² + from·t − n = 0, the positive root.
        return (-from + (from * from + 2 * slope * n).squareRoot()) / slope
    }

    /// What is wrong with the parameters, if anything (`key` names them in messages).
    func problems() -> [(key: String, message: String)] {
        var problems: [(String, String)] = []
        switch self {
        case .constant(let rate, let start):
            if !(rate > 0) { problems.append(("rate", "must be positive")) }
            if !(start >= 0) { problems.append(("start", "must not be negative")) }
        case .ramp(let from, let to, let over, let start):
            if !(from >= 0) { problems.append(("from", "must not be negative")) }
            if !(to > 0) { problems.append(("to", "must be positive")) }
            if !(over > 0) { problems.append(("over", "must be positive")) }
            if !(start >= 0) { problems.append(("start", "must not be negative")) }
        case .poisson(let rate, _, let start):
            if !(rate > 0) { problems.append(("rate", "must be positive")) }
            if !(start >= 0) { problems.append(("start", "must not be negative")) }
        case .burst(let at, let spread):
            if !(at >= 0) { problems.append(("at", "must not be negative")) }
            if !(spread >= 0) { problems.append(("spread", "must not be negative")) }
        }
        return problems
    }
}
