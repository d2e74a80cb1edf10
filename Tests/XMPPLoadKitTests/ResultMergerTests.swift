import Foundation
import Testing

@testable import XMPPLoadKit

/// Merging results: counts add up, and percentiles come from the merged histograms.
@Suite("Merging results")
struct ResultMergerTests {
    static let scenario = LoadScenario(
        populations: [
            Population(
                name: "pages", transport: .bosh, endpoint: Endpoint("http://127.0.0.1:1/http-bind")!, sessions: 2, arrival: .constant(rate: 10, start: 0),
                behaviours: [.chat(.init(rate: 10, slo: .init(p99Milliseconds: 50))), .reload(.init(every: 5))]
            )
        ]
    )

    /// A result with these delivery and re-attach latencies (microseconds), as a run would write it.
    static func result(delivery: [UInt64], reattach: [UInt64], sessions: Int = 2) -> LoadResult {
        var deliveryHistogram = LatencyHistogram()
        for value in delivery { deliveryHistogram.record(nanoseconds: value * 1000) }
        var reattachHistogram = LatencyHistogram()
        for value in reattach { reattachHistogram.record(nanoseconds: value * 1000) }
        var login = LatencyHistogram()
        for _ in 0..<sessions { login.record(nanoseconds: 5_000_000) }
        var histograms = LoadResult.Histograms()
        histograms.delivery = deliveryHistogram
        histograms.login = login
        histograms.populations["pages"] = login
        histograms.behaviours["pages/chat"] = deliveryHistogram
        histograms.behaviours["pages/reload"] = reattachHistogram
        let sent = UInt64(delivery.count)
        var scenario = Self.scenario
        scenario.populations[0].sessions = sessions
        var result = LoadResult(
            scenario: scenario, startedAt: "2026-12-02T16:00:00Z",
            sessions: .init(
                requested: sessions, started: sessions, established: sessions, failed: 0, closedCleanly: sessions, rampSeconds: 0.1,
                establishmentRate: 20, login: login.summary, phases: [:]
            ),
            messages: .init(
                targetRate: 10, achievedRate: 10, sent: sent, delivered: sent, lost: 0, duplicates: 0, unknown: 0, messagingSeconds: 10,
                behindSchedule: 0, latency: deliveryHistogram.summary
            ),
            steps: [], kneeRate: nil, errors: [:], retransmissions: 1,
            cpu: .init(wallSeconds: 12, processSeconds: 1, processPercent: 8, clientThreadsSeconds: 1, peakClientThreadPercent: 20, clientSaturated: false),
            server: nil, timeline: []
        )
        result.populations = [
            PopulationResult(
                name: "pages", transport: .bosh, endpoint: "http://127.0.0.1:1/http-bind", requested: sessions, started: sessions, established: sessions,
                failed: 0, login: login.summary, errors: [:], slo: [], passed: true
            )
        ]
        result.behaviours = [
            BehaviourResult(
                population: "pages", behaviour: .chat, attempts: sent, successes: sent, failures: 0, latencyOf: "delivery",
                latency: deliveryHistogram.summary, errors: [:], slo: [], passed: true
            ),
            BehaviourResult(
                population: "pages", behaviour: .reload, attempts: UInt64(reattach.count), successes: UInt64(reattach.count), failures: 0,
                latencyOf: "reattach", latency: reattachHistogram.summary, errors: [:], slo: [], passed: true,
                messagesWhileAway: 3, messagesWhileAwayDelivered: 3
            ),
        ]
        result.histograms = histograms
        return result
    }

    /// Through JSON and back, as `merge` reads the files.
    static func roundTrip(_ result: LoadResult) throws -> LoadResult {
        try JSONDecoder().decode(LoadResult.self, from: ReportWriter.json(result))
    }

    @Test("a histogram read back from the JSON gives the same percentiles, count, min bucket and max")
    func histogramRoundTrip() throws {
        var generator = SeededGenerator(seed: 9)
        var histogram = LatencyHistogram()
        for _ in 0..<5000 { histogram.record(nanoseconds: 1000 * (1 + generator.next() % 2_000_000)) }
        let decoded = try JSONDecoder().decode(LatencyHistogram.self, from: JSONEncoder().encode(histogram))
        #expect(decoded.count == histogram.count)
        #expect(decoded.summary == histogram.summary)
    }

