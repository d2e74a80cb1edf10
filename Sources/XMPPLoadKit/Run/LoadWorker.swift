import NIOCore
import XMPPClientCore
import XMPPCore

/// The sessions, schedule and measurements of one event loop.
///
/// Both sessions of a messaging pair live on the same worker, so sending, delivery, latency and
/// loss are all accounted here without locks. The runner talks to a worker only through
/// `eventLoop.submit`/`execute` (see `LoadRunner`).
final class LoadWorker {
    let scenario: LoadScenario
    let eventLoop: any EventLoop
    let makeSession: (Int, Int, LoadWorker) -> LoadSession
    private(set) var sessions: [LoadSession] = []
    /// The chat pairs of each chat population on this worker, with their schedule.
    private var chatGroups: [ChatGroup] = []
    /// Sessions not started yet, in start order.
    private var pendingStarts: [Int] = []
    private var startCursor = 0
    /// Sessions whose page reloads or closes.
    private var pageSessions: [Int] = []
    /// Roster groups and rooms here, each whole on this worker like a chat pair.
    private var groups: [FanoutGroup] = []
    private var groupTick: RepeatedTask?
    var stats = WorkerStats()
    private(set) var sessionsUp = 0

    // Arrivals
    private var arrivalsStarted = false
    private var arrivalsStartNanos: UInt64 = 0
    /// The behaviour phase is on: pages may reload and close.
    private var behavioursActive = false
    private var tick: RepeatedTask?
    private var timeoutTick: RepeatedTask?
    private var pageTick: RepeatedTask?

    /// One chat population's pairs here, and its share of the run's message rate.
    struct ChatGroup {
        var population: Int
        var pairs: [(Int, Int)]
        var padding: String
        /// Fraction of the whole run's message rate this group sends.
        var share: Double
        var rate: Double = 0
        var startNanos: UInt64 = 0
        var sentThisPhase: UInt64 = 0
        var cursor = 0
    }

    init(scenario: LoadScenario, eventLoop: any EventLoop, makeSession: @escaping (Int, Int, LoadWorker) -> LoadSession) {
        self.scenario = scenario
        self.eventLoop = eventLoop
        self.makeSession = makeSession
    }

    /// A roster group (presence) or a room (muc): its members, and its schedule.
    struct FanoutGroup {
        var population: Int
        var kind: Behaviour.Kind
        /// Local session indexes.
        var members: [Int]
        /// Muc: the room's bare JID, the occupants joined, the message schedule.
        var room: String?
        var joined = 0
        var rate = 0.0
        var padding = ""
        var startNanos: UInt64?
        var sentSoFar: UInt64 = 0
        var cursor = 0
        /// Every member has logged in once: the group's traffic may begin.
        var ready = false
        /// Presence: the earliest change due among the members.
        var nextDueNanos: UInt64 = 0
    }

    /// What a worker is given: chat pairs and single sessions, each as (run index, population),
    /// with the start offsets (seconds after arrivals begin) of every run index.
    struct Assignment: Sendable {
        var pairs: [(first: Int, second: Int, population: Int)] = []
        var singles: [(index: Int, population: Int)] = []
        /// Roster groups and rooms: run indexes of the members, and the group's number within its population.
        var groups: [(members: [Int], number: Int, population: Int)] = []
        /// Per chat population: this worker's fraction of the run's message rate.
        var chatShares: [Int: Double] = [:]
    }

