import NIOCore
import XMPPClientCore
import XMPPCore

/// One simulated client: the login machine, its phase timings, its page (reloads, suspensions,
/// flaps, storms, tab close) and the link to its worker. Subclasses supply the transport (`TCPLoadSession`,
/// `WebSocketLoadSession`, `BOSHLoadSession`).
///
/// Lives on its worker's event loop and is only ever touched there.
class LoadSession {
    /// Index of the session within the run (user number − first user).
    let index: Int
    /// Index of its population in the scenario.
    let population: Int
    let spec: Population
    unowned let worker: LoadWorker
    var machine: XMPPLoginStateMachine
    var page: PageLifecycleStateMachine
    var streamManagement = StreamManagement()
    /// When to start, nanoseconds after the worker's arrivals began.
    var startOffsetNanos: UInt64 = 0
    private(set) var startedAtNanos: UInt64 = 0
    /// When the login under way began: the first one, or a resumption's (reload, tab-close check).
    private(set) var loginStartedAtNanos: UInt64 = 0
    private var phaseStartedAtNanos: UInt64 = 0
    private var timedPhase: XMPPLoginStateMachine.Phase = .connecting
    /// Set once the session has failed or closed: it takes no more part in the run.
    private(set) var isFinished = false
    /// Failed after it had logged in (an idle session that did not last).
    private(set) var failedAfterLogin = false
    /// Closed by `endOfRun`: later transport events are the run's own doing.
    private var endedByRun = false
    private var pings = 0
    /// Counted in the worker's sessions up.
    var isCountedUp = false
    /// Logins so far: a storm's new login binds a resource of its own.
    private var logins = 1
    /// The roster group or room this session belongs to (index on its worker, place within it).
    var group: (index: Int, position: Int)?
    /// Muc: the room's bare JID; whether this occupant is in; join attempts so far.
    var room: String?
    private(set) var inRoom = false
    private var joinAttempts = 0
    /// The room refused entry every time: counted at the end with those never let in.
    private(set) var joinGaveUp = false
    /// Presence: when this user next changes its presence, and how many times it has.
    var presenceDueNanos: UInt64?
    var presenceChanges = 0
    /// This session's own generator (presence schedules), seeded by its index.
    var random: SeededGenerator
    /// The id of the ping that proves the session after the page was away (a BOSH re-attach, a wake-up).
    private var proofPingID: String?
    /// The id of the ping that shows the server took everything sent before it (a reload's quiet-down).
    private(set) var quietPingID: String?

    init(index: Int, population: Int, worker: LoadWorker) {
        self.index = index
        self.population = population
        let scenario = worker.scenario
        self.spec = scenario.populations[population]
        self.worker = worker
        self.machine = XMPPLoginStateMachine(
            username: scenario.username(index),
            password: scenario.password(index),
            domain: scenario.domain,
            resource: scenario.resource,
            mechanisms: [self.spec.saslMechanism]
        )
        self.page = PageLifecycleStateMachine(behaviours: self.spec.behaviours, seed: UInt64(index) &* 0x9E37_79B9 &+ 7)
        self.random = SeededGenerator(seed: UInt64(index) &* 0x2545_F491 &+ 3)
    }

    var eventLoop: any EventLoop { self.worker.eventLoop }
    var endpoint: Endpoint { self.spec.endpoint }
    var jid: String? { self.machine.jid }
    var isEstablished: Bool { self.machine.isEstablished && !self.isFinished }
    /// May send: logged in and the page is there (not reloading, not closed).
    var canSend: Bool { self.isEstablished && self.page.isPresent }
    /// May be sent to: logged in once and not finished (a reloading page gets its messages later).
    var canReceive: Bool { self.machine.jid != nil && !self.isFinished }
    /// The page keeps XEP-0198 for resumption (WebSocket pages with page behaviours).
    var usesStreamManagement: Bool { false }

    // MARK: transport hooks (overridden)

