import NIOCore

/// The answer a server would give for a stanza that cannot reach its recipient (RFC 6120 §8.3,
/// §10.4.3), built by Tether for stanzas the server handed it for a client that is gone.
///
/// Sent back through the client's own stream before it closes, so the server routes each error
/// to whoever sent the stanza: its `to` is the original `from`, its `from` the original `to` (the
/// client's own JID, which the server accepts on that stream), its `id` the original's.
public enum StanzaBounce {
    /// Why the stanza was not delivered, for metrics (`tether_stanzas_bounced_total{reason}`).
    public enum Outcome: Equatable, Sendable {
        /// Answer with this error stanza.
        case bounce(ByteBuffer)
        /// Nothing to answer: presence (the server learns the client is gone from the stream's
        /// end), an error stanza (errors are never answered with errors, §8.3.1), a groupchat
        /// message (the room learns it from the presence), or what is not a stanza.
        case drop
    }

    static let stanzaErrors = "urn:ietf:params:xml:ns:xmpp-stanzas"

    /// The bounce for one self-contained element as the server sent it.
    public static func outcome(for element: ByteBuffer) -> Outcome {
        guard let stanza = try? XMLElement.parse(element, maxDepth: 64), stanza.name.namespace == XMLNamespaces.jabberClient else {
            return .drop
        }
        let type = stanza.attribute("type")
        let condition: (kind: String, name: String)
        switch stanza.name.localName {
        case "message":
            // §8.3.3.19 `service-unavailable`, not `recipient-unavailable`: §8.3.3.13 forbids
            // telling availability to a sender that may not know it (one not subscribed to the
            // recipient's presence), which Tether cannot check. Headlines are never answered
            // (RFC 6121 §8.5.2.1.1: ignored when no resource takes them).
            guard type != "error", type != "groupchat", type != "headline" else { return .drop }
            condition = ("cancel", "service-unavailable")
        case "iq":
            // §8.2.3: a request must be answered; nobody is there to answer it.
            guard type == "get" || type == "set" else { return .drop }
            condition = ("cancel", "service-unavailable")
        default:
            return .drop
        }
        guard let sender = stanza.attribute("from"), !sender.isEmpty else {
            // From the server itself (no `from`): nobody to tell.
            return .drop
        }
        var text = "<\(stanza.name.localName) xmlns='jabber:client' type='error' to='\(XMLEscaping.escapeAttribute(sender))'"
        if let recipient = stanza.attribute("to") { text += " from='\(XMLEscaping.escapeAttribute(recipient))'" }
        if let id = stanza.attribute("id") { text += " id='\(XMLEscaping.escapeAttribute(id))'" }
        text += "><error type='\(condition.kind)'><\(condition.name) xmlns='\(Self.stanzaErrors)'/></error></\(stanza.name.localName)>"
        return .bounce(ByteBuffer(string: text))
    }
}
