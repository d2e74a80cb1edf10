import NIOCore
import Testing

@testable import TetherServer

@Suite("Session admission")
struct SessionLimiterTests {
    @Test("defaults serve a NAT's crowd: a burst of 200, then 50 new sessions a second, up to 5,000 live per address")
    func defaults() {
        let limits = SessionLimiter.Limits()
        #expect(limits.maxSessionsPerAddress >= 2000)
        #expect(limits.newSessionBurstPerAddress == 200)
        #expect(limits.newSessionsPerSecondPerAddress == 50)
    }

    @Test("the token bucket: a full burst at once, then the sustained rate; other addresses untouched")
    func bucket() {
        let limiter = SessionLimiter(limits: .init(maxSessions: 100_000, maxSessionsPerAddress: 100_000, newSessionsPerSecondPerAddress: 50, newSessionBurstPerAddress: 200))
        let start = NIODeadline.uptimeNanoseconds(1_000_000_000_000)
        for _ in 0..<200 { #expect(limiter.admit("192.0.2.1", now: start) == nil) }
        #expect(limiter.admit("192.0.2.1", now: start) == .tooManyNewSessions)
        // Another address has its own bucket.
        #expect(limiter.admit("192.0.2.2", now: start) == nil)
        // 1 s later: 50 more, not 51.
        let later = start + .seconds(1)
        for _ in 0..<50 { #expect(limiter.admit("192.0.2.1", now: later) == nil) }
        #expect(limiter.admit("192.0.2.1", now: later) == .tooManyNewSessions)
        // Refilled only up to the burst, however long it was idle.
        let muchLater = later + .seconds(3600)
        for _ in 0..<200 { #expect(limiter.admit("192.0.2.1", now: muchLater) == nil) }
        #expect(limiter.admit("192.0.2.1", now: muchLater) == .tooManyNewSessions)
    }

    static let churnRates = [0, 50]

    @Test(
        "many fresh addresses at once, each opening and closing a session, leave a bounded map, for a rate of 0 (buckets that never refill) too (regression: unbounded, and an O(n) pass on every admission)",
        arguments: Self.churnRates)
    func addressChurnStaysBounded(rate: Int) throws {
        let limiter = SessionLimiter(limits: .init(maxSessions: 100_000, maxSessionsPerAddress: 10, newSessionsPerSecondPerAddress: rate, newSessionBurstPerAddress: 2))
        let start = NIODeadline.uptimeNanoseconds(1_000_000_000_000)
        for index in 0..<10_000 {
            let address = "10.\(index >> 16).\((index >> 8) & 255).\(index & 255)"
            #expect(limiter.admit(address, now: start + .microseconds(Int64(index))) == nil)
            limiter.release(address)
        }
        let now = start + .microseconds(10_000)
        #expect(limiter.rememberedAddresses <= 1028, "\(limiter.rememberedAddresses)")
        // The most recent address is still remembered, with its spent bucket.
        let last = "10.0.39.15"
        #expect(limiter.admit(last, now: now) == nil)
        limiter.release(last)
        #expect(limiter.admit(last, now: now) == .tooManyNewSessions)
    }

    @Test("the open-files limit sizes the default --max-sessions: two descriptors a session, after a reserve")
    func descriptorBudget() {
        #expect(DescriptorBudget(descriptors: 1024).sessions == (1024 - DescriptorBudget.reserve) / 2)
        #expect(DescriptorBudget(descriptors: 1_048_576).sessions == (1_048_576 - DescriptorBudget.reserve) / 2)
        #expect(DescriptorBudget(descriptors: 10).sessions == 1)
        #expect(DescriptorBudget.current.descriptors > 0)
    }

    @Test("an IPv6 client is counted by its /64: rotating addresses inside it gets no fresh limit")
    func ipv6Prefix() {
        #expect(SessionLimiter.client("2001:db8:1:2::5") == "2001:db8:1:2::/64")
        #expect(SessionLimiter.client("2001:db8:1:2:aaaa:bbbb:cccc:dddd") == "2001:db8:1:2::/64")
        #expect(SessionLimiter.client("192.0.2.7") == "192.0.2.7")
        #expect(SessionLimiter.client("::ffff:192.0.2.7") == "192.0.2.7")
        let limiter = SessionLimiter(limits: .init(maxSessions: 100, maxSessionsPerAddress: 2, newSessionsPerSecondPerAddress: 50, newSessionBurstPerAddress: 200))
        #expect(limiter.admit("2001:db8:1:2::1") == nil)
        #expect(limiter.admit("2001:db8:1:2::2") == nil)
        #expect(limiter.admit("2001:db8:1:2::3") == .tooManySessionsFromAddress)
        #expect(limiter.admit("2001:db8:1:3::1") == nil)
        limiter.release("2001:db8:1:2::1")
        #expect(limiter.admit("2001:db8:1:2::9") == nil)
    }
}
