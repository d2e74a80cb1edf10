import NIOCore
import XMPPCore

/// Whether Tether negotiates STARTTLS with the server (RFC 6120 §5).
public enum UpstreamTLSPolicy: String, Hashable, Sendable, CaseIterable {
    /// Refuse servers that do not offer STARTTLS.
    case required
    /// Use STARTTLS when offered; a certificate that fails verification is still an error.
    case optional
    /// Never negotiate TLS (loopback or trusted networks only).
    case off
}

/// Why an upstream stream could not be used.
public enum UpstreamError: Error, Hashable, Sendable, CustomStringConvertible {
    case dnsFailure(String)
    /// DNS itself is failing (no answer), as opposed to a name that does not exist: transient.
    case resolverUnavailable(String)
    case noAddresses(String)
    case addressNotAllowed(String)
    case connectFailed(String)
    case timedOut(String)
    case tlsNotOffered
    case tlsRefused
    case tlsHandshakeFailed(String)
    case protocolViolation(String)
    case malformedXML(XMLFramerError)
    case closedByPeer
    /// The server stopped reading: more than this many bytes were waiting to be written to it.
    case serverNotReading(queuedBytes: Int)

    public var description: String {
        switch self {
        case .dnsFailure(let reason): return "DNS lookup failed: \(reason)"
        case .resolverUnavailable(let reason): return "DNS unavailable: \(reason)"
        case .noAddresses(let host): return "no usable address for \(host)"
        case .addressNotAllowed(let address): return "address \(address) is not allowed as an upstream"
        case .connectFailed(let reason): return "connect failed: \(reason)"
        case .timedOut(let phase): return "timed out \(phase)"
        case .tlsNotOffered: return "the server does not offer STARTTLS and the TLS policy requires it"
        case .tlsRefused: return "the server refused STARTTLS"
        case .tlsHandshakeFailed(let reason): return "TLS handshake failed: \(reason)"
        case .protocolViolation(let reason): return "XMPP protocol violation: \(reason)"
        case .malformedXML(let error): return "upstream sent \(error)"
        case .closedByPeer: return "the server closed the connection"
        case .serverNotReading(let bytes): return "the server stopped reading: over \(bytes) bytes queued for it"
        }
    }

    /// Whether the name could not be resolved at all (`host-unknown`) rather than reached.
    public var isResolutionFailure: Bool {
        switch self {
        case .dnsFailure, .noAddresses, .addressNotAllowed: return true
        default: return false
        }
    }
}

/// The client side of RFC 6120 stream negotiation that Tether handles itself: the stream header,
/// STARTTLS, and restarts. Everything after (SASL, bind, stanzas) is relayed untouched.
public struct UpstreamStreamStateMachine {
    /// What the stream waits for under a timer.
    public enum Timer: Hashable, Sendable, CaseIterable {
        /// The server's stream header and features (RFC 6120 §4.3), from the connection's start.
        case streamOpen
        /// The server's answer to the closing ping (see `close(barrierID:)`).
        case closingBarrier
        /// After `</stream:stream>`: the server's own closing tag and the end of the connection (§4.4).
        case linger
    }

    public typealias TimerID = TimerTable<Timer>.ID

    public struct Timeouts: Sendable, Hashable {
        public var streamOpen: TimeAmount
        /// Both the closing ping's answer and the server's closing tag get this long.
        public var closing: TimeAmount

        public init(streamOpen: TimeAmount = .seconds(15), closing: TimeAmount = .seconds(3)) {
            self.streamOpen = streamOpen
            self.closing = closing
        }
    }

    public enum Action {
        /// Write these bytes (a stream header or `<starttls/>`).
        case send(String)
        /// Write these bytes first, before anything of XMPP (a PROXY protocol header).
        case sendPrelude(ByteBuffer)
        case scheduleTimer(TimerID, TimeAmount)
        case cancelTimer(Timer)
        /// Close the TCP connection now (the server did not close it after `</stream:stream>`).
        case closeConnection
        /// Reset the XML framer: a new stream starts on the same connection.
        case resetFramer
        /// Put TLS at the front of the pipeline now, then call `tlsHandshakeCompleted()`.
        case startTLS
        /// The usable stream (re)opened.
        case opened(StreamInfo)
        /// Relay this element to the client; for features, without `<starttls/>`.
        case deliver(XMLElementSlice)
        /// Relay the server's `<stream:error/>` and end.
        case streamError(ByteBuffer)
        /// End with this error.
        case fail(UpstreamError)
        /// The server closed its stream.
        case closed
        /// While closing: write this error, the answer to a stanza the server sent for a client
        /// that is gone (`StanzaBounce`).
        case bounce(ByteBuffer)
        /// Write `</stream:stream>`, then read and drop until the server closes the connection
        /// (closed after the closing timeout at the latest).
        case finishClosing
    }