    func setUp(_ assignment: Assignment, startOffsets: [Double]) {
        var groups: [Int: Int] = [:]
        for pair in assignment.pairs {
            let a = self.sessions.count
            self.sessions.append(self.makeSession(pair.first, pair.population, self))
            self.sessions.append(self.makeSession(pair.second, pair.population, self))
            if groups[pair.population] == nil {
                groups[pair.population] = self.chatGroups.count
                let chat = self.scenario.populations[pair.population].chat
                self.chatGroups.append(
                    ChatGroup(
                        population: pair.population, pairs: [], padding: String(repeating: "x", count: chat?.payloadBytes ?? 0),
                        share: assignment.chatShares[pair.population] ?? 0
                    )
                )
            }
            self.chatGroups[groups[pair.population]!].pairs.append((a, a + 1))
        }
        for single in assignment.singles {
            self.sessions.append(self.makeSession(single.index, single.population, self))
        }
        for group in assignment.groups {
            let spec = self.scenario.populations[group.population]
            let first = self.sessions.count
            for member in group.members { self.sessions.append(self.makeSession(member, group.population, self)) }
            var fanout = FanoutGroup(population: group.population, kind: spec.muc != nil ? .muc : .presence, members: Array(first..<self.sessions.count))
            if let muc = spec.muc {
                let service = muc.service ?? "conference.\(self.scenario.domain)"
                fanout.room = "tl-\(group.population)-\(Self.roomName(spec.name))-\(group.number)@\(service)"
                fanout.rate = muc.rate
                fanout.padding = String(repeating: "x", count: muc.payloadBytes)
            }
            for (position, local) in fanout.members.enumerated() {
                self.sessions[local].group = (index: self.groups.count, position: position)
                self.sessions[local].room = fanout.room
            }
            self.groups.append(fanout)
        }
        for (local, session) in self.sessions.enumerated() {
            session.startOffsetNanos = UInt64(max(0, startOffsets[session.index]) * 1e9)
            if session.page.hasBehaviour { self.pageSessions.append(local) }
        }
        self.pendingStarts = Array(self.sessions.indices).sorted {
            (self.sessions[$0].startOffsetNanos, self.sessions[$0].index) < (self.sessions[$1].startOffsetNanos, self.sessions[$1].index)
        }
        let bound = NIOLoopBound(self, eventLoop: self.eventLoop)
        self.tick = self.eventLoop.scheduleRepeatedTask(initialDelay: .milliseconds(1), delay: .milliseconds(1)) { _ in
            bound.value.onTick()
        }
        self.timeoutTick = self.eventLoop.scheduleRepeatedTask(initialDelay: .milliseconds(250), delay: .milliseconds(250)) { _ in
            bound.value.onTimeoutTick()
        }
        if !self.groups.isEmpty {
            self.groupTick = self.eventLoop.scheduleRepeatedTask(initialDelay: .milliseconds(20), delay: .milliseconds(20)) { _ in
                bound.value.onGroupTick()
            }
        }
        if !self.pageSessions.isEmpty {
            self.pageTick = self.eventLoop.scheduleRepeatedTask(initialDelay: .milliseconds(20), delay: .milliseconds(20)) { _ in
                bound.value.onPageTick()
            }
        }
    }

    /// Starts each session at its arrival time, counted from now.
    func startArrivals() {
        self.arrivalsStarted = true
        self.arrivalsStartNanos = NIODeadline.now().uptimeNanoseconds
    }

    /// Sends `rate` messages per second in all, all chat populations together, each its share (0 stops).
    func setMessageRate(_ rate: Double) {
        let now = NIODeadline.now().uptimeNanoseconds
        for index in self.chatGroups.indices {
            self.chatGroups[index].rate = rate * self.chatGroups[index].share
            self.chatGroups[index].startNanos = now
            self.chatGroups[index].sentThisPhase = 0
        }
    }

    /// Pages reload and close while this is on; turning it off drops what is only scheduled.
    func setBehavioursActive(_ active: Bool) {
        self.behavioursActive = active
        if active {
            let now = NIODeadline.now().uptimeNanoseconds
            for index in self.pageSessions { self.sessions[index].page.behavioursBegan(now: now) }
        } else {
            for index in self.pageSessions { self.sessions[index].page.stop() }
        }
    }

    /// Page events (reloads, suspensions, flaps, storms) and tab-close checks still under way.
    var pagesBusy: Int { self.pageSessions.count { !self.sessions[$0].isFinished && self.sessions[$0].page.isBusy } }

