import XMPPClientCore

/// Everything one worker (one event loop) measures. Only touched on that loop; copied out in samples.
struct WorkerStats {
    var ledger = MessageLedger()
    /// Presence changes and room messages, each expected by several receivers.
    var fanout = FanoutLedger()
    /// Delivery latency over the whole run, since the last sample, and since the step began.
    var latency = LatencyHistogram()
    var interval = LatencyHistogram()
    var step = LatencyHistogram()
    /// Time spent in each login phase, and for the whole login.
    var phases: [XMPPLoginStateMachine.Phase: LatencyHistogram] = [:]
    var login = LatencyHistogram()
    /// Errors that belong to no population's login and no behaviour (protocol surprises, duplicates…).
    var errors: [String: Int] = [:]
    /// Every error counted, wherever it went (for the progress line).
    var errorTotal = 0
    var populations: [Int: PopulationTally] = [:]
    var behaviours: [BehaviourKey: BehaviourTally] = [:]
    /// Each behaviour's latency since the last sample (the report's per-behaviour time slices).
    var behaviourInterval: [BehaviourKey: LatencyHistogram] = [:]
    /// Messages sent to a page that was away (reloading, asleep, cut off), until they arrive,
    /// with the behaviour it was away for.
    var sentWhileAway: [UInt64: BehaviourKey] = [:]
    var started = 0
    var established = 0
    var failed = 0
    var closedCleanly = 0
    var retransmissions = 0
    /// Messages the schedule called for that were not sent because the loop ran late (> 50 ms behind).
    var behindSchedule: UInt64 = 0
    var stepBehindSchedule: UInt64 = 0
    var intervalSent: UInt64 = 0
    var intervalDelivered: UInt64 = 0
    var stepSent: UInt64 = 0
    var stepDelivered: UInt64 = 0
    var firstStartNanos: UInt64?
    var lastEstablishedNanos: UInt64?

    mutating func recordPhase(_ phase: XMPPLoginStateMachine.Phase, nanoseconds: UInt64) {
        self.phases[phase, default: LatencyHistogram()].record(nanoseconds: nanoseconds)
    }

    mutating func recordError(_ failure: ClientFailure) {
        self.errors[failure.key, default: 0] += 1
        self.errorTotal += 1
    }

    mutating func recordLoginFailure(_ failure: ClientFailure, population: Int) {
        self.populations[population, default: PopulationTally()].errors[failure.key, default: 0] += 1
        self.errorTotal += 1
    }

    mutating func recordBehaviourFailure(_ failure: ClientFailure, _ key: BehaviourKey) {
        self.behaviours[key, default: BehaviourTally()].failed(failure)
        self.errorTotal += 1
    }

    /// A probe message arrived at a session of `population` (both ends of a pair are in one population).
    mutating func recordDelivery(sequence: UInt64, sentAtNanos: UInt64, nowNanos: UInt64, population: Int) {
        switch self.ledger.deliver(sequence) {
        case .first:
            let latency = nowNanos &- sentAtNanos
            let nanos = nowNanos >= sentAtNanos ? latency : 0
            let key = BehaviourKey(population: population, kind: .chat)
            if let away = self.sentWhileAway.removeValue(forKey: sequence) {
                self.behaviours[away, default: BehaviourTally()].deliveredAfterReturn += 1
            }
            self.behaviours[key, default: BehaviourTally()].successes += 1
            self.behaviours[key, default: BehaviourTally()].latency.record(nanoseconds: nanos)
            self.behaviourInterval[key, default: LatencyHistogram()].record(nanoseconds: nanos)
            self.latency.record(nanoseconds: nanos)
            self.interval.record(nanoseconds: nanos)
            self.step.record(nanoseconds: nanos)
            self.intervalDelivered += 1
            self.stepDelivered += 1
        case .duplicate:
            self.recordError(ClientFailure(.protocolViolation, "duplicate-message"))
        case .unknown:
            self.recordError(ClientFailure(.protocolViolation, "unknown-message"))
        }
    }

    /// A presence change or room message goes out, to be received by `receivers`.
    mutating func recordFanoutSend(receivers: Int, _ key: BehaviourKey) -> UInt64 {
        self.behaviours[key, default: BehaviourTally()].attempts += UInt64(receivers)
        self.behaviours[key, default: BehaviourTally()].fanoutSent += 1
        return self.fanout.send(receivers: receivers)
    }

