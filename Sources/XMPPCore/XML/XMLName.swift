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
        let parts = String(cString: raw).split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
        switch parts.count {
        case 3:
            self.init(namespace: String(parts[0]), localName: String(parts[1]), prefix: String(parts[2]))
        case 2:
            self.init(namespace: String(parts[0]), localName: String(parts[1]), prefix: nil)
        default:
            self.init(namespace: nil, localName: String(parts[0]), prefix: nil)
        }
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
