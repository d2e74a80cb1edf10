import NIOCore
import Testing
import XMPPCore

@testable import BOSHCore

/// §15 keys for rids 101, 102 and 103 and the creation `newkey`: each key hashes to the one before.
enum KeyChain {
    static let k103 = "seed"
    static let k102 = BOSHSessionStateMachine.sha1Hex(k103)
    static let k101 = BOSHSessionStateMachine.sha1Hex(k102)
    static let creationNewKey = BOSHSessionStateMachine.sha1Hex(k101)
}

/// Event → action tables for the BOSH rules, with no I/O (XEP-0124 section numbers in test names).
@Suite("BOSH session state machine")
struct BOSHSessionStateMachineTests {
    static let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000_000)
    static let features = ByteBuffer(
        string:
            "<stream:features xmlns:stream='http://etherx.jabber.org/streams'><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>"
    )

    static func request(_ rid: UInt64, _ attributes: String = "", payloads: [String] = []) -> BOSHRequest {
        let text = "<body rid='\(rid)' sid='s1' \(attributes) xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh'>\(payloads.joined())</body>"
        return try! BOSHRequest.parse(ByteBuffer(string: text))
    }

    static func creation(_ attributes: String = "wait='60' hold='1' ver='1.6'") -> BOSHRequest {
        try! BOSHRequest.parse(
            ByteBuffer(string: "<body rid='100' to='localhost' \(attributes) xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh' xmpp:version='1.0'/>"))
    }

    /// A session whose creation request (id 0) was already answered with features.
    static func established(_ attributes: String = "wait='60' hold='1' ver='1.6'", limits: BOSHLimits = BOSHLimits()) -> BOSHSessionStateMachine {
        var machine = BOSHSessionStateMachine(sid: "s1", creation: Self.creation(attributes), id: 0, domain: "localhost", limits: limits, isSecure: false, now: t0)
        machine.upstreamOpened(StreamInfo(id: "stream-1", from: "localhost", version: "1.0"))
        _ = machine.upstreamReceived([features], streamElements: true, streamManagement: false, now: t0)
        return machine
    }

    /// Actions as readable lines, bodies as text.
    static func describe(_ actions: [BOSHSessionStateMachine.Action]) -> [String] {
        actions.map { action in
            switch action {
            case .respond(let id, let response): return "respond \(id) \(response.status) \(String(buffer: response.body))"
            case .closeConnection(let id): return "close-http \(id)"
            case .forwardUpstream(let payloads): return "forward " + payloads.map { String(buffer: $0) }.joined()
            case .restartUpstream: return "restart"
            case .startWaitTimer(let id, let seconds): return "wait \(id) \(seconds)s"
            case .startInactivityTimer(_, let seconds): return "inactivity \(seconds)s"
            case .closeUpstream(let graceful): return graceful ? "close-upstream graceful" : "close-upstream abrupt"
            case .endSession(let condition): return "end \(condition?.rawValue ?? "normal")"
            case .stanzasBounced(let count, let reason): return "bounced \(count) \(reason)"
            }
        }
    }

    static let empty = "<body xmlns='http://jabber.org/protocol/httpbind'/>"

    @Test("§7.2 creation response: clamped attributes, restartlogic, authid and features")
    func creationResponse() {
        var limits = BOSHLimits()
        limits.maxWait = 50
        var machine = BOSHSessionStateMachine(
            sid: "s1", creation: Self.creation("wait='120' hold='5' ver='1.11' ack='1'"), id: 0, domain: "localhost", limits: limits, isSecure: false, now: Self.t0
        )
        #expect(Self.describe(machine.creationActions()) == ["wait 0 50s"])
        machine.upstreamOpened(StreamInfo(id: "stream-1", from: "localhost", version: "1.0"))
        let actions = Self.describe(machine.upstreamReceived([Self.features], streamElements: true, streamManagement: false, now: Self.t0))
        #expect(
            actions == [
                "respond 0 200 <body xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh' xmlns:stream='http://etherx.jabber.org/streams' sid='s1' wait='50' requests='2' hold='1' polling='2' inactivity='60' maxpause='120' ver='1.11' from='localhost' secure='false' xmpp:restartlogic='true' ack='100' authid='stream-1' xmpp:version='1.0'>\(String(buffer: Self.features))</body>",
                "inactivity 60s",
            ]
        )
    }

    @Test("§7.2 ver is the lower of the client's and ours")
    func versionNegotiation() {
        let machine = BOSHSessionStateMachine(sid: "s", creation: Self.creation("ver='1.6'"), id: 0, domain: "d", limits: .init(), isSecure: false, now: Self.t0)
        #expect(machine.parameters.negotiatedVersion == BOSHVersion(major: 1, minor: 6))
        let newer = BOSHSessionStateMachine(sid: "s", creation: Self.creation("ver='2.0'"), id: 0, domain: "d", limits: .init(), isSecure: false, now: Self.t0)
        #expect(newer.parameters.negotiatedVersion == BOSHVersion.supported)
    }

    @Test("§8 a new request answers the held one (hold=1); payloads go upstream at once")
    func holdOne() {
        var machine = Self.established()
        #expect(Self.describe(machine.receive(Self.request(101), id: 1, isSecure: false, now: Self.t0 + .seconds(5))) == ["wait 1 50s"])
        let actions = machine.receive(Self.request(102, payloads: ["<message to='b@localhost'/>"]), id: 2, isSecure: false, now: Self.t0 + .seconds(6))
        #expect(Self.describe(actions) == ["forward <message to='b@localhost'/>", "wait 2 50s", "respond 1 200 \(Self.empty)"])
    }

    @Test("a held request whose connection closed is forgotten: the next stanza waits for the next rid (page reload)")
    func abandonedRequestKeepsStanzasForTheNextRID() {
        var machine = Self.established()
        _ = machine.receive(Self.request(101), id: 1, isSecure: false, now: Self.t0)
        #expect(Self.describe(machine.requestAbandoned(1)) == ["inactivity 60s"])
        // Nothing to answer: the stanza is queued, not written into the dead connection.
        #expect(Self.describe(machine.upstreamReceived([ByteBuffer(string: "<message id='m1'/>")], streamElements: false, streamManagement: false, now: Self.t0)) == [])
        // The reloaded page attaches with the next rid and gets it at once.
        let actions = Self.describe(machine.receive(Self.request(102), id: 2, isSecure: false, now: Self.t0 + .seconds(3)))
        #expect(actions == ["wait 2 50s", "respond 2 200 <body xmlns='http://jabber.org/protocol/httpbind'><message id='m1'/></body>", "inactivity 60s"])
        // A second abandonment report for the same request changes nothing.
        #expect(machine.requestAbandoned(1).isEmpty)
    }

    @Test("§14.3 retransmitting the rid of an abandoned request holds it again")
    func abandonedRequestRetransmitted() {
        var machine = Self.established()
        _ = machine.receive(Self.request(101), id: 1, isSecure: false, now: Self.t0)
        _ = machine.requestAbandoned(1)
        #expect(Self.describe(machine.receive(Self.request(101), id: 2, isSecure: false, now: Self.t0 + .seconds(1))) == ["wait 2 50s"])
        let actions = Self.describe(
            machine.upstreamReceived([ByteBuffer(string: "<message id='m2'/>")], streamElements: false, streamManagement: false, now: Self.t0 + .seconds(2)))
        #expect(actions == ["respond 2 200 <body xmlns='http://jabber.org/protocol/httpbind'><message id='m2'/></body>", "inactivity 60s"])
        #expect(machine.retransmissions == 1)
    }

    @Test("an answer that could not be written goes back to the queue for the next request, in order")
    func undeliveredResponseIsQueuedAgain() {
        var machine = Self.established()
        _ = machine.receive(Self.request(101), id: 1, isSecure: false, now: Self.t0)
        _ = machine.upstreamReceived([ByteBuffer(string: "<message id='a'/>")], streamElements: false, streamManagement: false, now: Self.t0)
        _ = machine.upstreamReceived([ByteBuffer(string: "<message id='b'/>")], streamElements: false, streamManagement: false, now: Self.t0)
        #expect(Self.describe(machine.responseUndelivered(1, now: Self.t0)) == [])
        let actions = Self.describe(machine.receive(Self.request(102), id: 2, isSecure: false, now: Self.t0 + .seconds(3)))
        #expect(actions == ["wait 2 50s", "respond 2 200 <body xmlns='http://jabber.org/protocol/httpbind'><message id='a'/><message id='b'/></body>", "inactivity 60s"])
        // Its rid is no longer in the retransmission buffer as an answered request.
        #expect(machine.responseUndelivered(1, now: Self.t0).isEmpty)
    }

    @Test(
        "§14.3 an answer replayed from the cache to a retransmission is not queued again when the original's write fails afterwards"
    )
    func replayedAnswerNotQueuedTwice() {
        // Regression (found by tether-load's BOSH flap under load): the network cut the
        // connection under request 101 while its answer was on its way to it; the client sent
        // 101 again and got the cached answer; only then was the original reported undelivered,
        // and its stanza went out a second time in the answer to 102.
        var machine = Self.established()
        _ = machine.receive(Self.request(101), id: 1, isSecure: false, now: Self.t0)
        #expect(
            Self.describe(machine.upstreamReceived([ByteBuffer(string: "<message id='a'/>")], streamElements: false, streamManagement: false, now: Self.t0))
                == ["respond 1 200 <body xmlns='http://jabber.org/protocol/httpbind'><message id='a'/></body>", "inactivity 60s"])
        #expect(
            Self.describe(machine.receive(Self.request(101), id: 2, isSecure: false, now: Self.t0))
                == ["respond 2 200 <body xmlns='http://jabber.org/protocol/httpbind'><message id='a'/></body>"])
        #expect(machine.responseUndelivered(1, now: Self.t0).isEmpty)
        let next = Self.describe(machine.receive(Self.request(102), id: 3, isSecure: false, now: Self.t0 + .seconds(1)))
        #expect(next == ["wait 3 50s"], "the stanza went out again: \(next)")
        // Had the replay failed too, nothing would have reached the client: then it goes back.
        var both = Self.established()
        _ = both.receive(Self.request(101), id: 1, isSecure: false, now: Self.t0)
        _ = both.upstreamReceived([ByteBuffer(string: "<message id='a'/>")], streamElements: false, streamManagement: false, now: Self.t0)
        _ = both.receive(Self.request(101), id: 2, isSecure: false, now: Self.t0)
        #expect(both.responseUndelivered(2, now: Self.t0).isEmpty)
        #expect(both.responseUndelivered(1, now: Self.t0).isEmpty)
        let again = Self.describe(both.receive(Self.request(102), id: 3, isSecure: false, now: Self.t0 + .seconds(1)))
        #expect(again.contains("respond 3 200 <body xmlns='http://jabber.org/protocol/httpbind'><message id='a'/></body>"), "\(again)")
    }

    @Test("§8 upstream stanzas are batched into the held request's response")
    func batching() {
        var machine = Self.established()
        _ = machine.receive(Self.request(101), id: 1, isSecure: false, now: Self.t0)
        let actions = machine.upstreamReceived(
            [ByteBuffer(string: "<message xmlns='jabber:client'/>"), ByteBuffer(string: "<presence xmlns='jabber:client'/>")], streamElements: false, streamManagement: false,
            now: Self.t0)
        #expect(
            Self.describe(actions) == [
                "respond 1 200 <body xmlns='http://jabber.org/protocol/httpbind'><message xmlns='jabber:client'/><presence xmlns='jabber:client'/></body>", "inactivity 60s",
            ])
        // Data that arrives with nobody waiting is queued for the next request.
        _ = machine.upstreamReceived([ByteBuffer(string: "<iq xmlns='jabber:client'/>")], streamElements: false, streamManagement: false, now: Self.t0)
        let next = machine.receive(Self.request(102), id: 2, isSecure: false, now: Self.t0 + .seconds(3))
        #expect(Self.describe(next) == ["wait 2 50s", "respond 2 200 <body xmlns='http://jabber.org/protocol/httpbind'><iq xmlns='jabber:client'/></body>", "inactivity 60s"])
    }

    @Test("§14.2 out-of-order requests inside the window are processed in rid order")
    func outOfOrder() {
        var machine = Self.established()
        let early = machine.receive(Self.request(102, payloads: ["<b/>"]), id: 2, isSecure: false, now: Self.t0)
        #expect(Self.describe(early) == [])  // nothing until the gap is filled; no inactivity while it waits
        let actions = machine.receive(Self.request(101, payloads: ["<a/>"]), id: 1, isSecure: false, now: Self.t0)
        #expect(Self.describe(actions) == ["forward <a/>", "wait 1 50s", "forward <b/>", "wait 2 50s", "respond 1 200 \(Self.empty)"])
    }

    @Test("§14.2 a rid above the window ends the session with item-not-found")
    func aboveWindow() {
        var machine = Self.established()
        let actions = machine.receive(Self.request(103), id: 3, isSecure: false, now: Self.t0)
        #expect(
            Self.describe(actions) == [
                "close-upstream graceful", "respond 3 200 <body xmlns='http://jabber.org/protocol/httpbind' type='terminate' condition='item-not-found'/>", "end item-not-found",
            ])
        #expect(!machine.isActive)
        #expect(machine.endingDetail == "rid 103 above the window (last rid 100, requests 2)")
    }

    @Test("§14.3 a retransmitted rid gets the buffered response verbatim")
    func retransmitAnswered() {
        var machine = Self.established()
        _ = machine.receive(Self.request(101), id: 1, isSecure: false, now: Self.t0)
        let answered = machine.upstreamReceived([ByteBuffer(string: "<message xmlns='jabber:client'>x</message>")], streamElements: false, streamManagement: false, now: Self.t0)
        guard case .respond(_, let original) = answered.first else {
            Issue.record("no answer")
            return
        }
        let again = machine.receive(Self.request(101), id: 7, isSecure: false, now: Self.t0)
        #expect(again == [.respond(7, original)])
        // And the creation response too (within `requests` = 2 responses).
        let creation = machine.receive(Self.request(100), id: 8, isSecure: false, now: Self.t0)
        #expect(Self.describe(creation).first?.contains("sid='s1'") == true)
    }

    @Test("§14.3 a repeated rid still held: the older HTTP request gets a recoverable error")
    func retransmitHeld() {
        var machine = Self.established()
        _ = machine.receive(Self.request(101), id: 1, isSecure: false, now: Self.t0)
        let actions = machine.receive(Self.request(101), id: 2, isSecure: false, now: Self.t0)
        #expect(Self.describe(actions) == ["respond 1 200 <body xmlns='http://jabber.org/protocol/httpbind' type='error'/>", "wait 2 50s"])
        let data = machine.upstreamReceived([ByteBuffer(string: "<presence xmlns='jabber:client'/>")], streamElements: false, streamManagement: false, now: Self.t0)
        #expect(Self.describe(data).first == "respond 2 200 <body xmlns='http://jabber.org/protocol/httpbind'><presence xmlns='jabber:client'/></body>")
    }

    @Test("§14.3 a lost response resent after the client moved on by two requests is still answered from the buffer (regression: item-not-found under load)")
    func retransmitAfterMovingOn() {
        var machine = Self.established()
        var answers: [BOSHRequestID: BOSHHTTPResponse] = [:]
        for rid in UInt64(101)...104 {
            for case .respond(let id, let response) in machine.receive(Self.request(rid, payloads: ["<a/>"]), id: rid, isSecure: false, now: Self.t0 + .seconds(Int64(rid))) {
                answers[id] = response
            }
        }
        // 101's answer was lost on the way; 102 and 103 were answered since.
        let again = machine.receive(Self.request(101), id: 60, isSecure: false, now: Self.t0 + .seconds(120))
        #expect(again == [.respond(60, try! #require(answers[101]))])
    }

    @Test(
        "§14.3 a request cut before its answer reached the client, resent after the client moved on by two requests, is held again (regression: a BOSH flap under load ended the session with item-not-found: the failed write was reported after the newer requests, and its rid forgotten at once)",
        arguments: [false, true]
    )
    func unansweredRetransmitAfterMovingOn(abandonedBeforeAnswer: Bool) {
        var machine = Self.established()
        _ = machine.receive(Self.request(101), id: 1, isSecure: false, now: Self.t0)
        if abandonedBeforeAnswer {
            _ = machine.requestAbandoned(1)
        }
        // The client still waits for 101 (two requests at most: 101 and its newest) and sends on;
        // with hold=1, 102 answers 101 (into the cut connection) and 103 answers 102.
        _ = machine.receive(Self.request(102, payloads: ["<a/>"]), id: 2, isSecure: false, now: Self.t0 + .seconds(1))
        _ = machine.receive(Self.request(103, payloads: ["<b/>"]), id: 3, isSecure: false, now: Self.t0 + .seconds(2))
        if !abandonedBeforeAnswer {
            // Only now does the write into the cut connection fail.
            #expect(machine.responseUndelivered(1, now: Self.t0 + .seconds(2)).isEmpty)
        }
        let again = Self.describe(machine.receive(Self.request(101), id: 4, isSecure: false, now: Self.t0 + .seconds(3)))
        // Held again; hold=1 and 103 is held, so it is answered at once (nothing was queued).
        #expect(again == ["wait 4 50s", "respond 4 200 \(Self.empty)"], "\(again)")
        #expect(machine.retransmissions == 1)
    }

    @Test("§14.3 a repeated rid no longer buffered ends the session with item-not-found")
    func retransmitTooOld() {
        var machine = Self.established()
        for rid in UInt64(101)...106 {
            _ = machine.receive(Self.request(rid, payloads: ["<a/>"]), id: rid, isSecure: false, now: Self.t0 + .seconds(Int64(rid)))
        }
        let actions = Self.describe(machine.receive(Self.request(101), id: 50, isSecure: false, now: Self.t0 + .seconds(200)))
        #expect(
            actions == [
                "close-upstream graceful",
                "respond 106 200 <body xmlns='http://jabber.org/protocol/httpbind' type='terminate' condition='item-not-found'/>",
                "respond 50 200 <body xmlns='http://jabber.org/protocol/httpbind' type='terminate' condition='item-not-found'/>",
                "end item-not-found",
            ]
        )
        // The log says which rule: the rid and what was buffered then.
        #expect(machine.endingDetail == "rid 101 sent again, its answer no longer buffered (last rid 106, buffered [102, 103, 104, 105], held [106], unanswered [])")
    }

    @Test("§8 wait expiry answers with an empty body and starts inactivity")
    func waitExpiry() {
        var machine = Self.established()
        _ = machine.receive(Self.request(101), id: 1, isSecure: false, now: Self.t0)
        #expect(Self.describe(machine.waitTimerFired(1, now: Self.t0 + .seconds(60))) == ["respond 1 200 \(Self.empty)", "inactivity 60s"])
        #expect(machine.waitTimerFired(1, now: Self.t0 + .seconds(61)).isEmpty)
    }

    @Test("§7.1 the creation request outlives `wait` until the server's stream opens: its answer then says secure='true' (regression: answered empty with secure='false')")
    func creationWaitsForTheStream() {
        var machine = BOSHSessionStateMachine(
            sid: "s1", creation: Self.creation("wait='2' hold='1' ver='1.6'"), id: 0, domain: "localhost", limits: .init(), isSecure: false, now: Self.t0)
        #expect(Self.describe(machine.creationActions()) == ["wait 0 2s"])
        #expect(Self.describe(machine.waitTimerFired(0, now: Self.t0 + .seconds(2))) == ["wait 0 2s"])
        #expect(Self.describe(machine.waitTimerFired(0, now: Self.t0 + .seconds(4))) == ["wait 0 2s"])
        machine.upstreamOpened(StreamInfo(id: "stream-1", from: "localhost", version: "1.0"), secure: true)
        let answered = Self.describe(machine.upstreamReceived([Self.features], streamElements: true, streamManagement: false, now: Self.t0 + .seconds(5)))
        #expect(answered.count == 2 && answered[0].hasPrefix("respond 0 200 ") && answered[0].contains("secure='true'"), "\(answered)")
        #expect(answered.last == "inactivity 60s")
        // Once the stream is open a creation request is answered at `wait` as any other.
        var open = BOSHSessionStateMachine(
            sid: "s1", creation: Self.creation("wait='2' hold='1' ver='1.6'"), id: 0, domain: "localhost", limits: .init(), isSecure: false, now: Self.t0)
        open.upstreamOpened(StreamInfo(id: "stream-1", from: "localhost", version: "1.0"), secure: true)
        let expired = Self.describe(open.waitTimerFired(0, now: Self.t0 + .seconds(2)))
        #expect(expired.first?.hasPrefix("respond 0 200 ") == true && expired.first?.contains("secure='true'") == true, "\(expired)")
    }

    @Test("§10 inactivity ends the session silently and closes upstream gracefully; stale timers are ignored")
    func inactivity() {
        var machine = BOSHSessionStateMachine(sid: "s1", creation: Self.creation(), id: 0, domain: "localhost", limits: .init(), isSecure: false, now: Self.t0)
        let actions = machine.upstreamReceived([Self.features], streamElements: true, streamManagement: false, now: Self.t0)
        guard case .startInactivityTimer(let generation, 60) = actions.last else {
            Issue.record("no inactivity timer: \(actions)")
            return
        }
        #expect(machine.inactivityTimerFired(generation: generation &- 1).isEmpty)
        #expect(Self.describe(machine.inactivityTimerFired(generation: generation)) == ["close-upstream graceful", "end normal"])
        // A request for the ended session: item-not-found.
        #expect(
            Self.describe(machine.receive(Self.request(101), id: 1, isSecure: false, now: Self.t0)) == [
                "respond 1 200 <body xmlns='http://jabber.org/protocol/httpbind' type='terminate' condition='item-not-found'/>"
            ])
    }

    @Test("§10 pause answers everything without payloads and sets inactivity to the pause")
    func pause() {
        var machine = Self.established()
        _ = machine.receive(Self.request(101), id: 1, isSecure: false, now: Self.t0)
        let actions = Self.describe(machine.receive(Self.request(102, "pause='90'"), id: 2, isSecure: false, now: Self.t0))
        #expect(actions == ["respond 1 200 \(Self.empty)", "respond 2 200 \(Self.empty)", "inactivity 90s"])
        // Stanzas arriving during the pause wait for the return.
        _ = machine.upstreamReceived(
            [ByteBuffer(string: "<message xmlns='jabber:client'>while away</message>")], streamElements: false, streamManagement: false, now: Self.t0 + .seconds(10))
        let back = Self.describe(machine.receive(Self.request(103), id: 3, isSecure: false, now: Self.t0 + .seconds(30)))
        #expect(back.contains("respond 3 200 <body xmlns='http://jabber.org/protocol/httpbind'><message xmlns='jabber:client'>while away</message></body>"))
    }

    @Test("§10 a pause longer than maxpause is a policy violation")
    func pauseTooLong() {
        var machine = Self.established()
        let actions = Self.describe(machine.receive(Self.request(101, "pause='121'"), id: 1, isSecure: false, now: Self.t0))
        #expect(
            actions == [
                "close-upstream graceful", "respond 1 200 <body xmlns='http://jabber.org/protocol/httpbind' type='terminate' condition='policy-violation'/>",
                "end policy-violation",
            ])
    }

    @Test("§13 terminate forwards the last stanzas, closes upstream and returns what was queued")
    func terminate() {
        var machine = Self.established()
        _ = machine.receive(Self.request(101), id: 1, isSecure: false, now: Self.t0)
        let actions = Self.describe(machine.receive(Self.request(102, "type='terminate'", payloads: ["<presence type='unavailable'/>"]), id: 2, isSecure: false, now: Self.t0))
        #expect(
            actions == [
                "forward <presence type='unavailable'/>", "close-upstream graceful", "respond 1 200 \(Self.empty)",
                "respond 2 200 <body xmlns='http://jabber.org/protocol/httpbind' type='terminate'/>", "end normal",
            ]
        )
    }

    @Test("XEP-0206 §5 restart: upstream restarts, payloads are ignored")
    func restart() {
        var machine = Self.established()
        let actions = Self.describe(machine.receive(Self.request(101, "xmpp:restart='true'", payloads: ["<ignored/>"]), id: 1, isSecure: false, now: Self.t0))
        #expect(actions == ["restart", "wait 1 50s"])
    }

    @Test("XEP-0206 §5: a restart before the server opened its stream is bad-request and ends the session (regression: the restart was dropped in silence)")
    func restartBeforeOpen() {
        var machine = BOSHSessionStateMachine(sid: "s1", creation: Self.creation(), id: 0, domain: "localhost", limits: BOSHLimits(), isSecure: false, now: Self.t0)
        _ = machine.creationActions()
        let actions = Self.describe(machine.receive(Self.request(101, "xmpp:restart='true'"), id: 1, isSecure: false, now: Self.t0))
        #expect(actions.contains("respond 1 200 <body xmlns='http://jabber.org/protocol/httpbind' type='terminate' condition='bad-request'/>"), "\(actions)")
        #expect(actions.last == "end bad-request")
        #expect(!actions.contains("restart"))
        #expect(machine.hasEnded)
    }

    @Test("§7.1 secure: what the upstream connection was when its stream opened")
    func secureAttribute() {
        var machine = BOSHSessionStateMachine(sid: "s1", creation: Self.creation(), id: 0, domain: "localhost", limits: BOSHLimits(), isSecure: false, now: Self.t0)
        _ = machine.creationActions()
        machine.upstreamOpened(StreamInfo(id: "stream-1", from: "localhost", version: "1.0"), secure: true)
        let actions = Self.describe(machine.upstreamReceived([Self.features], streamElements: true, streamManagement: false, now: Self.t0))
        #expect(actions.first?.contains(" secure='true' ") == true, "\(actions)")
    }

    @Test("XEP-0206 §6 an upstream stream error becomes remote-stream-error with the error inside")
    func streamError() {
        var machine = Self.established()
        _ = machine.receive(Self.request(101), id: 1, isSecure: false, now: Self.t0)
        let error = ByteBuffer(string: "<stream:error xmlns:stream='http://etherx.jabber.org/streams'><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>")
        let actions = Self.describe(machine.upstreamStreamError(error))
        #expect(
            actions == [
                "respond 1 200 <body xmlns='http://jabber.org/protocol/httpbind' xmlns:stream='http://etherx.jabber.org/streams' type='terminate' condition='remote-stream-error'>\(String(buffer: error))</body>",
                "end remote-stream-error",
            ]
        )
    }

    @Test("§17.2 upstream lost while no request is held: the next request learns remote-connection-failed")
    func upstreamLostBetweenRequests() {
        var machine = Self.established()
        _ = machine.upstreamReceived([ByteBuffer(string: "<message xmlns='jabber:client'>last</message>")], streamElements: false, streamManagement: false, now: Self.t0)
        let lost = Self.describe(machine.upstreamEnded(.failed))
        #expect(lost == ["inactivity 60s"])
        let next = Self.describe(machine.receive(Self.request(101), id: 1, isSecure: false, now: Self.t0))
        #expect(
            next == [
                "respond 1 200 <body xmlns='http://jabber.org/protocol/httpbind' type='terminate' condition='remote-connection-failed'><message xmlns='jabber:client'>last</message></body>"
            ])
    }

    static let endingConditions: [(ending: UpstreamEnding, condition: String?)] = [
        (.closed, nil), (.unreachable, "host-unknown"), (.failed, "remote-connection-failed"), (.serverNotReading, "policy-violation"),
    ]

    @Test("§17.2 each way the upstream stream ends has its terminate condition (a clean close has none)", arguments: Self.endingConditions)
    func upstreamEndings(ending: UpstreamEnding, condition: String?) {
        var machine = Self.established()
        _ = machine.upstreamEnded(ending)
        let next = Self.describe(machine.receive(Self.request(101), id: 1, isSecure: false, now: Self.t0))
        let expected = condition.map { " condition='\($0)'" } ?? ""
        #expect(next == ["respond 1 200 <body xmlns='http://jabber.org/protocol/httpbind' type='terminate'\(expected)/>"], "\(next)")
    }

    @Test("§15 key sequences: the right key continues, a wrong or missing key is item-not-found")
    func keys() {
        // K2 = "c", newkey on creation = hex(sha1(K2)); next key = K2.
        let k2 = "c"
        let creationKey = BOSHSessionStateMachine.sha1Hex(k2)
        var machine = Self.established("wait='60' hold='1' ver='1.6' newkey='\(creationKey)'")
        #expect(Self.describe(machine.receive(Self.request(101, "key='\(k2)'"), id: 1, isSecure: false, now: Self.t0)) == ["wait 1 50s"])
        let wrong = Self.describe(machine.receive(Self.request(102, "key='zzz'"), id: 2, isSecure: false, now: Self.t0))
        #expect(
            wrong == [
                "close-upstream graceful",
                "respond 1 200 <body xmlns='http://jabber.org/protocol/httpbind' type='terminate' condition='item-not-found'/>",
                "respond 2 200 <body xmlns='http://jabber.org/protocol/httpbind' type='terminate' condition='item-not-found'/>",
                "end item-not-found",
            ]
        )
    }

    static let notFound = [
        "close-upstream graceful",
        "respond 7 200 <body xmlns='http://jabber.org/protocol/httpbind' type='terminate' condition='item-not-found'/>",
        "end item-not-found",
    ]

    /// A key-protected session whose rid 101 (key `k101`) has been answered with a message.
    static func keyedSessionAnswered() -> (BOSHSessionStateMachine, BOSHHTTPResponse?) {
        var machine = Self.established("wait='60' hold='1' ver='1.6' newkey='\(KeyChain.creationNewKey)'")
        _ = machine.receive(Self.request(101, "key='\(KeyChain.k101)'"), id: 1, isSecure: false, now: Self.t0)
        let answered = machine.upstreamReceived(
            [ByteBuffer(string: "<message xmlns='jabber:client'>secret</message>")], streamElements: false, streamManagement: false, now: Self.t0)
        guard case .respond(1, let original) = answered.first else { return (machine, nil) }
        return (machine, original)
    }

    @Test(
        "§15 a retransmitted rid of a keyed session must carry the original key, else item-not-found",
        arguments: ["", "key='\(KeyChain.k102)'", "key='zzz'", "newkey='\(KeyChain.k101)'"]
    )
    func retransmissionWithoutTheKey(keyAttributes: String) {
        var (machine, original) = Self.keyedSessionAnswered()
        #expect(original != nil)
        let actions = Self.describe(machine.receive(Self.request(101, keyAttributes), id: 7, isSecure: false, now: Self.t0))
        #expect(actions == Self.notFound)
        #expect(!machine.isActive)
    }

    @Test("§15 a retransmitted rid with the original key gets the buffered response")
    func retransmissionWithTheKey() throws {
        var (machine, original) = Self.keyedSessionAnswered()
        let response = try #require(original)
        #expect(machine.receive(Self.request(101, "key='\(KeyChain.k101)'"), id: 7, isSecure: false, now: Self.t0) == [.respond(7, response)])
        // Hex keys compare case-insensitively, as in the key check itself.
        #expect(machine.receive(Self.request(101, "key='\(KeyChain.k101.uppercased())'"), id: 8, isSecure: false, now: Self.t0) == [.respond(8, response)])
        #expect(machine.isActive)
        // The sequence goes on from the last processed key.
        #expect(Self.describe(machine.receive(Self.request(102, "key='\(KeyChain.k102)'"), id: 9, isSecure: false, now: Self.t0)) == ["wait 9 50s"])
    }

    @Test("§15 the creation request's retransmission needs its newkey")
    func creationRetransmission() {
        var (machine, _) = Self.keyedSessionAnswered()
        let again = Self.describe(machine.receive(Self.request(100, "newkey='\(KeyChain.creationNewKey)'"), id: 8, isSecure: false, now: Self.t0))
        #expect(again.first?.contains("sid='s1'") == true)
        #expect(Self.describe(machine.receive(Self.request(100), id: 7, isSecure: false, now: Self.t0)) == Self.notFound)
    }

    @Test("§15 a key change (key + newkey) is retransmitted with both, or refused")
    func keyChangeRetransmission() {
        let newChain = BOSHSessionStateMachine.sha1Hex("other seed")
        for (attributes, refused) in [
            ("key='\(KeyChain.k101)'", true), ("key='\(KeyChain.k101)' newkey='\(KeyChain.k102)'", true), ("key='\(KeyChain.k101)' newkey='\(newChain)'", false),
        ] {
            var machine = Self.established("wait='60' hold='1' ver='1.6' newkey='\(KeyChain.creationNewKey)'")
            _ = machine.receive(Self.request(101, "key='\(KeyChain.k101)' newkey='\(newChain)'"), id: 1, isSecure: false, now: Self.t0)
            _ = machine.waitTimerFired(1, now: Self.t0 + .seconds(60))
            let actions = Self.describe(machine.receive(Self.request(101, attributes), id: 7, isSecure: false, now: Self.t0 + .seconds(61)))
            #expect((actions == Self.notFound) == refused, "\(attributes): \(actions)")
            #expect(machine.isActive == !refused)
        }
    }

    @Test("§15 a held rid repeated without its key ends the session; with it, the newest request waits")
    func heldRetransmission() {
        var machine = Self.established("wait='60' hold='1' ver='1.6' newkey='\(KeyChain.creationNewKey)'")
        _ = machine.receive(Self.request(101, "key='\(KeyChain.k101)'"), id: 1, isSecure: false, now: Self.t0)
        var keyed = machine
        #expect(
            Self.describe(machine.receive(Self.request(101), id: 7, isSecure: false, now: Self.t0)) == [
                "close-upstream graceful",
                "respond 1 200 <body xmlns='http://jabber.org/protocol/httpbind' type='terminate' condition='item-not-found'/>",
                "respond 7 200 <body xmlns='http://jabber.org/protocol/httpbind' type='terminate' condition='item-not-found'/>",
                "end item-not-found",
            ]
        )
        #expect(
            Self.describe(keyed.receive(Self.request(101, "key='\(KeyChain.k101)'"), id: 2, isSecure: false, now: Self.t0))
                == ["respond 1 200 <body xmlns='http://jabber.org/protocol/httpbind' type='error'/>", "wait 2 50s"]
        )
    }

    @Test("§15 an abandoned rid repeated without its key ends the session; with it, it is held again")
    func abandonedRetransmission() {
        var machine = Self.established("wait='60' hold='1' ver='1.6' newkey='\(KeyChain.creationNewKey)'")
        _ = machine.receive(Self.request(101, "key='\(KeyChain.k101)'"), id: 1, isSecure: false, now: Self.t0)
        _ = machine.requestAbandoned(1)
        var keyed = machine
        #expect(Self.describe(machine.receive(Self.request(101, "key='zzz'"), id: 7, isSecure: false, now: Self.t0)) == Self.notFound)
        #expect(Self.describe(keyed.receive(Self.request(101, "key='\(KeyChain.k101)'"), id: 2, isSecure: false, now: Self.t0)) == ["wait 2 50s"])
        #expect(keyed.heldRequestCount == 1)
    }

    @Test("§15 an undelivered answer's rid repeated without its key ends the session; the queued stanzas are not given to it (bounced: the stream ends now)")
    func undeliveredRetransmission() {
        var (machine, _) = Self.keyedSessionAnswered()
        _ = machine.responseUndelivered(1, now: Self.t0)
        var keyed = machine
        #expect(
            Self.describe(machine.receive(Self.request(101), id: 7, isSecure: false, now: Self.t0)) == [
                "close-upstream graceful",
                "respond 7 200 <body xmlns='http://jabber.org/protocol/httpbind' type='terminate' condition='item-not-found'/>",
                "end item-not-found",
            ]
        )
        #expect(!machine.isActive)
        // Nobody gets them by asking again: the upstream stream has ended (what had a sender was
        // bounced to it; this one, from the server itself, had nobody to tell).
        #expect(!Self.describe(machine.receive(Self.request(102, "key='\(KeyChain.k102)'"), id: 9, isSecure: false, now: Self.t0)).contains { $0.contains("secret") })
        // With the key, the retransmission is held again and answered with what was lost.
        let again = Self.describe(keyed.receive(Self.request(101, "key='\(KeyChain.k101)'"), id: 2, isSecure: false, now: Self.t0))
        #expect(again.first == "wait 2 50s")
        #expect(again.contains { $0.contains("secret") })
    }

    @Test("§15 on a keyed session a request refused for its key never receives queued stanzas")
    func refusedKeyGetsNoStanzas() {
        var machine = Self.established("wait='60' hold='1' ver='1.6' newkey='\(KeyChain.creationNewKey)'")
        _ = machine.receive(Self.request(101, "key='\(KeyChain.k101)'"), id: 1, isSecure: false, now: Self.t0)
        _ = machine.waitTimerFired(1, now: Self.t0 + .seconds(60))
        _ = machine.upstreamReceived(
            [ByteBuffer(string: "<message xmlns='jabber:client'>secret</message>")], streamElements: false, streamManagement: false, now: Self.t0 + .seconds(61))
        let actions = Self.describe(machine.receive(Self.request(102, "key='zzz'"), id: 7, isSecure: false, now: Self.t0 + .seconds(62)))
        #expect(actions == [Self.notFound[0], Self.notFound[1], "end item-not-found"])
        #expect(!actions.contains { $0.contains("secret") })
    }

    @Test("sessions without keys: a retransmission is answered whatever key attributes it carries")
    func retransmissionWithoutKeys() throws {
        var machine = Self.established()
        _ = machine.receive(Self.request(101), id: 1, isSecure: false, now: Self.t0)
        let answered = machine.upstreamReceived([ByteBuffer(string: "<message xmlns='jabber:client'>x</message>")], streamElements: false, streamManagement: false, now: Self.t0)
        guard case .respond(1, let original) = answered.first else {
            Issue.record("no answer")
            return
        }
        #expect(machine.receive(Self.request(101), id: 7, isSecure: false, now: Self.t0) == [.respond(7, original)])
        #expect(machine.receive(Self.request(101, "key='zzz'"), id: 8, isSecure: false, now: Self.t0) == [.respond(8, original)])
    }

    @Test("§9 acknowledgements: responses carry ack when it differs from the answered rid")
    func acks() {
        var machine = Self.established("wait='60' hold='1' ver='1.6' ack='1'")
        _ = machine.receive(Self.request(101, "ack='100'"), id: 1, isSecure: false, now: Self.t0)
        let actions = Self.describe(machine.receive(Self.request(102, "ack='100'", payloads: ["<presence/>"]), id: 2, isSecure: false, now: Self.t0))
        #expect(actions == ["forward <presence/>", "wait 2 50s", "respond 1 200 <body xmlns='http://jabber.org/protocol/httpbind' ack='102'/>"])
    }

    @Test("§17.2 legacy clients (no ver) get HTTP 404 for item-not-found")
    func legacy() {
        var machine = Self.established("wait='60' hold='1'")
        let actions = machine.receive(Self.request(200), id: 1, isSecure: false, now: Self.t0)
        #expect(actions == [.closeUpstream(graceful: true), .respond(1, BOSHHTTPResponse(status: 404, body: ByteBuffer())), .endSession(.itemNotFound)])
    }

    @Test("§19.1 a plain request for a secure session closes that connection only")
    func secureSession() {
        var machine = BOSHSessionStateMachine(sid: "s1", creation: Self.creation(), id: 0, domain: "localhost", limits: .init(), isSecure: true, now: Self.t0)
        #expect(machine.receive(Self.request(101), id: 1, isSecure: false, now: Self.t0) == [.closeConnection(1)])
        #expect(machine.isActive)
    }

    @Test("§12 a polling session polling too fast is a policy violation")
    func pollingTooFast() {
        var machine = Self.established("wait='0' hold='0' ver='1.6'")
        _ = machine.receive(Self.request(101), id: 1, isSecure: false, now: Self.t0 + .seconds(10))
        let second = Self.describe(machine.receive(Self.request(102), id: 2, isSecure: false, now: Self.t0 + .milliseconds(10_500)))
        #expect(
            second == [
                "close-upstream graceful", "respond 2 200 <body xmlns='http://jabber.org/protocol/httpbind' type='terminate' condition='policy-violation'/>",
                "end policy-violation",
            ])
    }

    @Test("§11 more than `requests` outstanding requests is a policy violation")
    func overactivity() {
        var machine = Self.established("wait='60' hold='1' ver='1.6'")
        _ = machine.receive(Self.request(101, payloads: ["<a/>"]), id: 1, isSecure: false, now: Self.t0)
        #expect(machine.receive(Self.request(103, payloads: ["<c/>"]), id: 3, isSecure: false, now: Self.t0).isEmpty)
        let actions = Self.describe(machine.receive(Self.request(102, payloads: ["<b/>"]), id: 2, isSecure: false, now: Self.t0))
        #expect(
            actions == [
                "close-upstream graceful",
                "respond 1 200 <body xmlns='http://jabber.org/protocol/httpbind' type='terminate' condition='policy-violation'/>",
                "respond 3 200 <body xmlns='http://jabber.org/protocol/httpbind' type='terminate' condition='policy-violation'/>",
                "respond 2 200 <body xmlns='http://jabber.org/protocol/httpbind' type='terminate' condition='policy-violation'/>",
                "end policy-violation",
            ]
        )
    }

    @Test("shutdown: system-shutdown, or see-other-uri with the redirect")
    func shutdown() {
        var machine = Self.established()
        _ = machine.receive(Self.request(101), id: 1, isSecure: false, now: Self.t0)
        #expect(Self.describe(machine.shutdown()).contains("respond 1 200 <body xmlns='http://jabber.org/protocol/httpbind' type='terminate' condition='system-shutdown'/>"))
        var other = Self.established()
        _ = other.receive(Self.request(101), id: 1, isSecure: false, now: Self.t0)
        #expect(
            Self.describe(other.shutdown(redirect: "https://b.example/http-bind")).contains(
                "respond 1 200 <body xmlns='http://jabber.org/protocol/httpbind' type='terminate' condition='see-other-uri'><uri>https://b.example/http-bind</uri></body>"))
    }
}

