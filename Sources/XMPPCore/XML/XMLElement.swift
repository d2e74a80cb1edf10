import CExpat
import NIOCore

/// A small parsed element tree, for the few places Tether reads a stanza instead of relaying it
/// (the prebind login reads stream features, SASL outcomes and the bound JID).
/// Relayed stanzas are never parsed into trees: they stay byte slices.
public struct XMLElement: Hashable, Sendable {
    public var name: XMLName
    public var attributes: [XMLAttribute]
    public var children: [XMLElement]
    /// The element's own character data, concatenated.
    public var text: String

    public init(name: XMLName, attributes: [XMLAttribute] = [], children: [XMLElement] = [], text: String = "") {
        self.name = name
        self.attributes = attributes
        self.children = children
        self.text = text
    }

    public func attribute(_ localName: String) -> String? {
        self.attributes.first { $0.name.localName == localName && $0.name.namespace == nil }?.value
    }

    /// The first child with this local name (and namespace, when given).
    public func child(_ localName: String, namespace: String? = nil) -> XMLElement? {
        self.children.first { $0.name.localName == localName && (namespace == nil || $0.name.namespace == namespace) }
    }

    /// Parses one complete element (a standalone stanza) with the same guards as every other
    /// parser in Tether (`HardenedXMLParser`): DTDs, entities, comments and PIs are refused.
    public static func parse(_ bytes: ByteBuffer, maxDepth: Int = 32) throws(XMLFramerError) -> XMLElement {
        let builder = TreeBuilder(maxDepth: maxDepth)
        return try builder.parse(bytes)
    }
}

private final class TreeBuilder: XMLParserOwner {
    private let maxDepth: Int
    private var stack: [XMLElement] = []
    private var root: XMLElement?

    init(maxDepth: Int) {
        self.maxDepth = maxDepth
    }

    func parse(_ bytes: ByteBuffer) throws(XMLFramerError) -> XMLElement {
        HardenedXMLParser.make(for: self)
        defer { self.releaseParser() }
        let parser = self.parser!
        XML_SetElementHandler(
            parser,
            { userData, name, attributes in
                guard let name, let attributes else { return }
                TreeBuilder.from(userData).start(name: name, attributes: attributes)
            },
            { userData, _ in TreeBuilder.from(userData).end() }
        )
        XML_SetCharacterDataHandler(parser) { userData, data, length in
            guard let data else { return }
            TreeBuilder.from(userData).characters(data, length: length)
        }
        let status = bytes.withUnsafeReadableBytes { raw in
            XML_Parse(parser, raw.baseAddress?.assumingMemoryBound(to: CChar.self), Int32(raw.count), 1)
        }
        if let failure = self.failure { throw failure }
        guard status != XML_STATUS_ERROR else {
            let message = XML_ErrorString(XML_GetErrorCode(parser)).map { String(cString: $0) } ?? "unknown error"
            throw .notWellFormed(message)
        }
        guard let root = self.root else { throw .notWellFormed("no element") }
        return root
    }

    private func start(name: UnsafePointer<CChar>, attributes: UnsafeMutablePointer<UnsafePointer<CChar>?>) {
        guard self.stack.count < self.maxDepth else {
            self.fail(.tooDeep(limit: self.maxDepth))
            return
        }
        var parsed: [XMLAttribute] = []
        var index = 0
        while let key = attributes[index], let value = attributes[index + 1] {
            parsed.append(XMLAttribute(name: XMLName(expatTriplet: key), value: String(cString: value)))
            index += 2
        }
        self.stack.append(XMLElement(name: XMLName(expatTriplet: name), attributes: parsed))
    }

    private func end() {
        guard let element = self.stack.popLast() else { return }
        if self.stack.isEmpty {
            self.root = element
        } else {
            self.stack[self.stack.count - 1].children.append(element)
        }
    }

    private func characters(_ data: UnsafePointer<CChar>, length: Int32) {
        guard !self.stack.isEmpty else { return }
        let text = UnsafeRawBufferPointer(start: data, count: Int(length))
        self.stack[self.stack.count - 1].text += String(decoding: text, as: UTF8.self)
    }

    private static func from(_ userData: UnsafeMutableRawPointer?) -> TreeBuilder {
        Unmanaged<TreeBuilder>.fromOpaque(userData!).takeUnretainedValue()
    }
}
