/// Namespace URIs Tether reads or writes.
public enum XMLNamespaces {
    public static let jabberClient = "jabber:client"
    public static let streams = "http://etherx.jabber.org/streams"
    public static let httpBind = "http://jabber.org/protocol/httpbind"
    public static let xbosh = "urn:xmpp:xbosh"
    public static let framing = "urn:ietf:params:xml:ns:xmpp-framing"
    public static let tls = "urn:ietf:params:xml:ns:xmpp-tls"
    public static let sasl = "urn:ietf:params:xml:ns:xmpp-sasl"
    public static let streamErrors = "urn:ietf:params:xml:ns:xmpp-streams"
    public static let xml = "http://www.w3.org/XML/1998/namespace"
    /// XEP-0198 stream management, version 3.
    public static let streamManagement = "urn:xmpp:sm:3"
}