    var messagingPairCount: Int { self.chatGroups.reduce(0) { $0 + $1.pairs.count } }
    var allStarted: Bool { self.startCursor >= self.pendingStarts.count }
    var settled: Bool { self.allStarted && self.stats.established + self.stats.failed >= self.sessions.count }

    func stop() {
        self.tick?.cancel()
        self.timeoutTick?.cancel()
        self.pageTick?.cancel()
        self.groupTick?.cancel()
        self.groupTick = nil
        self.tick = nil
        self.timeoutTick = nil
        self.pageTick = nil
    }

    func logoutAll() {
        self.setMessageRate(0)
        self.arrivalsStarted = false
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
        self.sessionUp(session)
        self.stats.login.record(nanoseconds: loginNanos)
        self.stats.populations[session.population, default: PopulationTally()].established += 1
        self.stats.populations[session.population, default: PopulationTally()].login.record(nanoseconds: loginNanos)
        self.stats.lastEstablishedNanos = NIODeadline.now().uptimeNanoseconds
    }

    /// Counts the session as logged in (once), for the progress line and the loaded RSS.
    func sessionUp(_ session: LoadSession) {
        guard !session.isCountedUp else { return }
        session.isCountedUp = true
        self.sessionsUp += 1
    }

    /// The session is no longer logged in (finished, or dropped by a storm).
    func sessionDown(_ session: LoadSession) {
        guard session.isCountedUp else { return }
        session.isCountedUp = false
        self.sessionsUp -= 1
    }

    func sessionFailed(_ session: LoadSession, _ failure: ClientFailure) {
        if !session.machine.isEstablished && session.jid == nil {
            self.stats.failed += 1
            self.stats.populations[session.population, default: PopulationTally()].failed += 1
            self.stats.recordLoginFailure(failure, population: session.population)
        } else if session.spec.behaviours.contains(where: { $0.kind == .idle }) {
            self.stats.recordBehaviourFailure(failure, BehaviourKey(population: session.population, kind: .idle))
        } else {
            self.stats.recordError(failure)
        }
    }

    func sessionFinished(_ session: LoadSession, cleanly: Bool) {
        self.sessionDown(session)
        if cleanly { self.stats.closedCleanly += 1 }
    }

    func behaviourAttempted(_ kind: Behaviour.Kind, by session: LoadSession) {
        self.stats.behaviours[BehaviourKey(population: session.population, kind: kind), default: BehaviourTally()].attempts += 1
    }

    func behaviourOutcome(_ outcome: PageLifecycleStateMachine.Outcome, by session: LoadSession) {
        switch outcome {
        case .succeeded(let kind, let nanoseconds):
            let key = BehaviourKey(population: session.population, kind: kind)
            self.stats.behaviours[key, default: BehaviourTally()].successes += 1
            if let nanoseconds {
                self.stats.behaviours[key, default: BehaviourTally()].latency.record(nanoseconds: nanoseconds)
                self.stats.behaviourInterval[key, default: LatencyHistogram()].record(nanoseconds: nanoseconds)
            }
        case .failed(let kind, let failure):
            self.stats.recordBehaviourFailure(failure, BehaviourKey(population: session.population, kind: kind))
        }
    }

    /// A BOSH flap's request, sent again after the cut, got the very answer the server had
    /// given on the cut connection (XEP-0124 §14.3).
    func flapAnswerReplayed(by session: LoadSession) {
        self.stats.behaviours[BehaviourKey(population: session.population, kind: .flap), default: BehaviourTally()].replayed += 1
    }

    // MARK: rosters and rooms

    /// A room name from a population name: letters, digits and dashes only.
    static func roomName(_ name: String) -> String {
        String(name.lowercased().map { $0.isLetter || $0.isNumber ? $0 : "-" })
    }

