/// The loss accounting of stanzas that go to many: a presence change to each contact, a room
/// message to each occupant. Each sequence number expects a count of deliveries; what is still
/// expected after the drain is lost.
public struct FanoutLedger: Sendable, Hashable {
    public enum Delivery: Sendable, Hashable {
        case expected
        /// More copies than receivers, or a sequence number already complete.
        case extra
        case unknown
    }

    public private(set) var sent: UInt64 = 0
    public private(set) var expected: UInt64 = 0
    public private(set) var delivered: UInt64 = 0
    public private(set) var extras: UInt64 = 0
    private var nextSequence: UInt64 = 1
    private var remaining: [UInt64: Int] = [:]

    public init() {}

    /// Takes the next sequence number for a stanza `receivers` should each get once.
    public mutating func send(receivers: Int) -> UInt64 {
        let sequence = self.nextSequence
        self.nextSequence += 1
        self.sent += 1
        self.expected += UInt64(receivers)
        if receivers > 0 { self.remaining[sequence] = receivers }
        return sequence
    }

    public mutating func deliver(_ sequence: UInt64) -> Delivery {
        if let left = self.remaining[sequence] {
            self.delivered += 1
            if left == 1 { self.remaining[sequence] = nil } else { self.remaining[sequence] = left - 1 }
            return .expected
        }
        if sequence > 0 && sequence < self.nextSequence {
            self.extras += 1
            return .extra
        }
        return .unknown
    }

    /// Deliveries still expected.
    public var missing: UInt64 { self.expected - self.delivered }
}