    /// Opens the connection(s); calls `transportConnected()` when the stream can be opened.
    func connect() { fatalError("subclass") }
    /// Opens the stream (first time).
    func openStream() { fatalError("subclass") }
    /// Opens a new stream after SASL success.
    func restartStream() { fatalError("subclass") }
    /// Sends one element.
    func send(_ element: ByteBuffer) { fatalError("subclass") }
    /// Closes the stream cleanly (after the unavailable presence).
    func closeStream() { fatalError("subclass") }
    /// Drops the connection(s) without ceremony.
    func abort() { fatalError("subclass") }
    /// Periodic check for lost requests; `now` in uptime nanoseconds.
    func checkTimeouts(nowNanos: UInt64) {}
    /// Nothing of the session's own in flight (a reload may begin).
    var isQuiet: Bool { true }
    /// Gets what the session sent taken by the server before the page goes (BOSH: a ping).
    func quietDown() {}
    /// The page goes away: every connection dropped, nothing said.
    func leavePage() {}
    /// The page is back: re-attach or resume.
    func reattach() {}
    /// Go to sleep: read nothing, send nothing (`announce`: BOSH `pause` first).
    func suspendPage(seconds: Double, announce: Bool) {}
    /// Wake up: read again, then prove the session (`sendProofPing`, or a resumption).
    func wakePage() {}
    /// Stop reading the connection that carries what is in flight; false when nothing is.
    func freezeInFlight() -> Bool { false }
    /// Cut the frozen connection and recover.
    func cutFrozen() {}
    /// Drop every connection and forget the session (a storm); `relogin` starts anew.
    func dropAll() { self.abort() }
    /// Resets the transport for a new login from the start.
    func resetForLogin() {}
    /// Seconds the server said it keeps an abandoned session (BOSH `inactivity`, XEP-0198 `max`).
    var advertisedTimeout: Double? { nil }
    /// Asks for the abandoned session again (after a tab close); the answer goes to `verified`.
    func verifyAbandoned() {}

    // MARK: driving

    func start() {
        self.startedAtNanos = NIODeadline.now().uptimeNanoseconds
        self.loginStartedAtNanos = self.startedAtNanos
        self.phaseStartedAtNanos = self.startedAtNanos
        self.connect()
    }

    func transportConnected() {
        self.run(self.machine.connected())
    }

    /// An element from the server. Messages of an established session are probes: counted, not parsed.
    func received(_ element: XMLElementSlice) {
        let name = element.name
        if self.streamManagement.isEnabled, name.namespace == XMLNamespaces.jabberClient,
            name.localName == "message" || name.localName == "presence" || name.localName == "iq"
        {
            self.streamManagement.received()
        }
        if name.namespace == StreamManagement.namespace, self.machine.phase != .resuming {
            self.streamManagementElement(element)
            return
        }
        if self.machine.isEstablished {
            if name.localName == "message" {
                if self.room != nil, StanzaScanner.attribute("type", in: element.bytes) == "groupchat" {
                    self.worker.fanoutReceived(element.bytes, kind: .muc, by: self)
                } else {
                    self.worker.messageReceived(element.bytes, by: self)
                }
                return
            }
            if name.localName == "presence", self.group != nil {
                self.groupPresence(element.bytes)
                return
            }
            if name.localName == "iq", let id = self.quietPingID, StanzaScanner.attribute("id", in: element.bytes) == id {
                self.quietPingID = nil
                return
            }
            if name.localName == "iq", let id = self.proofPingID, StanzaScanner.attribute("id", in: element.bytes) == id {
                self.proofPingID = nil
                if StanzaScanner.attribute("type", in: element.bytes) == "result" {
                    self.record(self.page.recovered(now: NIODeadline.now().uptimeNanoseconds))
                } else {
                    self.pageLost(ClientFailure(.protocolViolation, "proof-ping-error"))
                }
                return
            }
        }
        self.run(self.machine.received(element))
    }

