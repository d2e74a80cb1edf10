import BOSHCore
import Logging
import NIOCore
import XMPPCore
import XMPPUpstream

/// One BOSH session: its state machine, its upstream stream and the HTTP requests it holds.
///
/// Confined to `eventLoop`, which is also the upstream connection's loop, so nothing inside needs
/// a lock; HTTP requests hop here once each (hence the unchecked Sendable).
final class BOSHSession: UpstreamStreamDelegate, RegisteredSession, @unchecked Sendable {
    let sid: String
    let eventLoop: any EventLoop
    let stateCell = SessionStateCell()
    private var logger: Logger
    private var machine: BOSHSessionStateMachine
    private var upstream: UpstreamConnection?
    private var pendingUpstream: [ByteBuffer] = []
    /// The requests held, each with the end of its `wait` once the machine started it.
    private var responders: [BOSHRequestID: (responder: BOSHResponder, waitEnds: NIODeadline?)] = [:]
    private var nextRequestID: BOSHRequestID = 1
    /// One timer for the earliest `wait` of the held requests: each request moves a deadline
    /// rather than scheduling and cancelling a timer of its own.
    private lazy var waitTimer = DeadlineTimer(on: self.eventLoop) { [weak self] in self?.waitsEnded() }
    /// Started after each answer that leaves nothing held (§10), so moved more than it fires.
    private lazy var inactivityTimer = DeadlineTimer(on: self.eventLoop) { [weak self] in
        guard let self else { return }
        self.run(self.machine.inactivityTimerFired(generation: self.inactivityGeneration))
    }
    private var inactivityGeneration: UInt64 = 0
    /// `run` is performing actions; those produced meanwhile wait in `deferredActions`.
    private var running = false
    private var deferredActions: [BOSHSessionStateMachine.Action] = []
    private let onEnd: @Sendable (String) -> Void
    private let metrics: TetherMetrics

    init(
        sid: String,
        creation: BOSHRequest,
        domain: String,
        limits: BOSHLimits,
        isSecure: Bool,
        eventLoop: any EventLoop,
        logger: Logger,
        metrics: TetherMetrics,
        onEnd: @escaping @Sendable (String) -> Void
    ) {
        self.metrics = metrics
        self.sid = sid
        self.eventLoop = eventLoop
        self.logger = logger
        self.logger[metadataKey: "sid"] = "\(sid)"
        self.machine = BOSHSessionStateMachine(
            sid: sid,
            creation: creation,
            id: 0,
            domain: domain,
            limits: limits,
            isSecure: isSecure,
            now: .now()
        )
        self.onEnd = onEnd
    }

    /// Holds the creation request and opens the upstream stream.
    func start(creation: BOSHRequest, responder: BOSHResponder, upstream links: UpstreamLinks, connector: UpstreamConnector, header: StreamHeader, client: ProxyProtocolHeader?) {
        self.eventLoop.preconditionInEventLoop()
        self.hold(responder, id: 0)
        self.run(self.machine.creationActions())
        self.logger.info("session created", metadata: ["to": "\(header.to)", "wait": "\(self.machine.parameters.wait)", "hold": "\(self.machine.parameters.hold)"])
        links.open(connector, header: header, client: client, on: self.eventLoop, delegate: self, logger: self.logger).assumeIsolated().whenComplete { result in
            switch result {
            case .success(let connection):
                guard self.machine.isActive else {
                    // The session ended (or is only waiting to tell its client why) while this
                    // connection was being made: nobody will use it.
                    connection.close(graceful: true, bounced: self.metrics.reportingInFlightBounces(.bosh, logger: self.logger))
                    return
                }
                self.upstream = connection
                if !self.pendingUpstream.isEmpty {
                    connection.send(self.pendingUpstream)
                    self.pendingUpstream = []
                }
            case .failure(let error):
                self.run(self.machine.upstreamEnded(UpstreamEnding(connectFailure: error)))
            }
        }
    }

    /// A later request for this session (already parsed by the edge).
    func receive(_ request: BOSHRequest, responder: BOSHResponder, isSecure: Bool) {
        self.eventLoop.preconditionInEventLoop()
        let id = self.nextRequestID
        self.nextRequestID += 1
        self.logger.trace("request", metadata: ["rid": "\(request.rid)", "request": "\(id)"])
        self.hold(responder, id: id)
        self.metrics.boshRequestReceived()
        let retransmissions = self.machine.retransmissions
        self.run(self.machine.receive(request, id: id, isSecure: isSecure, now: .now()))
        if self.machine.retransmissions > retransmissions {
            self.metrics.retransmissionReceived()
        }
    }

    private func hold(_ responder: BOSHResponder, id: BOSHRequestID) {
        self.responders[id] = (responder, nil)
        self.metrics.requestHeld()
        responder.connection.onAbandoned { [weak self] in
            guard let self else { return }
            self.eventLoop.execute { self.abandoned(id) }
        }
    }

    /// The client's HTTP connection closed before its answer: forget the request, keep its stanzas.
    private func abandoned(_ id: BOSHRequestID) {
        guard self.responders.removeValue(forKey: id) != nil else { return }
        self.metrics.requestAnswered()
        self.logger.debug("held request abandoned by the client")
        self.run(self.machine.requestAbandoned(id))
    }

    /// Ends the session for shutdown or draining.
    func shutdown(redirect: String?) {
        self.eventLoop.preconditionInEventLoop()
        self.run(self.machine.shutdown(redirect: redirect))
    }

    // MARK: UpstreamStreamDelegate

    func upstreamOpened(_ info: StreamInfo, secure: Bool) {
        self.stateCell.set(.open)
        self.machine.upstreamOpened(info, secure: secure)
    }

