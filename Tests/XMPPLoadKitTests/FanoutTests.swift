import Testing

@testable import XMPPLoadKit

/// Presence and muc: the fan-out ledger, the groups a population splits into, and what
/// `tether-load provision` writes for them.
@Suite("Fan-out: rosters and rooms")
struct FanoutTests {
    @Test("the ledger expects one copy per receiver: extras and strangers are told apart, the rest is missing")
    func ledger() {
        var ledger = FanoutLedger()
        let first = ledger.send(receivers: 3)
        let second = ledger.send(receivers: 2)
        #expect(ledger.expected == 5 && ledger.sent == 2)
        #expect(ledger.deliver(first) == .expected)
        #expect(ledger.deliver(first) == .expected)
        #expect(ledger.deliver(first) == .expected)
        #expect(ledger.deliver(first) == .extra)
        #expect(ledger.deliver(second) == .expected)
        #expect(ledger.deliver(99) == .unknown)
        #expect(ledger.delivered == 4 && ledger.missing == 1 && ledger.extras == 1)
    }

    static func scenario(part: LoadPart? = nil) -> LoadScenario {
        let endpoint = Endpoint("ws://127.0.0.1:1/xmpp-websocket")!
        var scenario = LoadScenario(
            domain: "example.org", userPattern: "u.%d", passwordPattern: "p\"%d",
            populations: [
                Population(
                    name: "office", transport: .websocket, endpoint: endpoint, sessions: 6, arrival: .constant(rate: 10, start: 0),
                    behaviours: [.presence(.init(contacts: 2, every: 5))]
                ),
                Population(
                    name: "rooms", transport: .websocket, endpoint: endpoint, sessions: 8, arrival: .constant(rate: 10, start: 0),
                    behaviours: [.muc(.init(roomSize: 4, rate: 1))]
                ),
            ]
        )
        scenario.part = part
        return scenario
    }

    @Test("groups stay whole on one worker and within one part; a part takes whole groups")
    func groups() {
        let (assignments, _) = LoadRunner.assign(Self.scenario(), workers: 2)
        let groups = assignments.flatMap(\.groups)
        #expect(groups.count == 4 && Set(groups.map(\.members)) == [[0, 1, 2], [3, 4, 5], [6, 7, 8, 9], [10, 11, 12, 13]])
        var partScenario = Self.scenario(part: LoadPart(index: 2, count: 2))
        let (parts, _) = LoadRunner.assign(partScenario, workers: 1)
        #expect(Set(parts[0].groups.map(\.members)) == [[3, 4, 5], [10, 11, 12, 13]])
        #expect(partScenario.sessionsInPart == 7)
        partScenario.part = nil
        #expect(partScenario.validate().isEmpty)
    }

    @Test("a population that does not fill its groups, or mixes fan-out with other behaviours, is refused")
    func validation() {
        var scenario = Self.scenario()
        scenario.populations[0].sessions = 7
        scenario.populations[1].behaviours.append(.idle(.init()))
        let problems = scenario.validate()
        #expect(problems.contains { $0.contains("rosters of contacts + 1 = 3: 7 is not a multiple") })
        #expect(problems.contains { $0.contains("muc goes alone") })
    }

    @Test("provision: an account per user and, for presence, mutual rosters; names and strings escaped as Prosody stores them")
    func provision() {
        let (files, summary) = ProsodyProvisioner(scenario: Self.scenario()).files()
        #expect(summary.accounts == 14 && summary.rosters == 6 && summary.contacts == 12 && summary.rooms == 2)
        let account = files.first { $0.path == "example%2eorg/accounts/u%2e1.dat" }
        #expect(account?.contents == "return {\n\t[\"password\"] = \"p\\\"1\";\n};\n")
        let roster = files.first { $0.path == "example%2eorg/roster/u%2e2.dat" }?.contents ?? ""
        #expect(roster.contains("[\"u.1@example.org\"] = { [\"subscription\"] = \"both\";"))
        #expect(roster.contains("[\"u.3@example.org\"]"))
        #expect(!roster.contains("u.2@") && !roster.contains("u.4@"))
        #expect(!files.contains { $0.path.contains("roster/u%2e7.dat") })
    }
}
