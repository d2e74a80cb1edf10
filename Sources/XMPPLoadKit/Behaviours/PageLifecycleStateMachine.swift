import XMPPClientCore

/// The browser page of one session: when it reloads, sleeps, loses its connection, is closed or
/// caught in a reconnect storm, and when to check that the server let an abandoned session go.
/// Pure: time comes in as uptime nanoseconds, actions go out; the session carries them out on
/// its transport. One event at a time: a page that is away does nothing else.
///
/// A reload or a suspension first quiets the page: it stops sending, and (BOSH) gets its last
/// request taken with a ping, until nothing of its own is in flight (`tick(quiet:)`). So the
/// generator never abandons a message it sent itself: what is measured is what the server does
/// with messages *to* a page that is away. A flap and a storm strike without warning.
public struct PageLifecycleStateMachine: Sendable, Hashable {
    public enum State: Sendable, Hashable {
        /// Not logged in yet, no browser behaviour, or the behaviour phase is over.
        case inactive
        /// Logged in; the next event is `next`, due at `at`.
        case open(at: UInt64, next: Next)
        /// A reload or suspension is due: the page sends nothing more and waits for what it sent to be taken.
        case quieting(Next)
        /// Reloading: no request and no connection until `until`.
        case gone(until: UInt64)
        /// Re-attaching (BOSH) or resuming (XEP-0198) since `since`.
        case reattaching(since: UInt64)
        /// Asleep from `since` until `until`: nothing read, nothing sent.
        case suspended(since: UInt64, until: UInt64)
        /// Awake again since `since`, proving the session still works.
        case waking(since: UInt64)
        /// The connection carrying what is in flight goes unread from `since`, and is cut at `cutAt`.
        case frozen(since: UInt64, cutAt: UInt64)
        /// Cut at `since`; recovering (BOSH: the same rid again, §14.3; WebSocket: XEP-0198 resume).
        case flapping(since: UInt64)
        /// Dropped at `since` with every other session of the population; logs in anew at `until`.
        case stormed(since: UInt64, until: UInt64)
        /// Logging in anew after the storm that struck at `since`.
        case relogging(since: UInt64)
        /// The tab was closed at `at`; the check is due at `verifyAt` (nil: no check).
        case closed(at: UInt64, verifyAt: UInt64?)
        /// The check since `since`, for a tab closed at `closedAt`.
        case verifying(closedAt: UInt64, since: UInt64)
        /// Nothing more to do.
        case finished
    }

    public enum Next: Sendable, Hashable {
        case reload
        case suspend
        case flap
        case closeTab
        case storm

        var kind: Behaviour.Kind {
            switch self {
            case .reload: .reload
            case .suspend: .suspend
            case .flap: .flap
            case .closeTab: .tabClose
            case .storm: .storm
            }
        }
    }

    public enum Action: Sendable, Hashable {
        /// Get what is in flight taken by the server (BOSH: a ping releases the held request
        /// that carried the last stanzas).
        case quietDown
        /// Drop every connection without a word (the page goes away).
        case leavePage
        /// Come back: BOSH, a request with the sid and the next rid; WebSocket, a new connection
        /// that resumes the XEP-0198 session.
        case reattach
        /// Go to sleep for `seconds`: read nothing, send nothing. `announce`: first tell the
        /// connection manager (BOSH `pause`, XEP-0124 §10).
        case suspend(seconds: Double, announce: Bool)
        /// Wake up and prove the session still works (a ping; WebSocket: resume if the
        /// connection died meanwhile).
        case wake
        /// Stop reading the connection that carries what is in flight (the held request).
        case freeze
        /// Cut that connection and recover: BOSH sends the same request again (§14.3),
        /// WebSocket reconnects and resumes (XEP-0198).
        case cut
        /// Drop every connection without a word, as every page of the population does now.
        case dropForStorm
        /// Log in anew, from the start.
        case relogin
        /// Drop every connection without terminate or `<close/>`; the session takes no more part.
        case closeTab
        /// Ask for the abandoned session again; the server should refuse it.
        case verify
    }

    /// What the worker counts for the behaviour.
    public enum Outcome: Sendable, Hashable {
        /// `nanoseconds`: reload, leaving to back; suspend, waking to proven; flap, cut to
        /// recovered; storm, drop to logged in again; tab-close, close to found gone (nil: closed
        /// without a check).
        case succeeded(Behaviour.Kind, nanoseconds: UInt64?)
        case failed(Behaviour.Kind, ClientFailure)
    }

    public let reload: Behaviour.Reload?
    public let tabClose: Behaviour.TabClose?
    public let suspend: Behaviour.Suspend?
    public let flap: Behaviour.Flap?
    public let storm: Behaviour.Storm?
    public private(set) var state: State = .inactive
    /// When each recurring event is due next.
    private var due: [Next: UInt64] = [:]
    private var random: SeededGenerator
    private var stopped = false
    /// Logged in once: `inactive` then means "nothing due", not "not there yet".
    private var loggedIn = false

