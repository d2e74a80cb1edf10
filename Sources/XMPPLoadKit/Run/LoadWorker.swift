import NIOCore
import XMPPCore

/// The sessions, schedule and measurements of one event loop.
///
/// Both sessions of a messaging pair live on the same worker, so sending, delivery, latency and
/// loss are all accounted here without locks. The runner talks to a worker only through
/// `eventLoop.submit`/`execute` (see `LoadRunner`).
final class LoadWorker {
    let scenario: LoadScenario
    let eventLoop: any EventLoop
    let makeSession: (Int, LoadWorker) -> LoadSession
    private(set) var sessions: [LoadSession] = []
    /// Local indices of each messaging pair.
    private var pairs: [(Int, Int)] = []
    /// Sessions not started yet, in start order.
    private var pendingStarts: [Int] = []
    private var startCursor = 0
    var stats = WorkerStats()
    private(set) var sessionsUp = 0

    // Ramp-up
    private var rampRate: Double = 0
    private var rampStartNanos: UInt64 = 0
    // Messaging
    private var messageRate: Double = 0
    private var messageStartNanos: UInt64 = 0
    private var messagesThisPhase: UInt64 = 0
    private var directedCursor = 0
    private let padding: String
    private var tick: RepeatedTask?
    private var timeoutTick: RepeatedTask?

    init(scenario: LoadScenario, eventLoop: any EventLoop, makeSession: @escaping (Int, LoadWorker) -> LoadSession) {
        self.scenario = scenario
        self.eventLoop = eventLoop
        self.makeSession = makeSession
        self.padding = String(repeating: "x", count: scenario.payloadBytes)
    }

    /// Creates this worker's sessions: `pairs` as (user index, user index), `idle` as user indices.
    func setUp(pairs: [(Int, Int)], idle: [Int]) {
        for (first, second) in pairs {
            let a = self.sessions.count
            self.sessions.append(self.makeSession(first, self))
            self.sessions.append(self.makeSession(second, self))
            self.pairs.append((a, a + 1))
        }
        for index in idle {
            self.sessions.append(self.makeSession(index, self))
        }
        // Interleave starts by user number so the ramp is even across pairs and idle sessions.
        self.pendingStarts = Array(self.sessions.indices).sorted { self.sessions[$0].index < self.sessions[$1].index }
        let bound = NIOLoopBound(self, eventLoop: self.eventLoop)
        self.tick = self.eventLoop.scheduleRepeatedTask(initialDelay: .milliseconds(1), delay: .milliseconds(1)) { _ in
            bound.value.onTick()
        }
        self.timeoutTick = self.eventLoop.scheduleRepeatedTask(initialDelay: .milliseconds(250), delay: .milliseconds(250)) { _ in
            bound.value.onTimeoutTick()
        }
    }

    /// Starts sessions at `rate` per second.
    func startRamp(rate: Double) {
        self.rampRate = rate
        self.rampStartNanos = NIODeadline.now().uptimeNanoseconds
    }

    /// Sends `rate` messages per second from now (0 stops).
    func setMessageRate(_ rate: Double) {
        self.messageRate = rate
        self.messageStartNanos = NIODeadline.now().uptimeNanoseconds
        self.messagesThisPhase = 0
    }

    var messagingPairCount: Int { self.pairs.count }
    var allStarted: Bool { self.startCursor >= self.pendingStarts.count }
    var settled: Bool { self.allStarted && self.stats.established + self.stats.failed >= self.sessions.count }

    func stop() {
        self.tick?.cancel()
        self.timeoutTick?.cancel()
        self.tick = nil
        self.timeoutTick = nil
    }

    func logoutAll() {
        self.messageRate = 0
        self.rampRate = 0
        for session in self.sessions {
            session.logout()
        }
    }

    var openSessions: Int { self.sessions.count(where: { !$0.isFinished && self.hasStarted($0) }) }

    private func hasStarted(_ session: LoadSession) -> Bool { session.startedAtNanos != 0 }

    /// Closes every session still open. Without logout (`--no-logout`) that is the plan, not an
    /// error; with logout, a session still open here did not complete it, and its closing counts.
    func abortAll() {
        for session in self.sessions where !session.isFinished {
            if self.scenario.logout {
                session.abort()
            } else {
                session.endOfRun()
            }
        }
    }

    // MARK: events from sessions

    func sessionEstablished(_ session: LoadSession, loginNanos: UInt64) {
        self.stats.established += 1
        self.sessionsUp += 1
        self.stats.login.record(nanoseconds: loginNanos)
        self.stats.lastEstablishedNanos = NIODeadline.now().uptimeNanoseconds
    }

    func sessionFailed(_ session: LoadSession, _ failure: LoadFailure) {
        if !session.machine.isEstablished && session.jid == nil {
            self.stats.failed += 1
        }
        self.stats.recordError(failure)
    }

    func sessionFinished(_ session: LoadSession, cleanly: Bool) {
        if session.jid != nil { self.sessionsUp -= 1 }
        if cleanly { self.stats.closedCleanly += 1 }
    }

    func recordPhase(_ phase: XMPPLoginStateMachine.Phase, nanoseconds: UInt64) {
        self.stats.recordPhase(phase, nanoseconds: nanoseconds)
    }

    func recordRetransmission() {
        self.stats.retransmissions += 1
    }

    func recordError(_ failure: LoadFailure) {
        self.stats.recordError(failure)
    }

