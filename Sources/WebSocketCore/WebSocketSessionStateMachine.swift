import NIOCore
import XMPPCore

/// The rules of one XMPP-over-WebSocket session (RFC 7395), with no I/O.
///
/// It translates `<open/>`/`<close/>` to and from the upstream stream, relays elements, and
/// runs the closing handshake of §3.6. A WebSocket that drops without `<close/>` drops the
/// upstream TCP connection without `</stream:stream>`, so the server keeps an XEP-0198 session
/// for resumption.
public struct WebSocketSessionStateMachine {
    public enum Action: Sendable {
        /// Open the upstream stream with this header.
        case connectUpstream(StreamHeader)
        /// New stream header on the same upstream connection (after SASL).
        case restartUpstream
        case forwardUpstream(ByteBuffer)
        /// One WebSocket text message to the client.
        case send(ByteBuffer)
        /// Close upstream: graceful sends `</stream:stream>`.
        case closeUpstream(graceful: Bool)
        /// Start the WebSocket closing handshake with this status code (RFC 6455 §7.4).
        case closeWebSocket(code: UInt16)
        /// Call `closeTimeoutFired()` after the configured close timeout.
        case startCloseTimer
        /// Drop the TCP connection now (the peer is gone or did not finish closing).
        case dropConnection
        /// For metrics and the log: this many stanzas that never reached the client were
        /// answered with errors (in the `forwardUpstream` before it), because of `reason`.
        case stanzasBounced(count: Int, reason: String)
    }

    /// Why the upstream stream went away.
    public enum UpstreamEnd: Sendable {
        /// `</stream:stream>` from the server.
        case closed
        /// TCP lost, refused, TLS failure, timeout.
        case failed(unreachable: Bool)
    }

    private enum State {
        /// Waiting for the client's first `<open/>`.
        case awaitingOpen
        /// `<open/>` relayed; waiting for the server's stream header.
        case opening(domain: String)
        case open(domain: String)
        /// `<close/>` exchanged or an error sent; waiting for the WebSocket to end.
        case closing
        case closed
    }

    private var state: State = .awaitingOpen
    /// An `<open/>` has been sent to the client on the current stream.
    private var openSent = false
    /// XEP-0198 on the upstream stream (see `StreamManagementWatch`).
    private var streamManagement = StreamManagementWatch()
    private let serves: (String) -> Bool

    /// - Parameter serves: whether a domain named in `<open to=…/>` is served.
    public init(serves: @escaping (String) -> Bool) {
        self.serves = serves
    }

    public var isClosed: Bool {
        if case .closed = self.state { return true }
        return false
    }

