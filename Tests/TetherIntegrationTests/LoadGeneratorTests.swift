import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Testing
import TetherServer
import XMPPLoadKit

/// tether-load's BOSH and WebSocket clients through Tether in front of a real Prosody: exact
/// counts (every message sent is delivered once), clean logout, and BOSH retransmission of a
/// lost response answered from Tether's cache.
@Suite("Load generator through Tether and Prosody", .serialized, .timeLimit(.minutes(2)))
struct LoadGeneratorTests {
    static let users = (1...6).map { "user\($0)" }

    static func scenario(_ transport: LoadScenario.Transport, _ url: String) -> LoadScenario {
        LoadScenario(
            transport: transport, endpoint: Endpoint(url)!, domain: "localhost", userPattern: "user%d", passwordPattern: "secret",
            sessions: 6, rampRate: 50, messageRate: 60, duration: 2, drainSeconds: 15, boshWait: 10, boshRequestTimeout: 20
        )
    }

    static func expectClean(_ result: LoadResult) {
        #expect(result.sessions.established == 6)
        #expect(result.sessions.closedCleanly == 6)
        #expect(result.messages.sent >= 100)
        #expect(result.messages.delivered == result.messages.sent)
        #expect(result.messages.lost == 0)
        #expect(result.errors.isEmpty, "\(result.errors)")
        #expect(result.passed)
    }

    static func bothTransports() async throws {
        try await withProsodyAndTether(users: []) { prosody, tether, _ in
            try prosody.writeAccounts(Self.users, password: "secret")
            let bosh = try await LoadRunner(scenario: Self.scenario(.bosh, tether.boshURL)).run()
            Self.expectClean(bosh)
            #expect(bosh.retransmissions == 0)
            let ws = try await LoadRunner(scenario: Self.scenario(.websocket, "ws://127.0.0.1:\(tether.port)/xmpp-websocket")).run()
            Self.expectClean(ws)
        }
    }

    @Test("BOSH and WebSocket: every message delivered once, clean logout")
    func transports() async throws {
        try await Self.bothTransports()
    }

    static func lostResponse() async throws {
        try await withProsodyAndTether(users: []) { prosody, tether, _ in
            try prosody.writeAccounts(Self.users, password: "secret")
            // Lose the first response that carries a probe message.
            let proxy = try await ResponseCuttingProxy.start(to: tether.port, cuttingFirstChunkContaining: "tl:")
            let result = try await Self.runBOSH(through: proxy)
            #expect(proxy.cuts == 1)
            #expect(result.retransmissions >= 1)
            Self.expectClean(result)
        }
    }

    @Test("BOSH: a lost response is retransmitted with the same rid and its messages still arrive")
    func retransmission() async throws {
        try await Self.lostResponse()
    }

    static func misaddressed() async throws {
        try await withProsodyAndTether(users: []) { prosody, tether, _ in
            try prosody.writeAccounts(Self.users, password: "secret")
            // One probe message is sent to a user that does not exist: Prosody bounces it.
            let proxy = try await ResponseCuttingProxy.start(to: tether.port, rewritingFirstRequestContaining: "tl:", from: "to='user", to: "to='xser")
            let result = try await Self.runBOSH(through: proxy)
            #expect(proxy.cuts >= 1)
            #expect(result.messages.lost == 1)
            #expect(result.messages.delivered == result.messages.sent - 1)
            #expect(!result.passed)
        }
    }

    @Test("a message that never arrives is reported as lost, and the run fails")
    func lostMessage() async throws {
        try await Self.misaddressed()
    }

    /// A BOSH run through `proxy`, which is stopped afterwards whatever happens.
    static func runBOSH(through proxy: ResponseCuttingProxy) async throws -> LoadResult {
        do {
            let result = try await LoadRunner(scenario: Self.scenario(.bosh, "http://127.0.0.1:\(proxy.port)/http-bind")).run()
            await proxy.stop()
            return result
        } catch {
            await proxy.stop()
            throw error
        }
    }
}

