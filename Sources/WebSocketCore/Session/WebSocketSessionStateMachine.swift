import NIOCore
import XMPPCore

/// One XMPP-over-WebSocket session, with no I/O: the RFC 6455 connection (frame rules,
/// fragments, ping/pong, the closing handshake, its timers) and the RFC 7395 stream on it
/// (`<open/>`/`<close/>`, restarts, validation, relaying, bounces), as events in and actions out.
///
/// The handler (TetherServer's `WebSocketXMPPHandler`) decodes frames, performs the actions and
/// reports what happened; every rule is here, so every close path, timeout and fragment rule is
/// tested event by event. The RFC 6455 half is in `WebSocketSessionStateMachine+Frames.swift`.
///
/// A WebSocket that drops without `<close/>` drops the upstream TCP connection without
/// `</stream:stream>` when XEP-0198 is on, so the server keeps the session for resumption.
public struct WebSocketSessionStateMachine {
    public struct Configuration: Sendable, Hashable {
        /// Between pings; a client that has not answered the previous one is gone.
        public var pingInterval: TimeAmount
        /// How long a closing handshake (RFC 7395 §3.6, RFC 6455 §7) may take.
        public var closeTimeout: TimeAmount
        /// How long a new connection has to send `<open/>`.
        public var openTimeout: TimeAmount
        /// How long the client may stay too far behind before it is cut.
        public var slowReaderTimeout: TimeAmount
        /// The largest client message (inflated).
        public var maxMessageBytes: Int
        /// Most frames one message may come in (RFC 6455 §5.4 sets no limit; browsers send a
        /// message in one frame). Beyond it, `policy-violation`: work stays bounded per message.
        public var maxFragments: Int
        /// permessage-deflate (RFC 7692) was negotiated.
        public var compressionNegotiated: Bool

        public init(
            pingInterval: TimeAmount = .seconds(25), closeTimeout: TimeAmount = .seconds(5), openTimeout: TimeAmount = .seconds(10),
            slowReaderTimeout: TimeAmount = .seconds(10), maxMessageBytes: Int = 1 << 20, maxFragments: Int = 1024, compressionNegotiated: Bool = false
        ) {
            self.pingInterval = pingInterval
            self.closeTimeout = closeTimeout
            self.openTimeout = openTimeout
            self.slowReaderTimeout = slowReaderTimeout
            self.maxMessageBytes = maxMessageBytes
            self.maxFragments = maxFragments
            self.compressionNegotiated = compressionNegotiated
        }
    }

    /// The session's timers, by what they wait for. At most one of each kind is pending; it fires
    /// into `timerFired(_:)` with its `TimerID`, and one that was cancelled or replaced meanwhile
    /// is ignored.
    public enum Timer: Sendable, Hashable, CaseIterable {
        /// The client's first `<open/>`.
        case open
        /// The next ping (and the answer to the last one).
        case ping
        /// The end of a closing handshake.
        case close
        /// A client that stopped reading catching up.
        case slowReader
    }

    /// One scheduling of a timer (see `TimerTable`).
    public typealias TimerID = TimerTable<Timer>.ID

    public enum Action: Sendable, Hashable {
        /// Open the upstream stream with this header.
        case connectUpstream(StreamHeader)
        /// New stream header on the same upstream connection (after SASL).
        case restartUpstream
        case forwardUpstream(ByteBuffer)
        /// Close upstream: graceful sends `</stream:stream>`.
        case closeUpstream(graceful: Bool)
        /// One text message to the client.
        case sendText(ByteBuffer)
        case sendPing(ByteBuffer)
        case sendPong(ByteBuffer)
        /// A close frame with this status code (RFC 6455 §7.4). With `thenClose`, the TCP
        /// connection is closed once it is written: the client's close came first, or the
        /// connection is failed (§7.1.7).
        case sendClose(code: UInt16, thenClose: Bool)
        /// Close the TCP connection now.
        case closeConnection
        /// Schedule this timer, replacing (and cancelling) a pending one of the same kind.
        case scheduleTimer(TimerID, TimeAmount)
        case cancelTimer(Timer)
        /// For metrics and the log: this many stanzas that never reached the client were
        /// answered with errors (in the `forwardUpstream` before it), because of `reason`.
        case stanzasBounced(count: Int, reason: String)
        /// For metrics and the log: the named limit ended or refused the session.
        case limitReached(String)
    }

