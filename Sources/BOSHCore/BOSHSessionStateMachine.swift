import Crypto
import DequeModule
import NIOCore
import XMPPCore

/// Identifies one HTTP request while the machine holds it; chosen by the caller.
public typealias BOSHRequestID = UInt64

/// The rules of one BOSH session (XEP-0124 + XEP-0206), with no I/O.
///
/// Every input (a request, upstream data, a timer) is a `mutating func` returning the actions the
/// owner must perform, in order: answer a request, forward payloads upstream, start a timer, end
/// the session. Time enters as an argument, so every rule is testable with plain values.
public struct BOSHSessionStateMachine {
    public enum Action: Equatable, Sendable {
        /// Answer this HTTP request.
        case respond(BOSHRequestID, BOSHHTTPResponse)
        /// Close the HTTP connection that carried this request, without an answer (§19.1).
        case closeConnection(BOSHRequestID)
        /// Write these payloads to the upstream stream, in order.
        case forwardUpstream([ByteBuffer])
        /// Send a new stream header upstream on the same connection (XEP-0206 §5).
        case restartUpstream
        /// Answer the request when this many seconds pass (its `wait`); stale firings are ignored.
        case startWaitTimer(BOSHRequestID, seconds: Int)
        /// Call `inactivityTimerFired(generation:)` after this many seconds, replacing any earlier timer.
        case startInactivityTimer(generation: UInt64, seconds: Int)
        /// Close the upstream stream: with `</stream:stream>` when graceful.
        case closeUpstream(graceful: Bool)
        /// Forget the session: later requests for its sid get `item-not-found`.
        case endSession(TerminateCondition?)
        /// For metrics and the log: this many queued stanzas were answered with errors (in the
        /// `forwardUpstream` before it), because the session ended for `reason`.
        case stanzasBounced(count: Int, reason: String)
    }

    private enum Phase: Equatable {
        case active
        /// Ended; kept until the client has collected `body` or the inactivity timer fires.
        case terminated(body: BOSHHTTPResponse, condition: TerminateCondition?)
        case ended
    }

    private struct HeldRequest {
        var rid: UInt64
        var id: BOSHRequestID
        var keys: RequestKeys
    }

    /// The §15 keys a processed request carried. A retransmission of its rid must carry the same
    /// ones; otherwise anyone who learnt the sid could collect a cached response or take over a
    /// held request without the key sequence that protects the session.
    private struct RequestKeys {
        var key: String?
        var newKey: String?

        init(_ request: BOSHRequest) {
            self.key = request.key
            self.newKey = request.newKey
        }

        /// Whether `retransmission` carries the same `key` (and the same `newkey`, when there was
        /// one). A request without keys (a session that does not use them) accepts any, as before.
        func admit(_ retransmission: BOSHRequest) -> Bool {
            guard self.key != nil || self.newKey != nil else { return true }
            return Self.same(retransmission.key, self.key) && (self.newKey == nil || Self.same(retransmission.newKey, self.newKey))
        }

        /// Keys are hex digests: compared as `process` compares them, case-insensitively.
        private static func same(_ offered: String?, _ original: String?) -> Bool {
            guard let offered, let original else { return offered == nil && original == nil }
            return offered.lowercased() == original.lowercased()
        }
    }

    private struct PendingRequest {
        var request: BOSHRequest
        var id: BOSHRequestID
        var isSecure: Bool
    }

    private struct CachedResponse {
        var rid: UInt64
        var id: BOSHRequestID
        var keys: RequestKeys
        /// Kept whole; the payloads are read back from it only if it never reaches the client
        /// (keeping them as slices would pin the upstream read buffers they came from).
        var response: BOSHHTTPResponse
        var sentAt: NIODeadline
    }

    public let sid: String
    public let parameters: BOSHSessionParameters
    public let limits: BOSHLimits
    /// The XMPP domain the client asked for (`to`), echoed as `from` at creation.
    public let domain: String
    /// Whether the upstream connection is encrypted or local; advertised as `secure`.
    public private(set) var upstreamSecure = false

