import Histogram

/// A latency histogram in the JSON result, compact and exact: its precision, the count of every
/// non-empty bucket as `[value, count]` and the largest value recorded (microseconds; percentiles
/// are capped by it). Decoding records each value back into a histogram of the same precision,
/// where it lands in the same bucket, so a decoded histogram gives the same percentiles, and
/// histograms of several runs add up bucket by bucket (`tether-load merge`).
extension LatencyHistogram: Codable {
    private enum CodingKeys: String, CodingKey {
        case unit
        case significantDigits
        case highest
        case maxRecorded
        case buckets
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode("us", forKey: .unit)
        try container.encode(self.histogram.numberOfSignificantValueDigits.rawValue, forKey: .significantDigits)
        try container.encode(self.histogram.highestTrackableValue, forKey: .highest)
        try container.encode(self.histogram.maxRecorded, forKey: .maxRecorded)
        try container.encode(self.histogram.recordedValues().map { [$0.value, $0.count] }, forKey: .buckets)
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let digits = try container.decode(Int8.self, forKey: .significantDigits)
        let highest = try container.decode(UInt64.self, forKey: .highest)
        self.init()
        guard digits == self.histogram.numberOfSignificantValueDigits.rawValue, highest == Self.highestMicroseconds else {
            throw DecodingError.dataCorruptedError(
                forKey: .significantDigits, in: container, debugDescription: "a histogram of another precision (\(digits) digits, highest \(highest) µs)"
            )
        }
        let maxRecorded = try container.decode(UInt64.self, forKey: .maxRecorded)
        var maxPlaced = false
        for bucket in try container.decode([[UInt64]].self, forKey: .buckets) {
            guard bucket.count == 2, bucket[0] <= highest, bucket[1] > 0 else {
                throw DecodingError.dataCorruptedError(forKey: .buckets, in: container, debugDescription: "a bucket is [value, count] within range")
            }
            // Each count at its bucket's lowest value, so only the exact largest value sets the maximum.
            let lowest = self.histogram.lowestEquivalentForValue(bucket[0])
            if !maxPlaced, self.histogram.valuesAreEquivalent(bucket[0], maxRecorded) {
                maxPlaced = true
                self.record(microseconds: maxRecorded, count: 1)
                if bucket[1] > 1 { self.record(microseconds: lowest, count: bucket[1] - 1) }
            } else {
                self.record(microseconds: lowest, count: bucket[1])
            }
        }
    }
}