    /// RFC 7395 stream states.
    enum Stream {
        /// Waiting for the client's first `<open/>`.
        case awaitingOpen
        /// `<open/>` relayed; waiting for the server's stream header.
        case opening(domain: String)
        case open(domain: String)
        /// `<close/>` sent or an error sent; waiting for the client's `<close/>` or close frame.
        case closing
        /// Nothing more is relayed; the WebSocket is closing or closed.
        case closed
    }

    let configuration: Configuration
    private let serves: (String) -> Bool
    var stream: Stream = .awaitingOpen
    /// An `<open/>` has been sent to the client on the current stream.
    private var openSent = false
    /// The client's `from` on `<open/>`, echoed as `to` (RFC 6120 §4.7.2).
    private var clientFrom: String?
    /// XEP-0198 on the upstream stream, as the upstream stream's machine judged it.
    private var streamManagementEnabled = false
    /// Why the session ended, once it is ending; `nil` while all is well (and for a normal end).
    public private(set) var end: WebSocketSessionEnd?
    /// Why the connection went, for the bounce metric.
    public internal(set) var lostReason = "connection-lost"

    // RFC 6455 state, used by WebSocketSessionStateMachine+Frames.swift.
    var handshake: ClosingHandshake = .open
    var fragments: FragmentedMessage?
    var pings = PingState()
    var clientIsReading = true
    var timers = TimerTable<Timer>()

    /// - Parameter serves: whether a domain named in `<open to=…/>` is served.
    public init(configuration: Configuration = Configuration(), serves: @escaping (String) -> Bool) {
        self.configuration = configuration
        self.serves = serves
    }

    public var isClosed: Bool {
        if case .closed = self.stream { return true }
        return false
    }

    var stillAwaitingOpen: Bool {
        if case .awaitingOpen = self.stream { return true }
        return false
    }

    /// Closing or closed: no more stanzas are relayed.
    public var isClosing: Bool {
        switch self.stream {
        case .closing, .closed: return true
        case .awaitingOpen, .opening, .open: return false
        }
    }

    /// The longest client message this session can still use, given the configured `limit`.
    ///
    /// Until the stream is open and once it is closing, only RFC 7395 framing elements matter
    /// (`<open/>`, `<close/>`: a few attributes), so anything longer is not inflated or parsed in
    /// full: a client cannot make a session it has already broken (or never opened) inflate a
    /// compression bomb per frame. After the session is closed nothing is read at all.
    public func largestUsefulMessage(within limit: Int) -> Int {
        switch self.stream {
        case .open: return limit
        case .awaitingOpen, .opening, .closing: return min(limit, Self.framingMessageBytes)
        case .closed: return 0
        }
    }

    /// Room for an `<open/>` or `<close/>` with generous attributes (a JID is at most 3071 bytes,
    /// RFC 7622 §3.1, and `<open/>` carries at most two).
    public static let framingMessageBytes = 8192

    // MARK: The connection

    /// The upgrade is done and this handler is in place, with what admission said (a refusal
    /// was already counted by whoever decided it).
    public mutating func start(_ admission: SessionAdmission) -> [Action] {
        var actions = [self.schedule(.ping, after: self.configuration.pingInterval)]
        switch admission {
        case .admitted:
            actions.append(self.schedule(.open, after: self.configuration.openTimeout))
        case .refused:
            actions += self.violation(.policyViolation)
        case .draining(let redirect):
            actions += self.shutdown(redirect: redirect)
        }
        return actions
    }

    /// Tether is shutting down: send clients elsewhere, or tell them why.
    /// With XEP-0198 the upstream connection is dropped without `</stream:stream>`, so the
    /// session resumes elsewhere; without it the stream is closed, so what the server still
    /// sends is bounced (regression: dropped, and lost in silence).
    public mutating func shutdown(redirect uri: String?) -> [Action] {
        switch self.stream {
        case .closing, .closed:
            return []
        case .awaitingOpen, .opening, .open:
            self.stream = .closing
            self.ending(uri == nil ? .streamError(.systemShutdown) : .redirected)
            let closeUpstream = Action.closeUpstream(graceful: !self.streamManagementEnabled)
            if let uri {
                return [closeUpstream, .sendText(WebSocketFraming.close(seeOtherURI: uri)), self.schedule(.close, after: self.configuration.closeTimeout)]
            }
            // §3.5: a stream error follows an <open/>, also before the client's.
            let open: [Action] = self.openSent ? [] : [.sendText(WebSocketFraming.open(StreamInfo(), fallbackFrom: nil))]
            self.openSent = true
            return [closeUpstream] + open + [
                .sendText(StreamErrorCondition.systemShutdown.element), .sendText(WebSocketFraming.close()),
                self.schedule(.close, after: self.configuration.closeTimeout),
            ]
        }
    }

