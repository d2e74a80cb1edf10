import CExpat
import NIOCore

/// Finds the complete top-level children of a root element in a byte stream, incrementally.
///
/// An XMPP stream (`<stream:stream>` … `</stream:stream>`) and a BOSH `<body/>` have the same
/// shape: one root element whose children are the units Tether relays. The framer feeds bytes to
/// expat as they arrive and hands out each child as a slice of the original bytes, so a stanza is
/// forwarded byte for byte, never re-serialised.
///
/// Hostile input is refused rather than tolerated: DTDs, entity declarations, comments and
/// processing instructions (RFC 6120 §11.1, by `HardenedXMLParser`), elements deeper than
/// `Limits.maxDepth`, and any element (or unparsed tail) larger than `Limits.maxElementBytes`.
///
/// A framer left idle between children can `hibernate()`: expat's state (about 10 KiB) is freed
/// and rebuilt on the next bytes, primed with the root's start tag so namespaces resolve as before.
///
/// Not thread-safe: one framer belongs to one connection.
public final class XMLStreamFramer: XMLParserOwner {
    public struct Limits: Hashable, Sendable {
        /// Largest top-level child, in bytes (Prosody's default stanza limit is 256 KiB).
        public var maxElementBytes: Int
        /// Deepest element, counting the root as depth 1.
        public var maxDepth: Int

        public init(maxElementBytes: Int = 256 * 1024, maxDepth: Int = 32) {
            self.maxElementBytes = maxElementBytes
            self.maxDepth = maxDepth
        }
    }

    public enum Event: Sendable {
        case rootOpened(XMLRootElement)
        case element(XMLElementSlice)
        case rootClosed
    }

    public let limits: Limits
    /// Non-whitespace text directly inside the root is an error when set (BOSH §6); otherwise it is dropped.
    public let rejectsRootText: Bool

    /// The root's start tag with its namespace declarations, to prime a parser after hibernation.
    private var rootStartTag: String?
    /// Parsing that start tag: its events are not reported.
    private var priming = false
    /// Inside a CDATA section: expat's state then holds more than the root's context.
    private var inCDATA = false
    /// Bytes not yet handed out: from the start of the unfinished child, or from the end of the last event.
    private var pending = ByteBuffer()
    /// Absolute expat byte index of `pending.readerIndex`.
    private var pendingBase = 0
    private var depth = 0
    private var elementStart = 0
    private var lastEventEnd = 0
    private var currentElement: ElementInProgress?
    private var declarationsForNextElement: [XMLNamespaceDeclaration] = []
    /// Prefixes (`nil`: the default namespace) declared inside the current child, with the depth
    /// that declared them: names using anything else take it from the root.
    private var childDeclarations: [(prefix: String?, depth: Int)] = []
    private var events: [Event] = []
    private var rootClosed = false

    private struct ElementInProgress {
        var name: XMLName
        var declaresDefaultNamespace: Bool
        var declaredPrefixes: [String]
        var children: [XMLChildRange]
        var childStart: Int
        var inheritedNamespaces: [XMLNamespaceDeclaration]
    }

    public init(limits: Limits = Limits(), rejectsRootText: Bool = false) {
        self.limits = limits
        self.rejectsRootText = rejectsRootText
        super.init()
        HardenedXMLParser.make(for: self)
        self.installHandlers()
    }

    /// Whether expat's state is currently freed (`parser` is `nil` while hibernating).
    public var isHibernating: Bool { self.parser == nil }

    /// Frees expat's state while the stream is between children (nothing buffered, root open);
    /// does nothing otherwise. The next `feed` rebuilds it.
    public func hibernate() {
        guard self.parser != nil, self.depth == 1, self.currentElement == nil, self.pending.readableBytes == 0,
            !self.inCDATA, self.failure == nil, !self.rootClosed, self.rootStartTag != nil
        else { return }
        self.releaseParser()
        self.childDeclarations = []
    }

    /// A fresh parser that has read the root's start tag (and reported nothing).
    private func wake() throws(XMLFramerError) {
        guard self.parser == nil, let tag = self.rootStartTag else { return }
        HardenedXMLParser.make(for: self)
        self.installHandlers()
        self.depth = 0
        self.priming = true
        let status = XML_Parse(self.parser!, tag, Int32(tag.utf8.count), 0)
        self.priming = false
        self.events.removeAll()
        guard status != XML_STATUS_ERROR, self.failure == nil, self.depth == 1 else {
            throw self.failure ?? .notWellFormed("could not resume the stream")
        }
        self.pendingBase = tag.utf8.count
        self.lastEventEnd = tag.utf8.count
        self.elementStart = tag.utf8.count
        self.pending = ByteBuffer()
    }

    /// The number of bytes held for an unfinished child (what a slow or hostile peer costs us).
    public var bufferedBytes: Int { self.pending.readableBytes }