    public init(
        reload: Behaviour.Reload?, tabClose: Behaviour.TabClose?, suspend: Behaviour.Suspend? = nil, flap: Behaviour.Flap? = nil,
        storm: Behaviour.Storm? = nil, seed: UInt64
    ) {
        self.reload = reload
        self.tabClose = tabClose
        self.suspend = suspend
        self.flap = flap
        self.storm = storm
        self.random = SeededGenerator(seed: seed)
    }

    public init(behaviours: [Behaviour], seed: UInt64) {
        var reload: Behaviour.Reload?
        var tabClose: Behaviour.TabClose?
        var suspend: Behaviour.Suspend?
        var flap: Behaviour.Flap?
        var storm: Behaviour.Storm?
        for behaviour in behaviours {
            switch behaviour {
            case .reload(let value): reload = value
            case .tabClose(let value): tabClose = value
            case .suspend(let value): suspend = value
            case .flap(let value): flap = value
            case .storm(let value): storm = value
            case .chat, .idle, .presence, .muc: break
            }
        }
        self.init(reload: reload, tabClose: tabClose, suspend: suspend, flap: flap, storm: storm, seed: seed)
    }

    public var hasBehaviour: Bool {
        self.reload != nil || self.tabClose != nil || self.suspend != nil || self.flap != nil || self.storm != nil
    }

    /// The page is there and may send (not away, not closed).
    public var isPresent: Bool {
        switch self.state {
        case .inactive, .open: true
        default: false
        }
    }

    /// The behaviour a page that is away is away for: messages sent to it meanwhile are its.
    public var awayFor: Behaviour.Kind? {
        switch self.state {
        case .quieting(let next): next.kind
        case .gone, .reattaching: .reload
        case .suspended, .waking: .suspend
        case .frozen, .flapping: .flap
        case .stormed, .relogging: .storm
        default: nil
        }
    }

    /// An event or a check is under way: the run waits for it before it ends.
    public var isBusy: Bool {
        switch self.state {
        case .quieting, .gone, .reattaching, .suspended, .waking, .frozen, .flapping, .stormed, .relogging, .verifying: true
        case .closed(_, let verifyAt): verifyAt != nil
        default: false
        }
    }

    /// Away with the session still to be recovered: a failure now is the behaviour's, not the
    /// login's. Not while quieting: the event has not begun (nor been counted) yet.
    public var isRecovering: Bool {
        switch self.state {
        case .gone, .reattaching, .suspended, .waking, .frozen, .flapping, .stormed, .relogging: true
        default: false
        }
    }

    /// Logged in (the first time): schedule the first events.
    public mutating func established(now: UInt64) {
        guard case .inactive = self.state, !self.stopped, !self.loggedIn else { return }
        self.loggedIn = true
        if let tabClose = self.tabClose {
            self.due[.closeTab] = now + Self.nanos(self.random.jittered(tabClose.after, by: tabClose.jitter))
        }
        for next in [Next.reload, .suspend, .flap] { self.reschedule(next, from: now) }
        self.openNext()
    }

    /// The run's behaviour phase began at `now`: a storm strikes `at` seconds later.
    public mutating func behavioursBegan(now: UInt64) {
        guard let storm = self.storm, !self.stopped else { return }
        self.due[.storm] = now + Self.nanos(storm.at)
        switch self.state {
        case .open,
            .inactive where self.loggedIn:
            self.openNext()
        default: break
        }
    }

    private mutating func reschedule(_ next: Next, from now: UInt64) {
        switch next {
        case .reload:
            if let reload = self.reload { self.due[.reload] = now + Self.nanos(self.random.jittered(reload.every, by: reload.jitter)) }
        case .suspend:
            if let suspend = self.suspend { self.due[.suspend] = now + Self.nanos(self.random.jittered(suspend.every, by: suspend.jitter)) }
        case .flap:
            if let flap = self.flap { self.due[.flap] = now + Self.nanos(self.random.jittered(flap.every, by: flap.jitter)) }
        case .closeTab, .storm:
            break
        }
    }

    /// Open, waiting for the earliest event due (inactive when nothing is).
    private mutating func openNext() {
        guard !self.stopped, let earliest = self.due.min(by: { ($0.value, Self.order($0.key)) < ($1.value, Self.order($1.key)) }) else {
            self.state = .inactive
            return
        }
        self.state = .open(at: earliest.value, next: earliest.key)
    }

    private static func order(_ next: Next) -> Int {
        switch next {
        case .storm: 0
        case .closeTab: 1
        case .flap: 2
        case .suspend: 3
        case .reload: 4
        }
    }

