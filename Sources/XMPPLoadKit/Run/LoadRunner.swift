import Foundation
import NIOCore
import NIOPosix

/// What the live progress line shows, once a second.
public struct LoadProgress: Sendable {
    public var second: Double
    public var phase: String
    public var sessionsUp: Int
    public var sessionsWanted: Int
    public var sentPerSecond: Double
    public var deliveredPerSecond: Double
    public var p99Milliseconds: Double
    public var errors: Int
    public var inFlight: UInt64
    public var clientCPUPercent: Double

    /// `  12s  ramp-up  sessions 180/200  msg/s 1990 sent 1988 recv  p99 3.1 ms  errors 0  cpu 34%`
    public var line: String {
        let p99 = String(format: "%.1f", self.p99Milliseconds)
        return String(
            format: "%5.0fs  %-9@ sessions %d/%d  msg/s %.0f sent %.0f recv  p99 %@ ms  in-flight %llu  errors %d  cpu %.0f%%",
            self.second, self.phase as NSString, self.sessionsUp, self.sessionsWanted, self.sentPerSecond, self.deliveredPerSecond,
            p99 as NSString, self.inFlight, self.errors, self.clientCPUPercent
        )
    }
}

/// Runs a scenario: ramp-up, message phase (or steps), drain, logout; returns the measurements.
public final class LoadRunner: Sendable {
    public let scenario: LoadScenario
    private let progress: @Sendable (LoadProgress) -> Void

    public init(scenario: LoadScenario, progress: @escaping @Sendable (LoadProgress) -> Void = { _ in }) {
        self.scenario = scenario
        self.progress = progress
    }

    public func run() async throws -> LoadResult {
        let problems = self.scenario.validate()
        guard problems.isEmpty else { throw LoadRunnerError.invalidScenario(problems) }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: self.scenario.threads)
        do {
            let result = try await self.run(group: group)
            try await group.shutdownGracefully()
            return result
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
    }

    private struct Worker: Sendable {
        var loop: any EventLoop
        var bound: NIOLoopBound<LoadWorker>

        func call<T: Sendable>(_ body: @escaping @Sendable (LoadWorker) -> T) async throws -> T {
            let bound = self.bound
            return try await self.loop.submit { body(bound.value) }.get()
        }
    }

