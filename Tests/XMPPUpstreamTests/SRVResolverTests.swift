import Testing

@testable import XMPPUpstream

/// A deterministic generator so ordering tests are repeatable.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        self.state &+= 0x9E37_79B9_7F4A_7C15
        var z = self.state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite("SRV ordering (RFC 2782)")
struct SRVOrderingTests {
    static func record(_ priority: UInt16, _ weight: UInt16, _ target: String) -> SRVRecord {
        SRVRecord(priority: priority, weight: weight, port: 5222, target: target)
    }

    @Test("lower priority always comes first")
    func priority() {
        var random = SplitMix64(state: 1)
        let ordered = SRVOrdering.order([Self.record(20, 5, "c"), Self.record(10, 1, "a"), Self.record(10, 1, "b"), Self.record(30, 0, "d")], random: &random)
        #expect(ordered.map(\.priority) == [10, 10, 20, 30])
        #expect(Set(ordered.prefix(2).map(\.target)) == ["a", "b"])
    }

    @Test("weights set how often a record is tried first (3:1 over 4000 draws)")
    func weights() {
        var random = SplitMix64(state: 42)
        var heavyFirst = 0
        for _ in 0..<4000 {
            let ordered = SRVOrdering.order([Self.record(1, 1, "light"), Self.record(1, 3, "heavy")], random: &random)
            if ordered.first?.target == "heavy" { heavyFirst += 1 }
        }
        #expect((2800...3200).contains(heavyFirst), "heavy first \(heavyFirst) times")
    }

    @Test("weight-0 records are rarely first when others have weight")
    func zeroWeight() {
        var random = SplitMix64(state: 7)
        var zeroFirst = 0
        for _ in 0..<1000 {
            if SRVOrdering.order([Self.record(1, 0, "zero"), Self.record(1, 50, "fifty")], random: &random).first?.target == "zero" { zeroFirst += 1 }
        }
        #expect(zeroFirst < 60)
        #expect(SRVOrdering.order([Self.record(1, 0, "a")], random: &random).map(\.target) == ["a"])
    }
}
