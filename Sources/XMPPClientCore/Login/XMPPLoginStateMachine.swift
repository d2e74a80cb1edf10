import NIOCore
import XMPPCore

/// A client's login, independent of the transport: features → SASL (RFC 6120 §6) → stream
/// restart → resource binding (§7) → the RFC 3921 §3 session where a server still requires it →
/// initial presence, then the established session until logout.
///
/// The one login Tether plays, for the load generator's simulated clients and for prebinding
/// (`POST /prebind` logs a user in on a BOSH session that a browser then attaches to).
///
/// Pure: every input returns the `Action` the transport carries out. "Open" and "restart" mean a
/// stream header on TCP, `<open/>` on WebSocket, and the creation or `xmpp:restart` body on BOSH.
public struct XMPPLoginStateMachine: Sendable {
    /// Where the login is; also the phase that time is charged to.
    public enum Phase: String, Sendable, Hashable, Codable {
        case connecting
        case awaitingFeatures
        case authenticating
        case awaitingBoundFeatures
        case binding
        /// RFC 3921 §3: the server's features said `<session/>` without `<optional/>`.
        case startingSession
        /// XEP-0198: `<resume/>` sent instead of bind, on a new stream for an earlier session.
        case resuming
        case established
        case closing
        case closed
        case failed
    }

    public enum Action: Sendable, Hashable {
        /// Open the stream (first time).
        case openStream
        /// Send this element on the stream.
        case send(String)
        /// Authentication succeeded: open a new stream (RFC 6120 §6.4.6).
        case restartStream
        /// Bound: the session is up with this full JID; send the initial presence given here,
        /// if the machine was made to send one.
        case established(jid: String, presence: String?)
        /// XEP-0198: the earlier session is back; the server had `h` of its stanzas.
        case resumed(h: UInt32)
        /// The login or the session failed.
        case fail(ClientFailure)
        /// The session closed as asked.
        case closed
        case none
    }

    public let username: String
    public let password: String
    public let domain: String
    /// The resource to ask for; nil lets the server choose one (RFC 6120 §7.6).
    public let resource: String?
    /// The mechanisms to use, best first; the first one the server offers is taken.
    public let mechanisms: [SASLMechanism]
    /// Whether establishing the session sends `<presence/>` (a prebound session leaves that to
    /// the browser that attaches to it).
    public let sendsInitialPresence: Bool
    public private(set) var phase: Phase = .connecting
    public private(set) var jid: String?
    private let bindID = "bind1"
    private let sessionID = "session1"
    /// The bound features asked for an RFC 3921 session.
    private var sessionRequired = false
    private var scram: SCRAMSHA1Client?
    /// The `<resume/>` to send once authenticated, instead of bind.
    private var resumeElement: String?

    public init(
        username: String, password: String, domain: String, resource: String?, mechanisms: [SASLMechanism] = [.plain], sendsInitialPresence: Bool = true
    ) {
        precondition(!mechanisms.isEmpty, "a login needs a SASL mechanism")
        self.username = username
        self.password = password
        self.domain = domain
        self.resource = resource
        self.mechanisms = mechanisms
        self.sendsInitialPresence = sendsInitialPresence
    }

    public var isEstablished: Bool { self.phase == .established }

    /// Starts over on a new connection to resume an earlier session (XEP-0198 §5): the same
    /// login up to the bound stream features, then `resume` instead of bind. The JID stays.
    public mutating func beginResumption(_ resume: String) {
        self.phase = .connecting
        self.scram = nil
        self.resumeElement = resume
    }

    /// The transport is connected.
    public mutating func connected() -> Action {
        guard self.phase == .connecting else { return .none }
        self.phase = .awaitingFeatures
        return .openStream
    }