    private func streamManagementElement(_ element: XMLElementSlice) {
        switch element.name.localName {
        case "enabled":
            let bytes = element.bytes
            let resume = ["true", "1"].contains(StanzaScanner.attribute("resume", in: bytes) ?? "")
            self.streamManagement.enabled(
                id: StanzaScanner.attribute("id", in: bytes), resume: resume, max: StanzaScanner.attribute("max", in: bytes).flatMap { Double($0) }
            )
            self.page.established(now: NIODeadline.now().uptimeNanoseconds)
        case "r":
            self.send(ByteBuffer(string: self.streamManagement.answer))
        case "a":
            if let h = StanzaScanner.attribute("h", in: element.bytes).flatMap({ UInt32($0) }), !self.streamManagement.acknowledged(h) {
                self.worker.recordError(ClientFailure(.protocolViolation, "handled-count-too-high"))
            }
        case "failed":
            // <enable/> refused: the page cannot resume; its reloads will fail.
            self.streamManagement.enableRefused()
            self.worker.recordError(ClientFailure(.resumeFailed, "enable-refused"))
            self.page.established(now: NIODeadline.now().uptimeNanoseconds)
        default:
            break
        }
    }

    // MARK: rosters and rooms

    /// XEP-0045 §7.2: enter the room, with no history (only this run's messages count).
    private func joinRoom() {
        guard let room = self.room, let nick = self.jid?.split(separator: "@").first else { return }
        self.joinAttempts += 1
        self.sendStanza(
            ByteBuffer(
                string: "<presence xmlns='jabber:client' to='\(XMLEscaping.escapeAttribute(room))/\(XMLEscaping.escapeAttribute(String(nick)))'>"
                    + "<x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x></presence>"))
    }

    /// A presence while in a roster group or a room: a contact's change (counted), or the room's
    /// answer to joining.
    private func groupPresence(_ bytes: ByteBuffer) {
        let from = StanzaScanner.attribute("from", in: bytes) ?? ""
        guard let room = self.room else {
            // A contact's presence change; the server's copy of one's own is not a contact's.
            if from != self.jid, StanzaScanner.attribute("type", in: bytes) == nil { self.worker.fanoutReceived(bytes, kind: .presence, by: self) }
            return
        }
        guard !self.inRoom, from.hasPrefix(room + "/") else { return }
        let text = String(buffer: bytes)
        if StanzaScanner.attribute("type", in: bytes) == "error" {
            // A room still locked by its creator (§10.1.2) refuses entry for a moment: try again.
            guard self.joinAttempts < 40 else {
                self.joinGaveUp = true
                return
            }
            let bound = NIOLoopBound(self, eventLoop: self.eventLoop)
            self.eventLoop.scheduleTask(in: .milliseconds(250)) { bound.value.joinRoom() }
            return
        }
        guard text.contains("code='110'") || text.contains("code=\"110\"") else { return }
        self.inRoom = true
        if text.contains("code='201'") || text.contains("code=\"201\"") {
            // A new room: accept the default configuration (an instant room, §10.1.2).
            self.sendStanza(
                ByteBuffer(
                    string: "<iq xmlns='jabber:client' type='set' id='tl-room' to='\(XMLEscaping.escapeAttribute(room))'>"
                        + "<query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>"))
        }
        self.worker.mucJoined(self)
    }

    /// Sends a stanza of the established session (counted for XEP-0198 when it is on).
    func sendStanza(_ stanza: ByteBuffer) {
        let request = self.streamManagement.sending(stanza)
        self.send(stanza)
        if request { self.send(ByteBuffer(string: StreamManagement.request)) }
    }

    func streamClosed() {
        guard !self.endedByRun, self.acceptsTransportEvents else { return }
        self.run(self.machine.streamClosed())
    }

    func transportFailed(_ failure: ClientFailure) {
        guard !self.endedByRun, self.acceptsTransportEvents else { return }
        self.run(self.machine.transportFailed(failure))
    }

    /// A page that is away (reloading, asleep, dropped by a storm, or its tab closed) hears
    /// nothing from its old connections; what became of them is found out when it comes back.
    var acceptsTransportEvents: Bool {
        switch self.page.state {
        case .gone, .closed, .suspended, .stormed: false
        default: true
        }
    }

    func logout() {
        guard !self.isFinished else { return }
        guard self.page.isPresent else {
            // Away or closed: nobody is there to log out.
            self.endOfRun()
            return
        }
        let wasEstablished = self.machine.isEstablished
        self.run(self.machine.logout())
        if wasEstablished {
            self.closeStream()
        } else {
            self.finish(closedCleanly: false)
            self.abort()
        }
    }