    private var phase: Phase = .active
    private let creationRID: UInt64
    private var creationAnswered = false
    private let sessionIsSecure: Bool
    /// The last rid processed in order.
    private var lastRID: UInt64
    private var highestAnsweredRID: UInt64 = 0
    private var clientAck: UInt64 = 0
    private var outOfOrder: [UInt64: PendingRequest] = [:]
    private var held: Deque<HeldRequest> = []
    private var cache: Deque<CachedResponse> = []
    private var outbound: [ByteBuffer] = []
    private var outboundBytes = 0
    private var outboundHasStreamElements = false
    private var streamInfo: StreamInfo?
    /// XEP-0198 on this stream: decides whether undeliverable stanzas are bounced by Tether or
    /// left to the server for a resumption.
    /// XEP-0198 on the upstream stream, as the upstream stream's machine judged it (it reads every
    /// element, SASL2's inline `<enabled/>` too): with it on, a dying session leaves the server
    /// its unacknowledged stanzas for `<resume/>` and bounces nothing.
    private var streamManagementEnabled = false
    /// hex(SHA-1) the next `key` must hash to (§15), when the client uses keys.
    private var expectedKeyHash: String?
    private var inactivityGeneration: UInt64 = 0
    /// An inactivity timer is counting: nothing is outstanding since it started.
    private var inactivityRunning = false
    private var pausedFor: Int?
    private var lastRequestAt: NIODeadline?
    private var lastResponseHadPayload = true
    private var pendingReport: (rid: UInt64, milliseconds: Int64)?
    /// Processed rids whose HTTP request went away unanswered (or whose answer never left), with
    /// their keys: a retransmission of one is held again instead of refused.
    private var unansweredRIDs: [UInt64: RequestKeys] = [:]

    /// Starts a session from its creation request (§7.1), which is held until stream features arrive.
    public init(
        sid: String,
        creation request: BOSHRequest,
        id: BOSHRequestID,
        domain: String,
        limits: BOSHLimits,
        isSecure: Bool,
        now: NIODeadline
    ) {
        self.sid = sid
        self.parameters = BOSHSessionParameters(creation: request, limits: limits)
        self.limits = limits
        self.domain = domain
        self.creationRID = request.rid
        self.lastRID = request.rid
        self.sessionIsSecure = isSecure
        self.expectedKeyHash = request.newKey?.lowercased()
        self.lastRequestAt = now
        self.held.append(HeldRequest(rid: request.rid, id: id, keys: RequestKeys(request)))
    }

    /// The actions that follow creation: hold the request for at most `wait`.
    public func creationActions() -> [Action] {
        [.startWaitTimer(self.held[0].id, seconds: self.parameters.wait)]
    }

    public var isActive: Bool { self.phase == .active }
    /// Requests that repeated an rid already received (lost responses, §14.3), for metrics.
    public private(set) var retransmissions = 0
    public var heldRequestCount: Int { self.held.count }
    public var queuedBytes: Int { self.outboundBytes }

    // MARK: Requests

    /// A request for this session arrived (§14.2 rid window, §14.3 retransmission, §19.1 security).
    public mutating func receive(_ request: BOSHRequest, id: BOSHRequestID, isSecure: Bool, now: NIODeadline) -> [Action] {
        switch self.phase {
        case .terminated(let body, let condition):
            // §15: on a keyed session only the client's next key collects what was queued.
            if let expected = self.expectedKeyHash, request.key.map(Self.sha1Hex) != expected {
                return [.respond(id, self.terminalResponse(.terminate(condition), condition: condition))]
            }
            return [.respond(id, body)]
        case .ended:
            return [.respond(id, self.terminalResponse(.terminate(.itemNotFound), condition: .itemNotFound))]
        case .active:
            break
        }
        if self.sessionIsSecure && !isSecure {
            return [.closeConnection(id)]
        }
        let rid = request.rid
        if rid <= self.lastRID {
            return self.retransmission(request, id: id, now: now)
        }
        if rid > self.lastRID + UInt64(self.parameters.requests) {
            return self.terminate(.itemNotFound, triggering: id)
        }
        var actions: [Action] = []
        if let existing = self.outOfOrder[rid] {
            actions.append(.respond(existing.id, self.plainResponse(.recoverableError)))
        }
        let outstanding = self.held.count + self.outOfOrder.count + (self.outOfOrder[rid] == nil ? 1 : 0)
        if outstanding > self.parameters.requests + 1
            || (outstanding > self.parameters.requests && !request.isTerminate && request.pause == nil)
        {
            return actions + self.terminate(.policyViolation, triggering: id)
        }
        self.outOfOrder[rid] = PendingRequest(request: request, id: id, isSecure: isSecure)
        while self.phase == .active, let next = self.outOfOrder.removeValue(forKey: self.lastRID + 1) {
            actions += self.process(next.request, id: next.id, now: now)
        }
        if self.phase == .active {
            actions += self.drain(now: now)
        }
        return actions
    }