    /// One receiver got a presence change or room message.
    mutating func recordFanoutDelivery(sequence: UInt64, sentAtNanos: UInt64, nowNanos: UInt64, _ key: BehaviourKey) {
        switch self.fanout.deliver(sequence) {
        case .expected:
            let nanos = nowNanos >= sentAtNanos ? nowNanos - sentAtNanos : 0
            self.behaviours[key, default: BehaviourTally()].successes += 1
            self.behaviours[key, default: BehaviourTally()].latency.record(nanoseconds: nanos)
            self.behaviourInterval[key, default: LatencyHistogram()].record(nanoseconds: nanos)
        case .extra:
            self.recordError(ClientFailure(.protocolViolation, "\(key.kind.rawValue)-extra-copy"))
        case .unknown:
            self.recordError(ClientFailure(.protocolViolation, "\(key.kind.rawValue)-unknown"))
        }
    }

    /// The message `sequence` went to a page that is away for `key`'s behaviour: it must arrive
    /// once the page is back.
    mutating func recordSentWhileAway(_ sequence: UInt64, _ key: BehaviourKey) {
        self.sentWhileAway[sequence] = key
        self.behaviours[key, default: BehaviourTally()].sentWhileAway += 1
    }

    mutating func recordSend(population: Int) -> UInt64 {
        self.behaviours[BehaviourKey(population: population, kind: .chat), default: BehaviourTally()].attempts += 1
        self.intervalSent += 1
        self.stepSent += 1
        return self.ledger.send()
    }

    /// Counters and histograms since the last call; resets the interval ones.
    mutating func takeSample(sessionsUp: Int, threadCPUSeconds: Double) -> WorkerSample {
        let sample = WorkerSample(
            sent: self.intervalSent,
            delivered: self.intervalDelivered,
            latency: self.interval,
            sessionsUp: sessionsUp,
            established: self.established,
            failed: self.failed,
            started: self.started,
            totalSent: self.ledger.sent,
            totalDelivered: self.ledger.delivered,
            inFlight: self.ledger.inFlight,
            errorCount: self.errorTotal,
            threadCPUSeconds: threadCPUSeconds,
            behaviours: self.behaviours.mapValues { BehaviourCounts(attempts: $0.attempts, successes: $0.successes, failures: $0.failures) },
            behaviourLatency: self.behaviourInterval
        )
        self.behaviourInterval.removeAll(keepingCapacity: true)
        self.intervalSent = 0
        self.intervalDelivered = 0
        self.interval.reset()
        return sample
    }
}

/// A worker's figures for one sampling interval, plus its running totals.
struct WorkerSample: Sendable {
    var sent: UInt64
    var delivered: UInt64
    var latency: LatencyHistogram
    var sessionsUp: Int
    var established: Int
    var failed: Int
    var started: Int
    var totalSent: UInt64
    var totalDelivered: UInt64
    var inFlight: UInt64
    var errorCount: Int
    var threadCPUSeconds: Double
    /// Running counts of each behaviour (chat's failures are only known at the end).
    var behaviours: [BehaviourKey: BehaviourCounts]
    /// Each behaviour's latency over the interval.
    var behaviourLatency: [BehaviourKey: LatencyHistogram]
}

/// A worker's figures at the end of a message step.
struct WorkerStepSample: Sendable {
    var sent: UInt64
    var delivered: UInt64
    var latency: LatencyHistogram
    var inFlight: UInt64
    var behindSchedule: UInt64
}

/// A worker's final figures.
struct WorkerFinal: Sendable {
    var ledger: MessageLedger
    var latency: LatencyHistogram
    var phases: [XMPPLoginStateMachine.Phase: LatencyHistogram]
    var login: LatencyHistogram
    var errors: [String: Int]
    var populations: [Int: PopulationTally]
    var behaviours: [BehaviourKey: BehaviourTally]
    var started: Int
    var established: Int
    var failed: Int
    var closedCleanly: Int
    var retransmissions: Int
    var behindSchedule: UInt64
    var firstStartNanos: UInt64?
    var lastEstablishedNanos: UInt64?
}
