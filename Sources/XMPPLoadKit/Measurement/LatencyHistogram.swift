import Histogram

/// An HDR histogram of durations in microseconds (1 µs … 10 min, 3 significant digits).
public struct LatencyHistogram: Sendable {
    public private(set) var histogram: Histogram<UInt64>

    public static let highestMicroseconds: UInt64 = 600_000_000

    public init() {
        self.histogram = Histogram<UInt64>(highestTrackableValue: Self.highestMicroseconds, numberOfSignificantValueDigits: .three)
    }

    /// Records a duration given in nanoseconds.
    public mutating func record(nanoseconds: UInt64) {
        let micros = Swift.max(1, Swift.min(nanoseconds / 1000, Self.highestMicroseconds))
        _ = self.histogram.record(micros)
    }

    /// Records `count` durations of `microseconds` each (a bucket read back from a result).
    public mutating func record(microseconds: UInt64, count: UInt64) {
        _ = self.histogram.record(Swift.min(microseconds, Self.highestMicroseconds), count: count)
    }

    public mutating func add(_ other: LatencyHistogram) {
        self.histogram.add(other.histogram)
    }

    public mutating func reset() {
        self.histogram.reset()
    }

    public var count: UInt64 { self.histogram.totalCount }

    /// The usual summary in milliseconds.
    public var summary: LatencySummary {
        LatencySummary(histogram: self.histogram)
    }
}

/// p50/p90/p99/p99.9/max (milliseconds) of a latency histogram.
public struct LatencySummary: Sendable, Codable, Hashable {
    public var count: UInt64
    public var p50: Double
    public var p90: Double
    public var p99: Double
    public var p999: Double
    public var max: Double
    public var mean: Double

    public init(count: UInt64 = 0, p50: Double = 0, p90: Double = 0, p99: Double = 0, p999: Double = 0, max: Double = 0, mean: Double = 0) {
        self.count = count
        self.p50 = p50
        self.p90 = p90
        self.p99 = p99
        self.p999 = p999
        self.max = max
        self.mean = mean
    }

    init(histogram: Histogram<UInt64>) {
        guard histogram.totalCount > 0 else {
            self.init()
            return
        }
        func ms(_ micros: UInt64) -> Double { Double(micros) / 1000 }
        self.init(
            count: histogram.totalCount,
            p50: ms(histogram.valueAtPercentile(50)),
            p90: ms(histogram.valueAtPercentile(90)),
            p99: ms(histogram.valueAtPercentile(99)),
            p999: ms(histogram.valueAtPercentile(99.9)),
            max: ms(histogram.max),
            mean: histogram.mean / 1000
        )
    }
}
