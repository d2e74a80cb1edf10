import Foundation
import Testing

@testable import XMPPLoadKit

/// The load generator against the in-process upstream stub over TCP. The stub is fine here: these
/// tests check the tool (its accounting), not a server.
@Suite("Load runs against the upstream stub", .serialized)
struct EndToEndTests {
    static func scenario(port: Int, sessions: Int = 10, idle: Int = 0, rate: Double = 200) -> LoadScenario {
        LoadScenario(
            transport: .tcp, endpoint: Endpoint(scheme: .tcp, host: "127.0.0.1", port: port), sessions: sessions, idleSessions: idle,
            rampRate: 500, messageRate: rate, duration: 1, drainSeconds: 2, threads: 2, serverPID: getpid()
        )
    }

    static func cleanRun() async throws {
        let stub = try await UpstreamStub.start()
        let result: LoadResult
        let counters: UpstreamStub.Counters
        do {
            result = try await LoadRunner(scenario: Self.scenario(port: stub.port, sessions: 11, idle: 1)).run()
            counters = try await stub.counters()
        } catch {
            await stub.stop()
            throw error
        }
        await stub.stop()
        #expect(result.sessions.established == 11)
        #expect(result.sessions.failed == 0)
        #expect(result.sessions.closedCleanly == 11)
        #expect(result.messages.sent > 100)
        #expect(result.messages.delivered == result.messages.sent)
        #expect(UInt64(counters.routed) == result.messages.sent)
        #expect(result.messages.lost == 0)
        #expect(result.messages.latency.count == result.messages.sent)
        #expect(result.errors.isEmpty)
        #expect(result.passed)
        #expect(result.server?.rssKiBPeak ?? 0 > 0)
        // The server here is this process: its CPU over the ramp is measured, part of the run's.
        let loginCPU = try #require(result.sessions.serverCPUSecondsDuringLogin)
        #expect(loginCPU >= 0 && loginCPU <= result.cpu.processSeconds + 0.02)
        #expect(result.sessions.upstreamCPUSecondsDuringLogin == nil)
        #expect(!result.timeline.isEmpty)
        #expect(Set(result.sessions.phases.keys) == ["connecting", "awaitingFeatures", "authenticating", "awaitingBoundFeatures", "binding"])
        // Every session logged out: the stub has nobody left.
        #expect(counters.connected == 0)
    }

    @Test("TCP: every message sent is delivered exactly once, sessions log in and out")
    func clean() async throws {
        try await Self.cleanRun()
    }

    static func lossyRun() async throws {
        let stub = try await UpstreamStub.start(.init(dropEveryNthMessage: 7))
        let result: LoadResult
        let counters: UpstreamStub.Counters
        do {
            result = try await LoadRunner(scenario: Self.scenario(port: stub.port)).run()
            counters = try await stub.counters()
        } catch {
            await stub.stop()
            throw error
        }
        await stub.stop()
        #expect(counters.dropped > 0)
        #expect(result.messages.lost == UInt64(counters.dropped))
        #expect(result.messages.delivered + result.messages.lost == result.messages.sent)
        #expect(result.errors["lost-messages"] == counters.dropped)
        // The chat behaviour's default SLO (nothing lost) is what fails the run.
        let chat = result.behaviours.first { $0.behaviour == .chat }
        #expect(chat?.failures == UInt64(counters.dropped))
        #expect(chat?.passed == false && chat?.slo.contains { !$0.met } == true)
        #expect(!result.passed)
    }

    @Test("messages dropped by the server are reported lost and fail the run")
    func loss() async throws {
        try await Self.lossyRun()
    }

    static func refusedRun() async throws {
        // A port nobody listens on: every session fails to connect, and the run says so.
        let stub = try await UpstreamStub.start()
        let port = stub.port
        await stub.stop()
        var scenario = Self.scenario(port: port, sessions: 4)
        scenario.loginTimeout = 5
        let result = try await LoadRunner(scenario: scenario).run()
        #expect(result.sessions.failed == 4)
        #expect(result.errors.keys.contains { $0.hasPrefix("connect:") })
        #expect(!result.passed)
    }

