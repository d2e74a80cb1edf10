import Foundation
import NIOCore
import NIOPosix
import XMPPClientCore

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
    /// Running totals since the run began.
    public var started = 0
    public var established = 0
    public var failed = 0
    public var totalSent: UInt64 = 0
    public var totalDelivered: UInt64 = 0
    public var p50Milliseconds = 0.0
    /// Each behaviour's running counts, by population name and behaviour.
    public var behaviours: [LiveBehaviourKey: BehaviourCounts] = [:]
    /// The part this generator runs, if any.
    public var part: LoadPart?

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
        let (assignments, startOffsets) = Self.assign(scenario, workers: loops.count)
        let pairCount = scenario.messagingSessions / 2
        var workers: [Worker] = []
        for (number, loop) in loops.enumerated() {
            let assignment = assignments[number]
            let bound = try await loop.submit {
                let worker = LoadWorker(scenario: scenario, eventLoop: loop, makeSession: Self.sessionFactory(scenario))
                worker.setUp(assignment, startOffsets: startOffsets)
                return NIOLoopBound(worker, eventLoop: loop)
            }.get()
            workers.append(Worker(loop: loop, bound: bound))
        }

        // The parts of a distributed run begin together (the run's clock starts then too, so their timelines line up).
        if let startAt = scenario.startAt {
            let wait = startAt - Date().timeIntervalSince1970
            guard wait > -1 else { throw LoadRunnerError.startPassed(seconds: -wait) }
            if wait > 0 { try await Task.sleep(for: .nanoseconds(Int64(wait * 1e9))) }
        }

        var clock = RunClock(scenario: scenario, workers: workers.count)
        let startedAt = ISO8601DateFormatter().string(from: Date())
        // Baseline of each loop thread's CPU time.
        try await self.sample(workers, clock: &clock, phase: "start", wait: false)

        // Ramp-up: every session starts at its arrival time.
        let loginCPUAtStart = (server: clock.serverCPUSeconds(), upstream: clock.upstreamCPUSeconds())
        for worker in workers {
            _ = try await worker.call { $0.startArrivals() }
        }
        let lastArrival = startOffsets.max() ?? 0
        let loginDeadline = Date().addingTimeInterval(lastArrival + scenario.loginTimeout + 5)
        // Settling is looked at every 50 ms, so the login CPU window ends with the last login
        // (waiting for the next whole-second sample counted up to a second of idle server).
        while Date() < loginDeadline {
            try await Task.sleep(for: .milliseconds(50))
            if clock.secondDue { try await self.sample(workers, clock: &clock, phase: "ramp-up", wait: false) }
            var settled = true
            for worker in workers where !(try await worker.call { $0.settled }) { settled = false }
            if settled { break }
        }
        let loginCPU = (
            server: clock.serverCPUSeconds().flatMap { end in loginCPUAtStart.server.map { end - $0 } },
            upstream: clock.upstreamCPUSeconds().flatMap { end in loginCPUAtStart.upstream.map { end - $0 } }
        )

        // Message phase: one step at the target rate, or each rate of the stepped run.
        var steps: [LoadResult.Step] = []
        var knee: Double?
        // A stepped run may begin with a reference step, which is measured but not judged.
        let reference = scenario.stepped == nil ? nil : scenario.referenceRate
        let rates = (reference.map { [$0] } ?? []) + (scenario.stepped?.rates ?? [scenario.chatRate])
        var messagingSeconds = 0.0
        let phaseServerCPU = clock.serverCPUSeconds()
        // Pages reload and close for as long as messages go (or the idle hold lasts).
        for worker in workers {
            _ = try await worker.call { $0.setBehavioursActive(true) }
        }
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
                _ = try await worker.call { $0.beginStep(rate: rate) }
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
        var idleHold: (seconds: Double, serverCPU: Double?)?
        if messagingSeconds == 0 {
            // No messages: hold the sessions for the duration (memory per idle session, reloads, tab closes).
            let holdStart = Date()
            let holdServerCPU = clock.serverCPUSeconds()
            while Date().timeIntervalSince(holdStart) < scenario.duration {
                let remaining = scenario.duration - Date().timeIntervalSince(holdStart)
                try await self.sample(workers, clock: &clock, phase: "idle", atMost: remaining)
            }
            idleHold = (Date().timeIntervalSince(holdStart), clock.serverCPUSeconds().flatMap { end in holdServerCPU.map { end - $0 } })
        }
        var sessionsUp = 0
        for worker in workers { sessionsUp += try await worker.call { $0.sessionsUp } }
        clock.recordLoaded(sessionsUp: sessionsUp)

        // No new reloads or tab closes; those under way finish (a reload comes back, a closed
        // tab's check waits for the advertised timeout), within a bound.
        for worker in workers {
            _ = try await worker.call { $0.setBehavioursActive(false) }
        }
        try await self.settlePages(workers, clock: &clock)

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
        if let idleHold {
            result.server?.idleHoldSeconds = idleHold.seconds
            result.server?.cpuSecondsDuringIdleHold = idleHold.serverCPU
        }
        result.sessions.serverCPUSecondsDuringLogin = loginCPU.server
        result.sessions.upstreamCPUSecondsDuringLogin = loginCPU.upstream
        return result
    }

    /// Waits for page events and tab-close checks under way. The bound: the longest wait one can
    /// have (tab-close `after` is already past; the advertised timeout is at most the BOSH
    /// inactivity or XEP-0198 max, taken as 10 minutes) plus a login.
    private func settlePages(_ workers: [Worker], clock: inout RunClock) async throws {
        let pages = self.scenario.populations.filter(\.hasPageBehaviour)
        guard !pages.isEmpty else { return }
        let longestWait =
            pages.map { page in
                [
                    page.tabClose.map { $0.verify ? 600 + $0.grace : 0 }, page.reload?.gap, page.suspend?.seconds, page.flap?.unread,
                    page.storm?.within,
                ].compactMap { $0 }.max() ?? 0
            }.max() ?? 0
        let deadline = Date().addingTimeInterval(longestWait + self.scenario.loginTimeout + 5)
        while Date() < deadline {
            var busy = 0
            for worker in workers { busy += try await worker.call { $0.pagesBusy } }
            if busy == 0 { return }
            try await Task.sleep(for: .milliseconds(50))
            if clock.secondDue { try await self.sample(workers, clock: &clock, phase: "pages", wait: false) }
        }
    }

    private func drain(_ workers: [Worker], clock: inout RunClock, seconds: Double, phase: String) async throws {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            var inFlight: UInt64 = 0
            for worker in workers { inFlight += try await worker.call { $0.inFlight } }
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
        var populationTallies: [Int: PopulationTally] = [:]
        var behaviourTallies: [BehaviourKey: BehaviourTally] = [:]
        for final in finals {
            for (key, tally) in final.populations { populationTallies[key, default: PopulationTally()].add(tally) }
            for (key, tally) in final.behaviours { behaviourTallies[key, default: BehaviourTally()].add(tally) }
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
        let otherErrors = errors
        var histograms = LoadResult.Histograms()
        histograms.delivery = latency
        histograms.login = login
        histograms.phases = Dictionary(uniqueKeysWithValues: phases.map { ($0.key.rawValue, $0.value) })
        var populations: [PopulationResult] = []
        for (index, spec) in scenario.populations.enumerated() {
            var tally = populationTallies[index] ?? PopulationTally()
            histograms.populations[spec.name] = tally.login
            let requested = scenario.sessionsInPart(ofPopulation: index)
            if tally.started < requested { tally.errors["not-started", default: 0] += requested - tally.started }
            let summary = tally.login.summary
            let failures = UInt64(requested - tally.established)
            let verdicts = spec.slo.verdicts(attempts: UInt64(requested), successes: UInt64(tally.established), failures: failures, latency: summary)
            populations.append(
                PopulationResult(
                    name: spec.name, transport: spec.transport, endpoint: spec.endpoint.description, requested: requested, started: tally.started,
                    established: tally.established, failed: tally.failed, login: summary, errors: tally.errors, slo: verdicts,
                    passed: verdicts.allSatisfy(\.met)
                )
            )
            for (key, count) in tally.errors { errors[key, default: 0] += count }
        }
        var behaviours: [BehaviourResult] = []
        for (index, spec) in scenario.populations.enumerated() {
            for behaviour in spec.behaviours {
                let tally = behaviourTallies[BehaviourKey(population: index, kind: behaviour.kind)] ?? BehaviourTally()
                histograms.behaviours[LoadResult.Histograms.behaviourKey(spec.name, behaviour.kind)] = tally.latency
                let summary = tally.latency.summary
                let verdicts = behaviour.slo.verdicts(attempts: tally.attempts, successes: tally.successes, failures: tally.failures, latency: summary)
                let latencyOf: String
                switch behaviour.kind {
                case .chat: latencyOf = "delivery"
                case .idle: latencyOf = "none"
                case .reload: latencyOf = "reattach"
                case .tabClose: latencyOf = "close-to-expiry"
                case .suspend: latencyOf = "wake-to-proven"
                case .flap: latencyOf = "cut-to-recovered"
                case .storm: latencyOf = "drop-to-relogin"
                case .presence, .muc: latencyOf = "delivery"
                }
                var result = BehaviourResult(
                    population: spec.name, behaviour: behaviour.kind, attempts: tally.attempts, successes: tally.successes,
                    failures: tally.failures, latencyOf: latencyOf, latency: summary, errors: tally.errors, slo: verdicts,
                    passed: verdicts.allSatisfy(\.met)
                )
                if [.reload, .suspend, .flap].contains(behaviour.kind), spec.chat != nil {
                    result.messagesWhileAway = tally.sentWhileAway
                    result.messagesWhileAwayDelivered = tally.deliveredAfterReturn
                }
                if behaviour.kind == .flap, spec.transport == .bosh { result.replayedAnswers = tally.replayed }
                if [.presence, .muc].contains(behaviour.kind) {
                    result.stanzasSent = tally.fanoutSent
                    let lost = tally.attempts > tally.successes ? Int(tally.attempts - tally.successes) : 0
                    if lost > 0 {
                        result.errors["lost-deliveries", default: 0] += lost
                        errors["lost-deliveries", default: 0] += lost
                    }
                }
                behaviours.append(result)
                for (key, count) in tally.errors { errors[key, default: 0] += count }
            }
        }
        if inFlight > 0 { errors["lost-messages", default: 0] += Int(inFlight) }
        var rampSeconds = 0.0
        if let firstStart, let lastEstablished, lastEstablished > firstStart {
            rampSeconds = Double(lastEstablished - firstStart) / 1e9
        }
        let sessions = LoadResult.Sessions(
            requested: scenario.sessionsInPart, started: started, established: established, failed: failed, closedCleanly: closed,
            rampSeconds: rampSeconds, establishmentRate: rampSeconds > 0 ? Double(established) / rampSeconds : Double(established),
            login: login.summary, phases: Dictionary(uniqueKeysWithValues: phases.map { ($0.key.rawValue, $0.value.summary) })
        )
        let messages = LoadResult.Messages(
            targetRate: scenario.stepped == nil ? scenario.chatRateInPart : (steps.last?.targetRate ?? 0),
            achievedRate: messagingSeconds > 0 ? Double(sent) / messagingSeconds : 0,
            sent: sent, delivered: delivered, lost: inFlight, duplicates: duplicates, unknown: unknown,
            messagingSeconds: messagingSeconds, behindSchedule: behind, latency: latency.summary
        )
        var cpu = clock.cpuFigures
        if behind > 0, Double(behind) > 0.01 * Double(max(sent, 1)) { cpu.clientSaturated = true }
        var result = LoadResult(
            scenario: scenario.asRunByPart, startedAt: startedAt, sessions: sessions, messages: messages, steps: steps, kneeRate: knee,
            errors: errors, retransmissions: retransmissions, cpu: cpu, server: clock.serverFigures, timeline: clock.timeline
        )
        result.otherErrors = otherErrors
        result.populations = populations
        result.behaviours = behaviours
        result.histograms = histograms
        result.judge()
        return result
    }

    /// A session of the transport of its population: (run index, population, worker).
    static func sessionFactory(_ scenario: LoadScenario) -> (Int, Int, LoadWorker) -> LoadSession {
        let transports = scenario.populations.map(\.transport)
        return { index, population, worker in
            switch transports[population] {
            case .tcp: TCPLoadSession(index: index, population: population, worker: worker)
            case .websocket: WebSocketLoadSession(index: index, population: population, worker: worker)
            case .bosh: BOSHLoadSession(index: index, population: population, worker: worker)
            }
        }
    }

    /// Spreads the sessions over the workers: each chat pair whole on one worker (so its
    /// accounting needs no locks), pairs and single sessions round-robin; each session's start
    /// offset from its population's arrival process; each worker's share of every chat
    /// population's rate. With a part, only that part's pairs and sessions, at the offsets
    /// they have in the whole scenario.
    static func assign(_ scenario: LoadScenario, workers: Int) -> ([LoadWorker.Assignment], [Double]) {
        var assignments = Array(repeating: LoadWorker.Assignment(), count: workers)
        var offsets = Array(repeating: 0.0, count: scenario.sessions)
        var nextPairWorker = 0
        var nextSingleWorker = 0
        let totalRate = scenario.chatRate
        let totalPairs = scenario.messagingSessions / 2
        for (population, spec) in scenario.populations.enumerated() {
            let base = scenario.firstSession(ofPopulation: population)
            for (offset, start) in spec.arrival.startOffsets(count: spec.sessions).enumerated() {
                offsets[base + offset] = start
            }
            if let chat = spec.chat {
                let pairs = spec.sessions / 2
                var perWorker = Array(repeating: 0, count: workers)
                for pair in 0..<pairs where scenario.part?.owns(pair) ?? true {
                    let worker = nextPairWorker % workers
                    nextPairWorker += 1
                    assignments[worker].pairs.append((base + 2 * pair, base + 2 * pair + 1, population))
                    perWorker[worker] += 1
                }
                for worker in 0..<workers where perWorker[worker] > 0 {
                    let here = Double(perWorker[worker])
                    assignments[worker].chatShares[population] =
                        totalRate > 0 ? chat.rate / totalRate * here / Double(pairs) : here / Double(max(totalPairs, 1))
                }
            } else if let size = spec.groupSize {
                for number in 0..<(spec.sessions / size) where scenario.part?.owns(number) ?? true {
                    let members = Array((base + number * size)..<(base + (number + 1) * size))
                    assignments[nextSingleWorker % workers].groups.append((members, number, population))
                    nextSingleWorker += 1
                }
            } else {
                for offset in 0..<spec.sessions where scenario.part?.owns(offset) ?? true {
                    assignments[nextSingleWorker % workers].singles.append((base + offset, population))
                    nextSingleWorker += 1
                }
            }
        }
        return (assignments, offsets)
    }
}