    func messageReceived(_ bytes: ByteBuffer) {
        guard let probe = StanzaScanner.probe(in: bytes) else {
            // Not ours (a server notice, an error bounce…): counted, so a bounce is never silent.
            if StanzaScanner.attribute("type", in: bytes) == "error" {
                self.stats.recordError(LoadFailure(.protocolViolation, "message-error"))
            }
            return
        }
        if StanzaScanner.attribute("type", in: bytes) == "error" {
            self.stats.recordError(LoadFailure(.protocolViolation, "message-error-bounce"))
            return
        }
        self.stats.recordDelivery(sequence: probe.sequence, sentAtNanos: probe.timestamp, nowNanos: NIODeadline.now().uptimeNanoseconds)
    }

    // MARK: schedule

    private func onTick() {
        let now = NIODeadline.now().uptimeNanoseconds
        if self.rampRate > 0, self.startCursor < self.pendingStarts.count {
            let due = Int(Double(now - self.rampStartNanos) / 1e9 * self.rampRate) + 1
            while self.startCursor < min(due, self.pendingStarts.count) {
                let session = self.sessions[self.pendingStarts[self.startCursor]]
                self.startCursor += 1
                self.stats.started += 1
                if self.stats.firstStartNanos == nil { self.stats.firstStartNanos = now }
                session.start()
            }
        }
        if self.messageRate > 0, !self.pairs.isEmpty {
            let target = UInt64(Double(now - self.messageStartNanos) / 1e9 * self.messageRate)
            guard target > self.messagesThisPhase else { return }
            // A stalled loop does not catch up in one burst: at most 50 ms worth (or 20) at once.
            let owed = target - self.messagesThisPhase
            let due = min(owed, UInt64(max(self.messageRate * 0.05, 20)) + 1)
            if owed > due {
                // Counted, never hidden: the client could not keep its own schedule.
                self.stats.behindSchedule += owed - due
                self.stats.stepBehindSchedule += owed - due
            }
            self.messagesThisPhase = target
            self.sendMessages(Int(due), nowNanos: now)
        }
    }

    private func sendMessages(_ count: Int, nowNanos: UInt64) {
        let directed = self.pairs.count * 2
        var sent = 0
        var skipped = 0
        while sent < count, skipped < directed {
            let pair = self.pairs[self.directedCursor / 2]
            let (from, to) = self.directedCursor % 2 == 0 ? (pair.0, pair.1) : (pair.1, pair.0)
            self.directedCursor = (self.directedCursor + 1) % directed
            let sender = self.sessions[from]
            let receiver = self.sessions[to]
            guard sender.isEstablished, receiver.isEstablished, let peer = receiver.jid else {
                skipped += 1
                continue
            }
            skipped = 0
            let sequence = self.stats.recordSend()
            sender.send(self.message(to: peer, sequence: sequence, nowNanos: nowNanos))
            sent += 1
        }
    }

    /// `<message to='…' type='chat' id='SEQ'><body>tl:SEQ:NANOS …</body></message>`.
    func message(to peer: String, sequence: UInt64, nowNanos: UInt64) -> ByteBuffer {
        var buffer = ByteBufferAllocator().buffer(capacity: 128 + peer.utf8.count + self.padding.utf8.count)
        buffer.writeStaticString("<message xmlns='jabber:client' type='chat' to='")
        buffer.writeString(peer)
        buffer.writeStaticString("' id='m")
        buffer.writeString(String(sequence))
        buffer.writeStaticString("'><body>tl:")
        buffer.writeString(String(sequence))
        buffer.writeStaticString(":")
        buffer.writeString(String(nowNanos))
        if !self.padding.isEmpty {
            buffer.writeStaticString(" ")
            buffer.writeString(self.padding)
        }
        buffer.writeStaticString("</body></message>")
        return buffer
    }

    private func onTimeoutTick() {
        let now = NIODeadline.now().uptimeNanoseconds
        let loginLimit = UInt64(self.scenario.loginTimeout * 1e9)
        for session in self.sessions where !session.isFinished && self.hasStarted(session) {
            if !session.machine.isEstablished, session.machine.phase != .closing, now - session.startedAtNanos > loginLimit {
                session.loginTimedOut()
            } else {
                session.checkTimeouts(nowNanos: now)
            }
        }
    }

    // MARK: samples

    func takeSample() -> WorkerSample {
        self.stats.takeSample(sessionsUp: self.sessionsUp, threadCPUSeconds: ResourceUsage.threadCPUSeconds())
    }

    /// Begins a message step: step counters and histogram start from zero.
    func beginStep(rate: Double) {
        self.stats.step.reset()
        self.stats.stepSent = 0
        self.stats.stepDelivered = 0
        self.stats.stepBehindSchedule = 0
        self.setMessageRate(rate)
    }

    func stepSample() -> WorkerStepSample {
        WorkerStepSample(
            sent: self.stats.stepSent, delivered: self.stats.stepDelivered, latency: self.stats.step, inFlight: self.stats.ledger.inFlight,
            behindSchedule: self.stats.stepBehindSchedule
        )
    }

    func finalSample() -> WorkerFinal {
        WorkerFinal(
            ledger: self.stats.ledger,
            latency: self.stats.latency,
            phases: self.stats.phases,
            login: self.stats.login,
            errors: self.stats.errors,
            started: self.stats.started,
            established: self.stats.established,
            failed: self.stats.failed,
            closedCleanly: self.stats.closedCleanly,
            retransmissions: self.stats.retransmissions,
            behindSchedule: self.stats.behindSchedule,
            firstStartNanos: self.stats.firstStartNanos,
            lastEstablishedNanos: self.stats.lastEstablishedNanos
        )
    }
}