    @Test("refused connections are counted as failed sessions")
    func refused() async throws {
        try await Self.refusedRun()
    }

    static func reportsRun() async throws {
        let stub = try await UpstreamStub.start()
        let result: LoadResult
        do {
            var scenario = Self.scenario(port: stub.port, sessions: 4, rate: 50)
            scenario.stepped = LoadScenario.Stepped(start: 100, step: 100, max: 200)
            scenario.referenceRate = 150
            scenario.upstreamPID = getpid()
            scenario.p99BoundMilliseconds = 1000
            result = try await LoadRunner(scenario: scenario).run()
        } catch {
            await stub.stop()
            throw error
        }
        await stub.stop()
        // The reference step comes first and is not part of the knee search. Which steps meet
        // the bound depends on how busy the machine is, so the search is checked by its rule: the
        // steps go up until the first miss, and the knee is the last step before it (no rate is
        // asserted: a loaded machine may miss at 100 msg/s).
        #expect(result.steps.first?.targetRate == 150)
        #expect(result.steps.map { $0.reference == true } == [true] + Array(repeating: false, count: result.steps.count - 1))
        let measured = result.steps.dropFirst()
        #expect([[100], [100, 200]].contains(measured.map(\.targetRate)), "\(result.steps)")
        let allButLastWithin = measured.dropLast().allSatisfy { $0.withinBound }
        #expect(allButLastWithin, "a step after a miss: \(result.steps)")
        let knee = measured.prefix(while: \.withinBound).last?.targetRate
        #expect(result.kneeRate == knee, "\(result.steps)")
        if measured.count == 1 { #expect(measured.first?.withinBound == false, "stopped after a step within the bound") }

        // JSON shape: the top-level keys and a few nested ones scripts rely on.
        let json = try ReportWriter.json(result)
        let object = try JSONSerialization.jsonObject(with: json) as? [String: Any] ?? [:]
        // `kneeRate` is there only when a step met the bound (regression: expected always, the test
        // failed on a machine busy enough to miss at 100 msg/s).
        #expect(
            Set(object.keys)
                == Set(
                    [
                        "tool", "formatVersion", "scenario", "startedAt", "sessions", "messages", "steps", "errors",
                        "retransmissions", "cpu", "server", "timeline", "passed", "otherErrors", "populations", "behaviours", "histograms",
                    ] + (knee == nil ? [] : ["kneeRate"]))
        )
        // One chat population (the flags' model): its chat behaviour accounts for every message.
        let behaviours = object["behaviours"] as? [[String: Any]] ?? []
        #expect(behaviours.map { $0["behaviour"] as? String } == ["chat"])
        #expect(behaviours.first?["attempts"] as? Int == Int(result.messages.sent))
        #expect(result.behaviours.first?.successes == result.messages.delivered)
        let messages = object["messages"] as? [String: Any] ?? [:]
        #expect(Set(messages.keys).isSuperset(of: ["sent", "delivered", "lost", "latency", "achievedRate"]))
        let latency = messages["latency"] as? [String: Any] ?? [:]
        #expect(Set(latency.keys) == ["count", "p50", "p90", "p99", "p999", "max", "mean"])
        let cpu = object["cpu"] as? [String: Any] ?? [:]
        #expect(cpu["clientThreadsSeconds"] != nil)
        #expect(cpu["clientSaturated"] as? Bool == false)
        let decoded = try JSONDecoder().decode(LoadResult.self, from: json)
        #expect(decoded.messages == result.messages)

        // HTML: self-contained, with the charts.
        let html = HTMLReport.render(result)
        #expect(html.hasPrefix("<!DOCTYPE html>"))
        // Four run-wide charts, then the chat behaviour's successes and failures, and its latency, per second.
        #expect(html.components(separatedBy: "<svg").count - 1 == 6)
        #expect(html.contains("<h3>chat/chat (<span class=\"pass\">SLO met</span>)</h3>") || html.contains("<h3>chat/chat (<span class=\"fail\">"))
        #expect(result.timeline.contains { ($0.behaviours?["chat/chat"]?.count ?? 0) > 0 })
        // A p99 bound the run broke: drawn as a line, the seconds above it ringed.
        var strict = result
        strict.scenario.populations[0].behaviours[0] = .chat(.init(rate: 1, slo: .init(p99Milliseconds: 0.000_001)))
        let marked = HTMLReport.render(strict)
        #expect(marked.contains("p99 SLO") && marked.contains("<circle") && marked.contains("p99 over SLO"))
        #expect(!html.contains("<circle"))
        #expect(!html.contains("<script"))
        #expect(html.contains(result.passed ? ">PASS<" : ">FAIL<"))
        #expect(ReportWriter.summary(result).contains(knee.map { "knee       \(Int($0)) msg/s" } ?? "knee       none"))
        #expect(ReportWriter.summary(result).contains("reference  150 msg/s"))
        // Per-step CPU of the client threads and of the server process (here this process).
        for step in result.steps {
            #expect((step.clientThreadCPUSeconds ?? -1) >= 0)
            #expect((step.serverCPUSeconds ?? -1) >= 0)
            #expect((step.upstreamCPUSeconds ?? -1) >= 0)
            #expect((0...100).contains(step.machineBusyPercent ?? -1))
        }
        #expect(result.messages.serverCPUSeconds == nil, "per step only in a stepped run")
    }