    /// Whether the root element has been closed.
    public var isRootClosed: Bool { self.rootClosed }

    /// Feeds the next bytes of the stream and returns what they completed.
    public func feed(_ bytes: ByteBuffer) throws(XMLFramerError) -> [Event] {
        if let failure = self.failure { throw failure }
        try self.wake()
        if self.pending.readableBytes == 0 {
            self.pending = bytes
        } else {
            var bytes = bytes
            self.pending.writeBuffer(&bytes)
        }
        let status = bytes.withUnsafeReadableBytes { raw -> XML_Status in
            let base = raw.baseAddress?.assumingMemoryBound(to: CChar.self)
            return XML_Parse(self.parser!, base, Int32(raw.count), 0)
        }
        return try self.collect(status: status)
    }

    /// Signals the end of input: a document that is not complete is an error. Used for BOSH bodies.
    public func finish() throws(XMLFramerError) -> [Event] {
        if let failure = self.failure { throw failure }
        try self.wake()
        let status = XML_Parse(self.parser!, nil, 0, 1)
        return try self.collect(status: status)
    }

    /// Starts a fresh document on the same framer: after STARTTLS and SASL the peer opens a new stream.
    public func reset() {
        if self.parser == nil || !HardenedXMLParser.reset(self) {
            self.releaseParser()
            HardenedXMLParser.make(for: self)
        }
        self.installHandlers()
        self.rootStartTag = nil
        self.inCDATA = false
        self.pending = ByteBuffer()
        self.pendingBase = 0
        self.depth = 0
        self.elementStart = 0
        self.lastEventEnd = 0
        self.currentElement = nil
        self.declarationsForNextElement = []
        self.childDeclarations = []
        self.events = []
        self.failure = nil
        self.rootClosed = false
    }

    private func collect(status: XML_Status) throws(XMLFramerError) -> [Event] {
        if let failure = self.failure {
            self.events.removeAll()
            throw failure
        }
        if status == XML_STATUS_ERROR {
            let code = XML_GetErrorCode(self.parser!)
            let message = XML_ErrorString(code).map { String(cString: $0) } ?? "unknown error"
            let failure = XMLFramerError.notWellFormed(message)
            self.failure = failure
            self.events.removeAll()
            throw failure
        }
        // Release what has been handed out; keep the unfinished child or the unparsed tail.
        let keepFrom = self.depth >= 2 ? self.elementStart : self.lastEventEnd
        let discard = keepFrom - self.pendingBase
        if discard > 0 {
            self.pending.moveReaderIndex(forwardBy: min(discard, self.pending.readableBytes))
            self.pendingBase = keepFrom
        }
        if self.pending.readableBytes == 0 {
            self.pending = ByteBuffer()
        } else if self.pending.readableBytes > self.limits.maxElementBytes {
            let failure = XMLFramerError.elementTooLarge(limit: self.limits.maxElementBytes)
            self.failure = failure
            self.events.removeAll()
            throw failure
        }
        let events = self.events
        self.events.removeAll(keepingCapacity: true)
        return events
    }

    private var currentByteIndex: Int { Int(XML_GetCurrentByteIndex(self.parser!)) }
    private var currentEventEnd: Int { self.currentByteIndex + Int(XML_GetCurrentByteCount(self.parser!)) }

    // MARK: expat callbacks

    fileprivate func startNamespaceDeclaration(prefix: UnsafePointer<CChar>?, uri: UnsafePointer<CChar>?) {
        self.declarationsForNextElement.append(
            XMLNamespaceDeclaration(
                prefix: prefix.map { String(cString: $0) },
                uri: uri.map { String(cString: $0) } ?? ""
            )
        )
    }

    fileprivate func startElement(name: UnsafePointer<CChar>, attributes: UnsafeMutablePointer<UnsafePointer<CChar>?>) {
        self.depth += 1
        let declarations = self.declarationsForNextElement
        self.declarationsForNextElement.removeAll(keepingCapacity: true)
        if self.depth > self.limits.maxDepth {
            self.fail(.tooDeep(limit: self.limits.maxDepth))
            return
        }
        switch self.depth {
        case 1 where self.priming:
            // Re-reading the root's start tag after hibernation: nothing to report.
            break
        case 1:
            // Told UTF-8, expat still switches to UTF-16 on a byte-order mark; slices and
            // standaloneBytes assume UTF-8 (RFC 6120 §11.6), so the root tag must be UTF-8 bytes.
            let rootName = XMLName(expatTriplet: name)
            let tag = Array("<\(rootName.qualifiedName)".utf8)
            guard self.pending.getBytes(at: self.pending.readerIndex + (self.currentByteIndex - self.pendingBase), length: tag.count) == tag else {
                self.fail(.notWellFormed("not UTF-8"))
                return
            }
            let root = XMLRootElement(
                name: rootName,
                attributes: Self.readAttributes(attributes),
                namespaceDeclarations: declarations
            )
            self.lastEventEnd = self.currentEventEnd
            self.rootStartTag = Self.startTag(of: root)
            self.events.append(.rootOpened(root))
        case 2:
            self.elementStart = self.currentByteIndex
            self.currentElement = ElementInProgress(
                name: XMLName(expatTriplet: name),
                declaresDefaultNamespace: declarations.contains { $0.prefix == nil },
                declaredPrefixes: declarations.compactMap(\.prefix),
                children: [],
                childStart: 0,
                inheritedNamespaces: []
            )
        case 3:
            self.currentElement?.childStart = self.currentByteIndex
        default:
            break
        }
        if self.depth >= 2 {
            self.recordNamespaceUse(name: name, attributes: attributes, declarations: declarations)
        }
    }

