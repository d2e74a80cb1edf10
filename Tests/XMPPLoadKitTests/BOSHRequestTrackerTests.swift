import NIOCore
import Testing

@testable import XMPPLoadKit

@Suite("BOSH request bookkeeping")
struct BOSHRequestTrackerTests {
    static func created(requests: Int? = 2) -> BOSHRequestTracker {
        var tracker = BOSHRequestTracker(domain: "localhost", wait: 30, initialRID: 100)
        let creation = tracker.creationRequest(nowNanos: 0)
        _ = tracker.responseReceived(rid: creation.rid)
        tracker.sessionCreated(sid: "s1", requests: requests)
        return tracker
    }

    @Test("the creation body asks for hold=1 with the first rid")
    func creation() {
        var tracker = BOSHRequestTracker(domain: "example.org", wait: 45, initialRID: 7)
        let request = tracker.creationRequest(nowNanos: 1)
        #expect(request.rid == 7)
        #expect(request.kind == .creation)
        #expect(request.body.contains("hold='1'"))
        #expect(request.body.contains("wait='45'"))
        #expect(request.body.contains("to='example.org'"))
        #expect(request.body.contains("xmpp:version='1.0'"))
        #expect(tracker.outstanding.map(\.rid) == [7])
        // Nothing else goes out before the session exists.
        tracker.enqueue("<presence/>")
        #expect(tracker.nextRequest(nowNanos: 2) == nil)
    }

    @Test("one request is always kept outstanding: an empty poll when nothing is queued")
    func keepsOnePoll() {
        var tracker = Self.created()
        let poll = tracker.nextRequest(nowNanos: 1)
        #expect(poll?.rid == 101)
        #expect(poll?.body == "<body rid='101' sid='s1' xmlns='http://jabber.org/protocol/httpbind'/>")
        // One outstanding and nothing queued: no second poll.
        #expect(tracker.nextRequest(nowNanos: 2) == nil)
        // Its response comes back: the next poll, with the next rid.
        #expect(tracker.responseReceived(rid: 101) == .expected(.payload))
        #expect(tracker.nextRequest(nowNanos: 3)?.rid == 102)
    }

    @Test("a page reload: quiet only with empty polls out; abandoned requests are forgotten and the next request takes the next rid")
    func reload() {
        var tracker = Self.created()
        tracker.sessionCreated(sid: "s1", requests: 2, inactivity: 30)
        #expect(tracker.inactivity == 30)
        _ = tracker.nextRequest(nowNanos: 1)
        #expect(tracker.isQuiet)
        tracker.enqueue("<message/>")
        #expect(!tracker.isQuiet)
        #expect(tracker.nextRequest(nowNanos: 2)?.carriesPayloads == true)
        #expect(!tracker.isQuiet)
        // The server releases the poll and holds the request that carried the message: not quiet.
        _ = tracker.responseReceived(rid: 101)
        #expect(!tracker.isQuiet)
        // The server answers it (with the pong of a quiet-down ping, say): the next poll is empty.
        _ = tracker.responseReceived(rid: 102)
        let poll = tracker.nextRequest(nowNanos: 3)
        #expect(poll?.rid == 103 && poll?.carriesPayloads == false)
        #expect(tracker.isQuiet)
        tracker.abandonOutstanding()
        #expect(tracker.outstanding.isEmpty)
        #expect(tracker.abandoned.map(\.rid) == [103])
        // The new page: the abandoned request again (same rid and bytes), then the next rid.
        let again = tracker.retransmitAbandoned(nowNanos: 5)
        #expect(again.map(\.rid) == [103] && again.first?.body == poll?.body && again.first?.attempt == 2)
        #expect(tracker.abandoned.isEmpty)
        _ = tracker.responseReceived(rid: 103)
        let first = tracker.nextRequest(nowNanos: 3)
        #expect(first?.rid == 104)
        // The check after a tab close: the next rid, not tracked.
        let probe = tracker.probeRequest(nowNanos: 4)
        #expect(probe?.rid == 105)
        #expect(probe?.body == "<body rid='105' sid='s1' xmlns='http://jabber.org/protocol/httpbind'/>")
        #expect(tracker.outstanding.map(\.rid) == [104])
    }