    @Test("two half-runs merged give the percentiles of the whole run, exactly at the histogram's precision")
    func halves() throws {
        var generator = SeededGenerator(seed: 4)
        // A skewed distribution, so averaging the halves' percentiles would be visibly wrong.
        let delivery = (0..<4000).map { index -> UInt64 in
            let base = generator.next() % 3000 + 200
            return index % 50 == 0 ? base * 40 : base
        }
        let reattach = (0..<40).map { _ in generator.next() % 900_000 + 50_000 }
        let whole = Self.result(delivery: delivery, reattach: reattach, sessions: 4)
        // Split unevenly (a quarter / three quarters), as two generators of different speed would.
        let first = Self.result(delivery: Array(delivery.prefix(1000)), reattach: Array(reattach.prefix(10)))
        let second = Self.result(delivery: Array(delivery.dropFirst(1000)), reattach: Array(reattach.dropFirst(10)))
        let merged = try ResultMerger.merge([Self.roundTrip(first), Self.roundTrip(second)])

        #expect(merged.mergedFrom == 2)
        #expect(merged.messages.sent == 4000 && merged.messages.delivered == 4000)
        #expect(merged.messages.latency == whole.messages.latency)
        #expect(merged.sessions.established == 4 && merged.sessions.requested == 4)
        #expect(merged.sessions.login == whole.sessions.login)
        #expect(merged.scenario.populations[0].sessions == 4)
        #expect(merged.retransmissions == 2)
        let chat = try #require(merged.behaviours.first { $0.behaviour == .chat })
        let wholeChat = try #require(whole.behaviours.first { $0.behaviour == .chat })
        #expect(chat.attempts == 4000 && chat.latency == wholeChat.latency)
        let reload = try #require(merged.behaviours.first { $0.behaviour == .reload })
        #expect(reload.attempts == 40 && reload.successes == 40)
        #expect(reload.latency == whole.behaviours[1].latency)
        #expect(reload.messagesWhileAway == 6 && reload.messagesWhileAwayDelivered == 6)
        // Not an average of the halves' p99s.
        let averaged = (first.messages.latency.p99 + second.messages.latency.p99) / 2
        #expect(merged.messages.latency.p99 != averaged)
        // The SLO is judged again, on the merged figures: p99 under 50 ms is not met (2 % of messages take 8–128 ms).
        #expect(merged.messages.latency.p99 > 50)
        #expect(chat.slo.contains { $0.metric == "p99-ms" && !$0.met })
        #expect(!merged.passed)
        // And the merged result carries its histograms, so it can be merged again.
        let again = try ResultMerger.merge([Self.roundTrip(merged), Self.roundTrip(Self.result(delivery: [1000], reattach: []))])
        #expect(again.messages.sent == 4001)
    }

    @Test("two real half-runs against the stub, written as files and merged: counts add up, every delivery is in the merged histogram")
    func realHalves() async throws {
        let stub = try await UpstreamStub.start()
        do {
            var paths: [String] = []
            var parts: [LoadResult] = []
            for first in [1, 101] {
                let scenario = LoadScenario(
                    transport: .tcp, endpoint: Endpoint(scheme: .tcp, host: "127.0.0.1", port: stub.port), firstUser: first, sessions: 4,
                    rampRate: 500, messageRate: 100, duration: 1, drainSeconds: 2
                )
                let result = try await LoadRunner(scenario: scenario).run()
                let path = FileManager.default.temporaryDirectory.appendingPathComponent("tether-load-part-\(UUID().uuidString).json").path
                try ReportWriter.json(result).write(to: URL(fileURLWithPath: path))
                paths.append(path)
                parts.append(result)
            }
            defer { for path in paths { try? FileManager.default.removeItem(atPath: path) } }
            let merged = try ResultMerger.merge(files: paths)
            #expect(merged.sessions.established == 8)
            #expect(merged.messages.sent == parts[0].messages.sent + parts[1].messages.sent)
            #expect(merged.messages.delivered == merged.messages.sent && merged.messages.lost == 0)
            #expect(merged.messages.latency.count == merged.messages.sent)
            #expect(merged.messages.latency.max == max(parts[0].messages.latency.max, parts[1].messages.latency.max))
            #expect(merged.behaviours.first?.attempts == merged.messages.sent)
            #expect(merged.passed)
            await stub.stop()
        } catch {
            await stub.stop()
            throw error
        }
    }

    @Test("files: a missing one and one without histograms are errors naming the file")
    func files() throws {
        #expect { try ResultMerger.merge(files: ["/nonexistent/a.json"]) } throws: { "\($0)".hasPrefix("/nonexistent/a.json: cannot be read") }
        var old = Self.result(delivery: [1], reattach: [])
        old.histograms = nil
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("tether-load-old-\(UUID().uuidString).json").path
        try ReportWriter.json(old).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect { try ResultMerger.merge(files: [path]) } throws: { "\($0)".hasPrefix("\(path): has no histograms") }
        try #"{"tool": "tether-load", "formatVersion": 1, "scenario": {"transport": "bosh"}}"#.write(toFile: path, atomically: true, encoding: .utf8)
        #expect { try ResultMerger.merge(files: [path]) } throws: { "\($0)".hasPrefix("\(path): a format 1 result") }
    }
}