    /// §14.3, with §15: a repeated rid without the keys of the original is an invalid key.
    private mutating func retransmission(_ request: BOSHRequest, id: BOSHRequestID, now: NIODeadline) -> [Action] {
        let rid = request.rid
        self.retransmissions += 1
        if let cached = self.cache.first(where: { $0.rid == rid }) {
            guard cached.keys.admit(request) else { return self.terminate(.itemNotFound, triggering: id) }
            return [.respond(id, cached.response)]
        }
        if let index = self.held.firstIndex(where: { $0.rid == rid }) {
            guard self.held[index].keys.admit(request) else { return self.terminate(.itemNotFound, triggering: id) }
            // §14.3: the older HTTP request gets a recoverable error, the newest one waits for the answer.
            let older = self.held[index].id
            self.held[index].id = id
            return [.respond(older, self.plainResponse(.recoverableError)), .startWaitTimer(id, seconds: self.parameters.wait)]
        }
        if let keys = self.unansweredRIDs[rid] {
            guard keys.admit(request) else { return self.terminate(.itemNotFound, triggering: id) }
            self.unansweredRIDs[rid] = nil
            // Its first HTTP request went away unanswered: this one takes its place, in rid order.
            let index = self.held.firstIndex(where: { $0.rid > rid }) ?? self.held.endIndex
            self.held.insert(HeldRequest(rid: rid, id: id, keys: keys), at: index)
            self.inactivityGeneration &+= 1
            self.inactivityRunning = false
            return [.startWaitTimer(id, seconds: self.parameters.wait)] + self.drain(now: now)
        }
        return self.terminate(.itemNotFound, triggering: id)
    }

    // MARK: Connections that go away

    /// The HTTP connection carrying a request closed before it was answered (a page reload, a
    /// dropped connection). The request is forgotten, not answered: what arrives next waits for
    /// the client's next request (a reloaded Strophe.js page attaches with the next rid) instead
    /// of going into a dead connection. A retransmission of its rid (§14.3) is held again.
    public mutating func requestAbandoned(_ id: BOSHRequestID) -> [Action] {
        guard self.phase == .active else { return [] }
        if let index = self.held.firstIndex(where: { $0.id == id }) {
            self.unansweredRIDs[self.held[index].rid] = self.held[index].keys
            self.held.remove(at: index)
        } else if let pending = self.outOfOrder.first(where: { $0.value.id == id }) {
            // Never processed: a resend is simply a new request.
            self.outOfOrder.removeValue(forKey: pending.key)
        } else {
            return []
        }
        self.forgetOldUnansweredRIDs()
        return self.inactivityTimerIfIdle().map { [$0] } ?? []
    }

    /// An answer could not be written: its connection was already gone. Its payloads go back to
    /// the front of the queue for the client's next request; a retransmission of its rid is held again.
    public mutating func responseUndelivered(_ id: BOSHRequestID, now: NIODeadline) -> [Action] {
        guard self.phase == .active, let index = self.cache.firstIndex(where: { $0.id == id }) else { return [] }
        let lost = self.cache.remove(at: index)
        self.unansweredRIDs[lost.rid] = lost.keys
        self.forgetOldUnansweredRIDs()
        let (payloads, streamElements) = Self.payloads(of: lost.response.body)
        if !payloads.isEmpty {
            self.outbound.insert(contentsOf: payloads, at: 0)
            self.outboundBytes += payloads.reduce(0) { $0 + $1.readableBytes }
            self.outboundHasStreamElements = self.outboundHasStreamElements || streamElements
        }
        return self.drain(now: now)
    }

