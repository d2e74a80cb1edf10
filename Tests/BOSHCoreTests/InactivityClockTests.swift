import Testing

@testable import BOSHCore

/// The §10 inactivity bookkeeping on its own: which timer is current, and for how long it counts.
@Suite("BOSH inactivity clock")
struct InactivityClockTests {
    typealias Clock = BOSHSessionStateMachine.InactivityClock

    @Test("a count starts only when idle, and only once until a request stops it")
    func startsOnceWhenIdle() {
        var clock = Clock()
        let busy = clock.startIfIdle(false, inactivity: 60)
        #expect(busy == nil)
        #expect(!clock.isCounting)
        let started = clock.startIfIdle(true, inactivity: 60)
        #expect(started == .startInactivityTimer(generation: 1, seconds: 60))
        #expect(clock.isCounting)
        let again = clock.startIfIdle(true, inactivity: 60)
        #expect(again == nil)
        #expect(clock.isCurrent(1))
    }

    @Test("a request that arrives makes the running timer stale; the next count is a new generation")
    func requestMakesTimerStale() {
        var clock = Clock()
        _ = clock.startIfIdle(true, inactivity: 60)
        clock.requestArrived()
        #expect(!clock.isCounting)
        #expect(!clock.isCurrent(1))
        let next = clock.startIfIdle(true, inactivity: 60)
        #expect(next == .startInactivityTimer(generation: 3, seconds: 60))
        #expect(clock.isCurrent(3))
    }

    @Test("§10 a pause lasts until the next processed request; a held-again retransmission keeps it")
    func pauseUntilProcessed() {
        var clock = Clock()
        clock.pause(for: 30)
        let paused = clock.startIfIdle(true, inactivity: 60)
        #expect(paused == .startInactivityTimer(generation: 1, seconds: 30))
        clock.requestArrived()
        let stillPaused = clock.startIfIdle(true, inactivity: 60)
        #expect(stillPaused == .startInactivityTimer(generation: 3, seconds: 30))
        clock.requestProcessed()
        #expect(clock.pausedFor == nil)
        let back = clock.startIfIdle(true, inactivity: 60)
        #expect(back == .startInactivityTimer(generation: 5, seconds: 60))
    }

    @Test("the tombstone timer counts inactivity whatever the pause, and replaces the running count")
    func tombstoneTimer() {
        var clock = Clock()
        clock.pause(for: 30)
        _ = clock.startIfIdle(true, inactivity: 60)
        let tombstone = clock.startTombstoneTimer(inactivity: 60)
        #expect(tombstone == .startInactivityTimer(generation: 2, seconds: 60))
        #expect(!clock.isCurrent(1))
        #expect(clock.isCurrent(2))
    }

    @Test("the generation wraps instead of trapping")
    func generationWraps() {
        var clock = Clock()
        for _ in 0..<3 { clock.requestArrived() }
        #expect(clock.generation == 3)
        let started = clock.startIfIdle(true, inactivity: 1)
        #expect(started == .startInactivityTimer(generation: 4, seconds: 1))
    }
}
