import NIOCore
import NIOHTTP1
import NIOPosix
import XMPPClientCore
import XMPPCore

/// A BOSH client (XEP-0124/XEP-0206) with hold=1 on up to two HTTP/1.1 keep-alive connections:
/// one carries the request the server holds, the other sends. Request bookkeeping is in
/// `BOSHRequestTracker`; this class only moves bytes.
///
/// Phase timing: BOSH has no separate connect, so `connecting` is ~0 and the TCP connect and
/// session creation are charged to `awaitingFeatures`.
final class BOSHLoadSession: LoadSession {
    private var tracker: BOSHRequestTracker
    private var connections: [BOSHConnection] = []
    private let framer = XMLStreamFramer(limits: .init(maxElementBytes: 4 << 20, maxDepth: 64), rejectsRootText: false)
    private var streamCloseReported = false
    /// The page is away: nothing is sent until it comes back.
    private var paused = false
    /// A flap: the rid of the request on the cut connection, and the answer the server had
    /// given there before the cut (nil: it had not answered yet).
    private var flapRID: UInt64?
    private var flapAnswer: ByteBuffer?

    override init(index: Int, population: Int, worker: LoadWorker) {
        self.tracker = Self.newTracker(worker.scenario)
        super.init(index: index, population: population, worker: worker)
        self.connections = [BOSHConnection(session: self, slot: 0), BOSHConnection(session: self, slot: 1)]
    }

    private static func newTracker(_ scenario: LoadScenario) -> BOSHRequestTracker {
        BOSHRequestTracker(domain: scenario.domain, wait: scenario.boshWait, initialRID: UInt64.random(in: 1_000_000...4_000_000_000))
    }

    private var now: UInt64 { NIODeadline.now().uptimeNanoseconds }

    override func connect() {
        self.transportConnected()
    }

    override func openStream() {
        self.dispatch(self.tracker.creationRequest(nowNanos: self.now))
    }

    override func restartStream() {
        self.tracker.enqueueControl(.restart)
        self.pump()
    }

    override func send(_ element: ByteBuffer) {
        self.tracker.enqueue(String(buffer: element))
        self.pump()
    }

    override func closeStream() {
        self.tracker.enqueueControl(.terminate)
        self.pump()
    }

    override func abort() {
        for connection in self.connections { connection.close() }
    }

    override var advertisedTimeout: Double? { self.tracker.inactivity.map(Double.init) }

    /// A ping: the server answers the held request (which carried the last stanzas) when this
    /// one arrives, and this one when the pong comes, so by then it has taken everything. (An
    /// extra empty poll would break §11's polling rule.)
    override var isQuiet: Bool { self.tracker.isQuiet && self.quietPingID == nil }

    override func quietDown() {
        self.sendQuietPing()
    }

    /// The page goes: nothing more is sent, and each connection is half-closed, so the server
    /// sees it go (and queues what arrives for the next request) while an answer it had already
    /// written still arrives and is read: no message is lost to the race between the server's
    /// write and the page's close. A browser would lose such an answer; XEP-0124 gives it no way
    /// to know, short of acknowledgements.
    override func leavePage() {
        self.paused = true
        for connection in self.connections { connection.leave() }
    }

    /// The new page's first request (with the ping `LoadSession` queues) takes the next rid, as
    /// Strophe.js's keepalive does; with `retransmit`, the requests the old page left unanswered
    /// go again first (same rid and bytes).
    override func reattach() {
        for connection in self.connections { connection.close() }
        self.tracker.abandonOutstanding()
        self.paused = false
        guard self.spec.reload?.retransmit ?? false else { return }
        for request in self.tracker.retransmitAbandoned(nowNanos: self.now) {
            self.worker.recordRetransmission()
            self.dispatch(request)
        }
    }

    /// Asleep: with `announce`, a `pause` request first (XEP-0124 §10) for the sleep plus
    /// `pauseMargin` seconds, which the connection
    /// manager answers at once together with the held request; then nothing is sent, and
    /// (without `announce`) nothing is read: answers wait in the socket until the page wakes.
    override func suspendPage(seconds: Double, announce: Bool) {
        if announce {
            // Announced with a margin: the page must be back before the pause runs out (§10).
            let pause = Int(seconds.rounded(.up)) + Self.pauseMargin
            guard let maxpause = self.tracker.maxpause, maxpause >= pause else {
                // The server cannot be told: counted, and the laptop stays awake.
                self.record(
                    self.page.eventRefused(ClientFailure(.protocolViolation, "maxpause-\(self.tracker.maxpause.map(String.init) ?? "not-offered")"), now: self.now))
                self.pump()
                return
            }
            self.dispatch(self.tracker.pauseRequest(seconds: pause, nowNanos: self.now))
        } else {
            for connection in self.connections { connection.setReading(false) }
        }
        self.paused = true
    }