/// A distributed run with the `tether-load` binary: two generators started side by side with
/// `--part 1/2` and `--part 2/2` and one `--start-at`, through Tether in front of Prosody, and
/// `tether-load merge` of their results.
@Suite("Load generator: a run in two parts, merged", .timeLimit(.minutes(2)))
struct LoadPartsTests {
    static var binary: String {
        URL(fileURLWithPath: CommandLineTests.binary).deletingLastPathComponent().appendingPathComponent("tether-load").path
    }

    @Test("two parts start together, take disjoint users, and merge into the whole run's counts")
    func twoParts() async throws {
        let users = (1...8).map { "user\($0)" }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tether-load-parts-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try await withProsodyAndTether(users: []) { prosody, tether, _ in
            try prosody.writeAccounts(users, password: "secret")
            let scenario = directory.appendingPathComponent("chat.yaml").path
            try """
            url: \(tether.boshURL)
            transport: bosh
            password: secret
            duration: 3
            drain: 10
            bosh-wait: 10
            populations:
              - name: pairs
                sessions: 6
                arrival: {process: constant, rate: 20}
                behaviours: [{chat: {rate: 30}}]
              - name: lurkers
                sessions: 2
                arrival: {process: constant, rate: 20, start: 0.5}
                behaviours: [idle]
            """.write(toFile: scenario, atomically: true, encoding: .utf8)
            let startAt = Int(Date().timeIntervalSince1970) + 5
            var children: [ChildProcess] = []
            for part in 1...2 {
                let json = directory.appendingPathComponent("part\(part).json").path
                children.append(
                    try ChildProcess.spawn(
                        Self.binary, ["run", "--scenario", scenario, "--part", "\(part)/2", "--start-at", "\(startAt)", "--json", json],
                        stdout: directory.appendingPathComponent("part\(part).out").path,
                        stderr: directory.appendingPathComponent("part\(part).err").path
                    ))
            }
            for (index, child) in children.enumerated() {
                let status = await child.wait(timeout: .seconds(60))
                if status == nil { await child.stop() }
                let errors = (try? String(contentsOfFile: directory.appendingPathComponent("part\(index + 1).err").path, encoding: .utf8)) ?? ""
                #expect(status == 0, "part \(index + 1): \(errors)")
            }
            let decoder = JSONDecoder()
            let parts = try (1...2).map { part in
                try decoder.decode(LoadResult.self, from: Data(contentsOf: directory.appendingPathComponent("part\(part).json")))
            }
            // Each part ran its half: pairs 0 and 2, or pair 1, and one lurker.
            #expect(parts.map(\.sessions.established) == [5, 3])
            #expect(parts.map { $0.scenario.part } == [LoadPart(index: 1, count: 2), LoadPart(index: 2, count: 2)])
            // They began at the time given, not when each process happened to be ready.
            let format = ISO8601DateFormatter()
            for part in parts {
                let began = try #require(format.date(from: part.startedAt)).timeIntervalSince1970
                // startedAt has whole seconds; the upper bound only catches a part that ignored the time.
                #expect(began >= Double(startAt) - 1 && began <= Double(startAt) + 10, "\(part.startedAt)")
            }
            // Disjoint users: eight different accounts logged in, none twice.
            let log = try String(contentsOfFile: prosody.logPath, encoding: .utf8)
            let logins = log.split(separator: "\n").filter { $0.contains("Authenticated as") }.compactMap { line in
                line.split(separator: " ").last { $0.hasSuffix("@localhost") }
            }
            #expect(logins.count == 8 && Set(logins).count == 8, "\(logins)")

            let merged = directory.appendingPathComponent("merged.json").path
            let status = try await ChildProcess.run(
                Self.binary, ["merge", directory.appendingPathComponent("part1.json").path, directory.appendingPathComponent("part2.json").path, "--json", merged])
            #expect(status == 0)
            let whole = try decoder.decode(LoadResult.self, from: Data(contentsOf: URL(fileURLWithPath: merged)))
            #expect(whole.mergedFrom == 2)
            #expect(whole.scenario.part == nil)
            #expect(whole.scenario.populations.map(\.sessions) == [6, 2])
            #expect(whole.sessions.requested == 8 && whole.sessions.established == 8 && whole.sessions.closedCleanly == 8)
            #expect(whole.messages.sent == parts[0].messages.sent + parts[1].messages.sent)
            #expect(whole.messages.sent > 40 && whole.messages.delivered == whole.messages.sent && whole.messages.lost == 0)
            #expect(whole.messages.latency.count == whole.messages.sent)
            #expect(whole.passed)
            // One part alone is not the load.
            let alone = try await ChildProcess.run(Self.binary, ["merge", directory.appendingPathComponent("part2.json").path])
            #expect(alone != 0)
        }
    }
}

