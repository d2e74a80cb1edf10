/// A namespace-qualified XML name as expat reports it with namespace triplets on.
public struct XMLName: Hashable, Sendable, CustomStringConvertible {
    /// The namespace URI, or `nil` when the name is in no namespace.
    public var namespace: String?
    public var localName: String
    /// The prefix written in the document (`stream` in `stream:features`), if any.
    public var prefix: String?

    public init(namespace: String?, localName: String, prefix: String? = nil) {
        self.namespace = namespace
        self.localName = localName
        self.prefix = prefix
    }

    /// The name as written in the document: `prefix:local` or `local`.
    public var qualifiedName: String {
        if let prefix = self.prefix { return "\(prefix):\(self.localName)" }
        return self.localName
    }

    public var description: String {
        if let namespace = self.namespace { return "{\(namespace)}\(self.qualifiedName)" }
        return self.qualifiedName
    }

    /// Parses expat's triplet form: `uri local prefix`, `uri local` or `local`.
    init(expatTriplet raw: UnsafePointer<CChar>) {
        var length = 0
        while raw[length] != 0 { length += 1 }
        let bytes = UnsafeRawBufferPointer(start: raw, count: length)
        guard let first = bytes.firstIndex(of: 0x20) else {
            self.init(namespace: nil, localName: String(decoding: bytes, as: UTF8.self), prefix: nil)
            return
        }
        let namespace = Self.namespace(UnsafeRawBufferPointer(rebasing: bytes[..<first]))
        let rest = UnsafeRawBufferPointer(rebasing: bytes[(first + 1)...])
        guard let second = rest.firstIndex(of: 0x20) else {
            self.init(namespace: namespace, localName: String(decoding: rest, as: UTF8.self), prefix: nil)
            return
        }
        self.init(
            namespace: namespace,
            localName: String(decoding: UnsafeRawBufferPointer(rebasing: rest[..<second]), as: UTF8.self),
            prefix: String(decoding: UnsafeRawBufferPointer(rebasing: rest[(second + 1)...]), as: UTF8.self)
        )
    }

    /// The namespaces of nearly every element Tether frames, shared: most are longer than a
    /// small string's 15 bytes, so each name would otherwise allocate its URI.
    private static let common = [
        XMLNamespaces.httpBind, XMLNamespaces.streams, XMLNamespaces.xbosh, XMLNamespaces.framing, XMLNamespaces.sasl,
        XMLNamespaces.tls, XMLNamespaces.streamErrors, XMLNamespaces.xml, XMLNamespaces.streamManagement,
        "urn:ietf:params:xml:ns:xmpp-stanzas", "urn:ietf:params:xml:ns:xmpp-bind", "http://jabber.org/protocol/caps",
        "http://jabber.org/protocol/chatstates", "urn:xmpp:receipts", "urn:xmpp:delay",
    ]

    private static func namespace(_ bytes: UnsafeRawBufferPointer) -> String {
        for candidate in Self.common where candidate.utf8.count == bytes.count && candidate.utf8.elementsEqual(bytes) {
            return candidate
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// One attribute of an element, with its value already unescaped by the parser.
public struct XMLAttribute: Hashable, Sendable {
    public var name: XMLName
    public var value: String

    public init(name: XMLName, value: String) {
        self.name = name
        self.value = value
    }
}

extension Array where Element == XMLAttribute {
    /// The value of the attribute with this local name and namespace (`nil` namespace = unqualified).
    public func value(of localName: String, namespace: String? = nil) -> String? {
        self.first { $0.name.localName == localName && $0.name.namespace == namespace }?.value
    }
}
