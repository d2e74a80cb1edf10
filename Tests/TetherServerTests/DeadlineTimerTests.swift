import NIOCore
import NIOEmbedded
import Testing

@testable import TetherServer

/// `DeadlineTimer` on a virtual clock: it expires at its latest deadline, once, and moving the
/// deadline later schedules nothing new until the task already scheduled fires.
@Suite("Deadline timer")
struct DeadlineTimerTests {
    final class Expiries {
        var times: [NIODeadline] = []
    }

    static func timer(on loop: EmbeddedEventLoop, _ expiries: Expiries) -> DeadlineTimer {
        DeadlineTimer(on: loop) { expiries.times.append(loop.now) }
    }

    @Test("expires at the deadline it was last moved to, once")
    func movedLater() {
        let loop = EmbeddedEventLoop()
        let expiries = Expiries()
        let timer = Self.timer(on: loop, expiries)
        let start = loop.now
        timer.arm(in: .seconds(10))
        loop.advanceTime(by: .seconds(4))
        timer.arm(in: .seconds(10))  // now ends at 14 s
        loop.advanceTime(by: .seconds(9))  // 13 s: the first task fired at 10 s and went on
        #expect(expiries.times.isEmpty)
        #expect(timer.armedUntil == start + .seconds(14))
        loop.advanceTime(by: .seconds(1))
        #expect(expiries.times == [start + .seconds(14)])
        #expect(timer.armedUntil == nil)
        loop.advanceTime(by: .seconds(60))
        #expect(expiries.times.count == 1)
    }

    @Test("moved earlier, it expires at the earlier deadline and not again at the later one")
    func movedEarlier() {
        let loop = EmbeddedEventLoop()
        let expiries = Expiries()
        let timer = Self.timer(on: loop, expiries)
        let start = loop.now
        timer.arm(in: .seconds(30))
        timer.arm(in: .seconds(5))
        loop.advanceTime(by: .seconds(5))
        #expect(expiries.times == [start + .seconds(5)])
        loop.advanceTime(by: .seconds(60))
        #expect(expiries.times.count == 1)
    }

    @Test("disarmed, nothing expires; armed again, it expires at the new deadline")
    func disarmed() {
        let loop = EmbeddedEventLoop()
        let expiries = Expiries()
        let timer = Self.timer(on: loop, expiries)
        let start = loop.now
        timer.arm(in: .seconds(10))
        timer.disarm()
        loop.advanceTime(by: .seconds(12))
        #expect(expiries.times.isEmpty)
        timer.arm(in: .seconds(3))
        loop.advanceTime(by: .seconds(3))
        #expect(expiries.times == [start + .seconds(15)])
        timer.arm(in: .seconds(1))
        timer.cancel()
        loop.advanceTime(by: .seconds(5))
        #expect(expiries.times.count == 1)
    }

    @Test("a deadline moved on every request schedules one task per period, not one per request")
    func fewTasks() throws {
        let loop = EmbeddedEventLoop()
        let expiries = Expiries()
        let timer = Self.timer(on: loop, expiries)
        // 1,000 requests 10 ms apart, each moving a 2 s deadline: 10 s in all.
        for _ in 0..<1000 {
            timer.arm(in: .seconds(2))
            loop.advanceTime(by: .milliseconds(10))
        }
        #expect(expiries.times.isEmpty)
        // A task per 2 s period that found its deadline moved (about five), not one per request.
        #expect(timer.scheduledTasks <= 10, "\(timer.scheduledTasks) tasks")
        loop.advanceTime(by: .seconds(2))
        #expect(expiries.times.count == 1)
    }
}
