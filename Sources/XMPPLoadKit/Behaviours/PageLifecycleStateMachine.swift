import XMPPClientCore

/// The browser page of one session: when it reloads, how long it is gone, when its tab is closed
/// and when to check that the server let the abandoned session go. Pure: time comes in as
/// uptime nanoseconds, actions go out; the session carries them out on its transport.
///
/// A reload first quiets the page: it stops sending, and (BOSH) releases its last request with
/// an empty poll, until nothing of its own is in flight (`tick(quiet:)`). So the generator
/// never abandons a message it sent itself: what is measured is what the server does with
/// messages *to* a page that is gone.
public struct PageLifecycleStateMachine: Sendable, Hashable {
    public enum State: Sendable, Hashable {
        /// Not logged in yet, no browser behaviour, or the behaviour phase is over.
        case inactive
        /// Logged in; the next reload or tab close is due at `at`.
        case open(at: UInt64, next: Next)
        /// A reload is due: the page sends nothing more and waits for what it sent to be taken.
        case quieting
        /// Reloading: no request and no connection until `until`.
        case gone(until: UInt64)
        /// Re-attaching (BOSH) or resuming (XEP-0198) since `since`.
        case reattaching(since: UInt64)
        /// The tab was closed at `at`; the check is due at `verifyAt` (nil: no check).
        case closed(at: UInt64, verifyAt: UInt64?)
        /// The check since `since`, for a tab closed at `closedAt`.
        case verifying(closedAt: UInt64, since: UInt64)
        /// Nothing more to do.
        case finished
    }

    public enum Next: Sendable, Hashable {
        case reload
        case closeTab
    }

    public enum Action: Sendable, Hashable {
        /// Get what is in flight taken by the server (BOSH: an empty poll releases the held
        /// request that carried the last stanzas).
        case quietDown
        /// Drop every connection without a word (the page goes away).
        case leavePage
        /// Come back: BOSH, a request with the sid and the next rid; WebSocket, a new connection
        /// that resumes the XEP-0198 session.
        case reattach
        /// Drop every connection without terminate or `<close/>`; the session takes no more part.
        case closeTab
        /// Ask for the abandoned session again; the server should refuse it.
        case verify
    }

    /// What the worker counts for the behaviour.
    public enum Outcome: Sendable, Hashable {
        case reloadSucceeded(nanoseconds: UInt64)
        case reloadFailed(ClientFailure)
        /// The abandoned session was gone when checked, `nanoseconds` after the tab closed.
        case tabCloseExpired(nanoseconds: UInt64)
        case tabCloseFailed(ClientFailure)
        /// Closed without a check.
        case tabClosed
    }

    public let reload: Behaviour.Reload?
    public let tabClose: Behaviour.TabClose?
    public private(set) var state: State = .inactive
    private var random: SeededGenerator
    private var stopped = false

    public init(reload: Behaviour.Reload?, tabClose: Behaviour.TabClose?, seed: UInt64) {
        self.reload = reload
        self.tabClose = tabClose
        self.random = SeededGenerator(seed: seed)
    }

    public var hasBehaviour: Bool { self.reload != nil || self.tabClose != nil }

    /// The page is there and may send (not reloading, not closed).
    public var isPresent: Bool {
        switch self.state {
        case .inactive, .open: true
        default: false
        }
    }

    /// A reload or a check is under way: the run waits for it before it ends.
    public var isBusy: Bool {
        switch self.state {
        case .quieting, .gone, .reattaching, .verifying: true
        case .closed(_, let verifyAt): verifyAt != nil
        default: false
        }
    }

    /// Logged in (the first time): schedule the first reload or tab close.
    public mutating func established(now: UInt64) {
        guard case .inactive = self.state, !self.stopped else { return }
        self.scheduleNext(from: now)
    }

    private mutating func scheduleNext(from now: UInt64) {
        if let tabClose = self.tabClose {
            self.state = .open(at: now + Self.nanos(self.random.jittered(tabClose.after, by: tabClose.jitter)), next: .closeTab)
        } else if let reload = self.reload {
            self.state = .open(at: now + Self.nanos(self.random.jittered(reload.every, by: reload.jitter)), next: .reload)
        } else {
            self.state = .inactive
        }
    }

    /// Time passes. `active`: the run's behaviour phase is on (no new reload or close otherwise);
    /// `quiet`: nothing of the session's own is in flight.
    public mutating func tick(now: UInt64, active: Bool, quiet: Bool) -> Action? {
        switch self.state {
        case .open(let at, let next) where active && now >= at:
            switch next {
            case .reload:
                self.state = .quieting
                return self.tick(now: now, active: active, quiet: quiet)
            case .closeTab:
                self.state = .closed(at: now, verifyAt: nil)
                return .closeTab
            }
        case .quieting:
            guard quiet, let reload = self.reload else { return .quietDown }
            self.state = .gone(until: now + Self.nanos(reload.gap))
            return .leavePage
        case .gone(let until) where now >= until:
            self.state = .reattaching(since: now)
            return .reattach
        case .closed(let at, let verifyAt?) where now >= verifyAt:
            self.state = .verifying(closedAt: at, since: now)
            return .verify
        default:
            return nil
        }
    }

    /// The tab is closed; the server advertised it keeps an abandoned session `timeout` seconds
    /// (BOSH `inactivity`, XEP-0198 `max`; nil when it did not say).
    public mutating func tabClosed(timeout: Double?) -> Outcome? {
        guard case .closed(let at, nil) = self.state, let tabClose = self.tabClose else { return nil }
        guard tabClose.verify else {
            self.state = .finished
            return .tabClosed
        }
        guard let timeout else {
            self.state = .finished
            return .tabCloseFailed(ClientFailure(.protocolViolation, "no-advertised-timeout"))
        }
        self.state = .closed(at: at, verifyAt: at + Self.nanos(timeout + tabClose.grace))
        return nil
    }

    /// The re-attach or resume worked.
    public mutating func reattached(now: UInt64) -> Outcome? {
        guard case .reattaching(let since) = self.state else { return nil }
        if self.stopped { self.state = .inactive } else { self.scheduleNext(from: now) }
        return .reloadSucceeded(nanoseconds: now - since)
    }

    /// The re-attach or resume failed: the session is lost.
    public mutating func reattachFailed(_ failure: ClientFailure) -> Outcome? {
        switch self.state {
        case .quieting, .gone, .reattaching:
            self.state = .finished
            return .reloadFailed(failure)
        default:
            return nil
        }
    }

    /// The check's answer: `expired` when the server refused the abandoned session.
    public mutating func verified(expired: Bool, condition: String, now: UInt64) -> Outcome? {
        guard case .verifying(let closedAt, _) = self.state else { return nil }
        self.state = .finished
        return expired ? .tabCloseExpired(nanoseconds: now - closedAt) : .tabCloseFailed(ClientFailure(.protocolViolation, condition))
    }

    /// The run ends: whatever is scheduled is dropped (a reload or check under way still
    /// reports); the page stays, to log out.
    public mutating func stop() {
        self.stopped = true
        if case .open = self.state { self.state = .inactive }
    }

    static func nanos(_ seconds: Double) -> UInt64 {
        UInt64(max(0, seconds) * 1e9)
    }
}