    /// Time passes. `active`: the run's behaviour phase is on (no new event otherwise);
    /// `quiet`: nothing of the session's own is in flight.
    public mutating func tick(now: UInt64, active: Bool, quiet: Bool) -> Action? {
        switch self.state {
        case .open(let at, let next) where active && now >= at:
            self.due[next] = nil
            switch next {
            case .reload, .suspend:
                self.state = .quieting(next)
                return self.tick(now: now, active: active, quiet: quiet)
            case .flap:
                let unread = self.flap?.unread ?? 0
                self.state = .frozen(since: now, cutAt: now + Self.nanos(unread))
                return .freeze
            case .storm:
                let within = self.storm?.within ?? 0
                self.state = .stormed(since: now, until: now + Self.nanos(self.random.nextUnit() * within))
                return .dropForStorm
            case .closeTab:
                self.due.removeAll()
                self.state = .closed(at: now, verifyAt: nil)
                return .closeTab
            }
        case .quieting(let next):
            guard quiet else { return .quietDown }
            switch next {
            case .suspend:
                guard let suspend = self.suspend else { return nil }
                self.state = .suspended(since: now, until: now + Self.nanos(suspend.seconds))
                return .suspend(seconds: suspend.seconds, announce: suspend.announce)
            default:
                guard let reload = self.reload else { return nil }
                self.state = .gone(until: now + Self.nanos(reload.gap))
                return .leavePage
            }
        case .gone(let until) where now >= until:
            self.state = .reattaching(since: now)
            return .reattach
        case .suspended(_, let until) where now >= until:
            self.state = .waking(since: now)
            return .wake
        case .frozen(_, let cutAt) where now >= cutAt:
            self.state = .flapping(since: now)
            return .cut
        case .stormed(let since, let until) where now >= until:
            self.state = .relogging(since: since)
            return .relogin
        case .closed(let at, let verifyAt?) where now >= verifyAt:
            self.state = .verifying(closedAt: at, since: now)
            return .verify
        default:
            return nil
        }
    }

    /// A flap found nothing in flight to cut: it comes again shortly, uncounted.
    public mutating func flapPostponed(now: UInt64) {
        guard case .frozen = self.state else { return }
        self.due[.flap] = now + 100_000_000
        self.openNext()
    }

    /// The tab is closed; the server advertised it keeps an abandoned session `timeout` seconds
    /// (BOSH `inactivity`, XEP-0198 `max`; nil when it did not say).
    public mutating func tabClosed(timeout: Double?) -> Outcome? {
        guard case .closed(let at, nil) = self.state, let tabClose = self.tabClose else { return nil }
        guard tabClose.verify else {
            self.state = .finished
            return .succeeded(.tabClose, nanoseconds: nil)
        }
        guard let timeout else {
            self.state = .finished
            return .failed(.tabClose, ClientFailure(.protocolViolation, "no-advertised-timeout"))
        }
        self.state = .closed(at: at, verifyAt: at + Self.nanos(timeout + tabClose.grace))
        return nil
    }

    /// The page is back and its session proven: a reload re-attached or resumed, a woken page's
    /// ping answered (or its session resumed), a cut connection recovered, a stormed page
    /// logged in again.
    public mutating func recovered(now: UInt64) -> Outcome? {
        let outcome: Outcome
        let next: Next
        switch self.state {
        case .reattaching(let since):
            (outcome, next) = (.succeeded(.reload, nanoseconds: now - since), .reload)
        case .waking(let since):
            (outcome, next) = (.succeeded(.suspend, nanoseconds: now - since), .suspend)
        case .flapping(let since):
            (outcome, next) = (.succeeded(.flap, nanoseconds: now - since), .flap)
        case .relogging(let since):
            (outcome, next) = (.succeeded(.storm, nanoseconds: now - since), .storm)
        default:
            return nil
        }
        self.reschedule(next, from: now)
        self.openNext()
        return outcome
    }

    /// The event could not happen (BOSH `pause` not offered), but the session is unharmed:
    /// counted as failed, and the page carries on.
    public mutating func eventRefused(_ failure: ClientFailure, now: UInt64) -> Outcome? {
        guard let kind = self.awayFor else { return nil }
        let next: Next
        switch kind {
        case .suspend: next = .suspend
        case .flap: next = .flap
        case .reload: next = .reload
        default: return nil
        }
        self.reschedule(next, from: now)
        self.openNext()
        return .failed(kind, failure)
    }

    /// The page could not get its session back: it is lost to the behaviour, not to the login.
    public mutating func recoveryFailed(_ failure: ClientFailure) -> Outcome? {
        guard self.isRecovering, let kind = self.awayFor else { return nil }
        self.state = .finished
        return .failed(kind, failure)
    }

    /// The check's answer: `expired` when the server refused the abandoned session.
    public mutating func verified(expired: Bool, condition: String, now: UInt64) -> Outcome? {
        guard case .verifying(let closedAt, _) = self.state else { return nil }
        self.state = .finished
        return expired
            ? .succeeded(.tabClose, nanoseconds: now - closedAt) : .failed(.tabClose, ClientFailure(.protocolViolation, condition))
    }

    /// The run ends: whatever is scheduled is dropped (an event under way still reports); the
    /// page stays, to log out.
    public mutating func stop() {
        self.stopped = true
        self.due.removeAll()
        if case .open = self.state { self.state = .inactive }
    }

    static func nanos(_ seconds: Double) -> UInt64 {
        UInt64(max(0, seconds) * 1e9)
    }
}