    func upstreamReceived(_ elements: [ByteBuffer], streamElements: Bool, streamManagement: Bool) {
        self.metrics.relayed(.toClient, count: elements.count, bytes: elements.reduce(0) { $0 + $1.readableBytes })
        self.run(self.machine.upstreamReceived(elements, streamElements: streamElements, streamManagement: streamManagement, now: .now()))
    }

    func upstreamStreamError(_ error: ByteBuffer) {
        self.logger.info("upstream stream error", metadata: ["error": "\(String(buffer: error))"])
        self.upstream = nil
        self.run(self.machine.upstreamStreamError(error))
    }

    func upstreamClosed(_ error: UpstreamError?) {
        if let error {
            self.logger.info("upstream closed", metadata: ["error": "\(error)"])
        }
        self.upstream = nil
        let ending = UpstreamEnding(error)
        if let limit = ending.limit {
            self.logger.notice("limit reached", metadata: ["limit": "\(limit)"])
            self.metrics.limitHit(limit)
        }
        self.run(self.machine.upstreamEnded(ending))
    }

    /// The earliest `wait` has passed: those held requests that reached theirs are answered
    /// (§8, empty), in the order they came; the timer moves on to the next.
    private func waitsEnded() {
        let now = self.eventLoop.now
        let ended = self.responders.filter { $0.value.waitEnds.map { $0 <= now } ?? false }.keys.sorted()
        for id in ended {
            guard self.responders[id] != nil else { continue }
            self.responders[id]?.waitEnds = nil
            self.run(self.machine.waitTimerFired(id, now: .now()))
        }
        if let next = self.responders.values.compactMap(\.waitEnds).min() {
            self.waitTimer.arm(at: next)
        }
    }

    // MARK: Actions

    /// Performs the machine's actions in the order it produced them. An answer written inline can
    /// deliver the client's next pipelined request, or a write can fail at once, before the rest
    /// are performed: what the machine said then waits for them (regression: performed nested,
    /// an older inactivity generation overwrote the newer one, and the session never timed out).
    private func run(_ actions: [BOSHSessionStateMachine.Action]) {
        guard !self.running else {
            self.deferredActions += actions
            return
        }
        self.running = true
        var actions = actions
        while true {
            self.perform(actions)
            guard !self.deferredActions.isEmpty else { break }
            actions = self.deferredActions
            self.deferredActions = []
        }
        self.running = false
        if !self.machine.isActive { self.stateCell.set(.closing) }
    }

    private func perform(_ actions: [BOSHSessionStateMachine.Action]) {
        for action in actions {
            switch action {
            case .respond(let id, let response):
                guard let entry = self.responders.removeValue(forKey: id) else { continue }
                self.metrics.requestAnswered()
                self.logger.trace("answer", metadata: ["request": "\(id)", "bytes": "\(response.body.readableBytes)"])
                entry.responder.write(response) { [weak self] delivered in
                    guard !delivered, let self else { return }
                    self.eventLoop.execute {
                        self.logger.debug("answer not delivered: its stanzas wait for the next request")
                        self.run(self.machine.responseUndelivered(id, now: .now()))
                    }
                }
            case .closeConnection(let id):
                guard let entry = self.responders.removeValue(forKey: id) else { continue }
                self.metrics.requestAnswered()
                entry.responder.close()
            case .forwardUpstream(let payloads):
                self.metrics.relayed(.toServer, count: payloads.count, bytes: payloads.reduce(0) { $0 + $1.readableBytes })
                if let upstream = self.upstream {
                    upstream.send(payloads)
                } else {
                    self.pendingUpstream += payloads
                }
            case .stanzasBounced(let count, let reason):
                // Counts only: what the stanzas said stays out of the log.
                self.logger.notice("undelivered stanzas bounced", metadata: ["count": "\(count)", "reason": "\(reason)"])
                self.metrics.bounced(.bosh, count: count, reason: reason)
            case .restartUpstream:
                self.upstream?.restart()
            case .startWaitTimer(let id, let seconds):
                guard self.responders[id] != nil else { continue }
                let end = self.eventLoop.now + .seconds(Int64(seconds))
                self.responders[id]?.waitEnds = end
                if let armed = self.waitTimer.armedUntil, armed <= end { continue }
                self.waitTimer.arm(at: end)
            case .startInactivityTimer(let generation, let seconds):
                // A newer generation replaces the older, as the machine expects of a restart.
                self.inactivityGeneration = generation
                self.inactivityTimer.arm(in: .seconds(Int64(seconds)))
            case .closeUpstream(let graceful):
                self.upstream?.close(graceful: graceful, bounced: self.metrics.reportingInFlightBounces(.bosh, logger: self.logger))
                self.upstream = nil
            case .endSession(let condition):
                // The machine ends a session once (its phase becomes `.ended` once).
                self.inactivityTimer.cancel()
                self.waitTimer.cancel()
                self.upstream?.close(graceful: true, bounced: self.metrics.reportingInFlightBounces(.bosh, logger: self.logger))
                self.upstream = nil
                // The machine answered every request it held; any left here it never took up
                // (one waiting out of order for a gap that never filled). Its connection is
                // closed rather than left waiting for an answer that will not come: the client
                // sees a dropped request and learns the session is gone from its next one.
                for (_, entry) in self.responders {
                    self.metrics.requestAnswered()
                    entry.responder.close()
                }
                self.responders.removeAll()
                self.metrics.terminated(.bosh, condition: condition?.rawValue ?? "normal")
                var metadata: Logger.Metadata = ["condition": "\(condition?.rawValue ?? "normal")"]
                if let detail = self.machine.endingDetail { metadata["detail"] = "\(detail)" }
                self.logger.info("session ended", metadata: metadata)
                self.onEnd(self.sid)
            }
        }
    }
}