    /// Seconds a `pause` announces beyond the sleep itself.
    /// Generous: a page that wakes late on a busy machine must still be inside its pause, and
    /// one that wakes early simply resumes.
    static let pauseMargin = 5

    /// Awake: read again, count the requests' time from now, and prove the session with a ping.
    override func wakePage() {
        self.paused = false
        self.tracker.restartClocks(nowNanos: self.now)
        for connection in self.connections { connection.setReading(true) }
        self.sendProofPing()
    }

    /// The connection holding the oldest outstanding request keeps, without handing it on, the
    /// answer the server gives there until the cut.
    override func freezeInFlight() -> Bool {
        guard let rid = self.tracker.outstanding.map(\.rid).min(),
            let connection = self.connections.first(where: { $0.currentRID == rid && $0.isConnected })
        else { return false }
        self.flapRID = rid
        self.flapAnswer = nil
        connection.withhold()
        return true
    }

    /// The network cuts that connection (a reset); the request goes again, same rid and bytes, on
    /// another one (§14.3). Its answer must be the one the server had given, if it had.
    override func cutFrozen() {
        guard let rid = self.flapRID else {
            self.record(self.page.recovered(now: self.now))
            return
        }
        if let connection = self.connections.first(where: { $0.currentRID == rid }) {
            self.flapAnswer = connection.cut()
        }
        guard self.tracker.outstanding.contains(where: { $0.rid == rid }) else {
            // Already answered another way (the server closed that connection and the request
            // went again at once): recovered.
            self.flapRID = nil
            self.record(self.page.recovered(now: self.now))
            return
        }
        guard let again = self.tracker.requestLost(rid: rid, nowNanos: self.now) else {
            self.pageLost(ClientFailure(.timeout, "request-lost"))
            return
        }
        self.worker.recordRetransmission()
        self.dispatch(again)
    }

    /// The answer to the request sent again after a cut.
    private func flapAnswered(body: ByteBuffer) {
        self.flapRID = nil
        if let answer = self.flapAnswer {
            self.flapAnswer = nil
            guard answer == body else {
                self.pageLost(ClientFailure(.protocolViolation, "flap-answer-differs"))
                return
            }
            self.worker.flapAnswerReplayed(by: self)
        }
        self.record(self.page.recovered(now: self.now))
    }

    override func dropAll() {
        self.paused = true
        for connection in self.connections { connection.cut() }
    }

    override func resetForLogin() {
        for connection in self.connections { connection.close() }
        self.tracker = Self.newTracker(self.worker.scenario)
        self.streamCloseReported = false
        self.paused = false
        self.flapRID = nil
        self.flapAnswer = nil
    }

    /// One empty request with the old sid and the next rid: the connection manager should answer
    /// that it does not know the session any more.
    override func verifyAbandoned() {
        for connection in self.connections { connection.close() }
        self.tracker.abandonOutstanding()
        guard let probe = self.tracker.probeRequest(nowNanos: self.now) else {
            self.verified(expired: false, condition: "no-session")
            return
        }
        self.dispatch(probe)
    }

    /// The probe's answer: 404 or a terminate body means the session is gone.
    private func probeAnswered(status: Int, body: ByteBuffer) {
        let text = String(buffer: body)
        if status == 404 || text.contains("type='terminate'") || text.contains("type=\"terminate\"") {
            self.verified(expired: true, condition: "expired")
        } else {
            self.verified(expired: false, condition: status == 200 ? "still-alive" : "status-\(status)")
        }
    }

    override func checkTimeouts(nowNanos: UInt64) {
        let limit = UInt64(self.worker.scenario.boshRequestTimeout * 1e9)
        guard nowNanos > limit, !self.paused else { return }
        for rid in self.tracker.overdue(sentBefore: nowNanos - limit) {
            if let connection = self.connections.first(where: { $0.currentRID == rid }) {
                connection.abandon()
            }
            self.requestLost(rid: rid)
        }
    }