    /// The children of an encoded `<body/>`, byte for byte as they were queued.
    private static func payloads(of body: ByteBuffer) -> ([ByteBuffer], Bool) {
        let framer = XMLStreamFramer(limits: .init(maxElementBytes: max(body.readableBytes, 1), maxDepth: 1024))
        guard let events = try? framer.feed(body) + framer.finish() else { return ([], false) }
        var payloads: [ByteBuffer] = []
        var streamElements = false
        for case .element(let element) in events {
            payloads.append(element.bytes)
            streamElements = streamElements || element.name.namespace == XMLNamespaces.streams
        }
        return (payloads, streamElements)
    }

    /// Only rids still inside the window can be retransmitted.
    private mutating func forgetOldUnansweredRIDs() {
        let oldest = self.lastRID >= UInt64(self.parameters.requests) ? self.lastRID - UInt64(self.parameters.requests) : 0
        self.unansweredRIDs = self.unansweredRIDs.filter { $0.key > oldest }
    }

    private mutating func process(_ request: BOSHRequest, id: BOSHRequestID, now: NIODeadline) -> [Action] {
        if let expected = self.expectedKeyHash {
            guard let key = request.key, Self.sha1Hex(key) == expected else {
                return self.terminate(.itemNotFound, triggering: id)
            }
            self.expectedKeyHash = request.newKey?.lowercased() ?? key.lowercased()
        } else if let newKey = request.newKey {
            self.expectedKeyHash = newKey.lowercased()
        }
        self.lastRID = request.rid
        self.inactivityGeneration &+= 1
        self.inactivityRunning = false
        self.pausedFor = nil
        let previousRequestAt = self.lastRequestAt
        self.lastRequestAt = now

        var actions: [Action] = []
        if let ack = request.ack, self.parameters.acknowledgements {
            self.acknowledge(ack, now: now)
        }
        if request.isTerminate {
            // §13: deliver the client's last stanzas, then close; whatever was queued goes back with the answer.
            if !request.payloads.isEmpty { actions.append(.forwardUpstream(request.payloads)) }
            actions.append(.closeUpstream(graceful: true))
            let payloads = self.takeOutbound()
            for older in self.held {
                actions.append(.respond(older.id, self.plainResponse(BOSHResponse())))
            }
            self.held.removeAll()
            let answer = BOSHResponse(attributes: [("type", "terminate")], payloads: payloads.payloads, declaresStreamNamespace: payloads.streamElements)
            actions.append(.respond(id, self.plainResponse(answer)))
            self.phase = .ended
            actions.append(.endSession(nil))
            return actions
        }
        if let pause = request.pause {
            guard pause <= self.parameters.maxPause else {
                return self.terminate(.policyViolation, triggering: id, triggeringVerified: true)
            }
            // §10: answer everything at once, without payloads; keep queued stanzas for the return.
            if !request.payloads.isEmpty { actions.append(.forwardUpstream(request.payloads)) }
            let older = self.held
            self.held.removeAll()
            for request in older {
                actions.append(self.answer(request, with: BOSHResponse(), now: now))
            }
            actions.append(self.answer(HeldRequest(rid: request.rid, id: id, keys: RequestKeys(request)), with: BOSHResponse(), now: now))
            self.pausedFor = pause
            return actions
        }
        if request.isEmpty, let previousRequestAt {
            let tooSoon = now - previousRequestAt < .seconds(Int64(self.parameters.polling))
            if self.parameters.isPolling {
                // §12: two empty polls within `polling` seconds, the first answered with nothing.
                if tooSoon && !self.lastResponseHadPayload && self.held.isEmpty {
                    return self.terminate(.policyViolation, triggering: id, triggeringVerified: true)
                }
            } else if tooSoon && self.parameters.hold > 0 && self.held.count >= self.parameters.hold {
                // §11: with this one all `requests` are outstanding, it is empty, and it came too soon.
                return self.terminate(.policyViolation, triggering: id, triggeringVerified: true)
            }
        }
        if request.isRestart {
            // XEP-0206 §5: a restart follows SASL success, so it needs an open stream; before the
            // server's first header there is nothing to restart (regression: dropped in silence).
            guard self.streamInfo != nil else {
                return self.terminate(.badRequest, triggering: id, triggeringVerified: true)
            }
            // XEP-0206 §5: payloads of a restart request are ignored.
            // XEP-0198 §4: enabled per stream; the restarted stream starts without it.
            self.streamManagementEnabled = false
            actions.append(.restartUpstream)
        } else if !request.payloads.isEmpty {
            actions.append(.forwardUpstream(request.payloads))
        }
        self.held.append(HeldRequest(rid: request.rid, id: id, keys: RequestKeys(request)))
        actions.append(.startWaitTimer(id, seconds: self.parameters.wait))
        return actions
    }