    /// An occupant's own presence came back from its room (XEP-0045 §7.2.2, status 110).
    func mucJoined(_ session: LoadSession) {
        guard let group = session.group else { return }
        self.groups[group.index].joined += 1
    }

    /// Stanzas to several receivers still to arrive.
    var inFlight: UInt64 { self.stats.ledger.inFlight + self.stats.fanout.missing }

    /// A presence change or room message with a probe arrived at `session`.
    func fanoutReceived(_ bytes: ByteBuffer, kind: Behaviour.Kind, by session: LoadSession) {
        guard let probe = StanzaScanner.probe(in: bytes) else { return }
        self.stats.recordFanoutDelivery(
            sequence: probe.sequence, sentAtNanos: probe.timestamp, nowNanos: NIODeadline.now().uptimeNanoseconds,
            BehaviourKey(population: session.population, kind: kind)
        )
    }

    /// While the behaviour phase is on: each room whose occupants have all joined gets its
    /// messages; each user of a roster group whose members are all logged in changes its
    /// presence when due.
    private func onGroupTick() {
        let now = NIODeadline.now().uptimeNanoseconds
        for index in self.groups.indices {
            guard self.behavioursActive else {
                self.groups[index].startNanos = nil
                continue
            }
            if !self.groups[index].ready {
                // Checked until every member is in once; a member that fails later simply stops sending.
                guard self.groups[index].members.allSatisfy({ self.sessions[$0].isEstablished }) else { continue }
                self.groups[index].ready = true
            }
            let group = self.groups[index]
            let size = group.members.count
            switch group.kind {
            case .muc:
                guard let room = group.room, group.joined >= size, group.rate > 0 else { continue }
                let start = group.startNanos ?? now
                self.groups[index].startNanos = start
                let target = UInt64(Double(now - start) / 1e9 * group.rate)
                // A late loop does not catch up in one burst (as for chat): at most 50 ms worth.
                let owed = target > group.sentSoFar ? target - group.sentSoFar : 0
                let due = min(owed, UInt64(max(group.rate * 0.05, 5)) + 1)
                if owed > due { self.stats.behindSchedule += owed - due }
                self.groups[index].sentSoFar = target
                for _ in 0..<due {
                    let sender = self.sessions[group.members[self.groups[index].cursor % size]]
                    self.groups[index].cursor += 1
                    guard sender.canSend else { continue }
                    let key = BehaviourKey(population: group.population, kind: .muc)
                    let sequence = self.stats.recordFanoutSend(receivers: size, key)
                    sender.sendStanza(self.groupMessage(to: room, sequence: sequence, nowNanos: now, padding: group.padding))
                }
            case .presence:
                // Nothing due in this group before its earliest member's change.
                guard now >= group.nextDueNanos, let presence = self.scenario.populations[group.population].presence else { continue }
                var earliest = UInt64.max
                for member in group.members {
                    let sender = self.sessions[member]
                    guard sender.canSend else { continue }
                    guard let due = sender.presenceDueNanos else {
                        let first = now + PageLifecycleStateMachine.nanos(sender.random.jittered(presence.every, by: presence.jitter))
                        sender.presenceDueNanos = first
                        earliest = min(earliest, first)
                        continue
                    }
                    guard now >= due else {
                        earliest = min(earliest, due)
                        continue
                    }
                    let next = now + PageLifecycleStateMachine.nanos(sender.random.jittered(presence.every, by: presence.jitter))
                    sender.presenceDueNanos = next
                    earliest = min(earliest, next)
                    let key = BehaviourKey(population: group.population, kind: .presence)
                    let sequence = self.stats.recordFanoutSend(receivers: size - 1, key)
                    sender.presenceChanges += 1
                    let show = sender.presenceChanges % 2 == 0 ? "chat" : "away"
                    sender.sendStanza(
                        ByteBuffer(string: "<presence xmlns='jabber:client'><show>\(show)</show><status>tl:\(sequence):\(now)</status></presence>"))
                }
                self.groups[index].nextDueNanos = earliest == .max ? now : earliest
            default:
                break
            }
        }
    }