    /// Notes which of the root's namespace declarations the current child relies on: the prefix
    /// (or default namespace) of this element's name and its attributes' prefixes, unless declared
    /// inside the child. `xml` is bound in every document and never needs declaring.
    private func recordNamespaceUse(
        name: UnsafePointer<CChar>,
        attributes: UnsafeMutablePointer<UnsafePointer<CChar>?>,
        declarations: [XMLNamespaceDeclaration]
    ) {
        for declaration in declarations {
            self.childDeclarations.append((declaration.prefix, self.depth))
        }
        self.recordUse(of: name, isElement: true)
        var index = 0
        while let attribute = attributes[index] {
            self.recordUse(of: attribute, isElement: false)
            index += 2
        }
    }

    /// `name` is expat's triplet: `local` (no namespace), `uri local` (an element in the default
    /// namespace) or `uri local prefix`. Unprefixed attributes are in no namespace.
    private func recordUse(of name: UnsafePointer<CChar>, isElement: Bool) {
        var first: Int?
        var second: Int?
        var index = 0
        while name[index] != 0 {
            if name[index] == 0x20 {
                if first == nil { first = index } else { second = index }
            }
            index += 1
        }
        guard let first, self.currentElement != nil else { return }
        let prefix: String?
        if let second {
            let start = name + second + 1
            if start[0] == 0x78, start[1] == 0x6D, start[2] == 0x6C, start[3] == 0 { return }  // "xml"
            prefix = String(cString: start)
        } else {
            guard isElement else { return }
            prefix = nil
        }
        guard !self.childDeclarations.contains(where: { $0.prefix == prefix }),
            !self.currentElement!.inheritedNamespaces.contains(where: { $0.prefix == prefix })
        else { return }
        let uri = String(decoding: UnsafeRawBufferPointer(start: name, count: first), as: UTF8.self)
        self.currentElement!.inheritedNamespaces.append(XMLNamespaceDeclaration(prefix: prefix, uri: uri))
    }

    fileprivate func endElement(name: UnsafePointer<CChar>) {
        defer { self.depth -= 1 }
        while let last = self.childDeclarations.last, last.depth == self.depth {
            self.childDeclarations.removeLast()
        }
        switch self.depth {
        case 1:
            self.rootClosed = true
            self.lastEventEnd = self.currentEventEnd
            self.events.append(.rootClosed)
        case 2:
            let end = self.currentEventEnd
            let length = end - self.elementStart
            guard length <= self.limits.maxElementBytes else {
                self.fail(.elementTooLarge(limit: self.limits.maxElementBytes))
                return
            }
            guard let element = self.currentElement,
                let bytes = self.pending.getSlice(
                    at: self.pending.readerIndex + (self.elementStart - self.pendingBase),
                    length: length
                )
            else {
                self.fail(.notWellFormed("element bytes unavailable"))
                return
            }
            self.currentElement = nil
            self.lastEventEnd = end
            self.events.append(
                .element(
                    XMLElementSlice(
                        name: element.name,
                        bytes: bytes,
                        declaresDefaultNamespace: element.declaresDefaultNamespace,
                        declaredPrefixes: element.declaredPrefixes,
                        children: element.children,
                        inheritedNamespaces: element.inheritedNamespaces
                    )
                )
            )
        case 3:
            guard var element = self.currentElement else { return }
            let start = element.childStart - self.elementStart
            let end = self.currentEventEnd - self.elementStart
            element.children.append(XMLChildRange(name: XMLName(expatTriplet: name), range: start..<end))
            self.currentElement = element
        default:
            break
        }
    }

    fileprivate func characterData(_ data: UnsafePointer<CChar>, length: Int32) {
        guard self.depth <= 1 else { return }
        if self.rejectsRootText {
            let raw = UnsafeRawBufferPointer(start: data, count: Int(length))
            if raw.contains(where: { !Self.isXMLWhitespace($0) }) {
                self.fail(.textInRoot)
                return
            }
        }
        // Whitespace keepalives between stanzas: consumed, never forwarded.
        self.lastEventEnd = self.currentEventEnd
    }

