import NIOCore

extension XMLElementSlice {
    /// The element's bytes made to parse on their own, outside the stream that declared its namespaces.
    ///
    /// Servers declare `xmlns='jabber:client'` and `xmlns:stream` once on `<stream:stream>`, and
    /// BOSH clients may declare prefixes on `<body/>`, so an element sliced out of its root can use
    /// names bound only there. XEP-0206 §2 and RFC 7395 §3.3.3 need every relayed element to be
    /// self-contained, so the declarations it relies on (`inheritedNamespaces`: for its own name,
    /// its attributes and its descendants, none of which redeclare them) are spliced in right after
    /// the element name. Children matching `removing` are cut out (e.g. `<starttls/>` from features).
    public func standaloneBytes(removing shouldRemove: (XMLChildRange) -> Bool = { _ in false }) -> ByteBuffer {
        var declaration = ""
        for inherited in self.inheritedNamespaces {
            declaration += " xmlns" + (inherited.prefix.map { ":" + $0 } ?? "") + "='" + XMLEscaping.escapeAttribute(inherited.uri) + "'"
        }
        let removals = self.children.filter(shouldRemove).map(\.range)
        if declaration.isEmpty && removals.isEmpty {
            return self.bytes
        }
        var source = self.bytes
        var output = ByteBufferAllocator().buffer(capacity: source.readableBytes + declaration.utf8.count)
        let nameEnd = 1 + self.name.qualifiedName.utf8.count
        var position = 0
        var cuts: [(at: Int, skip: Int, insert: String)] = [(nameEnd, 0, declaration)]
        cuts += removals.map { ($0.lowerBound, $0.count, "") }
        cuts.sort { $0.at < $1.at }
        for cut in cuts {
            if var piece = source.readSlice(length: cut.at - position) {
                output.writeBuffer(&piece)
            }
            output.writeString(cut.insert)
            source.moveReaderIndex(forwardBy: cut.skip)
            position = cut.at + cut.skip
        }
        output.writeBuffer(&source)
        return output
    }
}