    private mutating func acknowledge(_ ack: UInt64, now: NIODeadline) {
        self.clientAck = max(self.clientAck, ack)
        while let first = self.cache.first, first.rid <= self.clientAck {
            self.cache.removeFirst()
        }
        // §9.2: the client missed a response we sent a while ago: tell it which.
        if ack < self.highestAnsweredRID, let missed = self.cache.first(where: { $0.rid == ack + 1 }) {
            let elapsed = (now - missed.sentAt).nanoseconds / 1_000_000
            if elapsed >= Int64(BOSHSessionStateMachine.reportThresholdMilliseconds) {
                self.pendingReport = (ack + 1, elapsed)
            }
        }
    }

    /// How long a response must have been out before a lower `ack` is treated as a loss (§9.2).
    public static let reportThresholdMilliseconds = 2_000

    // MARK: Upstream

    /// The server opened (or reopened) its stream; `secure` when the connection under it is
    /// encrypted or local (XEP-0124 §7.1 `secure`).
    public mutating func upstreamOpened(_ info: StreamInfo, secure: Bool = false) {
        self.streamInfo = info
        self.upstreamSecure = secure
    }

    /// The session has ended for good: nothing more is done for it.
    public var hasEnded: Bool { self.phase == .ended }

    /// Stanzas from the server, self-contained; `streamElements` when one is a `stream:` element;
    /// `streamManagement`: whether XEP-0198 is on for the upstream stream after them.
    public mutating func upstreamReceived(_ payloads: [ByteBuffer], streamElements: Bool, streamManagement: Bool, now: NIODeadline) -> [Action] {
        guard self.phase == .active else { return [] }
        self.streamManagementEnabled = streamManagement
        self.outbound += payloads
        self.outboundBytes += payloads.reduce(0) { $0 + $1.readableBytes }
        self.outboundHasStreamElements = self.outboundHasStreamElements || streamElements
        if self.outboundBytes > self.limits.maxQueuedBytes && self.held.isEmpty {
            return self.terminate(.policyViolation)
        }
        return self.drain(now: now)
    }

    /// The server sent `<stream:error/>`: it goes to the client inside `remote-stream-error` (XEP-0206 §6).
    public mutating func upstreamStreamError(_ error: ByteBuffer) -> [Action] {
        guard self.phase == .active else { return [] }
        self.outbound.append(error)
        self.outboundHasStreamElements = true
        return self.terminate(.remoteStreamError, upstreamAlreadyClosed: true)
    }

    /// The upstream stream ended, or could not be opened, as `UpstreamEnding` names it: a normal
    /// end when the server closed it with `</stream:stream>`, else the matching condition.
    public mutating func upstreamEnded(_ ending: UpstreamEnding) -> [Action] {
        guard self.phase == .active else { return [] }
        let condition: TerminateCondition?
        switch ending {
        case .closed: condition = nil
        case .unreachable: condition = .hostUnknown
        case .failed: condition = .remoteConnectionFailed
        case .serverNotReading: condition = .policyViolation
        }
        return self.terminate(condition, upstreamAlreadyClosed: true)
    }

    /// The process is shutting down (or draining): `see-other-uri` when a redirect is known, else `system-shutdown`.
    public mutating func shutdown(redirect uri: String? = nil) -> [Action] {
        guard self.phase == .active else { return [] }
        let condition: TerminateCondition = uri == nil ? .systemShutdown : .seeOtherURI
        var actions = self.terminate(condition, extraPayload: uri.map { ByteBuffer(string: "<uri>\(XMLEscaping.escapeText($0))</uri>") })
        if case .terminated = self.phase {
            // Nobody is waiting and the process is going: no tombstone to keep.
            self.phase = .ended
            actions = actions.filter { if case .startInactivityTimer = $0 { return false } else { return true } }
            actions.append(.endSession(condition))
        }
        return actions
    }