    /// `<prefix:name xmlns…='…'>`: enough for a new parser to resolve the children's names.
    private static func startTag(of root: XMLRootElement) -> String {
        var tag = "<" + root.name.qualifiedName
        for declaration in root.namespaceDeclarations {
            tag += " xmlns" + (declaration.prefix.map { ":" + $0 } ?? "") + "='" + XMLEscaping.escapeAttribute(declaration.uri) + "'"
        }
        return tag + ">"
    }

    private static func isXMLWhitespace(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D
    }

    private static func readAttributes(_ attributes: UnsafeMutablePointer<UnsafePointer<CChar>?>) -> [XMLAttribute] {
        var result: [XMLAttribute] = []
        var index = 0
        while let name = attributes[index], let value = attributes[index + 1] {
            result.append(XMLAttribute(name: XMLName(expatTriplet: name), value: String(cString: value)))
            index += 2
        }
        return result
    }

    /// The framer's own handlers; `HardenedXMLParser` has installed the guards.
    private func installHandlers() {
        let parser = self.parser!
        XML_SetStartNamespaceDeclHandler(parser) { userData, prefix, uri in
            XMLStreamFramer.from(userData).startNamespaceDeclaration(prefix: prefix, uri: uri)
        }
        XML_SetElementHandler(
            parser,
            { userData, name, attributes in
                guard let name, let attributes else { return }
                XMLStreamFramer.from(userData).startElement(name: name, attributes: attributes)
            },
            { userData, name in
                guard let name else { return }
                XMLStreamFramer.from(userData).endElement(name: name)
            }
        )
        XML_SetCharacterDataHandler(parser) { userData, data, length in
            guard let data else { return }
            XMLStreamFramer.from(userData).characterData(data, length: length)
        }
        XML_SetCdataSectionHandler(
            parser,
            { userData in XMLStreamFramer.from(userData).inCDATA = true },
            { userData in XMLStreamFramer.from(userData).inCDATA = false }
        )
    }

    private static func from(_ userData: UnsafeMutableRawPointer?) -> XMLStreamFramer {
        Unmanaged<XMLStreamFramer>.fromOpaque(userData!).takeUnretainedValue()
    }
}

/// A namespace declaration (`xmlns='…'` or `xmlns:p='…'`) written on an element.
public struct XMLNamespaceDeclaration: Hashable, Sendable {
    public var prefix: String?
    public var uri: String
}

/// The root element's start tag: `<stream:stream …>` or `<body …>`.
public struct XMLRootElement: Sendable {
    public var name: XMLName
    public var attributes: [XMLAttribute]
    public var namespaceDeclarations: [XMLNamespaceDeclaration]
}

/// A direct child of a top-level element, located inside that element's bytes.
public struct XMLChildRange: Hashable, Sendable {
    public var name: XMLName
    public var range: Range<Int>
}

/// A complete top-level child of the root: a stanza or nonza, as the peer's original bytes.
public struct XMLElementSlice: Sendable {
    public var name: XMLName
    public var bytes: ByteBuffer
    /// The element carries its own `xmlns='…'`.
    public var declaresDefaultNamespace: Bool
    /// Prefixes the element declares itself (`xmlns:stream='…'` → `stream`).
    public var declaredPrefixes: [String]
    /// The element's own children with their byte ranges inside `bytes`.
    public var children: [XMLChildRange]
    /// Declarations in scope from the root that the element relies on (for its name, its
    /// attributes' names or any descendant's), in order of first use: what makes it standalone.
    public var inheritedNamespaces: [XMLNamespaceDeclaration]
}

/// Why the framer stopped: broken XML, a construct Tether never accepts (DTDs, entities, comments,
/// processing instructions), or a limit; the caller turns it into the transport's error.
public enum XMLFramerError: Error, Hashable, Sendable, CustomStringConvertible {
    case notWellFormed(String)
    case forbiddenConstruct(String)
    case elementTooLarge(limit: Int)
    case tooDeep(limit: Int)
    case textInRoot

    public var description: String {
        switch self {
        case .notWellFormed(let reason): return "XML not well-formed: \(reason)"
        case .forbiddenConstruct(let construct): return "XML \(construct) not allowed"
        case .elementTooLarge(let limit): return "element larger than \(limit) bytes"
        case .tooDeep(let limit): return "XML nested deeper than \(limit) elements"
        case .textInRoot: return "character data directly inside the root element"
        }
    }

    /// Whether the violation is a size/depth policy rather than malformed XML.
    public var isPolicyViolation: Bool {
        switch self {
        case .elementTooLarge, .tooDeep: return true
        case .notWellFormed, .forbiddenConstruct, .textInRoot: return false
        }
    }
}
