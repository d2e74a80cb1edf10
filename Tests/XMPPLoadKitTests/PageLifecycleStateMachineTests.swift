import Testing
import XMPPClientCore

@testable import XMPPLoadKit

/// The page of one session: reload and tab-close schedules, event by event, time passed in.
@Suite("Page lifecycle")
struct PageLifecycleStateMachineTests {
    static let second: UInt64 = 1_000_000_000

    @Test("reload: due after `every`, waits for a quiet moment, gone for `gap`, then re-attaches and schedules the next")
    func reload() {
        var page = PageLifecycleStateMachine(reload: .init(every: 10, jitter: 0, gap: 0.5), tabClose: nil, seed: 1)
        #expect(page.tick(now: 0, active: true, quiet: true) == nil)
        page.established(now: 0)
        #expect(page.isPresent)
        #expect(page.tick(now: 9 * Self.second, active: true, quiet: true) == nil)
        // Due, but the run's behaviour phase is off: not at all.
        #expect(page.tick(now: 10 * Self.second, active: false, quiet: true) == nil)
        // Due, but something of the session's own is in flight: the page stops sending and quiets down first.
        #expect(page.tick(now: 10 * Self.second, active: true, quiet: false) == .quietDown)
        #expect(!page.isPresent && page.isBusy)
        #expect(page.tick(now: 10 * Self.second + 1, active: true, quiet: false) == .quietDown)
        #expect(page.tick(now: 11 * Self.second, active: true, quiet: true) == .leavePage)
        #expect(!page.isPresent && page.isBusy)
        #expect(page.tick(now: 11 * Self.second + Self.second / 4, active: true, quiet: true) == nil)
        #expect(page.tick(now: 11 * Self.second + Self.second / 2, active: false, quiet: true) == .reattach)
        #expect(page.state == .reattaching(since: 11 * Self.second + Self.second / 2))
        #expect(page.recovered(now: 12 * Self.second) == .succeeded(.reload, nanoseconds: Self.second / 2))
        #expect(page.state == .open(at: 22 * Self.second, next: .reload))
        #expect(page.isPresent && !page.isBusy)
        // A second reload that never comes back.
        #expect(page.tick(now: 22 * Self.second, active: true, quiet: true) == .leavePage)
        #expect(page.recoveryFailed(ClientFailure(.resumeFailed, "item-not-found")) == .failed(.reload, ClientFailure(.resumeFailed, "item-not-found")))
        #expect(page.state == .finished)
    }

    @Test("jitter: each delay within every ± jitter, the same for the same seed")
    func jitter() {
        func delays(seed: UInt64) -> [UInt64] {
            var page = PageLifecycleStateMachine(reload: .init(every: 10, jitter: 3, gap: 0), tabClose: nil, seed: seed)
            var now: UInt64 = 0
            var delays: [UInt64] = []
            page.established(now: now)
            for _ in 0..<50 {
                guard case .open(let at, _) = page.state else { return delays }
                delays.append(at - now)
                now = at
                _ = page.tick(now: now, active: true, quiet: true)
                _ = page.tick(now: now, active: true, quiet: true)
                _ = page.recovered(now: now)
            }
            return delays
        }
        let first = delays(seed: 3)
        #expect(first.count == 50)
        #expect(first.allSatisfy { $0 >= 7 * Self.second && $0 <= 13 * Self.second })
        #expect(Set(first).count > 10)
        #expect(delays(seed: 3) == first)
    }

    @Test("tab-close with a check: closed after `after`, checked at the advertised timeout plus grace")
    func tabClose() {
        var page = PageLifecycleStateMachine(reload: nil, tabClose: .init(after: 2, verify: true, grace: 1), seed: 1)
        page.established(now: Self.second)
        #expect(page.tick(now: 3 * Self.second, active: true, quiet: false) == .closeTab)
        #expect(page.tabClosed(timeout: 5) == nil)
        #expect(page.state == .closed(at: 3 * Self.second, verifyAt: 9 * Self.second))
        #expect(page.isBusy && !page.isPresent)
        // The run's behaviour phase ending does not cancel a pending check.
        page.stop()
        #expect(page.tick(now: 8 * Self.second, active: false, quiet: true) == nil)
        #expect(page.tick(now: 9 * Self.second, active: false, quiet: true) == .verify)
        #expect(page.verified(expired: true, condition: "expired", now: 10 * Self.second) == .succeeded(.tabClose, nanoseconds: 7 * Self.second))
        #expect(page.state == .finished && !page.isBusy)
    }

