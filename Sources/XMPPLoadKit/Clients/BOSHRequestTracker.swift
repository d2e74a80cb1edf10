import XMPPCore

/// A BOSH client's request bookkeeping (XEP-0124 §§ 7–9, 14, 18), pure: the next rid, what is
/// outstanding, what waits to be sent, and what to send again when a response is lost.
///
/// Policy (what Strophe.js and Converse do with hold=1): keep exactly one request held by the
/// server whenever the session is open; payloads go out at once while fewer than `requests`
/// are outstanding, else they wait and ride on the next request. A request whose response was
/// lost is sent again with the same rid and the same bytes (§ 18). No rid goes on the wire
/// `requests` or more above the oldest unanswered one: a connection manager keeps the answers
/// of the last `requests` requests (§14.3, no acknowledgements), so a page that moved further
/// on while one request hung would find that answer gone when it sends it again (item-not-found).
public struct BOSHRequestTracker: Sendable {
    /// A request on the wire or to be put there.
    public struct Request: Sendable, Hashable {
        public var rid: UInt64
        public var body: String
        /// 1 for the first send, 2 for the first retransmission, …
        public var attempt: Int
        /// When it was (last) sent, uptime nanoseconds.
        public var sentAtNanos: UInt64
        public var kind: Kind
        /// Carries stanzas (or is a control body): losing it would lose something of the client's.
        public var carriesPayloads: Bool = false
    }

    public enum Kind: Sendable, Hashable {
        case creation
        case payload
        case restart
        case terminate
    }

    public enum ResponseOutcome: Sendable, Hashable {
        /// The response belongs to an outstanding request.
        case expected(Kind)
        /// Not outstanding (a duplicate or a stray); ignore its payloads.
        case unexpected
    }

    public let domain: String
    public let wait: Int
    public let maxAttempts: Int
    public private(set) var sid: String?
    /// `sid`, escaped once for every body.
    private var escapedSID = ""
    /// The server's `requests` (at most this many outstanding); 2 until it says otherwise.
    public private(set) var requests = 2
    /// The server's `inactivity`: seconds it keeps a session with no request outstanding.
    public private(set) var inactivity: Int?
    /// The server's `maxpause` (§10): the longest `pause` it accepts; nil when it offers none.
    public private(set) var maxpause: Int?
    public private(set) var outstanding: [Request] = []
    private(set) var queued: [String] = []
    private var pendingControl: Kind?
    private var nextRID: UInt64
    /// No more requests after the terminate body.
    public private(set) var isTerminated = false

    public init(domain: String, wait: Int, initialRID: UInt64, maxAttempts: Int = 3) {
        self.domain = domain
        self.wait = wait
        self.nextRID = initialRID
        self.maxAttempts = maxAttempts
    }

    public var hasSession: Bool { self.sid != nil }

    /// The session-creation request (§ 7.1, XEP-0206 § 3): hold=1.
    public mutating func creationRequest(nowNanos: UInt64) -> Request {
        let rid = self.takeRID()
        let body =
            "<body rid='\(rid)' to='\(XMLEscaping.escapeAttribute(self.domain))' wait='\(self.wait)' hold='1' ver='1.6' "
            + "content='text/xml; charset=utf-8' xml:lang='en' xmpp:version='1.0' "
            + "xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh'/>"
        let request = Request(rid: rid, body: body, attempt: 1, sentAtNanos: nowNanos, kind: .creation)
        self.outstanding.append(request)
        return request
    }

    /// The session-creation response's `sid` and `requests`.
    public mutating func sessionCreated(sid: String, requests: Int?, inactivity: Int? = nil, maxpause: Int? = nil) {
        self.sid = sid
        self.escapedSID = XMLEscaping.escapeAttribute(sid)
        if let requests, requests >= 1 { self.requests = requests }
        self.inactivity = inactivity
        self.maxpause = maxpause
    }

    /// A request that announces the client will send nothing for `seconds` (§10), carrying
    /// whatever is queued; the server answers it, and everything it holds, at once.
    public mutating func pauseRequest(seconds: Int, nowNanos: UInt64) -> Request {
        let rid = self.takeRID()
        let payloads = self.queued.joined()
        self.queued.removeAll(keepingCapacity: true)
        let body =
            payloads.isEmpty
            ? "<body rid='\(rid)' sid='\(self.escapedSID)' pause='\(seconds)' xmlns='http://jabber.org/protocol/httpbind'/>"
            : "<body rid='\(rid)' sid='\(self.escapedSID)' pause='\(seconds)' xmlns='http://jabber.org/protocol/httpbind'>\(payloads)</body>"
        let request = Request(rid: rid, body: body, attempt: 1, sentAtNanos: nowNanos, kind: .payload, carriesPayloads: !payloads.isEmpty)
        self.outstanding.append(request)
        return request
    }

    /// The client was asleep: what is outstanding counts its time from now, not as overdue.
    public mutating func restartClocks(nowNanos: UInt64) {
        for index in self.outstanding.indices { self.outstanding[index].sentAtNanos = nowNanos }
    }

    /// Nothing of the client's in flight or waiting: at most empty polls outstanding.
    public var isQuiet: Bool {
        self.queued.isEmpty && self.pendingControl == nil && !self.outstanding.contains { $0.carriesPayloads || $0.kind != .payload }
    }

    /// Requests the last page left unanswered (`abandonOutstanding`), oldest first.
    public private(set) var abandoned: [Request] = []

    /// The page went away (reload, tab close): every outstanding request is left unanswered.
    /// The next request takes the next rid, as a reloaded Strophe.js page attaching does.
    public mutating func abandonOutstanding() {
        self.abandoned = self.outstanding.sorted { $0.rid < $1.rid }
        self.outstanding.removeAll()
    }