    private func run(group: MultiThreadedEventLoopGroup) async throws -> LoadResult {
        let scenario = self.scenario
        let loops = Array(group.makeIterator())
        let messaging = scenario.messagingSessions
        let pairCount = messaging / 2
        var workers: [Worker] = []
        for (number, loop) in loops.enumerated() {
            let pairs = stride(from: number, to: pairCount, by: loops.count).map { (2 * $0, 2 * $0 + 1) }
            let idle = stride(from: messaging + number, to: scenario.sessions, by: loops.count).map { $0 }
            let bound = try await loop.submit {
                let worker = LoadWorker(scenario: scenario, eventLoop: loop, makeSession: Self.sessionFactory(scenario.transport))
                worker.setUp(pairs: pairs, idle: idle)
                return NIOLoopBound(worker, eventLoop: loop)
            }.get()
            workers.append(Worker(loop: loop, bound: bound))
        }

        var clock = RunClock(scenario: scenario, workers: workers.count)
        let startedAt = ISO8601DateFormatter().string(from: Date())
        // Baseline of each loop thread's CPU time.
        try await self.sample(workers, clock: &clock, phase: "start", wait: false)

        // Ramp-up: each worker starts its share of the sessions.
        let rampShare = scenario.rampRate / Double(workers.count)
        for worker in workers {
            _ = try await worker.call { $0.startRamp(rate: rampShare) }
        }
        let loginDeadline = Date().addingTimeInterval(Double(scenario.sessions) / scenario.rampRate + scenario.loginTimeout + 5)
        while Date() < loginDeadline {
            try await self.sample(workers, clock: &clock, phase: "ramp-up")
            var settled = true
            for worker in workers where !(try await worker.call { $0.settled }) { settled = false }
            if settled { break }
        }

        // Message phase: one step at the target rate, or each rate of the stepped run.
        var steps: [LoadResult.Step] = []
        var knee: Double?
        // A stepped run may begin with a reference step, which is measured but not judged.
        let reference = scenario.stepped == nil ? nil : scenario.referenceRate
        let rates = (reference.map { [$0] } ?? []) + (scenario.stepped?.rates ?? [scenario.messageRate])
        var messagingSeconds = 0.0
        let phaseServerCPU = clock.serverCPUSeconds()
        for (index, rate) in rates.enumerated() where pairCount > 0 && rate > 0 {
            let isReference = reference != nil && index == 0
            let label = scenario.stepped == nil ? "messages" : isReference ? "reference \(Int(rate))" : "step \(Int(rate))"
            // Baselines of the step's CPU figures (client threads, server process).
            try await self.sample(workers, clock: &clock, phase: label, wait: false)
            let stepClientCPU = clock.clientThreadSeconds
            let stepServerCPU = clock.serverCPUSeconds()
            let stepUpstreamCPU = clock.upstreamCPUSeconds()
            let stepMachine = ResourceUsage.machineCPUTicks()
            let stepStart = Date()
            clock.peakThreadPercentThisStep = 0
            for worker in workers {
                let total = pairCount
                _ = try await worker.call { worker in
                    worker.beginStep(rate: rate * Double(worker.messagingPairCount) / Double(total))
                }
            }
            while Date().timeIntervalSince(stepStart) < scenario.duration {
                let remaining = scenario.duration - Date().timeIntervalSince(stepStart)
                try await self.sample(workers, clock: &clock, phase: label, atMost: remaining)
            }
            for worker in workers {
                _ = try await worker.call { $0.setMessageRate(0) }
            }
            let sendingSeconds = Date().timeIntervalSince(stepStart)
            messagingSeconds += sendingSeconds
            if scenario.stepped != nil {
                // Let the step's messages land before judging it.
                try await self.drain(workers, clock: &clock, seconds: min(scenario.drainSeconds, 2), phase: "drain")
                try await self.sample(workers, clock: &clock, phase: "drain", wait: false)
                let clientCPU = clock.clientThreadSeconds - stepClientCPU
                let serverCPU = clock.serverCPUSeconds().flatMap { end in stepServerCPU.map { end - $0 } }
                let upstreamCPU = clock.upstreamCPUSeconds().flatMap { end in stepUpstreamCPU.map { end - $0 } }
                var machineBusy: Double?
                if let start = stepMachine, let end = ResourceUsage.machineCPUTicks(), end.total > start.total {
                    machineBusy = Double(end.busy - start.busy) / Double(end.total - start.total) * 100
                }
                var sent: UInt64 = 0
                var delivered: UInt64 = 0
                var inFlight: UInt64 = 0
                var behind: UInt64 = 0
                var latency = LatencyHistogram()
                for worker in workers {
                    let sample = try await worker.call { $0.stepSample() }
                    behind += sample.behindSchedule
                    sent += sample.sent
                    delivered += sample.delivered
                    inFlight += sample.inFlight
                    latency.add(sample.latency)
                }
                let summary = latency.summary
                let achieved = Double(sent) / sendingSeconds
                let within = summary.p99 <= scenario.p99BoundMilliseconds && inFlight == 0 && achieved >= rate * 0.9
                steps.append(
                    LoadResult.Step(
                        targetRate: rate, achievedRate: achieved, sent: sent, delivered: delivered, undelivered: inFlight,
                        behindSchedule: behind, latency: summary, withinBound: within, reference: isReference ? true : nil,
                        peakClientThreadCPUPercent: clock.peakThreadPercentThisStep,
                        clientThreadCPUSeconds: clientCPU, serverCPUSeconds: serverCPU, upstreamCPUSeconds: upstreamCPU,
                        machineBusyPercent: machineBusy
                    )
                )
                if isReference { continue }
                if within { knee = rate } else { break }
            }
        }
        if pairCount == 0 {
            // An all-idle run: hold the sessions for the duration (memory per idle session).
            let holdStart = Date()
            while Date().timeIntervalSince(holdStart) < scenario.duration {
                let remaining = scenario.duration - Date().timeIntervalSince(holdStart)
                try await self.sample(workers, clock: &clock, phase: "idle", atMost: remaining)
            }
        }
        var sessionsUp = 0
        for worker in workers { sessionsUp += try await worker.call { $0.sessionsUp } }
        clock.recordLoaded(sessionsUp: sessionsUp)

        // Drain: anything not delivered by then is lost.
        try await self.drain(workers, clock: &clock, seconds: scenario.drainSeconds, phase: "drain")
        let messagePhaseServerCPU = clock.serverCPUSeconds().flatMap { end in phaseServerCPU.map { end - $0 } }

        // Clean logout.
        if scenario.logout {
            for worker in workers {
                _ = try await worker.call { $0.logoutAll() }
            }
            let logoutDeadline = Date().addingTimeInterval(10)
            while Date() < logoutDeadline {
                var open = 0
                for worker in workers { open += try await worker.call { $0.openSessions } }
                if open == 0 { break }
                try await Task.sleep(for: .milliseconds(50))
            }
        }
        try await self.sample(workers, clock: &clock, phase: "end", wait: false)
        for worker in workers {
            _ = try await worker.call { worker in
                worker.stop()
                worker.abortAll()
            }
        }

        // Final figures.
        var finals: [WorkerFinal] = []
        for worker in workers { finals.append(try await worker.call { $0.finalSample() }) }
        var result = self.assemble(finals, steps: steps, knee: knee, clock: clock, startedAt: startedAt, messagingSeconds: messagingSeconds)
        if scenario.stepped == nil, pairCount > 0 { result.messages.serverCPUSeconds = messagePhaseServerCPU }
        return result
    }