    /// Ends the session for a reason found outside the machine (e.g. an oversized stanza upstream).
    public mutating func fail(_ condition: TerminateCondition) -> [Action] {
        guard self.phase == .active else { return [] }
        return self.terminate(condition)
    }

    // MARK: Timers

    public mutating func waitTimerFired(_ id: BOSHRequestID, now: NIODeadline) -> [Action] {
        guard self.phase == .active, let index = self.held.firstIndex(where: { $0.id == id }) else { return [] }
        // The creation response states what only the server's stream tells: its `from`, whether
        // the connection under it is `secure` (XEP-0124 §7.1) and the features (XEP-0206 §5).
        // Until that stream opens it is not answered (regression: a Direct TLS connection slower
        // than `wait` was announced `secure='false'`); the upstream's connect and stream-open
        // timeouts bound the wait, ending the session with remote-connection-failed.
        if !self.creationAnswered, self.streamInfo == nil, self.held.first?.rid == self.creationRID {
            return [.startWaitTimer(id, seconds: self.parameters.wait)]
        }
        // Answer in rid order: everything held before it goes first.
        var actions: [Action] = []
        for _ in 0...index {
            let request = self.held.removeFirst()
            let payloads = self.takeOutbound()
            actions.append(self.answer(request, with: BOSHResponse(payloads: payloads.payloads, declaresStreamNamespace: payloads.streamElements), now: now))
        }
        if let timer = self.inactivityTimerIfIdle() { actions.append(timer) }
        return actions
    }

    public mutating func inactivityTimerFired(generation: UInt64) -> [Action] {
        guard generation == self.inactivityGeneration else { return [] }
        switch self.phase {
        case .active:
            guard self.held.isEmpty else { return [] }
            // §10: silent end. What the server handed over for the client is bounced (or, with
            // XEP-0198, left to the server), then the stream ends, so later messages go offline.
            self.phase = .ended
            let payloads = self.takeOutbound().payloads
            return self.abandon(payloads, reason: "inactivity") + [.endSession(nil)]
        case .terminated(_, let condition):
            self.phase = .ended
            return [.endSession(condition)]
        case .ended:
            return []
        }
    }

    // MARK: Internals

    private mutating func drain(now: NIODeadline) -> [Action] {
        var actions: [Action] = []
        while let oldest = self.held.first {
            let mustAnswer =
                self.held.count > self.parameters.hold
                || !self.outbound.isEmpty
                || (self.pendingReport != nil && self.held.count >= 1)
            guard mustAnswer else { break }
            self.held.removeFirst()
            let payloads = self.takeOutbound()
            var body = BOSHResponse(payloads: payloads.payloads, declaresStreamNamespace: payloads.streamElements)
            if let report = self.pendingReport {
                body.attributes += [("report", String(report.rid)), ("time", String(report.milliseconds))]
                self.pendingReport = nil
            }
            actions.append(self.answer(oldest, with: body, now: now))
        }
        if let timer = self.inactivityTimerIfIdle() { actions.append(timer) }
        return actions
    }

    /// Starts the inactivity count when the last open request has been answered (§10).
    private mutating func inactivityTimerIfIdle() -> Action? {
        guard self.held.isEmpty, self.outOfOrder.isEmpty, !self.inactivityRunning else { return nil }
        self.inactivityGeneration &+= 1
        self.inactivityRunning = true
        return .startInactivityTimer(generation: self.inactivityGeneration, seconds: self.pausedFor ?? self.parameters.inactivity)
    }

    private mutating func takeOutbound() -> (payloads: [ByteBuffer], streamElements: Bool) {
        defer {
            self.outbound.removeAll()
            self.outboundBytes = 0
            self.outboundHasStreamElements = false
        }
        return (self.outbound, self.outboundHasStreamElements)
    }

