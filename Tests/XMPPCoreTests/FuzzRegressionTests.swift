import NIOCore
import Testing
import XMPPCore

/// Inputs found by Fuzzing/ (scripts/fuzz.sh), minimised, replayed with their correct outcome.
@Suite("Fuzz regressions: XML stream framer")
struct XMLFramerFuzzRegressionTests {
    static func elements(_ input: [UInt8], chunk size: Int = .max) throws -> [XMLElementSlice] {
        let framer = XMLStreamFramer()
        var events: [XMLStreamFramer.Event] = []
        var index = 0
        while index < input.count {
            let end = min(index + max(1, min(size, input.count - index)), input.count)
            events += try framer.feed(ByteBuffer(bytes: input[index..<end]))
            index = end
        }
        return events.compactMap { event in
            if case .element(let element) = event { return element }
            return nil
        }
    }

    /// XMLStreamFramerFuzzer crash (minimised): a namespace URI holding a carriage return (`&#xD;`).
    /// standaloneBytes wrote it raw into `xmlns='…'`, where a parser turns it into a space: the
    /// namespace changed, and with expat's space separator the bytes no longer parsed at all.
    @Test("a namespace URI with CR/LF/TAB survives standaloneBytes")
    func namespaceWithControlWhitespace() throws {
        let crash = Array("<m xmlns='&#xD;'><i/>".utf8)
        let element = try #require(Self.elements(crash).first)
        #expect(element.name == XMLName(namespace: "\r", localName: "i"))
        let standalone = element.standaloneBytes()
        #expect(String(buffer: standalone) == "<i xmlns='&#13;'/>")

        let reframed = try Self.elements(Array("<w>".utf8) + Array(standalone.readableBytesView) + Array("</w>".utf8))
        #expect(reframed.count == 1)
        #expect(reframed.first?.name == element.name)
        #expect(reframed.first.map { Array($0.standaloneBytes().readableBytesView) } == Array(standalone.readableBytesView))

        let tabAndNewline = try #require(Self.elements(Array("<s xmlns='a&#9;b&#10;c'><x/></s>".utf8)).first)
        #expect(String(buffer: tabAndNewline.standaloneBytes()) == "<x xmlns='a&#9;b&#10;c'/>")
    }

    /// Broke the harness's "element bytes start with `<` + name" invariant (found with hand-written
    /// inputs replayed through XMLStreamFramerFuzzer, not by a fuzzing run): expat honoured an
    /// `encoding='ISO-8859-1'` declaration or a UTF-16 byte-order mark, so slices were not UTF-8
    /// and standaloneBytes spliced its declaration at a UTF-8 offset into them.
    @Test(
        "documents that are not UTF-8 are refused",
        arguments: [
            Array("<?xml version='1.0' encoding='ISO-8859-1'?><r><\u{E9} a='1'/></r>".unicodeScalars.map { UInt8($0.value) }),
            [0xFE, 0xFF, 0x00, 0x3C, 0x00, 0x72, 0x00, 0x3E, 0x00, 0x3C, 0x00, 0x61, 0x00, 0x2F, 0x00, 0x3E],  // UTF-16BE with BOM
            [0xFF, 0xFE, 0x3C, 0x00, 0x72, 0x00, 0x3E, 0x00, 0x3C, 0x00, 0x61, 0x00, 0x2F, 0x00, 0x3E, 0x00],  // UTF-16LE with BOM
            [0x3C, 0x00, 0x72, 0x00, 0x3E, 0x00, 0x3C, 0x00, 0x61, 0x00, 0x2F, 0x00, 0x3E, 0x00],  // UTF-16LE without BOM
        ])
    func notUTF8(input: [UInt8]) {
        for size in [1, Int.max] {
            #expect(throws: XMLFramerError.self) { try Self.elements(input, chunk: size) }
        }
    }

    @Test("a UTF-8 byte-order mark and an encoding='UTF-8' declaration are fine")
    func utf8() throws {
        let input: [UInt8] = [0xEF, 0xBB, 0xBF] + Array("<?xml version='1.0' encoding='UTF-8'?><r><a x='\u{E9}'/></r>".utf8)
        for size in [1, Int.max] {
            let elements = try Self.elements(input, chunk: size)
            #expect(elements.map { String(buffer: $0.bytes) } == ["<a x='\u{E9}'/>"])
        }
    }

    @Test("attribute escaping keeps tab, line feed and carriage return")
    func attributeEscaping() {
        #expect(XMLEscaping.escapeAttribute("a\tb\nc\r\nd") == "a&#9;b&#10;c&#13;&#10;d")
        #expect(XMLEscaping.escapeAttribute("plain value") == "plain value")
    }

    /// Harness finding, not a framer bug: `]]>` in root text. In one chunk expat reports the bad
    /// token; byte by byte it reports the text `T` first. Either way the input is refused.
    @Test("text before a bad token is refused whatever the chunking")
    func textBeforeBadToken() {
        let input = Array("<m>T]]>".utf8)
        for size in [1, 2, .max] {
            #expect(throws: XMLFramerError.self) {
                let framer = XMLStreamFramer(rejectsRootText: true)
                var index = 0
                while index < input.count {
                    let end = min(index + min(size, input.count - index), input.count)
                    _ = try framer.feed(ByteBuffer(bytes: input[index..<end]))
                    index = end
                }
            }
        }
    }
}