    @Test("tab-close: a session still there is a failure; no advertised timeout is a failure; no check is a plain close")
    func tabCloseOutcomes() {
        var alive = PageLifecycleStateMachine(reload: nil, tabClose: .init(after: 0, verify: true, grace: 0), seed: 1)
        alive.established(now: 0)
        #expect(alive.tick(now: 0, active: true, quiet: true) == .closeTab)
        #expect(alive.tabClosed(timeout: 1) == nil)
        #expect(alive.tick(now: Self.second, active: true, quiet: true) == .verify)
        #expect(alive.verified(expired: false, condition: "still-alive", now: Self.second) == .failed(.tabClose, ClientFailure(.protocolViolation, "still-alive")))

        var unknown = PageLifecycleStateMachine(reload: nil, tabClose: .init(after: 0), seed: 1)
        unknown.established(now: 0)
        #expect(unknown.tick(now: 0, active: true, quiet: true) == .closeTab)
        #expect(unknown.tabClosed(timeout: nil) == .failed(.tabClose, ClientFailure(.protocolViolation, "no-advertised-timeout")))

        var plain = PageLifecycleStateMachine(reload: nil, tabClose: .init(after: 0, verify: false), seed: 1)
        plain.established(now: 0)
        #expect(plain.tick(now: 0, active: true, quiet: true) == .closeTab)
        #expect(plain.tabClosed(timeout: nil) == .succeeded(.tabClose, nanoseconds: nil))
        #expect(plain.state == .finished)
    }

    @Test("stop drops a scheduled reload but not one under way; the page stays there to log out")
    func stop() {
        var page = PageLifecycleStateMachine(reload: .init(every: 1, gap: 1), tabClose: nil, seed: 1)
        page.established(now: 0)
        #expect(page.tick(now: Self.second, active: true, quiet: true) == .leavePage)
        page.stop()
        #expect(page.tick(now: 2 * Self.second, active: false, quiet: true) == .reattach)
        #expect(page.recovered(now: 2 * Self.second) != nil)
        // Back, and nothing more scheduled.
        #expect(page.state == .inactive && page.isPresent && !page.isBusy)
        #expect(page.tick(now: 10 * Self.second, active: true, quiet: true) == nil)
        var scheduled = PageLifecycleStateMachine(reload: .init(every: 1), tabClose: nil, seed: 1)
        scheduled.established(now: 0)
        scheduled.stop()
        #expect(scheduled.state == .inactive && scheduled.isPresent)
        #expect(scheduled.tick(now: 10 * Self.second, active: true, quiet: true) == nil)
    }

    @Test("suspend: quiets first, sleeps for `seconds` (announced or not), wakes, and counts waking to proven")
    func suspend() {
        var page = PageLifecycleStateMachine(behaviours: [.suspend(.init(every: 5, seconds: 3, announce: true))], seed: 1)
        page.established(now: 0)
        #expect(page.state == .open(at: 5 * Self.second, next: .suspend))
        #expect(page.tick(now: 5 * Self.second, active: true, quiet: false) == .quietDown)
        #expect(page.awayFor == .suspend && !page.isPresent)
        #expect(page.tick(now: 6 * Self.second, active: true, quiet: true) == .suspend(seconds: 3, announce: true))
        #expect(page.state == .suspended(since: 6 * Self.second, until: 9 * Self.second))
        #expect(page.tick(now: 8 * Self.second, active: true, quiet: true) == nil)
        // The run's phase ending does not keep a sleeper asleep.
        #expect(page.tick(now: 9 * Self.second, active: false, quiet: true) == .wake)
        #expect(page.isRecovering && page.isBusy)
        #expect(page.recovered(now: 9 * Self.second + 200) == .succeeded(.suspend, nanoseconds: 200))
        #expect(page.state == .open(at: 14 * Self.second + 200, next: .suspend))
        // A session that did not survive the sleep is the suspension's failure.
        _ = page.tick(now: 15 * Self.second, active: true, quiet: true)
        #expect(page.tick(now: 21 * Self.second, active: true, quiet: true) == .wake)
        #expect(page.recoveryFailed(ClientFailure(.boshTerminate, "item-not-found")) == .failed(.suspend, ClientFailure(.boshTerminate, "item-not-found")))
        #expect(page.state == .finished)
    }