    func recordPhase(_ phase: XMPPLoginStateMachine.Phase, nanoseconds: UInt64) {
        self.stats.recordPhase(phase, nanoseconds: nanoseconds)
    }

    func recordRetransmission() {
        self.stats.retransmissions += 1
    }

    func recordError(_ failure: ClientFailure) {
        self.stats.recordError(failure)
    }

    func messageReceived(_ bytes: ByteBuffer, by session: LoadSession) {
        guard let probe = StanzaScanner.probe(in: bytes) else {
            // Not ours (a server notice, an error bounce…): counted, so a bounce is never silent.
            if StanzaScanner.attribute("type", in: bytes) == "error" {
                self.stats.recordError(ClientFailure(.protocolViolation, "message-error"))
            }
            return
        }
        if StanzaScanner.attribute("type", in: bytes) == "error" {
            self.stats.recordError(ClientFailure(.protocolViolation, "message-error-bounce"))
            return
        }
        self.stats.recordDelivery(
            sequence: probe.sequence, sentAtNanos: probe.timestamp, nowNanos: NIODeadline.now().uptimeNanoseconds, population: session.population
        )
    }

    // MARK: schedule

    private func onTick() {
        let now = NIODeadline.now().uptimeNanoseconds
        if self.arrivalsStarted, self.startCursor < self.pendingStarts.count {
            let elapsed = now - self.arrivalsStartNanos
            while self.startCursor < self.pendingStarts.count {
                let session = self.sessions[self.pendingStarts[self.startCursor]]
                guard session.startOffsetNanos <= elapsed else { break }
                self.startCursor += 1
                self.stats.started += 1
                self.stats.populations[session.population, default: PopulationTally()].started += 1
                if self.stats.firstStartNanos == nil { self.stats.firstStartNanos = now }
                session.start()
            }
        }
        for index in self.chatGroups.indices where self.chatGroups[index].rate > 0 && !self.chatGroups[index].pairs.isEmpty {
            let group = self.chatGroups[index]
            let target = UInt64(Double(now - group.startNanos) / 1e9 * group.rate)
            guard target > group.sentThisPhase else { continue }
            // A stalled loop does not catch up in one burst: at most 50 ms worth (or 20) at once.
            let owed = target - group.sentThisPhase
            let due = min(owed, UInt64(max(group.rate * 0.05, 20)) + 1)
            if owed > due {
                // Counted, never hidden: the client could not keep its own schedule.
                self.stats.behindSchedule += owed - due
                self.stats.stepBehindSchedule += owed - due
            }
            self.chatGroups[index].sentThisPhase = target
            self.sendMessages(Int(due), group: index, nowNanos: now)
        }
    }

    private func sendMessages(_ count: Int, group: Int, nowNanos: UInt64) {
        let pairs = self.chatGroups[group].pairs
        let directed = pairs.count * 2
        var cursor = self.chatGroups[group].cursor
        var sent = 0
        var skipped = 0
        while sent < count, skipped < directed {
            let pair = pairs[cursor / 2]
            let (from, to) = cursor % 2 == 0 ? (pair.0, pair.1) : (pair.1, pair.0)
            cursor = (cursor + 1) % directed
            let sender = self.sessions[from]
            let receiver = self.sessions[to]
            // A reloading receiver still gets its messages (later); a reloading sender sends nothing.
            guard sender.canSend, receiver.canReceive, let peer = receiver.jid else {
                skipped += 1
                continue
            }
            skipped = 0
            let sequence = self.stats.recordSend(population: sender.population)
            if let away = receiver.page.awayFor {
                self.stats.recordSentWhileAway(sequence, BehaviourKey(population: receiver.population, kind: away))
            }
            sender.sendStanza(self.message(to: peer, sequence: sequence, nowNanos: nowNanos, padding: self.chatGroups[group].padding))
            sent += 1
        }
        self.chatGroups[group].cursor = cursor
    }