public enum LoadRunnerError: Error, CustomStringConvertible {
    case invalidScenario([String])
    case startPassed(seconds: Double)

    public var description: String {
        switch self {
        case .invalidScenario(let problems): return problems.joined(separator: "; ")
        case .startPassed(let seconds):
            return String(format: "--start-at was %.1f s ago when the sessions were ready: start the generators earlier, or give a later time", seconds)
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
        var totals = (started: 0, established: 0, failed: 0, sent: UInt64(0), delivered: UInt64(0))
        var behaviours: [LiveBehaviourKey: BehaviourCounts] = [:]
        var behaviourLatency: [LiveBehaviourKey: LatencyHistogram] = [:]
        for (index, sample) in samples.enumerated() {
            for (key, histogram) in sample.behaviourLatency {
                behaviourLatency[LiveBehaviourKey(population: self.scenario.populations[key.population].name, behaviour: key.kind), default: .init()].add(histogram)
            }
            totals.started += sample.started
            totals.established += sample.established
            totals.failed += sample.failed
            totals.sent += sample.totalSent
            totals.delivered += sample.totalDelivered
            for (key, counts) in sample.behaviours {
                behaviours[LiveBehaviourKey(population: self.scenario.populations[key.population].name, behaviour: key.kind), default: .init()].add(counts)
            }
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
            clientCPUPercent: clientCPU, serverRSSKiB: rss,
            behaviours: behaviours.isEmpty
                ? nil
                : Dictionary(
                    uniqueKeysWithValues: behaviours.map { key, counts in
                        let latency = behaviourLatency[key]?.summary
                        return (
                            "\(key.population)/\(key.behaviour.rawValue)",
                            LoadResult.BehaviourSlice(
                                attempts: counts.attempts, successes: counts.successes, failures: counts.failures, count: latency?.count ?? 0,
                                p50: latency?.p50 ?? 0, p99: latency?.p99 ?? 0
                            )
                        )
                    })
        )
        self.timeline.append(sample)
        let progress = LoadProgress(
            second: sample.second, phase: phase, sessionsUp: up, sessionsWanted: self.scenario.sessionsInPart,
            sentPerSecond: sample.sentPerSecond, deliveredPerSecond: sample.deliveredPerSecond, p99Milliseconds: summary.p99,
            errors: errors, inFlight: inFlight, clientCPUPercent: clientCPU, started: totals.started, established: totals.established,
            failed: totals.failed, totalSent: totals.sent, totalDelivered: totals.delivered, p50Milliseconds: summary.p50,
            behaviours: behaviours, part: self.scenario.part
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