/// `--metrics-listen`: the `tether-load` binary serves its live figures to a Prometheus scraper
/// while the run lasts, and stops serving when it ends.
@Suite("Load generator: live metrics", .timeLimit(.minutes(2)))
struct LoadMetricsTests {
    @Test("while a run against the upstream stub lasts, /metrics shows its sessions and its growing counters; other paths are 404")
    func scrape() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tether-load-metrics-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let stderr = directory.appendingPathComponent("err").path
        let child = try ChildProcess.spawn(
            LoadPartsTests.binary,
            [
                "run", "--upstream-stub", "--transport", "tcp", "--sessions", "6", "--message-rate", "60",
                "--duration", "15", "--metrics-listen", "127.0.0.1:0",
            ],
            stdout: directory.appendingPathComponent("out").path, stderr: stderr
        )
        var port: Int?
        let deadline = ContinuousClock.now + .seconds(20)
        while port == nil, ContinuousClock.now < deadline, child.isRunning {
            let printed = (try? String(contentsOfFile: stderr, encoding: .utf8)) ?? ""
            port = printed.split(separator: "\n").first { $0.hasPrefix("metrics listening on ") }.flatMap { line in
                line.lastIndex(of: ":").flatMap { Int(line[line.index(after: $0)...]) }
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        let metricsPort = try #require(port, "no metrics port printed: \((try? String(contentsOfFile: stderr, encoding: .utf8)) ?? "")")
        // Only /metrics is served.
        let other = try await HTTPClient.shared.execute(HTTPClientRequest(url: "http://127.0.0.1:\(metricsPort)/"), timeout: .seconds(10))
        #expect(other.status == .notFound)
        func value(_ name: String, in text: String) -> Double? {
            text.split(separator: "\n").first { $0.hasPrefix(name + " ") }.flatMap { Double($0.split(separator: " ").last ?? "") }
        }
        var scraped = ""
        var sentSeen: [Double] = []
        let scrapeDeadline = ContinuousClock.now + .seconds(30)
        while sentSeen.count < 2 || sentSeen.last == sentSeen.first, ContinuousClock.now < scrapeDeadline, child.isRunning {
            let response = try? await HTTPClient.shared.execute(HTTPClientRequest(url: "http://127.0.0.1:\(metricsPort)/metrics"), timeout: .seconds(10))
            if let response, response.status == .ok {
                scraped = String(buffer: try await response.body.collect(upTo: 1 << 20))
                if value("tether_load_sessions_up", in: scraped) == 6, let sent = value("tether_load_messages_sent_total", in: scraped), sent > 0 {
                    sentSeen.append(sent)
                }
            }
            try await Task.sleep(for: .milliseconds(500))
        }
        // All six sessions up, and the sent counter grew between two scrapes.
        #expect(sentSeen.count >= 2 && sentSeen.last! > sentSeen.first!, "\(scraped)")
        #expect(value("tether_load_sessions_wanted", in: scraped) == 6)
        #expect(scraped.contains("tether_load_phase{phase=\"messages\"} 1"))
        #expect(scraped.contains("tether_load_behaviour_attempts_total{population=\"chat\",behaviour=\"chat\"}"))
        #expect(scraped.contains("# TYPE tether_load_messages_delivered_total counter"))
        let status = await child.wait(timeout: .seconds(60))
        if status == nil { await child.stop() }
        #expect(status == 0)
        // Gone with the run.
        let after = try? await HTTPClient.shared.execute(HTTPClientRequest(url: "http://127.0.0.1:\(metricsPort)/metrics"), timeout: .seconds(5))
        #expect(after == nil)
    }
}