    /// `<message to='…' type='chat' id='mSEQ'><body>tl:SEQ:NANOS …</body></message>`.
    func message(to peer: String, sequence: UInt64, nowNanos: UInt64, padding: String) -> ByteBuffer {
        Self.probeMessage(opening: "<message xmlns='jabber:client' type='chat' to='", to: peer, id: "' id='m", sequence, nowNanos, padding)
    }

    /// `<message to='ROOM' type='groupchat' id='gSEQ'><body>tl:SEQ:NANOS …</body></message>`.
    func groupMessage(to room: String, sequence: UInt64, nowNanos: UInt64, padding: String) -> ByteBuffer {
        Self.probeMessage(opening: "<message xmlns='jabber:client' type='groupchat' to='", to: room, id: "' id='g", sequence, nowNanos, padding)
    }

    /// A message whose body carries the probe (sequence and send time) the receiver measures.
    private static func probeMessage(
        opening: StaticString, to address: String, id: StaticString, _ sequence: UInt64, _ nowNanos: UInt64, _ padding: String
    ) -> ByteBuffer {
        var buffer = ByteBufferAllocator().buffer(capacity: 128 + address.utf8.count + padding.utf8.count)
        buffer.writeStaticString(opening)
        buffer.writeString(address)
        buffer.writeStaticString(id)
        buffer.writeString(String(sequence))
        buffer.writeStaticString("'><body>tl:")
        buffer.writeString(String(sequence))
        buffer.writeStaticString(":")
        buffer.writeString(String(nowNanos))
        if !padding.isEmpty {
            buffer.writeStaticString(" ")
            buffer.writeString(padding)
        }
        buffer.writeStaticString("</body></message>")
        return buffer
    }

    private func onPageTick() {
        let now = NIODeadline.now().uptimeNanoseconds
        for index in self.pageSessions {
            self.sessions[index].pageTick(nowNanos: now, active: self.behavioursActive)
        }
    }

    private func onTimeoutTick() {
        let now = NIODeadline.now().uptimeNanoseconds
        let loginLimit = UInt64(self.scenario.loginTimeout * 1e9)
        for session in self.sessions where !session.isFinished && self.hasStarted(session) {
            if !session.machine.isEstablished, session.machine.phase != .closing, now - session.loginStartedAtNanos > loginLimit {
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
            populations: self.finalPopulations(),
            behaviours: self.finalBehaviours(),
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

    private func finalPopulations() -> [Int: PopulationTally] {
        self.stats.populations
    }

    /// The tallies, with what only the end can tell: chat messages never delivered, and idle
    /// sessions that lasted (logged in and never failed).
    private func finalBehaviours() -> [BehaviourKey: BehaviourTally] {
        var behaviours = self.stats.behaviours
        for (key, tally) in behaviours where [.chat, .muc, .presence].contains(key.kind) {
            behaviours[key]?.failures = tally.failures + (tally.attempts > tally.successes ? tally.attempts - tally.successes : 0)
        }
        // Occupants that logged in but never got into their room: their room sent nothing, so
        // no delivery was missed, but the behaviour failed for them.
        for session in self.sessions where session.room != nil && session.jid != nil && !session.inRoom {
            let key = BehaviourKey(population: session.population, kind: .muc)
            behaviours[key, default: BehaviourTally()].failed(ClientFailure(.protocolViolation, session.joinGaveUp ? "muc-join-refused" : "muc-not-joined"))
        }
        for session in self.sessions where session.jid != nil && session.spec.behaviours.contains(where: { $0.kind == .idle }) {
            let key = BehaviourKey(population: session.population, kind: .idle)
            behaviours[key, default: BehaviourTally()].attempts += 1
            if !session.failedAfterLogin { behaviours[key, default: BehaviourTally()].successes += 1 }
        }
        return behaviours
    }
}