    /// Sends whatever the tracker says is due.
    private func pump() {
        while !self.isFinished, !self.paused,
            let request = self.tracker.nextRequest(nowNanos: self.now, oldestInFlight: self.connections.lazy.compactMap(\.currentRID).min())
        {
            self.dispatch(request)
        }
    }

    private func dispatch(_ request: BOSHRequestTracker.Request) {
        guard let connection = self.connections.first(where: { !$0.isBusy }) else {
            // More outstanding than connections: the server allowed requests > 2. Open another.
            let connection = BOSHConnection(session: self, slot: self.connections.count)
            self.connections.append(connection)
            connection.send(rid: request.rid, body: request.body)
            return
        }
        connection.send(rid: request.rid, body: request.body)
    }

    // MARK: from connections

    func response(rid: UInt64, status: Int, body: ByteBuffer) {
        guard !self.isFinished else { return }
        if case .verifying = self.page.state {
            self.probeAnswered(status: status, body: body)
            return
        }
        guard status == 200 else {
            _ = self.tracker.responseReceived(rid: rid)
            self.fail(ClientFailure(.http, "status-\(status)"))
            return
        }
        if Self.isRecoverableError(body) {
            self.recoverableError(rid: rid)
            return
        }
        guard case .expected(let kind) = self.tracker.responseReceived(rid: rid) else {
            // A second copy's answer: that copy no longer holds the window back.
            self.pump()
            return
        }
        if rid == self.flapRID {
            if case .flapping = self.page.state {
                self.flapAnswered(body: body)
                if self.isFinished { return }
            } else {
                // Answered another way before the cut (its connection closed and the request went
                // again at once): the cut finds nothing outstanding and counts the recovery.
                self.flapAnswer = nil
            }
        }
        if kind == .payload, Self.isEmptyBody(body) {
            // The common answer (a held request released): no payloads, nothing to parse.
            self.pump()
            return
        }
        self.framer.reset()
        let events: [XMLStreamFramer.Event]
        do {
            events = try self.framer.feed(body) + self.framer.finish()
        } catch {
            self.fail(ClientFailure(.protocolViolation, "xml"))
            return
        }
        for event in events {
            switch event {
            case .rootOpened(let root):
                if kind == .creation, root.attributes.value(of: "type") != "terminate" {
                    guard let sid = root.attributes.value(of: "sid") else {
                        self.fail(ClientFailure(.protocolViolation, "no-sid"))
                        return
                    }
                    let requests = root.attributes.value(of: "requests").flatMap { Int($0) }
                    let inactivity = root.attributes.value(of: "inactivity").flatMap { Int($0) }
                    let maxpause = root.attributes.value(of: "maxpause").flatMap { Int($0) }
                    self.tracker.sessionCreated(sid: sid, requests: requests.map { min($0, 2) }, inactivity: inactivity, maxpause: maxpause)
                }
                if root.attributes.value(of: "type") == "terminate" {
                    let condition = root.attributes.value(of: "condition")
                    // Payloads of a terminate body still count (e.g. the last messages).
                    for case .element(let element) in events { self.received(element) }
                    if kind == .terminate || (condition == nil && self.machine.phase == .closing) {
                        self.reportStreamClosed()
                    } else {
                        self.fail(ClientFailure(.boshTerminate, condition ?? "none"))
                    }
                    return
                }
            case .element(let element):
                self.received(element)
                if self.isFinished { return }
            case .rootClosed:
                break
            }
        }
        if kind == .terminate {
            self.reportStreamClosed()
            return
        }
        self.pump()
    }

    /// `<body type='error'/>` (XEP-0124 §17.3): a recoverable binding error. It answers nothing:
    /// the connection manager sends it to the older of two copies of one rid (§14.3), and the
    /// newer one, still in flight, carries the answer; with no other copy in flight the request
    /// goes again, same rid and bytes. Regression: taken for the answer, the rid was dropped from
    /// the outstanding ones, the page sent an empty poll at once while the server still held that
    /// rid (policy-violation, §11), and the real answer that came later was ignored (lost messages).
    private func recoverableError(rid: UInt64) {
        guard self.tracker.outstanding.contains(where: { $0.rid == rid }) else { return }
        if self.connections.contains(where: { $0.currentRID == rid }) { return }
        self.requestLost(rid: rid)
    }

    static func isRecoverableError(_ body: ByteBuffer) -> Bool {
        body.withUnsafeReadableBytes { raw -> Bool in
            guard let close = raw.firstIndex(of: UInt8(ascii: ">")) else { return false }
            let tag = UnsafeRawBufferPointer(rebasing: raw[0..<close])
            return Self.contains(tag, " type='error'") || Self.contains(tag, " type=\"error\"")
        }
    }