    /// The run is over and this session was not to log out (`--no-logout`): it is closed, and
    /// the closing is not an error.
    func endOfRun() {
        guard !self.isFinished else { return }
        self.endedByRun = true
        self.finish(closedCleanly: false)
        self.abort()
    }

    /// Login took too long.
    func loginTimedOut() {
        guard !self.isFinished, !self.machine.isEstablished else { return }
        self.transportFailed(ClientFailure(.timeout, "login-\(self.machine.phase.rawValue)"))
    }

    // MARK: the page

    /// Time passes for the page (`active`: the behaviour phase of the run is on).
    func pageTick(nowNanos: UInt64, active: Bool) {
        guard !self.isFinished, let action = self.page.tick(now: nowNanos, active: active, quiet: self.isQuiet) else { return }
        switch action {
        case .quietDown:
            self.quietDown()
        case .leavePage:
            self.worker.behaviourAttempted(.reload, by: self)
            self.leavePage()
        case .reattach:
            self.beginReattach()
        case .suspend(let seconds, let announce):
            self.worker.behaviourAttempted(.suspend, by: self)
            self.suspendPage(seconds: seconds, announce: announce)
        case .wake:
            self.wakePage()
        case .freeze:
            if self.freezeInFlight() {
                self.worker.behaviourAttempted(.flap, by: self)
            } else {
                self.page.flapPostponed(now: nowNanos)
            }
        case .cut:
            self.cutFrozen()
        case .dropForStorm:
            self.worker.behaviourAttempted(.storm, by: self)
            self.worker.sessionDown(self)
            self.dropAll()
        case .relogin:
            self.relogin()
        case .closeTab:
            self.worker.behaviourAttempted(.tabClose, by: self)
            self.leavePage()
            let outcome = self.page.tabClosed(timeout: self.advertisedTimeout)
            self.record(outcome)
        case .verify:
            self.verifyAbandoned()
        }
    }

    /// Sends a ping to the server, unless one is already on its way; its answer comes after
    /// everything sent before it was taken.
    func sendQuietPing() {
        guard self.quietPingID == nil else { return }
        self.pings += 1
        let id = "tl-quiet-\(self.pings)"
        self.quietPingID = id
        self.sendStanza(ByteBuffer(string: "<iq xmlns='jabber:client' type='get' id='\(id)'><ping xmlns='urn:xmpp:ping'/></iq>"))
    }

    private func beginReattach() {
        if self.usesStreamManagement {
            guard self.beginResumption() else { return }
            self.reattach()
        } else {
            // BOSH: the first request of the new page carries a ping; its answer proves the session.
            self.reattach()
            self.sendProofPing()
        }
    }

    /// A ping whose answer proves the session works again (`PageLifecycleStateMachine.recovered`).
    func sendProofPing() {
        self.pings += 1
        let id = "tl-proof-\(self.pings)"
        self.proofPingID = id
        self.sendStanza(ByteBuffer(string: "<iq xmlns='jabber:client' type='get' id='\(id)'><ping xmlns='urn:xmpp:ping'/></iq>"))
    }

    /// Starts resuming the XEP-0198 session (the transport then connects); false, and the
    /// page lost, when the session is not resumable.
    func beginResumption() -> Bool {
        guard let resume = self.streamManagement.resume else {
            self.pageLost(ClientFailure(.resumeFailed, "not-resumable"))
            return false
        }
        self.beginResumption(resume)
        return true
    }

    /// After a storm: a new login from the start, with a resource of its own (the dropped
    /// session may still hold the old one until the server times it out).
    private func relogin() {
        self.logins += 1
        let scenario = self.worker.scenario
        self.machine = XMPPLoginStateMachine(
            username: scenario.username(self.index),
            password: scenario.password(self.index),
            domain: scenario.domain,
            resource: "\(scenario.resource)-\(self.logins)",
            mechanisms: [self.spec.saslMechanism]
        )
        self.streamManagement = StreamManagement()
        self.proofPingID = nil
        self.timedPhase = .connecting
        self.loginStartedAtNanos = NIODeadline.now().uptimeNanoseconds
        self.resetForLogin()
        self.connect()
    }

    /// A new login that resumes the XEP-0198 session; the login timeout counts from now.
    func beginResumption(_ resume: String) {
        self.machine.beginResumption(resume)
        self.timedPhase = .connecting
        self.loginStartedAtNanos = NIODeadline.now().uptimeNanoseconds
    }

