import NIOCore

/// Connection racing over one target's addresses (RFC 8305 §4–§5), without I/O: addresses and
/// events in, actions out, time passed in. `UpstreamConnector` carries the actions out.
///
/// - The addresses are interleaved by family, IPv6 first (§4, a "First Address Family Count"
///   of 1), each family keeping its resolver order.
/// - One attempt starts at once; while none has succeeded, the next starts when the
///   Connection Attempt Delay has passed since the last one started (§5), or at once when an
///   attempt fails (nothing is gained by waiting for a refused address).
/// - The first attempt to connect wins; every other attempt still pending is cancelled, and
///   one that connects after the win is closed.
/// - When every attempt has failed, it gives up with all their reasons.
///
/// Every event is handled in a bounded number of steps, and each address is attempted at most
/// once, so a race over N addresses ends after at most N attempts.
public struct HappyEyeballsStateMachine<Address: Hashable & Sendable>: Sendable {
    /// RFC 8305 §5: a delay MUST NOT be under 10 ms, SHOULD NOT be under 100 ms, and SHOULD
    /// NOT be over 2 s. Tether allows 10 ms–2 s and defaults to the recommended 250 ms.
    public static var defaultAttemptDelay: TimeAmount { .milliseconds(250) }
    public static var attemptDelayRange: ClosedRange<TimeAmount> { .milliseconds(10) ... .seconds(2) }

    public struct Failure: Hashable, Sendable {
        public var address: Address
        public var reason: String
    }

    public enum Action: Hashable, Sendable {
        /// Start connecting to `address`; report back with `attempt`.
        case startAttempt(attempt: Int, address: Address)
        /// Call `attemptDelayElapsed(timer:now:)` with this id at `deadline` (a newer timer
        /// replaces an older one: stale ids are ignored).
        case scheduleTimer(id: Int, deadline: NIODeadline)
        /// Abandon these attempts, still connecting (close their sockets).
        case cancelAttempts([Int])
        /// Close this attempt's connection: it connected after another had won.
        case closeLoser(Int)
        /// This attempt's connection is the one to use.
        case won(attempt: Int, address: Address)
        /// Every attempt failed (or there was no address).
        case gaveUp([Failure])
    }

    private enum State: Hashable, Sendable {
        case idle
        case racing
        case won(Int)
        case gaveUp
    }

    /// The addresses in the order they are attempted.
    public let order: [Address]
    public let attemptDelay: TimeAmount
    private var state: State = .idle
    /// Attempts started so far (attempt N is `order[N]`).
    private var started = 0
    private var pending: Set<Int> = []
    private var failures: [Failure] = []
    private var timerID = 0

    /// - Parameter isIPv6: tells the families apart (everything else counts as IPv4).
    public init(addresses: [Address], isIPv6: (Address) -> Bool, attemptDelay: TimeAmount = Self.defaultAttemptDelay) {
        self.order = Self.interleave(addresses, isIPv6: isIPv6)
        self.attemptDelay = min(max(attemptDelay, Self.attemptDelayRange.lowerBound), Self.attemptDelayRange.upperBound)
    }

    /// RFC 8305 §4: IPv6, IPv4, IPv6, IPv4, …; the rest of the longer family at the end.
    /// Duplicates are dropped (each address is attempted once).
    public static func interleave(_ addresses: [Address], isIPv6: (Address) -> Bool) -> [Address] {
        var seen: Set<Address> = []
        let unique = addresses.filter { seen.insert($0).inserted }
        let v6 = unique.filter(isIPv6)
        let v4 = unique.filter { !isIPv6($0) }
        var ordered: [Address] = []
        ordered.reserveCapacity(unique.count)
        for index in 0..<max(v6.count, v4.count) {
            if index < v6.count { ordered.append(v6[index]) }
            if index < v4.count { ordered.append(v4[index]) }
        }
        return ordered
    }

    public var isFinished: Bool {
        switch self.state {
        case .won, .gaveUp: return true
        case .idle, .racing: return false
        }
    }

    public mutating func start(now: NIODeadline) -> [Action] {
        guard case .idle = self.state else { return [] }
        guard !self.order.isEmpty else {
            self.state = .gaveUp
            return [.gaveUp([])]
        }
        self.state = .racing
        return self.startNext(now: now)
    }

    /// The timer `id` fired.
    public mutating func attemptDelayElapsed(timer id: Int, now: NIODeadline) -> [Action] {
        guard case .racing = self.state, id == self.timerID, self.started < self.order.count else { return [] }
        return self.startNext(now: now)
    }

    public mutating func attemptFailed(_ attempt: Int, reason: String, now: NIODeadline) -> [Action] {
        guard self.pending.remove(attempt) != nil else { return [] }
        self.failures.append(Failure(address: self.order[attempt], reason: reason))
        guard case .racing = self.state else { return [] }
        if self.started < self.order.count {
            return self.startNext(now: now)
        }
        if self.pending.isEmpty {
            self.state = .gaveUp
            self.timerID += 1
            return [.gaveUp(self.failures)]
        }
        return []
    }

    /// Attempt `attempt` connected. Only the first of a race wins; any other (one that
    /// connected while being cancelled, or after the race was abandoned) is to be closed.
    public mutating func attemptConnected(_ attempt: Int) -> [Action] {
        guard attempt >= 0, attempt < self.started else { return [] }
        let wasPending = self.pending.remove(attempt) != nil
        guard wasPending, case .racing = self.state else { return [.closeLoser(attempt)] }
        self.state = .won(attempt)
        // Any timer still scheduled is now stale.
        self.timerID += 1
        let losers = self.pending.sorted()
        self.pending = []
        var actions: [Action] = [.won(attempt: attempt, address: self.order[attempt])]
        if !losers.isEmpty { actions.insert(.cancelAttempts(losers), at: 0) }
        return actions
    }

    /// The connection the caller asked for is no longer wanted (the session went away):
    /// everything pending is cancelled.
    public mutating func abandon() -> [Action] {
        guard case .racing = self.state else { return [] }
        self.state = .gaveUp
        self.timerID += 1
        let pending = self.pending.sorted()
        self.pending = []
        return pending.isEmpty ? [] : [.cancelAttempts(pending)]
    }

    private mutating func startNext(now: NIODeadline) -> [Action] {
        let attempt = self.started
        self.started += 1
        self.pending.insert(attempt)
        self.timerID += 1
        var actions: [Action] = [.startAttempt(attempt: attempt, address: self.order[attempt])]
        if self.started < self.order.count {
            actions.append(.scheduleTimer(id: self.timerID, deadline: now + self.attemptDelay))
        }
        return actions
    }
}