    private enum State: Equatable {
        case idle
        case awaitingHeader(tlsDone: Bool)
        case awaitingFeatures(tlsDone: Bool, info: StreamInfo)
        case awaitingProceed
        case handshaking
        case open(tlsDone: Bool)
        /// `close(barrierID:)` sent a ping; everything the server wrote before its answer is
        /// read (and bounced) before `</stream:stream>`.
        case closing(barrierID: String)
        case closed
    }

    public let header: StreamHeader
    public let tlsPolicy: UpstreamTLSPolicy
    public let timeouts: Timeouts
    /// Sent before the stream header (a PROXY protocol header), in the clear.
    private let prelude: ByteBuffer?
    private var state: State = .idle
    private var timers = TimerTable<Timer>()
    /// A resource is bound on the stream: from here on the server routes stanzas to it, so some
    /// may be on their way at any moment.
    public private(set) var isBound = false
    /// XEP-0198 is on for this stream (the server said `<enabled/>` or `<resumed/>`): the server
    /// then answers for every unacknowledged stanza itself, so a closing stream bounces nothing.
    public private(set) var streamManagementEnabled = false

    public init(header: StreamHeader, tlsPolicy: UpstreamTLSPolicy, prelude: ByteBuffer? = nil, timeouts: Timeouts = Timeouts()) {
        self.header = header
        self.tlsPolicy = tlsPolicy
        self.prelude = prelude
        self.timeouts = timeouts
    }

    public var isOpen: Bool {
        if case .open = self.state { return true }
        return false
    }

    public var tlsEstablished: Bool {
        switch self.state {
        case .awaitingHeader(let done), .awaitingFeatures(let done, _), .open(let done): return done
        case .handshaking, .awaitingProceed, .idle, .closed, .closing: return false
        }
    }

    public var isClosing: Bool {
        if case .closing = self.state { return true }
        return false
    }

    /// The TCP connection is up. The I/O side may learn it twice (a handler added around the
    /// moment the channel becomes active): only the first call starts the stream.
    public mutating func connected() -> [Action] {
        guard self.state == .idle else { return [] }
        self.state = .awaitingHeader(tlsDone: false)
        return self.starting() + [.send(self.header.serialized)]
    }

    /// Direct TLS (XEP-0368): the connection negotiates TLS from its first byte, so nothing is
    /// sent until `tlsHandshakeCompleted()`; the stream then opens over TLS and STARTTLS is
    /// never negotiated on it.
    public mutating func connectedOverTLS() -> [Action] {
        guard self.state == .idle else { return [] }
        self.state = .handshaking
        return self.starting()
    }

    /// The prelude, and the time the server has to open its stream.
    private mutating func starting() -> [Action] {
        let prelude = self.prelude.map { [Action.sendPrelude($0)] } ?? []
        return prelude + [.scheduleTimer(self.timers.schedule(.streamOpen), self.timeouts.streamOpen)]
    }

    /// A timer scheduled by this machine fired; one cancelled or replaced since does nothing.
    public mutating func timerFired(_ timer: TimerID) -> [Action] {
        guard self.timers.fire(timer) else { return [] }
        switch timer.kind {
        case .streamOpen:
            switch self.state {
            case .open, .closing, .closed: return []
            case .idle, .awaitingHeader, .awaitingFeatures, .awaitingProceed, .handshaking:
                return self.fail(.timedOut("waiting for the server's stream"))
            }
        case .closingBarrier:
            return self.closingTimedOut()
        case .linger:
            return [.closeConnection]
        }
    }

    /// The client restarts the stream (after SASL): new header, same TCP connection (XEP-0206 §5, RFC 7395 §3.7).
    public mutating func restart() -> [Action] {
        switch self.state {
        case .open(let tlsDone), .awaitingFeatures(let tlsDone, _), .awaitingHeader(let tlsDone):
            self.state = .awaitingHeader(tlsDone: tlsDone)
            // XEP-0198 §4: enabled per stream.
            self.streamManagementEnabled = false
            return [.resetFramer, .send(self.header.serialized)]
        case .idle, .awaitingProceed, .handshaking, .closed, .closing:
            return []
        }
    }

    public mutating func tlsHandshakeCompleted() -> [Action] {
        guard self.state == .handshaking else { return [] }
        self.state = .awaitingHeader(tlsDone: true)
        return [.resetFramer, .send(self.header.serialized)]
    }