extension BOSHSessionStateMachineTests {
    @Test("§9.2 a client ack below a response sent long ago gets report and time on the next answer")
    func report() {
        var machine = Self.established("wait='60' hold='1' ver='1.6' ack='1'")
        _ = machine.receive(Self.request(101, "ack='100'"), id: 1, isSecure: false, now: Self.t0)
        // 101 is answered at t0 + 1 s (with data) and the client never sees it.
        _ = machine.upstreamReceived(
            [ByteBuffer(string: "<message xmlns='jabber:client'>lost</message>")], streamElements: false, streamManagement: false, now: Self.t0 + .seconds(1))
        // Five seconds later the client's next request still acknowledges only 100.
        let actions = Self.describe(machine.receive(Self.request(102, "ack='100'"), id: 2, isSecure: false, now: Self.t0 + .seconds(6)))
        #expect(actions == ["wait 2 50s", "respond 2 200 <body xmlns='http://jabber.org/protocol/httpbind' report='101' time='5000'/>", "inactivity 60s"])
        // The client re-sends 101 and gets the lost stanza from the buffer.
        #expect(
            Self.describe(machine.receive(Self.request(101), id: 3, isSecure: false, now: Self.t0 + .seconds(6))) == [
                "respond 3 200 <body xmlns='http://jabber.org/protocol/httpbind'><message xmlns='jabber:client'>lost</message></body>"
            ])
    }
    // MARK: Delivery (RFC 6120 §10.4.3, XEP-0198)

    static let queued = [
        "<message xmlns='jabber:client' from='bob@localhost/b' to='alice@localhost/a' id='q1' type='chat'><body>one</body></message>",
        "<presence xmlns='jabber:client' from='bob@localhost/b' to='alice@localhost/a'/>",
        "<iq xmlns='jabber:client' from='bob@localhost/b' to='alice@localhost/a' id='q2' type='get'><query xmlns='jabber:iq:version'/></iq>",
        "<message xmlns='jabber:client' from='room@muc.localhost/bob' to='alice@localhost/a' id='q3' type='groupchat'><body>all</body></message>",
        "<message xmlns='jabber:client' from='bob@localhost/b' to='alice@localhost/a' id='q4' type='error'><error type='cancel'><gone xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>",
    ].map { ByteBuffer(string: $0) }

    static let bounces =
        "forward "
        + "<message xmlns='jabber:client' type='error' to='bob@localhost/b' from='alice@localhost/a' id='q1'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"
        + "<iq xmlns='jabber:client' type='error' to='bob@localhost/b' from='alice@localhost/a' id='q2'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"

    /// An established session whose client stopped polling, with `queued` waiting for it; the
    /// inactivity timer's generation.
    static func abandoned(streamManagement: Bool) -> (BOSHSessionStateMachine, UInt64) {
        var machine = BOSHSessionStateMachine(sid: "s1", creation: Self.creation(), id: 0, domain: "localhost", limits: .init(), isSecure: false, now: Self.t0)
        var generation: UInt64 = 0
        machine.upstreamOpened(StreamInfo(id: "stream-1", from: "localhost", version: "1.0"))
        let answered = machine.upstreamReceived([Self.features], streamElements: true, streamManagement: false, now: Self.t0)
        for case .startInactivityTimer(let g, _) in answered { generation = g }
        if streamManagement {
            _ = machine.receive(Self.request(101, payloads: ["<enable xmlns='urn:xmpp:sm:3' resume='true'/>"]), id: 1, isSecure: false, now: Self.t0)
            let enabled = machine.upstreamReceived(
                [ByteBuffer(string: "<enabled xmlns='urn:xmpp:sm:3' id='sm1' resume='true'/>")], streamElements: false, streamManagement: true, now: Self.t0)
            for case .startInactivityTimer(let g, _) in enabled { generation = g }
        }
        _ = machine.upstreamReceived(Self.queued, streamElements: false, streamManagement: streamManagement, now: Self.t0)
        return (machine, generation)
    }

    @Test("inactivity without XEP-0198: queued messages and requests are bounced through the stream before it closes; presence, groupchat and errors are not (regression: dropped)")
    func inactivityBounces() {
        var (machine, generation) = Self.abandoned(streamManagement: false)
        #expect(Self.describe(machine.inactivityTimerFired(generation: generation)) == [Self.bounces, "bounced 2 inactivity", "close-upstream graceful", "end normal"])
    }

    @Test("inactivity with XEP-0198 enabled: nothing bounced, the connection dropped without </stream:stream> so the server keeps them for <resume/>")
    func inactivityLeavesStanzasToResumption() {
        var (machine, generation) = Self.abandoned(streamManagement: true)
        #expect(Self.describe(machine.inactivityTimerFired(generation: generation)) == ["close-upstream abrupt", "end normal"])
    }

    @Test("a terminal condition with nobody to tell: the stanzas are bounced now, the verdict waits without them; with XEP-0198 they wait with it")
    func terminatedWithoutRequestBounces() {
        var (machine, _) = Self.abandoned(streamManagement: false)
        let actions = Self.describe(machine.fail(.policyViolation))
        #expect(actions.prefix(3) == [Self.bounces, "bounced 2 policy-violation", "close-upstream graceful"])
        let next = Self.describe(machine.receive(Self.request(101), id: 5, isSecure: false, now: Self.t0))
        #expect(next.first == "respond 5 200 <body xmlns='http://jabber.org/protocol/httpbind' type='terminate' condition='policy-violation'/>", "\(next)")

        var (resumable, _) = Self.abandoned(streamManagement: true)
        #expect(Self.describe(resumable.fail(.policyViolation)).first == "close-upstream abrupt")
        let later = Self.describe(resumable.receive(Self.request(102), id: 6, isSecure: false, now: Self.t0))
        #expect(later.first?.contains("id='q1'") == true, "\(later)")
    }

    @Test("shutdown with stanzas queued and a request held: delivered with the verdict, nothing bounced; with XEP-0198 the stream is dropped for resumption")
    func shutdownDeliversToHeldRequest() {
        var machine = Self.established()
        _ = machine.receive(Self.request(101), id: 1, isSecure: false, now: Self.t0)
        _ = machine.upstreamReceived([Self.queued[0]], streamElements: false, streamManagement: false, now: Self.t0)
        _ = machine.receive(Self.request(102), id: 2, isSecure: false, now: Self.t0)
        let actions = Self.describe(machine.shutdown())
        #expect(actions.first == "close-upstream graceful")
        #expect(!actions.contains { $0.hasPrefix("forward") })
        #expect(!actions.contains { $0.hasPrefix("bounced") })
    }

    @Test("queued stanzas beyond the queue limit with no request held: every one bounced before the cut")
    func queueCutBounces() {
        var limits = BOSHLimits()
        limits.maxQueuedBytes = 300
        var machine = BOSHSessionStateMachine(sid: "s1", creation: Self.creation(), id: 0, domain: "localhost", limits: limits, isSecure: false, now: Self.t0)
        _ = machine.upstreamReceived([Self.features], streamElements: true, streamManagement: false, now: Self.t0)
        let actions = Self.describe(machine.upstreamReceived(Self.queued, streamElements: false, streamManagement: false, now: Self.t0))
        #expect(actions.prefix(3) == [Self.bounces, "bounced 2 policy-violation", "close-upstream graceful"])
    }

    @Test("a stream restart forgets XEP-0198: it is enabled per stream")
    func restartForgetsStreamManagement() {
        var (machine, _) = Self.abandoned(streamManagement: true)
        _ = machine.receive(Self.request(102, "xmpp:restart='true'"), id: 7, isSecure: false, now: Self.t0)
        let actions = Self.describe(machine.fail(.policyViolation))
        // The queued stanzas went to the held requests; the stream closes with </stream:stream>.
        #expect(actions.first == "close-upstream graceful", "\(actions)")
    }
}