    /// A top-level element arrived (not a `<message>` of an established session: the client handles those itself).
    public mutating func received(_ element: XMLElementSlice) -> Action {
        let name = element.name
        if name.localName == "error", name.namespace == XMLNamespaces.streams {
            let condition = element.childNames(namespace: XMLNamespaces.streamErrors).first ?? "undefined-condition"
            return self.fail(ClientFailure(.streamError, condition))
        }
        switch self.phase {
        case .awaitingFeatures:
            guard name.localName == "features", name.namespace == XMLNamespaces.streams else { return .none }
            if let tls = element.child("starttls", namespace: XMLNamespaces.tls), String(buffer: tls).contains("required") {
                return self.fail(ClientFailure(.protocolViolation, "starttls-required"))
            }
            guard let mechanisms = element.child("mechanisms", namespace: XMLNamespaces.sasl) else {
                return self.fail(ClientFailure(.protocolViolation, "no-sasl-mechanisms"))
            }
            let offered = String(buffer: mechanisms)
            guard let mechanism = self.mechanisms.first(where: { offered.contains(">\($0.rawValue)<") }) else {
                let wanted = self.mechanisms.count == 1 ? self.mechanisms[0].rawValue.lowercased() : "mechanism"
                return self.fail(ClientFailure(.protocolViolation, "no-sasl-\(wanted)"))
            }
            self.phase = .authenticating
            switch mechanism {
            case .plain:
                return .send(Self.plainAuth(username: self.username, password: self.password))
            case .scramSHA1:
                let scram = SCRAMSHA1Client(username: self.username, password: self.password)
                self.scram = scram
                return .send("<auth xmlns='\(XMLNamespaces.sasl)' mechanism='SCRAM-SHA-1'>\(Base64.encode(Array(scram.clientFirst.utf8)))</auth>")
            }

        case .authenticating:
            guard name.namespace == XMLNamespaces.sasl else { return .none }
            switch name.localName {
            case "challenge":
                guard var scram = self.scram, let text = StanzaScanner.text(of: "challenge", in: element.bytes),
                    let decoded = Base64.decode(text)
                else {
                    return self.fail(ClientFailure(.protocolViolation, "unexpected-sasl-challenge"))
                }
                do {
                    let final = try scram.clientFinal(serverFirst: String(decoding: decoded, as: UTF8.self))
                    self.scram = scram
                    return .send("<response xmlns='\(XMLNamespaces.sasl)'>\(Base64.encode(Array(final.utf8)))</response>")
                } catch {
                    return self.fail(ClientFailure(.protocolViolation, "scram-\(error)"))
                }
            case "success":
                if let scram = self.scram {
                    // Mutual authentication: the server proves it knows the password too.
                    let text = StanzaScanner.text(of: "success", in: element.bytes) ?? ""
                    let decoded = Base64.decode(text).map { String(decoding: $0, as: UTF8.self) } ?? ""
                    do {
                        try scram.verify(serverFinal: decoded)
                    } catch {
                        return self.fail(ClientFailure(.protocolViolation, "scram-server-signature"))
                    }
                }
                self.phase = .awaitingBoundFeatures
                return .restartStream
            case "failure":
                let condition = element.childNames(namespace: XMLNamespaces.sasl).first ?? "undefined-condition"
                return self.fail(ClientFailure(.saslFailure, condition))
            default:
                return self.fail(ClientFailure(.protocolViolation, "unexpected-sasl-\(name.localName)"))
            }

        case .awaitingBoundFeatures:
            guard name.localName == "features", name.namespace == XMLNamespaces.streams else { return .none }
            if let resume = self.resumeElement {
                self.phase = .resuming
                return .send(resume)
            }
            guard element.hasChild("bind", namespace: Self.bindNamespace) else {
                return self.fail(ClientFailure(.protocolViolation, "no-bind-feature"))
            }
            // RFC 3921 §3 sessions: obsolete (RFC 6121 drops them) and offered as `<optional/>` by
            // current servers, still required by some old ones.
            self.sessionRequired = element.child("session", namespace: Self.sessionNamespace).map { !String(buffer: $0).contains("optional") } ?? false
            self.phase = .binding
            let resource = self.resource.map { "<resource>\(XMLEscaping.escapeText($0))</resource>" } ?? ""
            return .send("<iq type='set' id='\(self.bindID)' xmlns='jabber:client'><bind xmlns='\(Self.bindNamespace)'>\(resource)</bind></iq>")

        case .binding:
            guard name.localName == "iq", StanzaScanner.attribute("id", in: element.bytes) == self.bindID else { return .none }
            guard StanzaScanner.attribute("type", in: element.bytes) == "result" else {
                let condition = Self.stanzaErrorCondition(element.bytes) ?? "undefined-condition"
                return self.fail(ClientFailure(.bindError, condition))
            }
            guard let jid = StanzaScanner.text(of: "jid", in: element.bytes), !jid.isEmpty else {
                return self.fail(ClientFailure(.protocolViolation, "bind-without-jid"))
            }
            self.jid = jid
            if self.sessionRequired {
                self.phase = .startingSession
                return .send("<iq type='set' id='\(self.sessionID)' xmlns='jabber:client'><session xmlns='\(Self.sessionNamespace)'/></iq>")
            }
            return self.establish(jid: jid)

        case .startingSession:
            guard name.localName == "iq", StanzaScanner.attribute("id", in: element.bytes) == self.sessionID, let jid = self.jid else { return .none }
            guard StanzaScanner.attribute("type", in: element.bytes) == "result" else {
                let condition = Self.stanzaErrorCondition(element.bytes) ?? "undefined-condition"
                return self.fail(ClientFailure(.bindError, "session-\(condition)"))
            }
            return self.establish(jid: jid)

        case .resuming:
            guard name.namespace == XMLNamespaces.streamManagement else { return .none }
            switch name.localName {
            case "resumed":
                self.resumeElement = nil
                self.phase = .established
                let h = StanzaScanner.attribute("h", in: element.bytes).flatMap { UInt32($0) } ?? 0
                return .resumed(h: h)
            case "failed":
                self.resumeElement = nil
                let condition = element.childNames(namespace: Self.stanzaErrors).first ?? "undefined-condition"
                return self.fail(ClientFailure(.resumeFailed, condition))
            default:
                return .none
            }

        case .established, .closing:
            // Answer pings so a server never drops a busy client for silence.
            if name.localName == "iq", StanzaScanner.attribute("type", in: element.bytes) == "get" {
                let id = StanzaScanner.attribute("id", in: element.bytes) ?? ""
                let from = StanzaScanner.attribute("from", in: element.bytes).map { " to='\(XMLEscaping.escapeAttribute($0))'" } ?? ""
                return .send("<iq type='result' id='\(XMLEscaping.escapeAttribute(id))'\(from) xmlns='jabber:client'/>")
            }
            return .none

        case .connecting, .closed, .failed:
            return .none
        }
    }

