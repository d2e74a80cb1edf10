import NIOCore
import Testing

@testable import XMPPUpstream
@testable import XMPPUpstreamCore

/// RFC 8305 §4–§5 connection racing, as events in and actions out with the time passed in.
@Suite("Happy Eyeballs scheduling (RFC 8305)")
struct HappyEyeballsStateMachineTests {
    typealias Machine = HappyEyeballsStateMachine<String>

    static func machine(_ addresses: [String], delay: TimeAmount = .milliseconds(250)) -> Machine {
        Machine(addresses: addresses, isIPv6: { $0.contains(":") }, attemptDelay: delay)
    }

    static func at(_ milliseconds: Int64) -> NIODeadline { .uptimeNanoseconds(1_000_000_000 + UInt64(milliseconds) * 1_000_000) }

    @Test("§4: families interleaved starting with IPv6, each in resolver order; duplicates once")
    func interleaving() {
        #expect(Self.machine(["1.1.1.1", "2.2.2.2", "3.3.3.3", "::a", "::b"]).order == ["::a", "1.1.1.1", "::b", "2.2.2.2", "3.3.3.3"])
        #expect(Self.machine(["::a", "::b", "::c", "1.1.1.1"]).order == ["::a", "1.1.1.1", "::b", "::c"])
        #expect(Self.machine(["1.1.1.1", "1.1.1.1", "2.2.2.2"]).order == ["1.1.1.1", "2.2.2.2"])
    }

    @Test("§5: one attempt at once, the next after the delay while the first is pending; stale timers do nothing")
    func attemptDelay() {
        var machine = Self.machine(["1.1.1.1", "::a", "2.2.2.2"])
        #expect(machine.start(now: Self.at(0)) == [.startAttempt(attempt: 0, address: "::a"), .scheduleTimer(id: 1, deadline: Self.at(250))])
        #expect(machine.attemptDelayElapsed(timer: 1, now: Self.at(250)) == [.startAttempt(attempt: 1, address: "1.1.1.1"), .scheduleTimer(id: 2, deadline: Self.at(500))])
        #expect(machine.attemptDelayElapsed(timer: 1, now: Self.at(260)) == [])
        // The last address: no timer after it.
        #expect(machine.attemptDelayElapsed(timer: 2, now: Self.at(500)) == [.startAttempt(attempt: 2, address: "2.2.2.2")])
        #expect(machine.attemptDelayElapsed(timer: 2, now: Self.at(750)) == [])
    }

    @Test("a blackholed IPv6 address: IPv4 starts after one delay, wins, and the IPv6 attempt is cancelled")
    func blackholedIPv6() {
        var machine = Self.machine(["::a", "1.1.1.1"])
        _ = machine.start(now: Self.at(0))
        #expect(machine.attemptDelayElapsed(timer: 1, now: Self.at(250)) == [.startAttempt(attempt: 1, address: "1.1.1.1")])
        #expect(machine.attemptConnected(1) == [.cancelAttempts([0]), .won(attempt: 1, address: "1.1.1.1")])
        #expect(machine.isFinished)
        // The cancelled attempt's failure is nobody's business; had it connected after all, it is closed.
        #expect(machine.attemptFailed(0, reason: "cancelled", now: Self.at(300)) == [])
        #expect(machine.attemptConnected(0) == [.closeLoser(0)])
    }

    @Test("both families working: IPv6 connects before the delay and IPv4 is never attempted")
    func bothWorking() {
        var machine = Self.machine(["1.1.1.1", "::a"])
        #expect(machine.start(now: Self.at(0)).first == .startAttempt(attempt: 0, address: "::a"))
        #expect(machine.attemptConnected(0) == [.won(attempt: 0, address: "::a")])
        #expect(machine.attemptDelayElapsed(timer: 1, now: Self.at(250)) == [])
    }

    @Test("a refused attempt starts the next at once (no waiting for the delay)")
    func failureStartsNext() {
        var machine = Self.machine(["::a", "1.1.1.1", "::b"])
        _ = machine.start(now: Self.at(0))
        #expect(machine.attemptFailed(0, reason: "refused", now: Self.at(3)) == [.startAttempt(attempt: 1, address: "1.1.1.1"), .scheduleTimer(id: 2, deadline: Self.at(253))])
        // The first timer (id 1) is stale now.
        #expect(machine.attemptDelayElapsed(timer: 1, now: Self.at(250)) == [])
        #expect(machine.attemptDelayElapsed(timer: 2, now: Self.at(253)) == [.startAttempt(attempt: 2, address: "::b")])
    }

    @Test("it gives up only when every attempt has failed, with every reason")
    func givesUp() {
        var machine = Self.machine(["::a", "1.1.1.1"])
        _ = machine.start(now: Self.at(0))
        _ = machine.attemptDelayElapsed(timer: 1, now: Self.at(250))
        #expect(machine.attemptFailed(1, reason: "refused", now: Self.at(260)) == [])
        #expect(!machine.isFinished)
        #expect(
            machine.attemptFailed(0, reason: "timed out", now: Self.at(10_000))
                == [.gaveUp([.init(address: "1.1.1.1", reason: "refused"), .init(address: "::a", reason: "timed out")])]
        )
        #expect(machine.isFinished)
        #expect(machine.attemptConnected(0) == [.closeLoser(0)])
    }

    @Test("no address: gives up at once; a second connection after a win is closed; the delay stays within 10 ms-2 s")
    func edges() {
        var empty = Self.machine([])
        #expect(empty.start(now: Self.at(0)) == [.gaveUp([])])
        var machine = Self.machine(["::a", "1.1.1.1", "2.2.2.2"])
        _ = machine.start(now: Self.at(0))
        _ = machine.attemptDelayElapsed(timer: 1, now: Self.at(250))
        #expect(machine.attemptConnected(1) == [.cancelAttempts([0]), .won(attempt: 1, address: "1.1.1.1")])
        #expect(machine.attemptConnected(0) == [.closeLoser(0)])
        #expect(machine.attemptDelayElapsed(timer: 2, now: Self.at(500)) == [])
        #expect(machine.attemptConnected(7) == [])
        #expect(Self.machine(["::a"], delay: .milliseconds(1)).attemptDelay == .milliseconds(10))
        #expect(Self.machine(["::a"], delay: .seconds(9)).attemptDelay == .seconds(2))
    }

    @Test("abandoning a race cancels what is pending and ignores what follows")
    func abandon() {
        var machine = Self.machine(["::a", "1.1.1.1"])
        _ = machine.start(now: Self.at(0))
        _ = machine.attemptDelayElapsed(timer: 1, now: Self.at(250))
        #expect(machine.abandon() == [.cancelAttempts([0, 1])])
        #expect(machine.attemptConnected(1) == [.closeLoser(1)])
        #expect(machine.attemptFailed(0, reason: "x", now: Self.at(300)) == [])
    }
}
