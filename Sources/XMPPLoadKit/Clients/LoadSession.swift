import NIOCore
import XMPPCore

/// One simulated client: the login machine, its phase timings and the link to its worker.
/// Subclasses supply the transport (`TCPLoadSession`, `WebSocketLoadSession`, `BOSHLoadSession`).
///
/// Lives on its worker's event loop and is only ever touched there.
class LoadSession {
    /// Index of the session within the run (user number − first user).
    let index: Int
    unowned let worker: LoadWorker
    var machine: XMPPLoginStateMachine
    private(set) var startedAtNanos: UInt64 = 0
    private var phaseStartedAtNanos: UInt64 = 0
    private var timedPhase: XMPPLoginStateMachine.Phase = .connecting
    /// Set once the session has failed or closed: it takes no more part in the run.
    private(set) var isFinished = false
    /// Closed by `endOfRun`: later transport events are the run's own doing.
    private var endedByRun = false

    init(index: Int, worker: LoadWorker) {
        self.index = index
        self.worker = worker
        let scenario = worker.scenario
        self.machine = XMPPLoginStateMachine(
            username: scenario.username(index),
            password: scenario.password(index),
            domain: scenario.domain,
            resource: scenario.resource,
            mechanism: scenario.saslMechanism
        )
    }

    var eventLoop: any EventLoop { self.worker.eventLoop }
    var jid: String? { self.machine.jid }
    var isEstablished: Bool { self.machine.isEstablished && !self.isFinished }

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

    // MARK: driving

    func start() {
        self.startedAtNanos = NIODeadline.now().uptimeNanoseconds
        self.phaseStartedAtNanos = self.startedAtNanos
        self.connect()
    }

    func transportConnected() {
        self.run(self.machine.connected())
    }

    /// An element from the server. Messages of an established session are probes: counted, not parsed.
    func received(_ element: XMLElementSlice) {
        if self.machine.isEstablished, element.name.localName == "message" {
            self.worker.messageReceived(element.bytes)
            return
        }
        self.run(self.machine.received(element))
    }

    func streamClosed() {
        guard !self.endedByRun else { return }
        self.run(self.machine.streamClosed())
    }

    func transportFailed(_ failure: LoadFailure) {
        guard !self.endedByRun else { return }
        self.run(self.machine.transportFailed(failure))
    }

    func logout() {
        guard !self.isFinished else { return }
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
        self.transportFailed(LoadFailure(.timeout, "login-\(self.machine.phase.rawValue)"))
    }

    func run(_ action: XMPPLoginStateMachine.Action) {
        self.notePhaseChange()
        switch action {
        case .openStream:
            self.openStream()
        case .send(let text):
            self.send(ByteBuffer(string: text))
        case .restartStream:
            self.restartStream()
        case .established(_, let presence):
            self.send(ByteBuffer(string: presence))
            self.worker.sessionEstablished(self, loginNanos: NIODeadline.now().uptimeNanoseconds - self.startedAtNanos)
        case .fail(let failure):
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

    /// Charges the time since the last change to the phase just left.
    private func notePhaseChange() {
        let phase = self.machine.phase
        guard phase != self.timedPhase else { return }
        let now = NIODeadline.now().uptimeNanoseconds
        switch self.timedPhase {
        case .connecting, .awaitingFeatures, .authenticating, .awaitingBoundFeatures, .binding:
            if phase != .failed {
                self.worker.recordPhase(self.timedPhase, nanoseconds: now - self.phaseStartedAtNanos)
            }
        default:
            break
        }
        self.timedPhase = phase
        self.phaseStartedAtNanos = now
    }
}