    /// The TCP connection under the WebSocket is gone, with `unwritten`: the messages the server
    /// sent that never reached the client (still queued when the socket dropped or was cut).
    ///
    /// With XEP-0198 on, the upstream connection is dropped without `</stream:stream>`: the
    /// server keeps what the client did not acknowledge for `<resume/>`. Without it, a closed
    /// stream means "delivered" to the server, so each unwritten stanza is first answered as a
    /// server would (`StanzaBounce`, RFC 6120 §10.4.3) and then the stream is closed.
    public mutating func connectionLost(unwritten: [ByteBuffer] = []) -> [Action] {
        let timers = Timer.allCases.filter { self.timers.cancel($0) }.map(Action.cancelTimer)
        self.handshake = .closed
        return self.streamLost(unwritten: unwritten, reason: self.lostReason) + timers
    }

    /// The upstream connection is established (before its stream opens).
    public mutating func upstreamConnected() -> [Action] {
        switch self.stream {
        case .opening, .open: return []
        // The session ended while it was connecting: nobody will use it.
        case .awaitingOpen, .closing, .closed: return [.closeUpstream(graceful: true)]
        }
    }

    // MARK: RFC 7395 messages from the client

    public mutating func received(_ message: WebSocketMessage) -> [Action] {
        switch (self.stream, message) {
        case (.awaitingOpen, .open(let to, let from, let version, let language)):
            guard let to, !to.isEmpty else {
                return self.streamError(.improperAddressing, domain: nil)
            }
            let domain = to.lowercased()
            guard self.serves(domain) else {
                return self.streamError(.hostUnknown, domain: domain)
            }
            self.stream = .opening(domain: domain)
            self.clientFrom = from
            return [self.cancel(.open), .connectUpstream(StreamHeader(to: domain, from: from, language: language, version: version ?? "1.0"))]
        case (.open(let domain), .open):
            // §3.7: a restart after SASL; both sides' streams start afresh on the same connection.
            self.stream = .opening(domain: domain)
            self.openSent = false
            // XEP-0198 §4: enabled per stream.
            self.streamManagementEnabled = false
            return [.restartUpstream]
        case (.open, .element(let bytes)):
            return [.forwardUpstream(bytes)]
        case (.open, .close), (.opening, .close):
            // §3.6: answer <close/>, end the upstream stream, let the client close the WebSocket.
            self.stream = .closing
            return [.closeUpstream(graceful: true), .sendText(WebSocketFraming.close()), self.schedule(.close, after: self.configuration.closeTimeout)]
        case (.closing, .close):
            // Our <close/> was answered: we initiated, so we close the WebSocket (§3.6).
            self.stream = .closed
            return self.closeWebSocket(code: WebSocketCloseStatus.normalClosure, failing: false)
        case (.closing, _), (.closed, _):
            return []
        case (.awaitingOpen, _), (.opening, .element), (.opening, .open):
            return self.streamError(.notWellFormed, domain: nil)
        }
    }

    /// The client broke the framing rules: report it as a stream error and close.
    public mutating func violation(_ condition: StreamErrorCondition) -> [Action] {
        switch self.stream {
        case .closing, .closed: return []
        case .awaitingOpen, .opening, .open: return self.streamError(condition, domain: nil)
        }
    }

    // MARK: From upstream

    public mutating func upstreamOpened(_ info: StreamInfo) -> [Action] {
        guard case .opening(let domain) = self.stream else { return [] }
        self.stream = .open(domain: domain)
        self.openSent = true
        return [.sendText(WebSocketFraming.open(info, fallbackFrom: domain, to: self.clientFrom))]
    }

    /// Server elements, each already self-contained: one message each.
    /// `streamManagement`: whether XEP-0198 is on for the upstream stream after `elements`.
    public mutating func upstreamReceived(_ elements: [ByteBuffer], streamManagement: Bool) -> [Action] {
        guard case .open = self.stream else { return [] }
        self.streamManagementEnabled = streamManagement
        return elements.map { .sendText($0) }
    }

