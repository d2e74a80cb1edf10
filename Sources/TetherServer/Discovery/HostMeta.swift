import XMPPCore

/// XEP-0156 discovery files listing Tether's public endpoints, for deployments that route the
/// XMPP domain's `/.well-known/host-meta*` here (off unless a public URL is configured).
public struct HostMetaSettings: Hashable, Sendable {
    /// The public BOSH URL (`https://chat.example.com/http-bind`).
    public var boshURL: String?
    /// The public WebSocket URL (`wss://chat.example.com/xmpp-websocket`).
    public var webSocketURL: String?

    public init(boshURL: String? = nil, webSocketURL: String? = nil) {
        self.boshURL = boshURL
        self.webSocketURL = webSocketURL
    }

    static let boshRelation = "urn:xmpp:alt-connections:xbosh"
    static let webSocketRelation = "urn:xmpp:alt-connections:websocket"

    private var links: [(relation: String, url: String)] {
        [(Self.boshRelation, self.boshURL), (Self.webSocketRelation, self.webSocketURL)].compactMap { link in
            link.1.map { (link.0, $0) }
        }
    }

    /// `/.well-known/host-meta` (XRD, required by XEP-0156 §3).
    var xrd: String {
        var text = "<?xml version='1.0' encoding='utf-8'?>\n<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>\n"
        for link in self.links {
            text += "  <Link rel='\(link.relation)' href='\(XMLEscaping.escapeAttribute(link.url))'/>\n"
        }
        return text + "</XRD>\n"
    }

    /// `/.well-known/host-meta.json` (JRD).
    var jrd: String {
        let entries = self.links.map { link in
            "    {\"rel\": \"\(link.relation)\", \"href\": \(JSONText.quoted(link.url))}"
        }
        return "{\n  \"links\": [\n" + entries.joined(separator: ",\n") + "\n  ]\n}\n"
    }
}