    private mutating func answer(_ request: HeldRequest, with body: BOSHResponse, now: NIODeadline) -> Action {
        var body = body
        if request.rid == self.creationRID && !self.creationAnswered {
            self.creationAnswered = true
            body.attributes = self.creationAttributes(rid: request.rid) + body.attributes
        } else if self.parameters.acknowledgements && request.rid != self.lastRID {
            body.attributes.append(("ack", String(self.lastRID)))
        }
        let response = self.plainResponse(body)
        self.lastResponseHadPayload = !body.payloads.isEmpty
        self.highestAnsweredRID = max(self.highestAnsweredRID, request.rid)
        self.cache.append(CachedResponse(rid: request.rid, id: request.id, keys: request.keys, response: response, sentAt: now))
        let keep = self.parameters.acknowledgements ? self.limits.maxUnackedResponses : self.parameters.requests + Self.extraCachedResponses
        while self.cache.count > keep { self.cache.removeFirst() }
        return .respond(request.id, response)
    }

    private func creationAttributes(rid: UInt64) -> [(name: String, value: String)] {
        var attributes: [(name: String, value: String)] = [
            ("sid", self.sid),
            ("wait", String(self.parameters.wait)),
            ("requests", String(self.parameters.requests)),
            ("hold", String(self.parameters.hold)),
            ("polling", String(self.parameters.polling)),
            ("inactivity", String(self.parameters.inactivity)),
            ("maxpause", String(self.parameters.maxPause)),
            ("ver", self.parameters.negotiatedVersion.description),
            ("from", self.streamInfo?.from ?? self.domain),
            ("secure", self.upstreamSecure ? "true" : "false"),
            ("xmpp:restartlogic", "true"),
        ]
        if self.parameters.acknowledgements { attributes.append(("ack", String(rid))) }
        if let info = self.streamInfo {
            if let id = info.id { attributes.append(("authid", id)) }
            attributes.append(("xmpp:version", info.version ?? "1.0"))
        }
        return attributes
    }

    private func plainResponse(_ body: BOSHResponse) -> BOSHHTTPResponse {
        BOSHHTTPResponse(status: 200, body: body.encoded(), contentType: self.parameters.contentType)
    }

    /// Legacy clients (no `ver`) get HTTP status codes for the three conditions that have one (§17.2).
    private func terminalResponse(_ body: BOSHResponse, condition: TerminateCondition?) -> BOSHHTTPResponse {
        if self.parameters.clientVersion == nil, let condition, condition.legacyHTTPStatus != 200 {
            return BOSHHTTPResponse(status: condition.legacyHTTPStatus, body: ByteBuffer(), contentType: self.parameters.contentType)
        }
        return BOSHHTTPResponse(status: 200, body: body.encoded(), contentType: self.parameters.contentType)
    }