    /// The server's `<stream:error/>`, relayed as its own message, then `<close/>` (§3.5).
    public mutating func upstreamStreamError(_ error: ByteBuffer) -> [Action] {
        switch self.stream {
        case .closing, .closed:
            return []
        case .awaitingOpen, .opening, .open:
            var actions: [Action] = []
            if !self.openSent, case .opening(let domain) = self.stream {
                actions.append(.sendText(WebSocketFraming.open(StreamInfo(), fallbackFrom: domain, to: self.clientFrom)))
            }
            self.stream = .closing
            self.ending(.serverStreamError)
            return actions + [.sendText(error), .sendText(WebSocketFraming.close()), self.schedule(.close, after: self.configuration.closeTimeout)]
        }
    }

    /// The upstream stream ended (or could not be opened), as `UpstreamEnding` names it.
    public mutating func upstreamEnded(_ ending: UpstreamEnding) -> [Action] {
        switch self.stream {
        case .closing, .closed, .awaitingOpen:
            return []
        case .opening(let domain), .open(let domain):
            switch ending {
            case .closed:
                self.stream = .closing
                return [.sendText(WebSocketFraming.close()), self.schedule(.close, after: self.configuration.closeTimeout)]
            case .unreachable:
                return self.streamError(.hostUnknown, domain: domain, upstreamGone: true)
            case .failed:
                return self.streamError(.remoteConnectionFailed, domain: domain, upstreamGone: true)
            case .serverNotReading:
                let limit = ending.limit.map { [Action.limitReached($0)] } ?? []
                return limit + self.streamError(.policyViolation, domain: domain, upstreamGone: true)
            }
        }
    }

    // MARK: Endings

    /// The stream is lost with the connection (a drop, or a close frame without `<close/>`).
    mutating func streamLost(unwritten: [ByteBuffer], reason: String) -> [Action] {
        let upstreamOpen: Bool
        switch self.stream {
        case .opening, .open: upstreamOpen = true
        case .awaitingOpen, .closing, .closed: upstreamOpen = false
        }
        self.stream = .closed
        guard upstreamOpen, !self.streamManagementEnabled else { return [.closeUpstream(graceful: false)] }
        var bounces: [ByteBuffer] = []
        for stanza in unwritten {
            if case .bounce(let error) = StanzaBounce.outcome(for: stanza) { bounces.append(error) }
        }
        guard !bounces.isEmpty else { return [.closeUpstream(graceful: true)] }
        return [.forwardUpstream(bounces[0]), .stanzasBounced(count: bounces.count, reason: reason)]
            + bounces.dropFirst().map { .forwardUpstream($0) } + [.closeUpstream(graceful: true)]
    }

    /// Ends the session at the WebSocket layer: no XMPP error can be told on a broken framing.
    mutating func failWebSocket(code: UInt16) -> [Action] {
        let closeUpstream: [Action]
        switch self.stream {
        case .closed: return []
        case .closing, .awaitingOpen: closeUpstream = []
        case .opening, .open: closeUpstream = [.closeUpstream(graceful: true)]
        }
        self.stream = .closed
        self.ending(.webSocketFailed(code: code))
        return closeUpstream + self.closeWebSocket(code: code, failing: true)
    }

    mutating func streamError(_ condition: StreamErrorCondition, domain: String?, upstreamGone: Bool = false) -> [Action] {
        var actions: [Action] = []
        if !self.openSent {
            // §3.5: an error during stream opening follows an <open/>.
            actions.append(.sendText(WebSocketFraming.open(StreamInfo(), fallbackFrom: domain, to: self.clientFrom)))
            self.openSent = true
        }
        switch self.stream {
        case .opening, .open: if !upstreamGone { actions.append(.closeUpstream(graceful: true)) }
        case .awaitingOpen, .closing, .closed: break
        }
        self.stream = .closing
        self.ending(.streamError(condition))
        return actions + [.sendText(condition.element), .sendText(WebSocketFraming.close()), self.schedule(.close, after: self.configuration.closeTimeout)]
    }

    /// The first reason a session ends is the one it ended for.
    mutating func ending(_ end: WebSocketSessionEnd) {
        if self.end == nil { self.end = end }
    }

    // MARK: Timers

    mutating func schedule(_ timer: Timer, after delay: TimeAmount) -> Action {
        .scheduleTimer(self.timers.schedule(timer), delay)
    }

    mutating func cancel(_ timer: Timer) -> Action {
        self.timers.cancel(timer)
        return .cancelTimer(timer)
    }
}
