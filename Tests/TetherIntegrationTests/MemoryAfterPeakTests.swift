import Foundation
import NIOCore
import Testing

@testable import TetherServer

@Suite("Memory after a peak")
struct MemoryAfterPeakTests {
    @Test("the trim policy fires after the live sessions fall to half their peak (and by enough), then at each halving until the fall is over")
    func policy() {
        var policy = MemoryTrimPolicy()
        let seen = [1000, 600, 400, 0].map { policy.observe(sessions: $0) }
        // 600 is not half of 1000; 400 is (a fall of 600); then 0 is half of 400 and a fall of 400.
        #expect(seen == [false, false, true, true])
        #expect(policy.peak == 0)
        // A peak between two samples counts.
        var brief = MemoryTrimPolicy()
        let fired = brief.observe(sessions: 3, peakSince: 1000)
        #expect(fired)
        // A slow fall is trimmed in steps, counted from its peak; nothing more once it is over.
        var slow = MemoryTrimPolicy()
        let slowSeen = [1000, 205, 0, 0, 10, 0].map { slow.observe(sessions: $0) }
        #expect(slowSeen == [false, true, true, false, false, false], "regression: only the trim at 205")
        var tail = MemoryTrimPolicy()
        let tailSeen = [1000, 60, 0].map { tail.observe(sessions: $0) }
        #expect(tailSeen == [false, true, true], "regression: the last 60 kept their memory")
        var last = MemoryTrimPolicy()
        let lastSeen = [1000, 14, 0, 0].map { last.observe(sessions: $0) }
        #expect(lastSeen == [false, true, true, false], "regression: the fall counted as over at 14 of 1,000")
        var small = MemoryTrimPolicy()
        let smallSeen = [100, 0].map { small.observe(sessions: $0) }
        #expect(smallSeen == [false, false], "too small a peak to be worth a heap walk")
        // glibc's malloc_trim is found and callable.
        _ = MemoryTrimmer.trim()
    }

    @Test(
        "1,000 WebSocket sessions opened and closed: the tether process gives the memory back (RSS within 20% of before, regression: stayed at the peak)", .timeLimit(.minutes(3)))
    func rssReturns() async throws {
        let fake = try await FakeXMPPServer.start()
        do {
            try await withTetherProcess([
                "--route", "crowd.example=127.0.0.1:\(fake.port)",
                "--new-session-burst", "5000",
            ]) { tether in
                // Warm-up: one session, so one-time allocations are in the baseline.
                let (first, _, _) = try await AdmissionDefaultsTests.session(port: tether.port, from: "127.0.0.1")
                await first.drop()
                try await Task.sleep(for: .seconds(1))
                let before = HostileFloodTests.residentKiB(tether.process.pid)
                var clients: [WebSocketTestClient] = []
                for _ in 0..<10 {
                    try await withThrowingTaskGroup(of: WebSocketTestClient.self) { group in
                        for _ in 0..<100 {
                            group.addTask { try await AdmissionDefaultsTests.session(port: tether.port, from: "127.0.0.1").0 }
                        }
                        for try await client in group { clients.append(client) }
                    }
                }
                let peak = HostileFloodTests.residentKiB(tether.process.pid)
                for client in clients { await client.drop() }
                // The trimmer samples every 10 s: within 70 s the fall (slow on a loaded machine)
                // has been seen and acted on.
                var after = peak
                let deadline = ContinuousClock.now + .seconds(70)
                while ContinuousClock.now < deadline {
                    try await Task.sleep(for: .seconds(2))
                    after = HostileFloodTests.residentKiB(tether.process.pid)
                    if Double(after) <= Double(before) * 1.2 { break }
                }
                print("memory after peak: RSS before \(before) KiB, peak \(peak) KiB, after \(after) KiB")
                let trims = tether.stderr.split(separator: "\n").filter { $0.contains("memory returned") }
                #expect(Double(after) <= Double(before) * 1.2, "RSS before \(before) KiB, peak \(peak) KiB, after \(after) KiB; \(trims)")
            }
            await fake.stop()
        } catch {
            await fake.stop()
            throw error
        }
    }
}