    private func drain(_ workers: [Worker], clock: inout RunClock, seconds: Double, phase: String) async throws {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            var inFlight: UInt64 = 0
            for worker in workers { inFlight += try await worker.call { $0.stats.ledger.inFlight } }
            if inFlight == 0 { return }
            try await Task.sleep(for: .milliseconds(20))
            if clock.secondDue { try await self.sample(workers, clock: &clock, phase: phase, wait: false) }
        }
    }

    /// Waits for the next whole second (unless `wait` is false), then samples every worker.
    private func sample(_ workers: [Worker], clock: inout RunClock, phase: String, wait: Bool = true, atMost: Double = .infinity) async throws {
        if wait {
            let delay = min(clock.untilNextSecond, atMost)
            if delay > 0 { try await Task.sleep(for: .nanoseconds(Int64(delay * 1e9))) }
        }
        var samples: [WorkerSample] = []
        for worker in workers { samples.append(try await worker.call { $0.takeSample() }) }
        let record = clock.record(samples, phase: phase)
        self.progress(record.progress)
    }

    private func assemble(
        _ finals: [WorkerFinal], steps: [LoadResult.Step], knee: Double?, clock: RunClock, startedAt: String, messagingSeconds: Double
    ) -> LoadResult {
        let scenario = self.scenario
        var latency = LatencyHistogram()
        var login = LatencyHistogram()
        var phases: [XMPPLoginStateMachine.Phase: LatencyHistogram] = [:]
        var errors: [String: Int] = [:]
        var sent: UInt64 = 0
        var delivered: UInt64 = 0
        var inFlight: UInt64 = 0
        var duplicates: UInt64 = 0
        var unknown: UInt64 = 0
        var started = 0
        var established = 0
        var failed = 0
        var closed = 0
        var retransmissions = 0
        var behind: UInt64 = 0
        var firstStart: UInt64?
        var lastEstablished: UInt64?
        for final in finals {
            latency.add(final.latency)
            login.add(final.login)
            for (phase, histogram) in final.phases { phases[phase, default: LatencyHistogram()].add(histogram) }
            for (key, count) in final.errors { errors[key, default: 0] += count }
            sent += final.ledger.sent
            delivered += final.ledger.delivered
            inFlight += final.ledger.inFlight
            duplicates += final.ledger.duplicates
            unknown += final.ledger.unknown
            started += final.started
            established += final.established
            failed += final.failed
            closed += final.closedCleanly
            retransmissions += final.retransmissions
            behind += final.behindSchedule
            if let value = final.firstStartNanos { firstStart = min(firstStart ?? value, value) }
            if let value = final.lastEstablishedNanos { lastEstablished = max(lastEstablished ?? value, value) }
        }
        if inFlight > 0 { errors["lost-messages", default: 0] += Int(inFlight) }
        if started < scenario.sessions { errors["not-started", default: 0] += scenario.sessions - started }
        var rampSeconds = 0.0
        if let firstStart, let lastEstablished, lastEstablished > firstStart {
            rampSeconds = Double(lastEstablished - firstStart) / 1e9
        }
        let sessions = LoadResult.Sessions(
            requested: scenario.sessions, started: started, established: established, failed: failed, closedCleanly: closed,
            rampSeconds: rampSeconds, establishmentRate: rampSeconds > 0 ? Double(established) / rampSeconds : Double(established),
            login: login.summary, phases: Dictionary(uniqueKeysWithValues: phases.map { ($0.key.rawValue, $0.value.summary) })
        )
        let messages = LoadResult.Messages(
            targetRate: scenario.stepped == nil ? scenario.messageRate : (steps.last?.targetRate ?? 0),
            achievedRate: messagingSeconds > 0 ? Double(sent) / messagingSeconds : 0,
            sent: sent, delivered: delivered, lost: inFlight, duplicates: duplicates, unknown: unknown,
            messagingSeconds: messagingSeconds, behindSchedule: behind, latency: latency.summary
        )
        var cpu = clock.cpuFigures
        if behind > 0, Double(behind) > 0.01 * Double(max(sent, 1)) { cpu.clientSaturated = true }
        var result = LoadResult(
            scenario: scenario, startedAt: startedAt, sessions: sessions, messages: messages, steps: steps, kneeRate: knee,
            errors: errors, retransmissions: retransmissions, cpu: cpu, server: clock.serverFigures, timeline: clock.timeline
        )
        result.judge()
        return result
    }

    static func sessionFactory(_ transport: LoadScenario.Transport) -> (Int, LoadWorker) -> LoadSession {
        switch transport {
        case .tcp: return { TCPLoadSession(index: $0, worker: $1) }
        case .websocket: return { WebSocketLoadSession(index: $0, worker: $1) }
        case .bosh: return { BOSHLoadSession(index: $0, worker: $1) }
        }
    }
}

