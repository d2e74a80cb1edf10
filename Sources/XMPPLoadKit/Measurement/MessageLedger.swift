/// Which probe messages were sent and which arrived: the loss accounting of one worker.
///
/// Every message carries a sequence number unique within its worker (both sessions of a pair live
/// on the same worker). A sequence number still outstanding after the drain period is lost.
public struct MessageLedger: Sendable, Hashable {
    public enum Delivery: Sendable, Hashable {
        case first
        case duplicate
        case unknown
    }

    public private(set) var sent: UInt64 = 0
    public private(set) var delivered: UInt64 = 0
    public private(set) var duplicates: UInt64 = 0
    public private(set) var unknown: UInt64 = 0
    private var nextSequence: UInt64 = 1
    private var outstanding = Set<UInt64>()

    public init() {}

    /// Takes the next sequence number and marks it sent.
    public mutating func send() -> UInt64 {
        let sequence = self.nextSequence
        self.nextSequence += 1
        self.sent += 1
        self.outstanding.insert(sequence)
        return sequence
    }

    /// Marks a sequence number delivered.
    public mutating func deliver(_ sequence: UInt64) -> Delivery {
        if self.outstanding.remove(sequence) != nil {
            self.delivered += 1
            return .first
        }
        if sequence > 0 && sequence < self.nextSequence {
            self.duplicates += 1
            return .duplicate
        }
        self.unknown += 1
        return .unknown
    }

    /// Sent and not (yet) delivered.
    public var inFlight: UInt64 { UInt64(self.outstanding.count) }
}