    /// The check after a tab close has its answer.
    func verified(expired: Bool, condition: String) {
        let outcome = self.page.verified(expired: expired, condition: condition, now: NIODeadline.now().uptimeNanoseconds)
        self.record(outcome)
        self.endedByRun = true
        self.finish(closedCleanly: false)
        self.abort()
    }

    /// A page that did not get its session back: it is lost to the behaviour, not to the login.
    func pageLost(_ failure: ClientFailure) {
        self.record(self.page.recoveryFailed(failure))
        self.endedByRun = true
        self.finish(closedCleanly: false)
        self.abort()
    }

    func record(_ outcome: PageLifecycleStateMachine.Outcome?) {
        guard let outcome else { return }
        self.worker.behaviourOutcome(outcome, by: self)
        switch outcome {
        case .succeeded(.tabClose, _), .failed(.tabClose, _):
            if case .finished = self.page.state {
                self.endedByRun = true
                self.finish(closedCleanly: false)
            }
        default:
            break
        }
    }

    func run(_ action: XMPPLoginStateMachine.Action) {
        self.notePhaseChange()
        switch action {
        case .openStream:
            self.openStream()
        case .send(let text):
            if self.machine.isEstablished || self.machine.phase == .closing {
                self.sendStanza(ByteBuffer(string: text))
            } else {
                self.send(ByteBuffer(string: text))
            }
        case .restartStream:
            self.restartStream()
        case .established(_, let presence):
            if let presence { self.send(ByteBuffer(string: presence)) }
            if case .relogging = self.page.state {
                // Back after a storm: the storm's figure, not a first login's.
                self.worker.sessionUp(self)
                self.record(self.page.recovered(now: NIODeadline.now().uptimeNanoseconds))
            } else {
                self.worker.sessionEstablished(self, loginNanos: NIODeadline.now().uptimeNanoseconds - self.startedAtNanos)
                if self.room != nil { self.joinRoom() }
            }
            if self.usesStreamManagement {
                self.send(ByteBuffer(string: StreamManagement.enable))
                self.streamManagement.enableSent()
            } else {
                self.page.established(now: NIODeadline.now().uptimeNanoseconds)
            }
        case .resumed(let h):
            let resumption = self.streamManagement.resumed(h)
            if resumption.countTooHigh { self.worker.recordError(ClientFailure(.protocolViolation, "handled-count-too-high")) }
            for stanza in resumption.resend { self.send(stanza) }
            if case .verifying = self.page.state {
                self.verified(expired: false, condition: "still-resumable")
            } else {
                self.record(self.page.recovered(now: NIODeadline.now().uptimeNanoseconds))
            }
        case .fail(let failure):
            if self.page.isRecovering {
                self.pageLost(failure)
                return
            }
            switch self.page.state {
            case .verifying:
                self.verified(expired: failure.kind == .resumeFailed, condition: failure.key)
                return
            default:
                break
            }
            if self.machine.jid != nil { self.failedAfterLogin = true }
            self.worker.sessionFailed(self, failure)
            self.finish(closedCleanly: false)
            self.abort()
        case .closed:
            self.finish(closedCleanly: true)
            self.abort()
        case .none:
            break
        }
    }

    private func finish(closedCleanly: Bool) {
        guard !self.isFinished else { return }
        self.isFinished = true
        self.worker.sessionFinished(self, cleanly: closedCleanly)
    }

    /// Charges the time since the last change to the phase just left (first logins only: a
    /// resumption's login is the reload's time, not the login's).
    private func notePhaseChange() {
        let phase = self.machine.phase
        guard phase != self.timedPhase else { return }
        let now = NIODeadline.now().uptimeNanoseconds
        switch self.timedPhase {
        case .connecting, .awaitingFeatures, .authenticating, .awaitingBoundFeatures, .binding, .startingSession:
            if phase != .failed, self.page.isPresent {
                self.worker.recordPhase(self.timedPhase, nanoseconds: now - self.phaseStartedAtNanos)
            }
        default:
            break
        }
        self.timedPhase = phase
        self.phaseStartedAtNanos = now
    }
}
