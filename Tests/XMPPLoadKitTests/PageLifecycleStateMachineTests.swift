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
        #expect(page.reattached(now: 12 * Self.second) == .reloadSucceeded(nanoseconds: Self.second / 2))
        #expect(page.state == .open(at: 22 * Self.second, next: .reload))
        #expect(page.isPresent && !page.isBusy)
        // A second reload that never comes back.
        #expect(page.tick(now: 22 * Self.second, active: true, quiet: true) == .leavePage)
        #expect(page.reattachFailed(ClientFailure(.resumeFailed, "item-not-found")) == .reloadFailed(ClientFailure(.resumeFailed, "item-not-found")))
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
                _ = page.reattached(now: now)
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
        #expect(page.verified(expired: true, condition: "expired", now: 10 * Self.second) == .tabCloseExpired(nanoseconds: 7 * Self.second))
        #expect(page.state == .finished && !page.isBusy)
    }

    @Test("tab-close: a session still there is a failure; no advertised timeout is a failure; no check is a plain close")
    func tabCloseOutcomes() {
        var alive = PageLifecycleStateMachine(reload: nil, tabClose: .init(after: 0, verify: true, grace: 0), seed: 1)
        alive.established(now: 0)
        #expect(alive.tick(now: 0, active: true, quiet: true) == .closeTab)
        #expect(alive.tabClosed(timeout: 1) == nil)
        #expect(alive.tick(now: Self.second, active: true, quiet: true) == .verify)
        #expect(alive.verified(expired: false, condition: "still-alive", now: Self.second) == .tabCloseFailed(ClientFailure(.protocolViolation, "still-alive")))

        var unknown = PageLifecycleStateMachine(reload: nil, tabClose: .init(after: 0), seed: 1)
        unknown.established(now: 0)
        #expect(unknown.tick(now: 0, active: true, quiet: true) == .closeTab)
        #expect(unknown.tabClosed(timeout: nil) == .tabCloseFailed(ClientFailure(.protocolViolation, "no-advertised-timeout")))

        var plain = PageLifecycleStateMachine(reload: nil, tabClose: .init(after: 0, verify: false), seed: 1)
        plain.established(now: 0)
        #expect(plain.tick(now: 0, active: true, quiet: true) == .closeTab)
        #expect(plain.tabClosed(timeout: nil) == .tabClosed)
        #expect(plain.state == .finished)
    }

    @Test("stop drops a scheduled reload but not one under way; the page stays there to log out")
    func stop() {
        var page = PageLifecycleStateMachine(reload: .init(every: 1, gap: 1), tabClose: nil, seed: 1)
        page.established(now: 0)
        #expect(page.tick(now: Self.second, active: true, quiet: true) == .leavePage)
        page.stop()
        #expect(page.tick(now: 2 * Self.second, active: false, quiet: true) == .reattach)
        #expect(page.reattached(now: 2 * Self.second) != nil)
        // Back, and nothing more scheduled.
        #expect(page.state == .inactive && page.isPresent && !page.isBusy)
        #expect(page.tick(now: 10 * Self.second, active: true, quiet: true) == nil)
        var scheduled = PageLifecycleStateMachine(reload: .init(every: 1), tabClose: nil, seed: 1)
        scheduled.established(now: 0)
        scheduled.stop()
        #expect(scheduled.state == .inactive && scheduled.isPresent)
        #expect(scheduled.tick(now: 10 * Self.second, active: true, quiet: true) == nil)
    }
}
