import NIOCore
import Testing

@testable import XMPPLoadKit

/// The client side of XEP-0198: counts, acknowledgements and what is sent again after resuming.
@Suite("Stream management (client)")
struct StreamManagementTests {
    @Test("nothing is counted before <enabled/>; h counts stanzas received after it")
    func counting() {
        var sm = StreamManagement()
        sm.received()
        let request = sm.sending(ByteBuffer(string: "<message/>"))
        #expect(!request)
        #expect(sm.unacknowledged.isEmpty)
        sm.enabled(id: "abc", resume: true, max: 300)
        #expect(sm.maxSeconds == 300)
        sm.received()
        sm.received()
        #expect(sm.handled == 2)
        #expect(sm.answer == "<a xmlns='urn:xmpp:sm:3' h='2'/>")
        #expect(sm.resume == "<resume xmlns='urn:xmpp:sm:3' h='2' previd='abc'/>")
    }

    @Test(
        "stanzas sent after <enable/> and before <enabled/> came back are counted, as the server counts them (XEP-0198 §4; regression: its h came out too high, handled-count-too-high after a reload)"
    )
    func countingFromEnable() {
        var sm = StreamManagement()
        _ = sm.sending(ByteBuffer(string: "before"))
        sm.enableSent()
        _ = sm.sending(ByteBuffer(string: "m1"))
        sm.received()
        #expect(sm.handled == 0, "the server counts what it sends only from <enabled/>")
        sm.enabled(id: "abc", resume: true, max: nil)
        _ = sm.sending(ByteBuffer(string: "m2"))
        let resumption = sm.resumed(1)
        #expect(!resumption.countTooHigh)
        #expect(resumption.resend.map { String(buffer: $0) } == ["m2"])
    }

    @Test("acknowledged stanzas leave the buffer; after <resumed h/> the rest is sent again")
    func resend() {
        var sm = StreamManagement()
        sm.enabled(id: "abc", resume: true, max: nil)
        var requests = 0
        for number in 1...10 where sm.sending(ByteBuffer(string: "m\(number)")) { requests += 1 }
        // One <r/> after every eighth stanza.
        #expect(requests == 1)
        sm.acknowledged(4)
        #expect(sm.unacknowledged.map { String(buffer: $0) } == ["m5", "m6", "m7", "m8", "m9", "m10"])
        // An older acknowledgement changes nothing.
        let stale = sm.acknowledged(3)
        #expect(stale && sm.unacknowledged.count == 6)
        let resumption = sm.resumed(8)
        #expect(resumption.resend.map { String(buffer: $0) } == ["m9", "m10"] && !resumption.countTooHigh)
        sm.acknowledged(10)
        #expect(sm.unacknowledged.isEmpty)
    }

    @Test("an h above what was sent (XEP-0198 §4 handled-count-too-high) is reported, and nothing is sent again: it could only be a duplicate")
    func countTooHigh() {
        var sm = StreamManagement()
        sm.enabled(id: "abc", resume: true, max: nil)
        for number in 1...3 { _ = sm.sending(ByteBuffer(string: "m\(number)")) }
        let resumption = sm.resumed(4)
        #expect(resumption.countTooHigh && resumption.resend.isEmpty)
        // Counting goes on from the server's figure.
        _ = sm.sending(ByteBuffer(string: "m4"))
        let four = sm.acknowledged(4)
        #expect(four && sm.unacknowledged.map { String(buffer: $0) } == ["m4"])
        let five = sm.acknowledged(5)
        #expect(five && sm.unacknowledged.isEmpty)
    }

    @Test("without resume='true' there is nothing to resume")
    func notResumable() {
        var sm = StreamManagement()
        sm.enabled(id: "abc", resume: false, max: nil)
        #expect(sm.resume == nil)
    }
}