    /// The abandoned requests, to send again with the same rid and bytes (§14.3): the server
    /// answers each from its cache if it had answered it as the page went (that answer's
    /// stanzas never reached the page), else holds it again.
    public mutating func retransmitAbandoned(nowNanos: UInt64) -> [Request] {
        let again = self.abandoned.map { request in
            var request = request
            request.attempt += 1
            request.sentAtNanos = nowNanos
            return request
        }
        self.abandoned.removeAll()
        self.outstanding = again + self.outstanding
        return again
    }

    /// An empty request with the next rid, not tracked: asks whether the session still exists.
    public mutating func probeRequest(nowNanos: UInt64) -> Request? {
        guard self.sid != nil else { return nil }
        let rid = self.takeRID()
        return Request(rid: rid, body: Self.payloadBody(rid: rid, sid: self.escapedSID, payloads: ""), attempt: 1, sentAtNanos: nowNanos, kind: .payload)
    }

    /// Queues a payload for the next request.
    public mutating func enqueue(_ payload: String) {
        self.queued.append(payload)
    }

    /// Asks for a restart body (after SASL success) or the terminate body (logout).
    public mutating func enqueueControl(_ kind: Kind) {
        self.pendingControl = kind
    }

    /// A response arrived for `rid`.
    public mutating func responseReceived(rid: UInt64) -> ResponseOutcome {
        guard let index = self.outstanding.firstIndex(where: { $0.rid == rid }) else { return .unexpected }
        return .expected(self.outstanding.remove(at: index).kind)
    }

    /// The next request to put on the wire now, if any: queued payloads or a control body while
    /// fewer than `requests` are outstanding, else an empty poll so one request stays held.
    ///
    /// - Parameter oldestInFlight: the oldest rid any connection still carries, answered or not:
    ///   a second copy of an answered request (sent again after a timeout or a cut) can still
    ///   reach the server, and must find its answer there too.
    public mutating func nextRequest(nowNanos: UInt64, oldestInFlight: UInt64? = nil) -> Request? {
        guard self.sid != nil, !self.isTerminated, self.withinReplayWindow(oldestInFlight: oldestInFlight) else { return nil }
        let sid = self.escapedSID
        // A control body first, on its own, carrying whatever is queued with it.
        if let control = self.pendingControl, self.outstanding.count < self.requests {
            self.pendingControl = nil
            let rid = self.takeRID()
            let payloads = self.queued.joined()
            self.queued.removeAll(keepingCapacity: true)
            let body: String
            switch control {
            case .restart:
                body =
                    "<body rid='\(rid)' sid='\(sid)' to='\(XMLEscaping.escapeAttribute(self.domain))' "
                    + "xml:lang='en' xmpp:restart='true' xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh'/>"
            case .terminate:
                self.isTerminated = true
                body = "<body rid='\(rid)' sid='\(sid)' type='terminate' xmlns='http://jabber.org/protocol/httpbind'>\(payloads)</body>"
            case .creation, .payload:
                body = Self.payloadBody(rid: rid, sid: sid, payloads: payloads)
            }
            let request = Request(rid: rid, body: body, attempt: 1, sentAtNanos: nowNanos, kind: control, carriesPayloads: true)
            self.outstanding.append(request)
            return request
        }
        if self.pendingControl != nil { return nil }
        let hasPayloads = !self.queued.isEmpty
        guard (hasPayloads && self.outstanding.count < self.requests) || self.outstanding.isEmpty else { return nil }
        let rid = self.takeRID()
        let body = Self.payloadBody(rid: rid, sid: sid, payloads: self.queued.joined())
        self.queued.removeAll(keepingCapacity: true)
        let request = Request(rid: rid, body: body, attempt: 1, sentAtNanos: nowNanos, kind: .payload, carriesPayloads: hasPayloads)
        self.outstanding.append(request)
        return request
    }

    /// The response to `rid` was lost (connection dropped, timeout): the same request to send
    /// again, or nil when it has been tried `maxAttempts` times (the session is then lost).
    public mutating func requestLost(rid: UInt64, nowNanos: UInt64) -> Request? {
        guard let index = self.outstanding.firstIndex(where: { $0.rid == rid }) else { return nil }
        guard self.outstanding[index].attempt < self.maxAttempts else { return nil }
        self.outstanding[index].attempt += 1
        self.outstanding[index].sentAtNanos = nowNanos
        return self.outstanding[index]
    }

    /// Requests sent before `deadline` that are still unanswered.
    public func overdue(sentBefore deadline: UInt64) -> [UInt64] {
        self.outstanding.filter { $0.sentAtNanos < deadline }.map(\.rid)
    }

    /// The next rid would still let the server answer the oldest outstanding request, or the
    /// oldest copy in flight, again.
    func withinReplayWindow(oldestInFlight: UInt64?) -> Bool {
        let oldest = min(self.outstanding.lazy.map(\.rid).min() ?? .max, oldestInFlight ?? .max)
        return oldest == .max || self.nextRID < oldest + UInt64(self.requests)
    }

    private mutating func takeRID() -> UInt64 {
        let rid = self.nextRID
        self.nextRID += 1
        return rid
    }

    /// - Parameter sid: already escaped.
    static func payloadBody(rid: UInt64, sid: String, payloads: String) -> String {
        if payloads.isEmpty {
            return "<body rid='\(rid)' sid='\(sid)' xmlns='http://jabber.org/protocol/httpbind'/>"
        }
        return "<body rid='\(rid)' sid='\(sid)' xmlns='http://jabber.org/protocol/httpbind'>\(payloads)</body>"
    }
}