    @Test("a stepped run finds the knee; JSON and HTML reports have their shape")
    func reports() async throws {
        try await Self.reportsRun()
    }

    static func idleRun() async throws {
        let stub = try await UpstreamStub.start()
        let result: LoadResult
        let connectedWhileHeld: Int
        do {
            var scenario = Self.scenario(port: stub.port, sessions: 6, idle: 6)
            scenario.duration = 1.5
            let runner = LoadRunner(scenario: scenario)
            async let running = runner.run()
            // Halfway through the hold every session is still connected to the stub.
            try await Task.sleep(for: .milliseconds(900))
            connectedWhileHeld = try await stub.counters().connected
            result = try await running
        } catch {
            await stub.stop()
            throw error
        }
        await stub.stop()
        #expect(connectedWhileHeld == 6)
        #expect(result.sessions.established == 6)
        #expect(result.messages.sent == 0)
        #expect(result.timeline.contains { $0.phase == "idle" })
        #expect(result.cpu.wallSeconds >= 1.5)
        #expect(result.server?.sessionsUpWhenLoaded == 6)
        #expect((result.server?.rssKiBLoaded ?? 0) > 0)
        #expect(result.messages.serverCPUSeconds == nil)
        #expect(result.passed)
        #expect(ReportWriter.summary(result).contains("with 6 sessions up"))
    }

    @Test("an all-idle run holds its sessions for the duration and reads the server's RSS with all of them up")
    func idle() async throws {
        try await Self.idleRun()
    }

    static func noLogoutRun() async throws {
        let stub = try await UpstreamStub.start()
        let result: LoadResult
        do {
            var scenario = Self.scenario(port: stub.port, sessions: 6, idle: 6)
            scenario.logout = false
            result = try await LoadRunner(scenario: scenario).run()
        } catch {
            await stub.stop()
            throw error
        }
        await stub.stop()
        #expect(result.sessions.established == 6)
        #expect(result.errors.isEmpty, "closing at the end of a run without logout is not an error: \(result.errors)")
        #expect(result.passed)
    }

    @Test("without logout, the sessions closed at the end of the run are not errors")
    func noLogout() async throws {
        try await Self.noLogoutRun()
    }

    static func fixedRateRun() async throws {
        let stub = try await UpstreamStub.start()
        let result: LoadResult
        do {
            result = try await LoadRunner(scenario: Self.scenario(port: stub.port, sessions: 4, rate: 100)).run()
        } catch {
            await stub.stop()
            throw error
        }
        await stub.stop()
        #expect(result.passed)
        #expect((result.messages.serverCPUSeconds ?? -1) >= 0)
        #expect(result.server?.sessionsUpWhenLoaded == 4)
        #expect(ReportWriter.summary(result).contains("ms per delivered message"))
    }

    @Test("a fixed-rate run reports the server's CPU over the message phase")
    func fixedRateServerCPU() async throws {
        try await Self.fixedRateRun()
    }
}
