import Foundation
import NIOCore
import XMPPCore

/// The client side of an XMPP login (SASL PLAIN → restart → bind) played through a BOSH session,
/// for prebinding: a web application's backend asks Tether to log a user in, and the browser
/// later attaches to the session with its sid and next rid. No I/O: each BOSH answer's children
/// go in, what to send next comes out.
struct PrebindLoginStateMachine {
    enum Next: Equatable, Sendable {
        /// Send these payloads in the next request.
        case send([ByteBuffer])
        /// Send a restart request (XEP-0206 §5).
        case restart
        /// Nothing to act on yet: send an empty request and read its answer.
        case poll
        /// Logged in and bound.
        case finished(jid: String)
        case failed(PrebindFailure)
    }

    private enum State {
        case awaitingFeatures
        case awaitingSASLOutcome
        case awaitingBindFeatures
        case awaitingBind(sessionRequired: Bool)
        case awaitingSession(jid: String)
        case done
    }

    static let bindID = "tether-prebind-bind"
    static let sessionID = "tether-prebind-session"

    private var state = State.awaitingFeatures
    private let username: String
    private let password: String
    private let resource: String?

    init(username: String, password: String, resource: String?) {
        self.username = username
        self.password = password
        self.resource = resource
    }

    /// The children of one BOSH answer, in order.
    mutating func received(_ elements: [XMLElement]) -> Next {
        for element in elements {
            if element.name.localName == "error", element.name.namespace == XMLNamespaces.streams {
                self.state = .done
                return .failed(.streamError(element.children.first?.name.localName ?? "undefined-condition"))
            }
            if let next = self.handle(element) { return next }
        }
        return .poll
    }

    private mutating func handle(_ element: XMLElement) -> Next? {
        switch self.state {
        case .awaitingFeatures:
            guard Self.isFeatures(element) else { return nil }
            let mechanisms = element.child("mechanisms", namespace: XMLNamespaces.sasl)?.children.map(\.text) ?? []
            guard mechanisms.contains("PLAIN") else {
                self.state = .done
                return .failed(.plainNotOffered)
            }
            self.state = .awaitingSASLOutcome
            let credentials = Data([0] + Array(self.username.utf8) + [0] + Array(self.password.utf8)).base64EncodedString()
            return .send([ByteBuffer(string: "<auth xmlns='\(XMLNamespaces.sasl)' mechanism='PLAIN'>\(credentials)</auth>")])
        case .awaitingSASLOutcome:
            guard element.name.namespace == XMLNamespaces.sasl else { return nil }
            switch element.name.localName {
            case "success":
                self.state = .awaitingBindFeatures
                return .restart
            case "failure":
                self.state = .done
                let condition = element.children.first { $0.name.localName != "text" }?.name.localName ?? "not-authorized"
                return .failed(.authenticationFailed(condition))
            default:
                return nil
            }
        case .awaitingBindFeatures:
            guard Self.isFeatures(element) else { return nil }
            guard element.child("bind", namespace: "urn:ietf:params:xml:ns:xmpp-bind") != nil else {
                self.state = .done
                return .failed(.bindNotOffered)
            }
            // RFC 3921 session establishment, only where the server still requires it.
            let session = element.child("session", namespace: "urn:ietf:params:xml:ns:xmpp-session")
            self.state = .awaitingBind(sessionRequired: session != nil && session?.child("optional") == nil)
            let resource = self.resource.map { "<resource>\(XMLEscaping.escapeText($0))</resource>" } ?? ""
            return .send([ByteBuffer(string: "<iq xmlns='jabber:client' type='set' id='\(Self.bindID)'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\(resource)</bind></iq>")])
        case .awaitingBind(let sessionRequired):
            guard element.name.localName == "iq", element.attribute("id") == Self.bindID else { return nil }
            guard element.attribute("type") == "result",
                let jid = element.child("bind")?.child("jid")?.text, !jid.isEmpty
            else {
                self.state = .done
                let condition = element.child("error")?.children.first?.name.localName ?? "undefined-condition"
                return .failed(.bindFailed(condition))
            }
            if sessionRequired {
                self.state = .awaitingSession(jid: jid)
                return .send([ByteBuffer(string: "<iq xmlns='jabber:client' type='set' id='\(Self.sessionID)'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>")])
            }
            self.state = .done
            return .finished(jid: jid)
        case .awaitingSession(let jid):
            guard element.name.localName == "iq", element.attribute("id") == Self.sessionID else { return nil }
            self.state = .done
            return element.attribute("type") == "result" ? .finished(jid: jid) : .failed(.bindFailed("session"))
        case .done:
            return nil
        }
    }

    private static func isFeatures(_ element: XMLElement) -> Bool {
        element.name.localName == "features" && element.name.namespace == XMLNamespaces.streams
    }
}

/// Why a prebind login did not complete.
enum PrebindFailure: Error, Hashable, Sendable, CustomStringConvertible {
    /// The server does not offer SASL PLAIN over this stream.
    case plainNotOffered
    /// SASL failed with this condition (`not-authorized`, …).
    case authenticationFailed(String)
    case bindNotOffered
    case bindFailed(String)
    case streamError(String)
    /// The BOSH session ended with this terminate condition.
    case terminated(String)

    var description: String {
        switch self {
        case .plainNotOffered: return "the server does not offer SASL PLAIN"
        case .authenticationFailed(let condition): return "authentication failed: \(condition)"
        case .bindNotOffered: return "the server does not offer resource binding"
        case .bindFailed(let condition): return "resource binding failed: \(condition)"
        case .streamError(let condition): return "stream error: \(condition)"
        case .terminated(let condition): return "session terminated: \(condition)"
        }
    }
}
