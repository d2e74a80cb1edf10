import Testing

@testable import XMPPLoadKit

/// Arrival processes: the start offsets each one gives.
@Suite("Arrival processes")
struct ArrivalTests {
    @Test("constant: evenly spaced from the start, as --ramp-rate always did")
    func constant() {
        #expect(Arrival.constant(rate: 4, start: 1).startOffsets(count: 5) == [1, 1.25, 1.5, 1.75, 2])
    }

    @Test("ramp: the rate rises linearly, so gaps shrink, then stays at its top")
    func ramp() {
        // from 0 to 10/s over 2 s: N(t) = 2.5 t², 10 sessions by t = 2, then 10/s.
        let offsets = Arrival.ramp(from: 0, to: 10, over: 2, start: 0).startOffsets(count: 12)
        #expect(offsets[0] == 0)
        #expect(abs(offsets[1] - (1 / 2.5).squareRoot()) < 1e-9)
        #expect(abs(offsets[10] - 2) < 1e-9)
        #expect(abs(offsets[11] - 2.1) < 1e-9)
        let gaps = zip(offsets.dropFirst(), offsets).map { $0 - $1 }
        #expect(zip(gaps.dropFirst(), gaps).prefix(8).allSatisfy { $0 < $1 })
        // A flat ramp is a constant rate.
        let flat = Arrival.ramp(from: 5, to: 5, over: 10, start: 0).startOffsets(count: 4)
        #expect(zip(flat, [0, 0.2, 0.4, 0.6]).allSatisfy { abs($0 - $1) < 1e-9 })
    }

    @Test("poisson: the same seed gives the same schedule; the mean gap is near 1/rate")
    func poisson() {
        let a = Arrival.poisson(rate: 50, seed: 7, start: 2).startOffsets(count: 4000)
        let b = Arrival.poisson(rate: 50, seed: 7, start: 2).startOffsets(count: 4000)
        let c = Arrival.poisson(rate: 50, seed: 8, start: 2).startOffsets(count: 4000)
        #expect(a == b)
        #expect(a != c)
        #expect(a[0] == 2)
        #expect(zip(a.dropFirst(), a).allSatisfy { $0 >= $1 })
        let meanGap = (a.last! - a.first!) / Double(a.count - 1)
        // 4000 exponential gaps: the mean is within a few percent of 20 ms.
        #expect(abs(meanGap - 0.02) < 0.002)
    }

    @Test("burst: everyone at T, or spread evenly over the spread")
    func burst() {
        #expect(Arrival.burst(at: 5, spread: 0).startOffsets(count: 3) == [5, 5, 5])
        #expect(Arrival.burst(at: 5, spread: 2).startOffsets(count: 5) == [5, 5.5, 6, 6.5, 7])
        #expect(Arrival.burst(at: 5, spread: 2).startOffsets(count: 1) == [5])
    }

    @Test("bad parameters are named")
    func problems() {
        #expect(Arrival.constant(rate: 0, start: 0).problems().map(\.key) == ["rate"])
        #expect(Arrival.ramp(from: -1, to: 0, over: 0, start: -1).problems().map(\.key) == ["from", "to", "over", "start"])
        #expect(Arrival.burst(at: -1, spread: -1).problems().map(\.key) == ["at", "spread"])
    }
}