public enum LoadRunnerError: Error, CustomStringConvertible {
    case invalidScenario([String])

    public var description: String {
        switch self {
        case .invalidScenario(let problems): return problems.joined(separator: "; ")
        }
    }
}

/// The runner's once-a-second bookkeeping: timeline, CPU, server RSS.
struct RunClock {
    let scenario: LoadScenario
    let start = Date()
    var lastSample: Date
    var lastProcessCPU: Double
    var lastThreadCPU: [Double]
    let startProcessCPU: Double
    var threadCPUTotal: [Double]
    var timeline: [LoadResult.Sample] = []
    var peakThreadPercent = 0.0
    var peakThreadPercentThisStep = 0.0
    var rssStart: Int?
    var rssPeak: Int?
    var rssEnd: Int?
    var rssLoaded: Int?
    var sessionsUpWhenLoaded: Int?

    init(scenario: LoadScenario, workers: Int) {
        self.scenario = scenario
        self.lastSample = self.start
        self.startProcessCPU = ResourceUsage.processCPUSeconds()
        self.lastProcessCPU = self.startProcessCPU
        self.lastThreadCPU = Array(repeating: -1, count: workers)
        self.threadCPUTotal = Array(repeating: 0, count: workers)
        if let pid = scenario.serverPID {
            self.rssStart = ResourceUsage.residentKiB(pid: pid)
            self.rssPeak = self.rssStart
        }
    }

    var untilNextSecond: Double {
        let elapsed = Date().timeIntervalSince(self.start)
        return (elapsed.rounded(.down) + 1) - elapsed
    }

    /// CPU seconds of the load threads so far (as of the last sample).
    var clientThreadSeconds: Double { self.threadCPUTotal.reduce(0, +) }

    /// CPU seconds of the server process so far, when its PID is known and readable.
    func serverCPUSeconds() -> Double? {
        self.scenario.serverPID.flatMap { ResourceUsage.processCPUSeconds(pid: $0) }
    }