    /// One event of the framer; `bufferedBytes`: what the framer holds beyond the events of
    /// the read so far (bytes after `<proceed/>` would be plaintext injected before TLS).
    public mutating func receive(_ event: XMLStreamFramer.Event, bufferedBytes: Int = 0) -> [Action] {
        switch (self.state, event) {
        case (.closing(let barrierID), _):
            return self.receiveWhileClosing(event, barrierID: barrierID)
        case (.awaitingHeader(let tlsDone), .rootOpened(let root)):
            guard root.name.localName == "stream", root.name.namespace == XMLNamespaces.streams else {
                return self.fail(.protocolViolation("expected <stream:stream>, got <\(root.name)>"))
            }
            self.state = .awaitingFeatures(tlsDone: tlsDone, info: StreamInfo(root: root))
            return []
        case (_, .rootOpened(let root)):
            return self.fail(.protocolViolation("unexpected stream header <\(root.name)>"))
        case (.closed, _):
            return []
        case (_, .rootClosed):
            self.state = .closed
            return self.cancelAll() + [.closed]
        case (_, .element(let element)) where element.name.localName == "error" && element.name.namespace == XMLNamespaces.streams:
            self.state = .closed
            return self.cancelAll() + [.streamError(element.standaloneBytes())]
        case (.awaitingFeatures(let tlsDone, let info), .element(let element)):
            guard element.name.localName == "features", element.name.namespace == XMLNamespaces.streams else {
                return self.fail(.protocolViolation("expected <stream:features>, got <\(element.name)>"))
            }
            let offersTLS = element.children.contains { $0.name.namespace == XMLNamespaces.tls && $0.name.localName == "starttls" }
            if !tlsDone && self.tlsPolicy != .off {
                if offersTLS {
                    self.state = .awaitingProceed
                    return [.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")]
                }
                if self.tlsPolicy == .required {
                    return self.fail(.tlsNotOffered)
                }
            }
            self.state = .open(tlsDone: tlsDone)
            return self.cancel(.streamOpen) + [.opened(info), .deliver(element)]
        case (.awaitingProceed, .element(let element)):
            guard element.name.namespace == XMLNamespaces.tls else {
                return self.fail(.protocolViolation("expected STARTTLS answer, got <\(element.name)>"))
            }
            if element.name.localName == "proceed" {
                // RFC 6120 §5.4.3.3: TLS starts right after <proceed/>; anything the server
                // sent after it in the clear is not to be trusted.
                guard bufferedBytes == 0 else { return self.fail(.protocolViolation("data after <proceed/>")) }
                self.state = .handshaking
                return [.startTLS]
            }
            return self.fail(.tlsRefused)
        case (.open, .element(let element)):
            self.observe(element)
            return [.deliver(element)]
        case (.idle, .element), (.awaitingHeader, .element), (.handshaking, .element):
            return self.fail(.protocolViolation("element before the stream opened"))
        }
    }

    // MARK: Closing without losing what is in flight

    /// Ends the stream of a client that is gone. `barrierID` is the id of the closing ping, or
    /// `nil` to close at once (too many streams are closing already).
    ///
    /// Without XEP-0198 the server may be writing stanzas for the client at this moment, and once
    /// it reads `</stream:stream>` it counts everything it wrote as delivered. So on a bound
    /// stream a ping goes first (XEP-0199 §4.2; a server without it answers
    /// `service-unavailable`, RFC 6120 §8.4, which serves as well): the server answers it after
    /// everything it sent before, and each stanza read until then is bounced through this stream
    /// (RFC 6120 §10.4.3). Only then `</stream:stream>` (§4.4). What the server routes after its
    /// answer meets a closed stream and is its to store or bounce. With XEP-0198 the server
    /// answers for what the client did not acknowledge (§5), so nothing is bounced. Call
    /// `closingTimedOut()` if the answer is late.
    public mutating func close(barrierID: String?) -> [Action] {
        switch self.state {
        case .closing, .closed:
            return []
        case .open where self.isBound && !self.streamManagementEnabled:
            guard let barrierID else { fallthrough }
            self.state = .closing(barrierID: barrierID)
            let to = self.header.to.isEmpty ? "" : " to='\(XMLEscaping.escapeAttribute(self.header.to))'"
            return self.cancel(.streamOpen) + [
                .send("<iq type='get' id='\(XMLEscaping.escapeAttribute(barrierID))'\(to)><ping xmlns='urn:xmpp:ping'/></iq>"),
                .scheduleTimer(self.timers.schedule(.closingBarrier), self.timeouts.closing),
            ]
        case .idle, .awaitingHeader, .awaitingFeatures, .awaitingProceed, .handshaking, .open:
            // Nothing in flight can be lost: no resource is bound (nothing is routed to the
            // stream), XEP-0198 is on (the server answers for it), or no barrier is allowed.
            self.state = .closed
            return self.finishClosing()
        }
    }

    /// The server did not answer the closing ping in time (or the bounces it causes pile up
    /// unread): close anyway.
    public mutating func closingTimedOut() -> [Action] {
        guard self.isClosing else { return [] }
        self.state = .closed
        return self.finishClosing()
    }

    private mutating func receiveWhileClosing(_ event: XMLStreamFramer.Event, barrierID: String) -> [Action] {
        guard case .element(let element) = event else {
            // The server closed first (or restarted, which it may not): nothing more will come.
            self.state = .closed
            return self.finishClosing()
        }
        if element.name.namespace == XMLNamespaces.streams {
            // A stream error (or features): the server is ending the stream itself.
            self.state = .closed
            return self.finishClosing()
        }
        let bytes = element.standaloneBytes()
        if element.name.localName == "iq", let iq = try? XMLElement.parse(bytes, maxDepth: 64), iq.attribute("id") == barrierID,
            iq.attribute("type") == "result" || iq.attribute("type") == "error",
            // From the server itself (it stamps the domain, or leaves `from` out).
            iq.attribute("from").map({ $0.lowercased() == self.header.to.lowercased() }) ?? true
        {
            self.state = .closed
            return self.finishClosing()
        }
        if case .bounce(let error) = StanzaBounce.outcome(for: bytes) { return [.bounce(error)] }
        return []
    }

    /// What a server element says about binding and XEP-0198: the bind result (RFC 6120
    /// §7.6.1), SASL2 success with an inline bind or resumption (XEP-0388, XEP-0386, XEP-0198
    /// §5 inside it), `<enabled/>`, `<resumed/>` and `<failed/>` (XEP-0198 §4, §5).
    private mutating func observe(_ element: XMLElementSlice) {
        let name = element.name.localName
        let namespace = element.name.namespace ?? ""
        if namespace.hasPrefix(Self.streamManagementPrefix) {
            switch name {
            case "enabled": self.streamManagementEnabled = true
            case "resumed":
                self.streamManagementEnabled = true
                self.isBound = true
            case "failed": self.streamManagementEnabled = false
            default: break
            }
            return
        }
        guard !self.isBound else { return }
        switch (name, namespace) {
        case ("iq", XMLNamespaces.jabberClient):
            guard element.children.contains(where: { $0.name.localName == "bind" && $0.name.namespace == Self.bindNamespace }),
                let iq = try? XMLElement.parse(element.standaloneBytes(), maxDepth: 64), iq.attribute("type") == "result"
            else { return }
            self.isBound = true
        case ("success", Self.sasl2Namespace):
            guard let success = try? XMLElement.parse(element.standaloneBytes(), maxDepth: 64) else { return }
            self.isBound =
                success.children.contains { $0.name.localName == "bound" && $0.name.namespace == Self.bind2Namespace }
                || success.children.contains { $0.name.localName == "resumed" && ($0.name.namespace ?? "").hasPrefix(Self.streamManagementPrefix) }
            func enables(_ element: XMPPCore.XMLElement) -> Bool {
                (["enabled", "resumed"].contains(element.name.localName) && (element.name.namespace ?? "").hasPrefix(Self.streamManagementPrefix))
                    || element.children.contains(where: enables)
            }
            if success.children.contains(where: enables) { self.streamManagementEnabled = true }
        default:
            break
        }
    }

    static let streamManagementPrefix = "urn:xmpp:sm:"
    static let bindNamespace = "urn:ietf:params:xml:ns:xmpp-bind"
    static let sasl2Namespace = "urn:xmpp:sasl:2"
    static let bind2Namespace = "urn:xmpp:bind:0"

    public mutating func fail(_ error: UpstreamError) -> [Action] {
        guard self.state != .closed else { return [] }
        self.state = .closed
        return self.cancelAll() + [.fail(error)]
    }

    /// `</stream:stream>`, then the server gets `timeouts.closing` to close the connection.
    private mutating func finishClosing() -> [Action] {
        self.cancelAll() + [.finishClosing, .scheduleTimer(self.timers.schedule(.linger), self.timeouts.closing)]
    }

    private mutating func cancel(_ timer: Timer) -> [Action] {
        self.timers.cancel(timer) ? [.cancelTimer(timer)] : []
    }

    private mutating func cancelAll() -> [Action] {
        Timer.allCases.flatMap { self.cancel($0) }
    }
}