    /// Ends the session: the oldest open request gets the verdict and the queued stanzas, the others
    /// (and `triggering`, the request that caused it, if not held) get the verdict alone. With no
    /// request to answer, the verdict waits for the next one until inactivity (a tombstone).
    ///
    /// On a keyed session (§15) the stanzas only go to a request that passed the key check: a held
    /// one, or `triggering` when `triggeringVerified`. Never to an unprocessed (out-of-order) or
    /// refused request, which may come from anyone who learnt the sid.
    ///
    /// Stanzas no request takes now cannot wait for one: the upstream stream ends here. Without
    /// XEP-0198 they are bounced to their senders (`abandon`) and the tombstone keeps the verdict
    /// alone, so a client between polls learns the condition but not the stanzas (their senders
    /// know); with it, they stay in the tombstone and the server keeps them for `<resume/>`.
    private mutating func terminate(
        _ condition: TerminateCondition?,
        triggering: BOSHRequestID? = nil,
        triggeringVerified: Bool = false,
        extraPayload: ByteBuffer? = nil,
        upstreamAlreadyClosed: Bool = false
    ) -> [Action] {
        var actions: [Action] = []
        var payloads = self.takeOutbound()
        if let extraPayload { payloads.payloads.append(extraPayload) }
        let first = self.terminalResponse(
            .terminate(condition, payloads: payloads.payloads, declaresStreamNamespace: payloads.streamElements),
            condition: condition
        )
        let reason = condition?.rawValue ?? "terminated"
        if self.held.isEmpty && triggering == nil {
            // Nobody to tell now: keep the verdict for the next request, until inactivity. The
            // stanzas cannot wait for it (the stream closes now): bounced, or left to XEP-0198.
            var tombstone = first
            if !upstreamAlreadyClosed {
                let stanzas = payloads.payloads.filter { extraPayload == nil || $0 != extraPayload }
                actions += self.abandon(stanzas, reason: reason)
                if !self.streamManagementEnabled {
                    tombstone = self.terminalResponse(.terminate(condition, payloads: extraPayload.map { [$0] } ?? []), condition: condition)
                }
            }
            self.phase = .terminated(body: tombstone, condition: condition)
            self.inactivityGeneration &+= 1
            actions.append(.startInactivityTimer(generation: self.inactivityGeneration, seconds: self.parameters.inactivity))
            return actions
        }
        let rest = self.terminalResponse(.terminate(condition), condition: condition)
        // Without keys the sid is the only credential: every request is as good as another.
        let unkeyed = self.expectedKeyHash == nil
        var delivered = false
        for request in self.held {
            actions.append(.respond(request.id, delivered ? rest : first))
            delivered = true
        }
        for pending in self.outOfOrder.values.sorted(by: { $0.request.rid < $1.request.rid }) {
            let gets = !delivered && unkeyed
            actions.append(.respond(pending.id, gets ? first : rest))
            delivered = delivered || gets
        }
        if let triggering {
            let gets = !delivered && (unkeyed || triggeringVerified)
            actions.append(.respond(triggering, gets ? first : rest))
            delivered = delivered || gets
        }
        self.held.removeAll()
        self.outOfOrder.removeAll()
        if !upstreamAlreadyClosed {
            // Delivered with the verdict, or (refused requests only) bounced: then the stream ends.
            let undelivered = delivered ? [] : payloads.payloads.filter { extraPayload == nil || $0 != extraPayload }
            actions = self.abandon(undelivered, reason: reason) + actions
        }
        if !delivered && !payloads.payloads.isEmpty && (upstreamAlreadyClosed || self.streamManagementEnabled) {
            self.phase = .terminated(body: first, condition: condition)
            self.inactivityGeneration &+= 1
            actions.append(.startInactivityTimer(generation: self.inactivityGeneration, seconds: self.parameters.inactivity))
            return actions
        }
        self.phase = .ended
        actions.append(.endSession(condition))
        return actions
    }

    /// Ends the upstream stream of a session whose client will not read `stanzas`: without
    /// XEP-0198 each is answered as a server would (`StanzaBounce`) and the stream closes with
    /// `</stream:stream>`; with it, nothing is bounced and the connection drops without the
    /// closing tag, so the server keeps them for `<resume/>` (XEP-0198 §5).
    private func abandon(_ stanzas: [ByteBuffer], reason: String) -> [Action] {
        guard !self.streamManagementEnabled else { return [.closeUpstream(graceful: false)] }
        var bounces: [ByteBuffer] = []
        for stanza in stanzas {
            if case .bounce(let error) = StanzaBounce.outcome(for: stanza) { bounces.append(error) }
        }
        guard !bounces.isEmpty else { return [.closeUpstream(graceful: true)] }
        return [.forwardUpstream(bounces), .stanzasBounced(count: bounces.count, reason: reason), .closeUpstream(graceful: true)]
    }

    /// Responses kept beyond `requests` for clients that do not acknowledge (§14.3 says `requests`
    /// SHOULD be kept). A client whose response was lost goes on using its other connection: by
    /// the time it resends the lost rid (after its own timeout), one or two newer requests may have
    /// been answered, and a buffer of exactly `requests` would have dropped the one it asks for,
    /// ending a healthy session with item-not-found. Two more empty-ish bodies per session.
    static let extraCachedResponses = 2

    static func sha1Hex(_ key: String) -> String {
        Insecure.SHA1.hash(data: Array(key.utf8)).map { byte in
            let hex = String(byte, radix: 16)
            return byte < 16 ? "0" + hex : hex
        }.joined()
    }
}