    /// CPU seconds of the upstream server process so far, when its PID is known and readable.
    func upstreamCPUSeconds() -> Double? {
        self.scenario.upstreamPID.flatMap { ResourceUsage.processCPUSeconds(pid: $0) }
    }

    /// Reads the server's RSS with every session up (end of the message phase or idle hold).
    mutating func recordLoaded(sessionsUp: Int) {
        guard let pid = self.scenario.serverPID else { return }
        self.rssLoaded = ResourceUsage.residentKiB(pid: pid)
        self.sessionsUpWhenLoaded = sessionsUp
    }

    var secondDue: Bool { Date().timeIntervalSince(self.lastSample) >= 1 }

    mutating func record(_ samples: [WorkerSample], phase: String) -> (sample: LoadResult.Sample, progress: LoadProgress) {
        let now = Date()
        let seconds = max(now.timeIntervalSince(self.lastSample), 0.001)
        self.lastSample = now
        var sent: UInt64 = 0
        var delivered: UInt64 = 0
        var latency = LatencyHistogram()
        var up = 0
        var errors = 0
        var inFlight: UInt64 = 0
        var clientCPU = 0.0
        for (index, sample) in samples.enumerated() {
            sent += sample.sent
            delivered += sample.delivered
            latency.add(sample.latency)
            up += sample.sessionsUp
            errors += sample.errorCount
            inFlight += sample.inFlight
            // Thread CPU from the first sample on (the loop thread existed before the run began, idle).
            let previous = self.lastThreadCPU[index] < 0 ? sample.threadCPUSeconds : self.lastThreadCPU[index]
            let used = sample.threadCPUSeconds - previous
            self.threadCPUTotal[index] += used
            self.lastThreadCPU[index] = sample.threadCPUSeconds
            let percent = used / seconds * 100
            clientCPU += percent
            // Peaks only from intervals long enough to mean something.
            if seconds >= 0.5 {
                self.peakThreadPercent = max(self.peakThreadPercent, percent)
                self.peakThreadPercentThisStep = max(self.peakThreadPercentThisStep, percent)
            }
        }
        var rss: Int?
        if let pid = self.scenario.serverPID {
            rss = ResourceUsage.residentKiB(pid: pid)
            if let rss {
                self.rssPeak = max(self.rssPeak ?? rss, rss)
                self.rssEnd = rss
            }
        }
        let summary = latency.summary
        let sample = LoadResult.Sample(
            second: now.timeIntervalSince(self.start), phase: phase, sessionsUp: up,
            sentPerSecond: Double(sent) / seconds, deliveredPerSecond: Double(delivered) / seconds,
            p50: summary.p50, p90: summary.p90, p99: summary.p99, max: summary.max, errors: errors,
            clientCPUPercent: clientCPU, serverRSSKiB: rss
        )
        self.timeline.append(sample)
        let progress = LoadProgress(
            second: sample.second, phase: phase, sessionsUp: up, sessionsWanted: self.scenario.sessions,
            sentPerSecond: sample.sentPerSecond, deliveredPerSecond: sample.deliveredPerSecond, p99Milliseconds: summary.p99,
            errors: errors, inFlight: inFlight, clientCPUPercent: clientCPU
        )
        return (sample, progress)
    }

    var cpuFigures: LoadResult.CPU {
        let wall = Date().timeIntervalSince(self.start)
        let process = ResourceUsage.processCPUSeconds() - self.startProcessCPU
        return LoadResult.CPU(
            wallSeconds: wall, processSeconds: process, processPercent: wall > 0 ? process / wall * 100 : 0,
            clientThreadsSeconds: self.threadCPUTotal.reduce(0, +), peakClientThreadPercent: self.peakThreadPercent,
            clientSaturated: self.peakThreadPercent > 90
        )
    }

    var serverFigures: LoadResult.Server? {
        guard let pid = self.scenario.serverPID else { return nil }
        return LoadResult.Server(
            pid: pid, rssKiBAtStart: self.rssStart, rssKiBPeak: self.rssPeak, rssKiBAtEnd: self.rssEnd, rssKiBLoaded: self.rssLoaded,
            sessionsUpWhenLoaded: self.sessionsUpWhenLoaded
        )
    }
}