    /// Closing or closed: no more stanzas are relayed.
    public var isClosing: Bool {
        switch self.state {
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
        switch self.state {
        case .open: return limit
        case .awaitingOpen, .opening, .closing: return min(limit, Self.framingMessageBytes)
        case .closed: return 0
        }
    }

    /// Room for an `<open/>` or `<close/>` with generous attributes (a JID is at most 3071 bytes,
    /// RFC 7622 §3.1, and `<open/>` carries at most two).
    public static let framingMessageBytes = 8192

    // MARK: From the client

    public mutating func received(_ message: WebSocketMessage) -> [Action] {
        switch (self.state, message) {
        case (.awaitingOpen, .open(let to, let from, let version, let language)):
            guard let to, !to.isEmpty else {
                return self.streamError(.improperAddressing, domain: nil)
            }
            let domain = to.lowercased()
            guard self.serves(domain) else {
                return self.streamError(.hostUnknown, domain: domain)
            }
            self.state = .opening(domain: domain)
            return [.connectUpstream(StreamHeader(to: domain, from: from, language: language, version: version ?? "1.0"))]
        case (.open(let domain), .open):
            // §3.7: a restart after SASL; both sides' streams start afresh on the same connection.
            self.state = .opening(domain: domain)
            self.openSent = false
            self.streamManagement.streamRestarted()
            return [.restartUpstream]
        case (.open, .element(let bytes)):
            return [.forwardUpstream(bytes)]
        case (.open, .close), (.opening, .close):
            // §3.6: answer <close/>, end the upstream stream, let the client close the WebSocket.
            self.state = .closing
            return [.closeUpstream(graceful: true), .send(WebSocketFraming.close()), .startCloseTimer]
        case (.closing, .close):
            // Our <close/> was answered: we initiated, so we close the WebSocket.
            self.state = .closed
            return [.closeWebSocket(code: 1000)]
        case (.closing, _), (.closed, _):
            return []
        case (.awaitingOpen, _), (.opening, .element), (.opening, .open):
            return self.streamError(.notWellFormed, domain: nil)
        }
    }

    /// The client broke the framing rules: report it as a stream error and close.
    public mutating func violation(_ condition: StreamErrorCondition) -> [Action] {
        switch self.state {
        case .closing, .closed: return []
        case .awaitingOpen, .opening, .open: return self.streamError(condition, domain: nil)
        }
    }

    /// A binary message: RFC 7395 §3.2 allows text only; close with 1003 (unsupported data).
    public mutating func binaryReceived() -> [Action] {
        self.failWebSocket(code: 1003)
    }

    /// A frame broke RFC 6455 itself (unmasked, §5.1; reserved bits no extension defines, §5.2):
    /// the WebSocket connection is failed with 1002 (protocol error, §7.4.1).
    public mutating func frameRulesBroken() -> [Action] {
        self.failWebSocket(code: 1002)
    }

    /// Ends the session at the WebSocket layer: no XMPP error can be told on a broken framing.
    private mutating func failWebSocket(code: UInt16) -> [Action] {
        switch self.state {
        case .closed: return []
        case .closing, .awaitingOpen:
            self.state = .closed
            return [.closeWebSocket(code: code)]
        case .opening, .open:
            self.state = .closed
            return [.closeUpstream(graceful: true), .closeWebSocket(code: code)]
        }
    }

    /// The client's WebSocket closing handshake arrived (a close frame), with `unwritten`: the
    /// messages it will not read (a closing browser drops them).
    public mutating func webSocketCloseReceived(unwritten: [ByteBuffer] = []) -> [Action] {
        switch self.state {
        case .closed:
            return [.dropConnection]
        case .closing:
            self.state = .closed
            return [.closeWebSocket(code: 1000)]
        case .awaitingOpen, .opening, .open:
            // Closed without <close/>: with XEP-0198 the server's session stays resumable;
            // without it, what the client will not read is bounced (as for a lost connection).
            return self.connectionLost(unwritten: unwritten, reason: "closed-without-close") + [.closeWebSocket(code: 1000)]
        }
    }

    /// The TCP connection under the WebSocket is gone, with `unwritten`: the messages the server
    /// sent that never reached the client (still queued when the socket dropped or was cut).
    ///
    /// With XEP-0198 on, the upstream connection is dropped without `</stream:stream>`: the
    /// server keeps what the client did not acknowledge for `<resume/>`. Without it, a closed
    /// stream means "delivered" to the server, so each unwritten stanza is first answered as a
    /// server would (`StanzaBounce`, RFC 6120 §10.4.3) and then the stream is closed.
    public mutating func connectionLost(unwritten: [ByteBuffer] = [], reason: String = "connection-lost") -> [Action] {
        let upstreamOpen: Bool
        switch self.state {
        case .opening, .open: upstreamOpen = true
        case .awaitingOpen, .closing, .closed: upstreamOpen = false
        }
        self.state = .closed
        guard upstreamOpen, !self.streamManagement.isEnabled else { return [.closeUpstream(graceful: false)] }
        var bounces: [ByteBuffer] = []
        for stanza in unwritten {
            if case .bounce(let error) = StanzaBounce.outcome(for: stanza) { bounces.append(error) }
        }
        guard !bounces.isEmpty else { return [.closeUpstream(graceful: true)] }
        return [.forwardUpstream(bounces[0]), .stanzasBounced(count: bounces.count, reason: reason)]
            + bounces.dropFirst().map { .forwardUpstream($0) } + [.closeUpstream(graceful: true)]
    }

    /// The client has not sent `<open/>` in the time a connection gets to say what it wants:
    /// RFC 6120 §4.9.3.4 `connection-timeout`, then the closing handshake.
    public mutating func openTimeoutFired() -> [Action] {
        guard case .awaitingOpen = self.state else { return [] }
        return self.streamError(.connectionTimeout, domain: nil)
    }

    public mutating func closeTimeoutFired() -> [Action] {
        switch self.state {
        case .closing, .closed:
            self.state = .closed
            return [.dropConnection]
        case .awaitingOpen, .opening, .open:
            return []
        }
    }

    // MARK: From upstream

    public mutating func upstreamOpened(_ info: StreamInfo) -> [Action] {
        guard case .opening(let domain) = self.state else { return [] }
        self.state = .open(domain: domain)
        self.openSent = true
        return [.send(WebSocketFraming.open(info, fallbackFrom: domain))]
    }

    /// Server elements, each already self-contained: one message each.
    public mutating func upstreamReceived(_ elements: [ByteBuffer]) -> [Action] {
        guard case .open = self.state else { return [] }
        for element in elements { self.streamManagement.serverSent(element) }
        return elements.map { .send($0) }
    }

    /// The server's `<stream:error/>`, relayed as its own message, then `<close/>` (§3.5).
    public mutating func upstreamStreamError(_ error: ByteBuffer) -> [Action] {
        switch self.state {
        case .closing, .closed:
            return []
        case .awaitingOpen, .opening(_), .open:
            var actions: [Action] = []
            if !self.openSent, case .opening(let domain) = self.state {
                actions.append(.send(WebSocketFraming.open(StreamInfo(), fallbackFrom: domain)))
            }
            self.state = .closing
            return actions + [.send(error), .send(WebSocketFraming.close()), .startCloseTimer]
        }
    }

    public mutating func upstreamEnded(_ end: UpstreamEnd) -> [Action] {
        switch self.state {
        case .closing, .closed, .awaitingOpen:
            return []
        case .opening(let domain), .open(let domain):
            switch end {
            case .closed:
                self.state = .closing
                return [.send(WebSocketFraming.close()), .startCloseTimer]
            case .failed(let unreachable):
                return self.streamError(unreachable ? .hostUnknown : .remoteConnectionFailed, domain: domain, upstreamGone: true)
            }
        }
    }

    /// Tether is shutting down: send clients elsewhere, or tell them why.
    /// With XEP-0198 the upstream connection is dropped without `</stream:stream>`, so the
    /// session resumes elsewhere; without it the stream is closed, so what the server still
    /// sends is bounced (regression: dropped, and lost in silence).
    public mutating func shutdown(redirect uri: String?) -> [Action] {
        switch self.state {
        case .closing, .closed:
            return []
        case .awaitingOpen, .opening, .open:
            self.state = .closing
            let closeUpstream = Action.closeUpstream(graceful: !self.streamManagement.isEnabled)
            if let uri {
                return [closeUpstream, .send(WebSocketFraming.close(seeOtherURI: uri)), .startCloseTimer]
            }
            // §3.5: a stream error follows an <open/>, also before the client's.
            let open: [Action] = self.openSent ? [] : [.send(WebSocketFraming.open(StreamInfo(), fallbackFrom: nil))]
            self.openSent = true
            return [closeUpstream] + open + [.send(StreamErrorCondition.systemShutdown.element), .send(WebSocketFraming.close()), .startCloseTimer]
        }
    }

    private mutating func streamError(_ condition: StreamErrorCondition, domain: String?, upstreamGone: Bool = false) -> [Action] {
        var actions: [Action] = []
        if !self.openSent {
            // §3.5: an error during stream opening follows an <open/>.
            actions.append(.send(WebSocketFraming.open(StreamInfo(), fallbackFrom: domain)))
            self.openSent = true
        }
        if !upstreamGone, case .opening = self.state {
            actions.append(.closeUpstream(graceful: true))
        } else if !upstreamGone, case .open = self.state {
            actions.append(.closeUpstream(graceful: true))
        }
        self.state = .closing
        return actions + [.send(condition.element), .send(WebSocketFraming.close()), .startCloseTimer]
    }
}
