import NIOCore
import Synchronization
import XMPPUpstream

/// Bounds on sessions, shared by BOSH and WebSocket: in total, per client address, and new
/// sessions per address (a token bucket). Hitting one refuses only that client.
///
/// The per-address defaults are sized for the largest crowds that share one address: a campus
/// or company NAT, carrier-grade NAT, where thousands of users appear as one client and log in
/// together at 9 a.m. or after a network blip. They bound what one address can take from the
/// others (`maxSessions` is the process's whole budget), not how many users an address may have.
final class SessionLimiter: Sendable {
    struct Limits: Hashable, Sendable {
        /// Live sessions in total (see `DescriptorBudget` for the default).
        var maxSessions = 10_000
        /// Live sessions from one client address.
        var maxSessionsPerAddress = 5_000
        /// New sessions per second from one client address, sustained.
        var newSessionsPerSecondPerAddress = 50
        /// New sessions one address may open at once before the rate applies (the bucket's size).
        var newSessionBurstPerAddress = 200
    }

    enum Refusal: String, Error, Sendable {
        case tooManySessions = "max-sessions"
        case tooManySessionsFromAddress = "max-sessions-per-address"
        case tooManyNewSessions = "new-sessions-per-second"
    }

    private struct State {
        var total = 0
        /// The most live at once since `takePeak()` last asked.
        var peak = 0
        var perAddress: [String: Int] = [:]
        var buckets: [String: (tokens: Double, at: NIODeadline)] = [:]
    }

    private let state = Mutex(State())
    private let currentLimits: Mutex<Limits>

    init(limits: Limits) {
        self.currentLimits = Mutex(limits)
    }

    var limits: Limits { self.currentLimits.withLock { $0 } }

    /// New limits apply to admissions from now on; live sessions are never cut to fit them.
    func update(_ limits: Limits) {
        self.currentLimits.withLock { $0 = limits }
    }

    var sessionCount: Int { self.state.withLock { $0.total } }

    /// Whom the per-address limits count: an IPv4 address, or an IPv6 address's /64. One host is
    /// given a whole /64 (RFC 6177, SLAAC), so counting single IPv6 addresses would let it take a
    /// fresh address, and a fresh limit, for every session.
    static func client(_ address: String) -> String {
        guard address.contains(":"), let parsed = try? SocketAddress(ipAddress: address, port: 0),
            let bytes = IPNetwork.bytes(of: parsed), bytes.count == 16
        else { return address }
        if bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xFF && bytes[11] == 0xFF {
            // IPv4-mapped (a dual-stack listener's IPv4 clients): each is its own client.
            return bytes[12...].map(String.init).joined(separator: ".")
        }
        return stride(from: 0, to: 8, by: 2).map { String(UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]), radix: 16) }.joined(separator: ":") + "::/64"
    }

    /// How many addresses' buckets are remembered (bounded: see `admit`).
    var rememberedAddresses: Int { self.state.withLock { $0.buckets.count } }

    /// Counts a new session for `address`, or says which limit refuses it.
    func admit(_ address: String, now: NIODeadline = .now()) -> Refusal? {
        let address = Self.client(address)
        let limits = self.limits
        return self.state.withLock { state in
            guard state.total < limits.maxSessions else { return .tooManySessions }
            guard state.perAddress[address, default: 0] < limits.maxSessionsPerAddress else { return .tooManySessionsFromAddress }
            let rate = Double(limits.newSessionsPerSecondPerAddress)
            let burst = Double(max(1, limits.newSessionBurstPerAddress))
            var bucket = state.buckets[address] ?? (burst, now)
            let elapsed = Double((now - bucket.at).nanoseconds) / 1e9
            bucket = (min(burst, bucket.tokens + elapsed * rate), now)
            guard bucket.tokens >= 1 else {
                state.buckets[address] = bucket
                return .tooManyNewSessions
            }
            bucket.tokens -= 1
            state.buckets[address] = bucket
            state.total += 1
            state.peak = max(state.peak, state.total)
            state.perAddress[address, default: 0] += 1
            let bound = 4 * max(1, state.perAddress.count) + 1024
            if state.buckets.count > bound {
                // Forget addresses with no session whose bucket has refilled: the map stays bounded.
                state.buckets = state.buckets.filter { entry in
                    state.perAddress[entry.key] != nil || Double((now - entry.value.at).nanoseconds) / 1e9 * rate + entry.value.tokens < burst
                }
                if state.buckets.count > bound / 2 {
                    // Many fresh addresses at once (or a rate of 0, whose buckets never refill):
                    // forget the longest-idle ones without a session, down to half the bound, so
                    // the next admissions do not each pay this pass again (regression: an O(n)
                    // filter that removed nothing ran on every admission).
                    let idle = state.buckets.filter { state.perAddress[$0.key] == nil }.sorted { $0.value.at < $1.value.at }
                    for entry in idle.prefix(state.buckets.count - bound / 2) {
                        state.buckets[entry.key] = nil
                    }
                }
            }
            return nil
        }
    }

    /// The most sessions live at once since the last call, and how many are live now; the next
    /// call's peak starts from now. Short peaks between two samples are not missed.
    func takePeak() -> (peak: Int, live: Int) {
        self.state.withLock { state in
            defer { state.peak = state.total }
            return (max(state.peak, state.total), state.total)
        }
    }

    /// A session admitted for `address` ended.
    func release(_ address: String) {
        let address = Self.client(address)
        self.state.withLock { state in
            state.total = max(0, state.total - 1)
            if let count = state.perAddress[address] {
                state.perAddress[address] = count > 1 ? count - 1 : nil
            }
        }
    }
}