    /// `<body …/>` with no children and neither `type` nor `condition`: an empty answer.
    static func isEmptyBody(_ body: ByteBuffer) -> Bool {
        body.withUnsafeReadableBytes { raw -> Bool in
            guard let close = raw.firstIndex(of: UInt8(ascii: ">")), close > 0, raw[close - 1] == UInt8(ascii: "/") else { return false }
            for index in (close + 1)..<raw.count {
                let byte = raw[index]
                guard byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09 else { return false }
            }
            // A terminate (or any condition) is never taken for an empty answer.
            let tag = UnsafeRawBufferPointer(rebasing: raw[0..<close])
            return !Self.contains(tag, " type=") && !Self.contains(tag, "condition=")
        }
    }

    private static func contains(_ haystack: UnsafeRawBufferPointer, _ needle: StaticString) -> Bool {
        let count = needle.utf8CodeUnitCount
        guard haystack.count >= count else { return false }
        let bytes = UnsafeRawBufferPointer(start: needle.utf8Start, count: count)
        outer: for start in 0...(haystack.count - count) {
            for offset in 0..<count where haystack[start + offset] != bytes[offset] { continue outer }
            return true
        }
        return false
    }

    func requestLost(rid: UInt64) {
        guard !self.isFinished else { return }
        if case .verifying = self.page.state {
            self.verified(expired: false, condition: "probe-lost")
            return
        }
        if self.tracker.isTerminated, self.machine.phase == .closing {
            // The terminate went out; a dropped connection after that is the end of the session.
            self.reportStreamClosed()
            return
        }
        guard let retry = self.tracker.requestLost(rid: rid, nowNanos: self.now) else {
            if self.tracker.outstanding.contains(where: { $0.rid == rid }) {
                self.fail(ClientFailure(.timeout, "request-lost"))
            }
            return
        }
        self.worker.recordRetransmission()
        self.dispatch(retry)
    }

    func connectFailed(rid: UInt64, error: any Error) {
        guard !self.isFinished else { return }
        if case .verifying = self.page.state {
            self.verified(expired: false, condition: "probe-\(TCPLoadSession.describe(error))")
            return
        }
        if self.tracker.hasSession {
            self.requestLost(rid: rid)
        } else {
            self.fail(ClientFailure(.connect, TCPLoadSession.describe(error)))
        }
    }

    private func reportStreamClosed() {
        guard !self.streamCloseReported else { return }
        self.streamCloseReported = true
        self.streamClosed()
    }

    private func fail(_ failure: ClientFailure) {
        self.transportFailed(failure)
    }
}

/// One HTTP/1.1 keep-alive connection of a BOSH session: at most one request at a time.
final class BOSHConnection {
    unowned let session: BOSHLoadSession
    let slot: Int
    private var channel: (any Channel)?
    private var connecting = false
    /// The rid of the request on this connection, while it waits for its response.
    private(set) var currentRID: UInt64?
    private var pendingBody: ByteBuffer?
    /// Bumped whenever the connection is dropped, so late callbacks of an old channel are ignored.
    private var generation = 0
    /// Half-closed by `leave`: its end is not a lost request.
    private var leaving = false
    /// A flap is coming: the answer is kept here, not handed on.
    private var withholding = false
    private var withheld: ByteBuffer?
    /// Reads stopped (the page asleep); applied to the next channel too.
    private var reading = true

    init(session: BOSHLoadSession, slot: Int) {
        self.session = session
        self.slot = slot
    }

    var isBusy: Bool { self.currentRID != nil || self.connecting }
    var isConnected: Bool { self.channel?.isActive ?? false }

    /// Stops or resumes reading (a suspended page): answers wait in the socket.
    func setReading(_ on: Bool) {
        self.reading = on
        self.channel?.setOption(.autoRead, value: on).whenFailure { _ in }
    }

    /// Keeps the answer to the current request instead of handing it on, until `cut`.
    func withhold() {
        self.withholding = true
        self.withheld = nil
    }

    /// The network cuts the connection (a reset, not a close); returns the answer it had
    /// withheld, if the server had sent one. The request is not reported lost.
    @discardableResult
    func cut() -> ByteBuffer? {
        let answer = self.withheld
        if let channel = self.channel {
            channel.resetConnection()
        }
        self.channel = nil
        self.close()
        return answer
    }