    @Test("payloads go out at once beside the held request, then wait for a free slot")
    func payloadsUseTheSecondSlot() {
        var tracker = Self.created()
        _ = tracker.nextRequest(nowNanos: 1)  // rid 101 held by the server
        tracker.enqueue("<message to='a'/>")
        let send = tracker.nextRequest(nowNanos: 2)
        #expect(send?.rid == 102)
        #expect(send?.body.contains("<message to='a'/>") == true)
        // Both slots busy: queued payloads wait and travel together.
        tracker.enqueue("<message to='b'/>")
        tracker.enqueue("<message to='c'/>")
        #expect(tracker.nextRequest(nowNanos: 3) == nil)
        #expect(tracker.responseReceived(rid: 101) == .expected(.payload))
        let next = tracker.nextRequest(nowNanos: 4)
        #expect(next?.rid == 103)
        #expect(next?.body.contains("<message to='b'/><message to='c'/>") == true)
        #expect(tracker.outstanding.map(\.rid) == [102, 103])
    }

    @Test(
        "a request that hangs while newer ones are answered holds the page back: no rid goes out `requests` or more above it (regression: a BOSH flap under load moved on five rids, and the retransmission found its answer gone from the server's buffer: item-not-found)"
    )
    func hungRequestHoldsTheWindow() {
        var tracker = Self.created()
        _ = tracker.nextRequest(nowNanos: 1)  // 101: its answer hangs in a connection
        tracker.enqueue("<message id='1'/>")
        #expect(tracker.nextRequest(nowNanos: 2)?.rid == 102)
        #expect(tracker.responseReceived(rid: 102) == .expected(.payload))
        tracker.enqueue("<message id='2'/>")
        // A server keeping the last two answers (§14.3) would have dropped 101's by answering 103.
        #expect(tracker.nextRequest(nowNanos: 3) == nil)
        #expect(tracker.requestLost(rid: 101, nowNanos: 4)?.rid == 101)
        #expect(tracker.responseReceived(rid: 101) == .expected(.payload))
        // Answered, but another copy of 101 is still on its way to the server (sent again after a
        // timeout): it must find its answer there too (regression: it arrived after the page had
        // moved on twelve rids, and ended the session with item-not-found).
        #expect(tracker.nextRequest(nowNanos: 5, oldestInFlight: 101) == nil)
        let next = tracker.nextRequest(nowNanos: 5, oldestInFlight: nil)
        #expect(next?.rid == 103)
        #expect(next?.body.contains("<message id='2'/>") == true)
    }

    @Test("a server's requests='1' leaves one slot")
    func serverRequestsLimit() {
        var tracker = Self.created(requests: 1)
        _ = tracker.nextRequest(nowNanos: 1)
        tracker.enqueue("<presence/>")
        #expect(tracker.nextRequest(nowNanos: 2) == nil)
    }

    @Test("a lost response is retransmitted with the same rid and bytes, up to the attempt limit")
    func retransmission() {
        var tracker = Self.created()
        tracker.enqueue("<message to='a'/>")
        let original = tracker.nextRequest(nowNanos: 1)
        #expect(original?.rid == 101)
        let retry = tracker.requestLost(rid: 101, nowNanos: 50)
        #expect(retry?.rid == 101)
        #expect(retry?.body == original?.body)
        #expect(retry?.attempt == 2)
        #expect(retry?.sentAtNanos == 50)
        #expect(tracker.requestLost(rid: 101, nowNanos: 60)?.attempt == 3)
        // Third loss: give up.
        #expect(tracker.requestLost(rid: 101, nowNanos: 70) == nil)
        // The rid is not reused for new requests.
        _ = tracker.responseReceived(rid: 101)
        #expect(tracker.nextRequest(nowNanos: 80)?.rid == 102)
    }

    @Test("overdue requests are found by send time")
    func overdue() {
        var tracker = Self.created()
        _ = tracker.nextRequest(nowNanos: 10)
        tracker.enqueue("<presence/>")
        _ = tracker.nextRequest(nowNanos: 20)
        #expect(tracker.overdue(sentBefore: 15) == [101])
        #expect(tracker.overdue(sentBefore: 25) == [101, 102])
    }

    @Test("responses to unknown or already answered rids are unexpected")
    func unexpectedResponses() {
        var tracker = Self.created()
        _ = tracker.nextRequest(nowNanos: 1)
        #expect(tracker.responseReceived(rid: 101) == .expected(.payload))
        #expect(tracker.responseReceived(rid: 101) == .unexpected)
        #expect(tracker.responseReceived(rid: 9999) == .unexpected)
    }