    /// Begins a clean logout; returns the unavailable presence to send before closing the stream.
    public mutating func logout() -> Action {
        switch self.phase {
        case .established:
            self.phase = .closing
            return .send("<presence type='unavailable' xmlns='jabber:client'/>")
        case .closing, .closed, .failed:
            return .none
        default:
            self.phase = .closing
            return .none
        }
    }

    /// The stream (or the BOSH session) ended.
    public mutating func streamClosed() -> Action {
        switch self.phase {
        case .closing:
            self.phase = .closed
            return .closed
        case .closed, .failed:
            return .none
        default:
            return self.fail(ClientFailure(.closed, "while-\(self.phase.rawValue)"))
        }
    }

    /// A transport-level failure (connect refused, HTTP error, timeout…).
    public mutating func transportFailed(_ failure: ClientFailure) -> Action {
        switch self.phase {
        case .closed, .failed: return .none
        case .closing:
            self.phase = .closed
            return .closed
        default: return self.fail(failure)
        }
    }

    private mutating func establish(jid: String) -> Action {
        self.phase = .established
        return .established(jid: jid, presence: self.sendsInitialPresence ? "<presence xmlns='jabber:client'/>" : nil)
    }

    private mutating func fail(_ failure: ClientFailure) -> Action {
        if self.phase == .closing {
            self.phase = .closed
            return .closed
        }
        self.phase = .failed
        return .fail(failure)
    }

    public static let bindNamespace = "urn:ietf:params:xml:ns:xmpp-bind"
    static let sessionNamespace = "urn:ietf:params:xml:ns:xmpp-session"
    static let stanzaErrors = "urn:ietf:params:xml:ns:xmpp-stanzas"

    /// `<auth mechanism='PLAIN'>` with base64("\0user\0password") (RFC 4616).
    static func plainAuth(username: String, password: String) -> String {
        var bytes: [UInt8] = [0]
        bytes += Array(username.utf8)
        bytes.append(0)
        bytes += Array(password.utf8)
        return "<auth xmlns='\(XMLNamespaces.sasl)' mechanism='PLAIN'>\(Base64.encode(bytes))</auth>"
    }

    static func stanzaErrorCondition(_ bytes: ByteBuffer) -> String? {
        let text = String(buffer: bytes)
        guard let range = text.firstRange(of: "xmlns='\(stanzaErrors)'") ?? text.firstRange(of: "xmlns=\"\(stanzaErrors)\"") else { return nil }
        // The condition is the element whose namespace declaration we found: walk back to its '<'.
        guard let open = text[..<range.lowerBound].lastIndex(of: "<") else { return nil }
        let name = text[text.index(after: open)...].prefix { $0 != " " && $0 != "/" && $0 != ">" }
        return String(name)
    }
}
