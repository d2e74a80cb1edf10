import Foundation
import Testing

@testable import XMPPLoadKit

/// `--part K/N`: which sessions each generator of a distributed run takes, and what a merge
/// accepts.
@Suite("Distributed runs: parts")
struct LoadPartTests {
    static func scenario() -> LoadScenario {
        let endpoint = Endpoint("http://127.0.0.1:1/http-bind")!
        return LoadScenario(
            populations: [
                Population(
                    name: "chat", transport: .bosh, endpoint: endpoint, sessions: 14, arrival: .constant(rate: 7, start: 0),
                    behaviours: [.chat(.init(rate: 70))]
                ),
                Population(
                    name: "idle", transport: .bosh, endpoint: endpoint, sessions: 5, arrival: .poisson(rate: 3, seed: 9, start: 1),
                    behaviours: [.idle(.init())]
                ),
            ]
        )
    }

    @Test("K/N parses; anything else does not; a part outside 1…N is a problem")
    func parse() {
        #expect(LoadPart("2/3") == LoadPart(index: 2, count: 3))
        for text in ["2", "2/", "/3", "a/b", "1/2/3", ""] { #expect(LoadPart(text) == nil, "\(text)") }
        var scenario = Self.scenario()
        scenario.part = LoadPart(index: 4, count: 3)
        #expect(scenario.validate().contains { $0.hasPrefix("part: must be K/N") })
        scenario.part = LoadPart(index: 1, count: 0)
        #expect(!scenario.validate().isEmpty)
        scenario.part = LoadPart(index: 3, count: 3)
        #expect(scenario.validate().isEmpty)
        // A stepped run judges each step on the whole rate: it cannot be split.
        var stepped = scenario
        stepped.stepped = LoadScenario.Stepped(start: 10, step: 10, max: 30)
        #expect(stepped.validate().contains { $0.hasPrefix("part: a stepped run cannot be split") })
        // A start time in milliseconds (or years away) is a mistake, not a wait.
        scenario.startAt = Date().timeIntervalSince1970 * 1000
        #expect(scenario.validate().contains { $0.hasPrefix("start-at: must be a Unix time in seconds within the next day") })
        // Each part's target rate is its pairs' share: pairs 0, 3, 6 of 7 in part 1 of 3.
        var first = Self.scenario()
        first.part = LoadPart(index: 1, count: 3)
        #expect(abs(first.chatRateInPart - 70 * 3 / 7) < 1e-9)
    }

    @Test("the parts are disjoint and together the whole: every pair and session once, at its whole-run arrival time")
    func disjoint() {
        let whole = Self.scenario()
        let (allAssignments, allOffsets) = LoadRunner.assign(whole, workers: 2)
        let allPairs = Set(allAssignments.flatMap { $0.pairs.map { [$0.first, $0.second] } })
        let allSingles = Set(allAssignments.flatMap { $0.singles.map(\.index) })
        var pairs: [[Int]] = []
        var singles: [Int] = []
        var sessions = 0
        var chatShare = 0.0
        for index in 1...3 {
            var scenario = whole
            scenario.part = LoadPart(index: index, count: 3)
            let (assignments, offsets) = LoadRunner.assign(scenario, workers: 2)
            // The arrival schedule is the whole run's, whichever part runs.
            #expect(offsets == allOffsets)
            pairs += assignments.flatMap { $0.pairs.map { [$0.first, $0.second] } }
            singles += assignments.flatMap { $0.singles.map(\.index) }
            sessions += scenario.sessionsInPart
            chatShare += assignments.reduce(0) { $0 + ($1.chatShares[0] ?? 0) }
            #expect(scenario.asRunByPart.sessions == scenario.sessionsInPart)
        }
        #expect(pairs.count == 7 && Set(pairs) == allPairs)
        #expect(singles.count == 5 && Set(singles) == allSingles)
        #expect(sessions == whole.sessions)
        // The parts' chat rates add up to the scenario's.
        #expect(abs(chatShare - 1) < 1e-9)
        // Part 1 of 3 takes pairs 0, 3, 6 and singles 0, 3.
        var first = whole
        first.part = LoadPart(index: 1, count: 3)
        #expect(first.sessionsInPart(ofPopulation: 0) == 6 && first.sessionsInPart(ofPopulation: 1) == 2)
    }

    @Test("merge takes all parts of one split once each, and says which is missing or doubled")
    func mergeChecks() throws {
        func parts(_ list: [LoadPart?]) -> String? {
            do {
                try ResultMerger.checkParts(list)
                return nil
            } catch {
                return "\(error)"
            }
        }
        #expect(parts([LoadPart(index: 1, count: 2), LoadPart(index: 2, count: 2)]) == nil)
        #expect(parts([nil, nil]) == nil)
        #expect(parts([LoadPart(index: 1, count: 3), LoadPart(index: 3, count: 3)]) == "part 2/3 missing")
        #expect(parts([LoadPart(index: 1, count: 2), LoadPart(index: 1, count: 2)]) == "part 1/2 is given twice")
        #expect(parts([LoadPart(index: 1, count: 2), LoadPart(index: 2, count: 3)])?.hasPrefix("the parts are of different splits") == true)
        #expect(parts([LoadPart(index: 1, count: 2), nil]) == "some results are parts (--part) and some are not: they are not one load")
        #expect(parts([LoadPart(index: 2, count: 2)]) == "part 1/2 missing")
    }

    @Test("a start time already past is an error before any session starts, not a late, unsynchronised part")
    func startPassed() async {
        var scenario = Self.scenario()
        scenario.startAt = Date().timeIntervalSince1970 - 10
        await #expect {
            _ = try await LoadRunner(scenario: scenario).run()
        } throws: { error in
            guard case LoadRunnerError.startPassed(let seconds) = error else { return false }
            return seconds >= 10 && "\(error)".hasPrefix("--start-at was")
        }
    }
}
