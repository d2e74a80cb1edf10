/// The opening tag of a client-to-server stream (RFC 6120 §4.7) that Tether sends upstream.
public struct StreamHeader: Hashable, Sendable {
    public var to: String
    public var from: String?
    public var language: String?
    public var version: String

    public init(to: String, from: String? = nil, language: String? = nil, version: String = "1.0") {
        self.to = to
        self.from = from
        self.language = language
        self.version = version
    }

    /// `<?xml version='1.0'?><stream:stream …>`, ready to write.
    public var serialized: String {
        var header = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'"
        header += " to='\(XMLEscaping.escapeAttribute(self.to))'"
        if let from = self.from { header += " from='\(XMLEscaping.escapeAttribute(from))'" }
        if let language = self.language { header += " xml:lang='\(XMLEscaping.escapeAttribute(language))'" }
        header += " version='\(XMLEscaping.escapeAttribute(self.version))'>"
        return header
    }

    public static let closing = "</stream:stream>"
}

/// What the server said about its stream in its `<stream:stream>` header.
public struct StreamInfo: Hashable, Sendable {
    public var id: String?
    public var from: String?
    public var version: String?
    public var language: String?

    public init(id: String? = nil, from: String? = nil, version: String? = nil, language: String? = nil) {
        self.id = id
        self.from = from
        self.version = version
        self.language = language
    }

    public init(root: XMLRootElement) {
        self.init(
            id: root.attributes.value(of: "id"),
            from: root.attributes.value(of: "from"),
            version: root.attributes.value(of: "version"),
            language: root.attributes.value(of: "lang", namespace: XMLNamespaces.xml)
        )
    }
}
