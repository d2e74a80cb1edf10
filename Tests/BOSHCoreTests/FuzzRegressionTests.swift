import NIOCore
import Testing
import XMPPCore

@testable import BOSHCore

/// Inputs found by Fuzzing/ (scripts/fuzz.sh), minimised, replayed with their correct outcome.
@Suite("Fuzz regressions: BOSH bodies")
struct BOSHFuzzRegressionTests {
    static func root(_ bytes: ByteBuffer) throws -> XMLRootElement? {
        let framer = XMLStreamFramer(rejectsRootText: true)
        let events = try framer.feed(bytes) + framer.finish()
        guard case .rootOpened(let root) = events.first else { return nil }
        return root
    }

    /// BOSHBodyFuzzer crash (minimised): a client attribute holding a tab (`&#9;`). Written back
    /// unescaped (a response attribute, the upstream stream header's from/xml:lang), the tab came
    /// back as a space.
    @Test("client attribute values with tab/CR/LF come back unchanged in what Tether writes")
    func controlWhitespaceInAttributes() throws {
        let crash = ByteBuffer(string: "<body t='&#9;' rid='7' xmlns='http://jabber.org/protocol/httpbind'/>")
        let request = try BOSHRequest.parse(crash)
        #expect(request.rid == 7)
        #expect(request.attribute("t") == "\t")

        let response = BOSHResponse(attributes: [(name: "x-t", value: request.attribute("t")!)]).encoded()
        #expect(String(buffer: response) == "<body xmlns='http://jabber.org/protocol/httpbind' x-t='&#9;'/>")
        #expect(try Self.root(response)?.attributes.value(of: "x-t") == "\t")

        let header = StreamHeader(to: "example.com", from: "a\tb\r\nc", language: "en\n")
        let stream = try #require(try Self.root(ByteBuffer(string: header.serialized + StreamHeader.closing)))
        #expect(StreamInfo(root: stream).from == "a\tb\r\nc")
        #expect(StreamInfo(root: stream).language == "en\n")
    }
}