    @Test("restart and terminate bodies")
    func controlBodies() {
        var tracker = Self.created()
        _ = tracker.nextRequest(nowNanos: 1)
        tracker.enqueueControl(.restart)
        let restart = tracker.nextRequest(nowNanos: 2)
        #expect(restart?.kind == .restart)
        #expect(restart?.body.contains("xmpp:restart='true'") == true)
        #expect(restart?.body.contains("sid='s1'") == true)
        _ = tracker.responseReceived(rid: 101)
        _ = tracker.responseReceived(rid: 102)
        tracker.enqueue("<presence type='unavailable'/>")
        tracker.enqueueControl(.terminate)
        let terminate = tracker.nextRequest(nowNanos: 3)
        #expect(terminate?.kind == .terminate)
        #expect(terminate?.body == "<body rid='103' sid='s1' type='terminate' xmlns='http://jabber.org/protocol/httpbind'><presence type='unavailable'/></body>")
        #expect(tracker.isTerminated)
        // Nothing after the terminate body, not even a poll.
        _ = tracker.responseReceived(rid: 103)
        #expect(tracker.nextRequest(nowNanos: 4) == nil)
    }

    @Test("pause (§10): the next rid with `pause`, carrying what was queued; maxpause kept from the creation answer")
    func pause() {
        var tracker = BOSHRequestTracker(domain: "localhost", wait: 30, initialRID: 100)
        let creation = tracker.creationRequest(nowNanos: 0)
        _ = tracker.responseReceived(rid: creation.rid)
        tracker.sessionCreated(sid: "s1", requests: 2, inactivity: 30, maxpause: 120)
        #expect(tracker.maxpause == 120)
        let held = tracker.nextRequest(nowNanos: 1)
        #expect(held?.rid == 101)
        tracker.enqueue("<presence/>")
        let pause = tracker.pauseRequest(seconds: 7, nowNanos: 2)
        #expect(pause.rid == 102)
        #expect(pause.body == "<body rid='102' sid='s1' pause='7' xmlns='http://jabber.org/protocol/httpbind'><presence/></body>")
        #expect(pause.carriesPayloads)
        #expect(tracker.outstanding.map(\.rid) == [101, 102])
        #expect(!tracker.isQuiet)
        // A server that offers no pause says so by leaving maxpause out.
        #expect(Self.created().maxpause == nil)
    }

    @Test("after a sleep, outstanding requests count their time from the wake-up, not as overdue")
    func restartClocks() {
        var tracker = Self.created()
        _ = tracker.nextRequest(nowNanos: 1)
        #expect(tracker.overdue(sentBefore: 1_000) == [101])
        tracker.restartClocks(nowNanos: 5_000)
        #expect(tracker.overdue(sentBefore: 1_000).isEmpty)
        #expect(tracker.overdue(sentBefore: 5_001) == [101])
    }
}

@Suite("BOSH empty answers")
struct BOSHEmptyBodyTests {
    @Test("an empty body is recognised without parsing; terminate and payloads are not")
    func emptyBodies() {
        #expect(BOSHLoadSession.isEmptyBody(ByteBuffer(string: "<body xmlns='http://jabber.org/protocol/httpbind'/>")))
        #expect(BOSHLoadSession.isEmptyBody(ByteBuffer(string: "<body sid='x' xmlns=\"http://jabber.org/protocol/httpbind\" />\r\n")))
        #expect(!BOSHLoadSession.isEmptyBody(ByteBuffer(string: "<body type='terminate' condition='item-not-found' xmlns='http://jabber.org/protocol/httpbind'/>")))
        #expect(!BOSHLoadSession.isEmptyBody(ByteBuffer(string: "<body xmlns='http://jabber.org/protocol/httpbind'><message/></body>")))
        #expect(!BOSHLoadSession.isEmptyBody(ByteBuffer(string: "<body xmlns='http://jabber.org/protocol/httpbind'></body>")))
        #expect(!BOSHLoadSession.isEmptyBody(ByteBuffer(string: "")))
    }

    @Test(
        "§17.3 a recoverable binding error (type='error', what §14.3 gives the older of two copies of a rid) is told apart from an answer, a terminal error and payloads that say error"
    )
    func recoverableErrors() {
        // What Tether and Prosody send.
        #expect(BOSHLoadSession.isRecoverableError(ByteBuffer(string: "<body type='error' xmlns='http://jabber.org/protocol/httpbind'/>")))
        #expect(BOSHLoadSession.isRecoverableError(ByteBuffer(string: "<body xmlns=\"http://jabber.org/protocol/httpbind\" type=\"error\"/>")))
        #expect(!BOSHLoadSession.isRecoverableError(ByteBuffer(string: "<body type='terminate' condition='item-not-found' xmlns='http://jabber.org/protocol/httpbind'/>")))
        #expect(!BOSHLoadSession.isRecoverableError(ByteBuffer(string: "<body xmlns='http://jabber.org/protocol/httpbind'/>")))
        // A stanza error inside an answer is the stanza's, not the body's.
        #expect(
            !BOSHLoadSession.isRecoverableError(
                ByteBuffer(string: "<body xmlns='http://jabber.org/protocol/httpbind'><message type='error' id='m1'><error type='cancel'/></message></body>")))
    }
}
