import CExpat
import NIOCore
import Testing

@testable import XMPPCore

/// Documents that use DTD features, for every parser to refuse.
enum HostileDocuments {
    static let internalEntity = "<!DOCTYPE x [<!ENTITY a 'b'>]><x>&a;</x>"
    static let externalEntity = "<!DOCTYPE x [<!ENTITY e SYSTEM 'file:///etc/passwd'>]><x>&e;</x>"
    /// Expands to 300 KB from about 400 bytes: under expat's default limits (100×, checked from
    /// 8 MiB on) it would be read; Tether's stop it.
    static let billionLaughs = """
        <!DOCTYPE l [<!ENTITY l0 'lol'>\
        <!ENTITY l1 '&l0;&l0;&l0;&l0;&l0;&l0;&l0;&l0;&l0;&l0;'>\
        <!ENTITY l2 '&l1;&l1;&l1;&l1;&l1;&l1;&l1;&l1;&l1;&l1;'>\
        <!ENTITY l3 '&l2;&l2;&l2;&l2;&l2;&l2;&l2;&l2;&l2;&l2;'>\
        <!ENTITY l4 '&l3;&l3;&l3;&l3;&l3;&l3;&l3;&l3;&l3;&l3;'>\
        <!ENTITY l5 '&l4;&l4;&l4;&l4;&l4;&l4;&l4;&l4;&l4;&l4;'>]><l>&l5;</l>
        """
}

/// The guards every parser gets, checked on a bare owner that installs no handlers of its own.
@Suite("Hardened expat parser")
struct HardenedXMLParserTests {
    /// Parses `document` whole; the owner's recorded failure and expat's error code.
    static func parse(_ document: String, _ owner: XMLParserOwner) -> (failure: XMLFramerError?, error: XML_Error) {
        let status = XML_Parse(owner.parser!, document, Int32(document.utf8.count), 1)
        return (owner.failure, status == XML_STATUS_ERROR ? XML_GetErrorCode(owner.parser!) : XML_ERROR_NONE)
    }

    /// The DTD guard removed, to show the guards behind it.
    static func withoutDTDGuard(_ owner: XMLParserOwner) {
        XML_SetStartDoctypeDeclHandler(owner.parser!, nil)
        XML_SetEntityDeclHandler(owner.parser!, nil)
    }

    @Test(
        "DTDs, comments and processing instructions stop the parser with the construct named",
        arguments: [
            (HostileDocuments.internalEntity, XMLFramerError.forbiddenConstruct("DTD")),
            (HostileDocuments.billionLaughs, .forbiddenConstruct("DTD")),
            ("<!DOCTYPE x SYSTEM 'http://example.com/x.dtd'><x/>", .forbiddenConstruct("DTD")),
            ("<x><!-- c --></x>", .forbiddenConstruct("comment")),
            ("<x><?pi data?></x>", .forbiddenConstruct("processing instruction")),
        ]
    )
    func refusals(document: String, expected: XMLFramerError) {
        let owner = XMLParserOwner()
        HardenedXMLParser.make(for: owner)
        let outcome = Self.parse(document, owner)
        #expect(outcome.failure == expected)
        #expect(outcome.error == XML_ERROR_ABORTED)
    }

    @Test("behind the DTD guard: an entity declaration is refused on its own")
    func entityDeclaration() {
        let owner = XMLParserOwner()
        HardenedXMLParser.make(for: owner)
        XML_SetStartDoctypeDeclHandler(owner.parser!, nil)
        #expect(Self.parse(HostileDocuments.internalEntity, owner).failure == .forbiddenConstruct("entity declaration"))
    }

    @Test("behind the DTD guard: billion laughs breaks the amplification limit")
    func amplification() {
        let owner = XMLParserOwner()
        HardenedXMLParser.make(for: owner)
        Self.withoutDTDGuard(owner)
        #expect(Self.parse(HostileDocuments.billionLaughs, owner).error == XML_ERROR_AMPLIFICATION_LIMIT_BREACH)
    }

    @Test("behind the DTD guard: an external entity reference is an error, never read")
    func externalEntity() {
        let owner = XMLParserOwner()
        HardenedXMLParser.make(for: owner)
        Self.withoutDTDGuard(owner)
        #expect(Self.parse(HostileDocuments.externalEntity, owner).error == XML_ERROR_EXTERNAL_ENTITY_HANDLING)
    }

    @Test("a reset parser has every guard again (XML_ParserReset clears them)")
    func reset() {
        let owner = XMLParserOwner()
        HardenedXMLParser.make(for: owner)
        #expect(Self.parse("<x/>", owner).error == XML_ERROR_NONE)
        #expect(HardenedXMLParser.reset(owner))
        #expect(Self.parse(HostileDocuments.internalEntity, owner).failure == .forbiddenConstruct("DTD"))
        owner.failure = nil
        #expect(HardenedXMLParser.reset(owner))
        Self.withoutDTDGuard(owner)
        #expect(Self.parse(HostileDocuments.billionLaughs, owner).error == XML_ERROR_AMPLIFICATION_LIMIT_BREACH)
        #expect(HardenedXMLParser.reset(owner))
        Self.withoutDTDGuard(owner)
        #expect(Self.parse(HostileDocuments.externalEntity, owner).error == XML_ERROR_EXTERNAL_ENTITY_HANDLING)
    }

    @Test(
        "XMLElement refuses DTDs, internal and external entities and billion laughs",
        arguments: [HostileDocuments.internalEntity, HostileDocuments.externalEntity, HostileDocuments.billionLaughs])
    func elementRefusesDTDs(document: String) {
        #expect(throws: XMLFramerError.forbiddenConstruct("DTD")) { try XMLElement.parse(ByteBuffer(string: document)) }
    }

    @Test("the framer refuses a DTD after reset() and after hibernating")
    func framerKeepsGuards() throws {
        let framer = XMLStreamFramer()
        _ = try framer.feed(ByteBuffer(string: "<s><a/>"))
        framer.reset()
        #expect(throws: XMLFramerError.forbiddenConstruct("DTD")) { try framer.feed(ByteBuffer(string: HostileDocuments.internalEntity)) }
        let resumed = XMLStreamFramer()
        _ = try resumed.feed(ByteBuffer(string: "<s>"))
        resumed.hibernate()
        #expect(resumed.isHibernating)
        #expect(throws: XMLFramerError.forbiddenConstruct("comment")) { try resumed.feed(ByteBuffer(string: "<!-- c -->")) }
    }
}