    func send(rid: UInt64, body: String) {
        self.currentRID = rid
        let bytes = ByteBuffer(string: body)
        if let channel = self.channel, channel.isActive {
            self.write(bytes, on: channel)
        } else {
            self.pendingBody = bytes
            self.open()
        }
    }

    /// The page goes: the request side is closed, the answer side read until the server closes.
    /// Its request is then not sent again.
    func leave() {
        guard let channel = self.channel, channel.isActive, self.currentRID != nil else {
            self.close()
            return
        }
        self.leaving = true
        channel.close(mode: .output, promise: nil)
    }

    /// Gives up on the current request (timeout) and drops the connection.
    func abandon() {
        self.currentRID = nil
        self.drop()
    }

    func close() {
        self.currentRID = nil
        self.pendingBody = nil
        self.drop()
    }

    private func drop() {
        self.leaving = false
        self.withholding = false
        self.withheld = nil
        self.generation += 1
        self.connecting = false
        self.channel?.close(promise: nil)
        self.channel = nil
    }

    private func open() {
        guard !self.connecting else { return }
        self.connecting = true
        self.generation += 1
        let generation = self.generation
        let endpoint = self.session.endpoint
        let eventLoop = self.session.eventLoop
        let bound = NIOLoopBound(self, eventLoop: eventLoop)
        ClientBootstrap(group: eventLoop)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .connectTimeout(.seconds(10))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(BOSHResponseHandler(connection: bound.value, generation: generation))
                }
            }
            .connect(host: endpoint.host, port: endpoint.port)
            .assumeIsolated()
            .whenComplete { result in
                let connection = bound.value
                guard connection.generation == generation else {
                    if case .success(let channel) = result { channel.close(promise: nil) }
                    return
                }
                connection.connecting = false
                switch result {
                case .success(let channel):
                    connection.channel = channel
                    if !connection.reading { channel.setOption(.autoRead, value: false).whenFailure { _ in } }
                    if let body = connection.pendingBody {
                        connection.pendingBody = nil
                        connection.write(body, on: channel)
                    }
                case .failure(let error):
                    let rid = connection.currentRID
                    connection.currentRID = nil
                    connection.pendingBody = nil
                    if let rid { connection.session.connectFailed(rid: rid, error: error) }
                }
            }
    }

    private func write(_ body: ByteBuffer, on channel: any Channel) {
        let endpoint = self.session.endpoint
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: endpoint.hostHeader)
        headers.add(name: "Content-Type", value: "text/xml; charset=utf-8")
        headers.add(name: "Content-Length", value: String(body.readableBytes))
        let head = HTTPRequestHead(version: .http1_1, method: .POST, uri: endpoint.path, headers: headers)
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        channel.write(HTTPClientRequestPart.body(.byteBuffer(body)), promise: nil)
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
    }

    // MARK: from the handler

    fileprivate func responseComplete(generation: Int, status: Int, body: ByteBuffer, keepAlive: Bool) {
        guard generation == self.generation, let rid = self.currentRID else { return }
        if self.withholding {
            self.withheld = body
            return
        }
        self.currentRID = nil
        if !keepAlive { self.drop() }
        self.session.response(rid: rid, status: status, body: body)
    }

    fileprivate func channelClosed(generation: Int) {
        guard generation == self.generation else { return }
        self.channel = nil
        self.connecting = false
        self.withholding = false
        self.withheld = nil
        if self.leaving {
            self.leaving = false
            self.currentRID = nil
            return
        }
        if let rid = self.currentRID {
            self.currentRID = nil
            self.session.requestLost(rid: rid)
        }
    }
}

/// Collects one HTTP response at a time and hands it to its connection.
private final class BOSHResponseHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart

    private let connection: BOSHConnection
    private let generation: Int
    private var status = 0
    private var keepAlive = true
    private var body = ByteBuffer()

    init(connection: BOSHConnection, generation: Int) {
        self.connection = connection
        self.generation = generation
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            self.status = Int(head.status.code)
            self.keepAlive = head.isKeepAlive
            self.body.clear()
        case .body(var part):
            if self.body.readableBytes == 0 {
                self.body = part
            } else {
                self.body.writeBuffer(&part)
            }
        case .end:
            let body = self.body
            self.body = ByteBuffer()
            self.connection.responseComplete(generation: self.generation, status: self.status, body: body, keepAlive: self.keepAlive)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.connection.channelClosed(generation: self.generation)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
