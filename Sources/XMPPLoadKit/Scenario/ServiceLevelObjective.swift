/// The bounds one behaviour (or a population's login) must stay within for the run to pass.
///
/// Unset bounds are not checked, except that with nothing set at all a behaviour must succeed
/// every time (`minSuccessRatio` 1, which for chat means nothing lost).
public struct ServiceLevelObjective: Sendable, Codable, Hashable {
    /// p50 and p99 of the behaviour's latency (chat: delivery; reload: re-attach; login: login).
    public var p50Milliseconds: Double?
    public var p99Milliseconds: Double?
    /// Successes over attempts must be at least this (0…1).
    public var minSuccessRatio: Double?
    /// At most this many failures (chat: messages lost; login: sessions that never logged in).
    public var maxFailures: UInt64?

    public init(p50Milliseconds: Double? = nil, p99Milliseconds: Double? = nil, minSuccessRatio: Double? = nil, maxFailures: UInt64? = nil) {
        self.p50Milliseconds = p50Milliseconds
        self.p99Milliseconds = p99Milliseconds
        self.minSuccessRatio = minSuccessRatio
        self.maxFailures = maxFailures
    }

    public var isEmpty: Bool {
        self.p50Milliseconds == nil && self.p99Milliseconds == nil && self.minSuccessRatio == nil && self.maxFailures == nil
    }

    /// Each bound checked against the figures, in a fixed order.
    public func verdicts(attempts: UInt64, successes: UInt64, failures: UInt64, latency: LatencySummary) -> [SLOVerdict] {
        var verdicts: [SLOVerdict] = []
        if let bound = self.p50Milliseconds {
            verdicts.append(SLOVerdict(metric: "p50-ms", limit: bound, actual: latency.p50, met: latency.count == 0 || latency.p50 <= bound))
        }
        if let bound = self.p99Milliseconds {
            verdicts.append(SLOVerdict(metric: "p99-ms", limit: bound, actual: latency.p99, met: latency.count == 0 || latency.p99 <= bound))
        }
        let ratio = attempts == 0 ? 1 : Double(successes) / Double(attempts)
        if let bound = self.minSuccessRatio {
            verdicts.append(SLOVerdict(metric: "min-success", limit: bound, actual: ratio, met: ratio >= bound))
        }
        if let bound = self.maxFailures {
            verdicts.append(SLOVerdict(metric: "max-failures", limit: Double(bound), actual: Double(failures), met: failures <= bound))
        }
        if self.isEmpty {
            verdicts.append(SLOVerdict(metric: "min-success", limit: 1, actual: ratio, met: failures == 0 && successes == attempts))
        }
        return verdicts
    }
}