    @Test("flap: no quieting, unread for `unread`, then cut; an empty moment postpones it uncounted")
    func flap() {
        var page = PageLifecycleStateMachine(behaviours: [.flap(.init(every: 2, unread: 0.5))], seed: 1)
        page.established(now: 0)
        // Something of its own in flight does not delay a flap: the network does not wait.
        #expect(page.tick(now: 2 * Self.second, active: true, quiet: false) == .freeze)
        #expect(page.awayFor == .flap)
        // Nothing to cut yet: the flap comes again 100 ms later.
        page.flapPostponed(now: 2 * Self.second)
        #expect(page.state == .open(at: 2 * Self.second + 100_000_000, next: .flap) && page.isPresent)
        #expect(page.tick(now: 2 * Self.second + 100_000_000, active: true, quiet: true) == .freeze)
        #expect(page.tick(now: 2 * Self.second + 500_000_000, active: true, quiet: true) == nil)
        #expect(page.tick(now: 2 * Self.second + 600_000_000, active: true, quiet: true) == .cut)
        #expect(page.state == .flapping(since: 2 * Self.second + 600_000_000))
        #expect(page.recovered(now: 3 * Self.second) == .succeeded(.flap, nanoseconds: 400_000_000))
        #expect(page.state == .open(at: 5 * Self.second, next: .flap))
    }

    @Test("storm: strikes `at` after the behaviour phase began, logs in again within `within`, once")
    func storm() {
        var pages = (0..<20).map { PageLifecycleStateMachine(behaviours: [.idle(.init()), .storm(.init(at: 10, within: 4))], seed: UInt64($0)) }
        var relogins: [UInt64] = []
        for index in pages.indices {
            pages[index].established(now: Self.second)
            #expect(pages[index].state == .inactive)
            pages[index].behavioursBegan(now: 2 * Self.second)
            #expect(pages[index].tick(now: 11 * Self.second, active: true, quiet: true) == nil)
            #expect(pages[index].tick(now: 12 * Self.second, active: true, quiet: false) == .dropForStorm)
            guard case .stormed(let since, let until) = pages[index].state else {
                Issue.record("not stormed: \(pages[index].state)")
                continue
            }
            #expect(since == 12 * Self.second && until <= 16 * Self.second)
            #expect(pages[index].tick(now: until, active: true, quiet: true) == .relogin)
            relogins.append(until)
            #expect(pages[index].recovered(now: 17 * Self.second) == .succeeded(.storm, nanoseconds: 5 * Self.second))
            // Once only.
            #expect(pages[index].state == .inactive)
            #expect(pages[index].tick(now: 100 * Self.second, active: true, quiet: true) == nil)
        }
        // Spread over the window, not all at one instant.
        #expect(Set(relogins).count > 10)
    }

    @Test("events of one page take turns: a reload and a flap due together go one after the other")
    func turns() {
        var page = PageLifecycleStateMachine(behaviours: [.reload(.init(every: 4, gap: 1)), .flap(.init(every: 4, unread: 0))], seed: 1)
        page.established(now: 0)
        #expect(page.state == .open(at: 4 * Self.second, next: .flap))
        #expect(page.tick(now: 4 * Self.second, active: true, quiet: true) == .freeze)
        #expect(page.tick(now: 4 * Self.second, active: true, quiet: true) == .cut)
        // The reload, due meanwhile, waits for the flap to be over.
        #expect(page.tick(now: 5 * Self.second, active: true, quiet: true) == nil)
        #expect(page.recovered(now: 5 * Self.second) != nil)
        #expect(page.state == .open(at: 4 * Self.second, next: .reload))
        #expect(page.tick(now: 5 * Self.second, active: true, quiet: true) == .leavePage)
        #expect(page.awayFor == .reload)
    }
}
