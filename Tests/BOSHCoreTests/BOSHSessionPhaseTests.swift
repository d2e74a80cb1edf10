import NIOCore
import Testing
import XMPPCore

@testable import BOSHCore

/// Moving between phases: what the active, terminated (tombstone) and ended sessions answer.
@Suite("BOSH session phases")
struct BOSHSessionPhaseTests {
    typealias T = BOSHSessionStateMachineTests

    static let stanza = ByteBuffer(string: "<message xmlns='jabber:client' id='q1' to='a@localhost'><body>hi</body></message>")

    @Test("shutdown with nobody waiting ends at once: no tombstone, no inactivity timer")
    func shutdownWithNobodyWaiting() {
        var machine = T.established()
        let actions = T.describe(machine.shutdown())
        #expect(actions == ["close-upstream graceful", "end system-shutdown"])
        #expect(machine.hasEnded)
        let later = T.describe(machine.receive(T.request(101), id: 1, isSecure: false, now: T.t0))
        #expect(later == ["respond 1 200 <body xmlns='http://jabber.org/protocol/httpbind' type='terminate' condition='item-not-found'/>"])
    }

    @Test("a session ending with nothing held answers the requests waiting out of order with the verdict alone (regression: never answered)")
    func endWithRequestsOutOfOrder() {
        var machine = T.established()
        let early = machine.receive(T.request(102), id: 5, isSecure: false, now: T.t0)
        #expect(early.isEmpty, "102 waits for 101 (§14.2)")
        _ = machine.upstreamReceived([Self.stanza], streamElements: false, streamManagement: false, now: T.t0)
        let actions = T.describe(machine.fail(.policyViolation))
        #expect(actions.contains("respond 5 200 <body xmlns='http://jabber.org/protocol/httpbind' type='terminate' condition='policy-violation'/>"), "\(actions)")
        #expect(!actions.contains { $0.contains("id='q1'") }, "an unverified request gets no stanza")
        #expect(machine.heldRequestCount == 0)
    }

    @Test("shutdown with a request held: it gets the verdict, then the session ends")
    func shutdownWithHeldRequest() {
        var machine = T.established()
        _ = machine.receive(T.request(101), id: 1, isSecure: false, now: T.t0)
        #expect(machine.heldRequestCount == 1)
        let actions = T.describe(machine.shutdown())
        #expect(
            actions == [
                "close-upstream graceful",
                "respond 1 200 <body xmlns='http://jabber.org/protocol/httpbind' type='terminate' condition='system-shutdown'/>",
                "end system-shutdown",
            ])
        #expect(machine.hasEnded)
        #expect(machine.heldRequestCount == 0)
        #expect(machine.queuedBytes == 0)
    }

    @Test("shutdown while a tombstone is held changes nothing: the verdict is still collected, inactivity still ends it")
    func shutdownWhileTombstoneHeld() {
        var machine = T.established()
        let failed = machine.fail(.policyViolation)
        #expect(T.describe(failed) == ["close-upstream graceful", "inactivity 60s"])
        guard case .startInactivityTimer(let generation, _) = failed.last else {
            Issue.record("no tombstone timer: \(failed)")
            return
        }
        #expect(!machine.isActive)
        #expect(!machine.hasEnded)
        let shutdown = machine.shutdown()
        #expect(shutdown.isEmpty)
        #expect(!machine.hasEnded)
        let collected = T.describe(machine.receive(T.request(101), id: 1, isSecure: false, now: T.t0))
        #expect(collected == ["respond 1 200 <body xmlns='http://jabber.org/protocol/httpbind' type='terminate' condition='policy-violation'/>"])
        let stale = machine.inactivityTimerFired(generation: generation &- 1)
        #expect(stale.isEmpty)
        let ended = T.describe(machine.inactivityTimerFired(generation: generation))
        #expect(ended == ["end policy-violation"])
        #expect(machine.hasEnded)
    }

    @Test("shutdown keeps no tombstone even where XEP-0198 would keep the queued stanzas in one")
    func shutdownKeepsNoResumableTombstone() {
        func prepared() -> BOSHSessionStateMachine {
            var machine = T.established()
            _ = machine.upstreamReceived([Self.stanza], streamElements: false, streamManagement: true, now: T.t0)
            return machine
        }
        var failing = prepared()
        let failed = T.describe(failing.fail(.policyViolation))
        #expect(failed == ["close-upstream abrupt", "inactivity 60s"])
        let collected = T.describe(failing.receive(T.request(101), id: 1, isSecure: false, now: T.t0))
        #expect(collected.first?.contains("id='q1'") == true, "\(collected)")

        var shutting = prepared()
        let actions = T.describe(shutting.shutdown())
        #expect(actions == ["close-upstream abrupt", "end system-shutdown"])
        #expect(shutting.hasEnded)
    }

    @Test("inputs after the end are answered or ignored, never trapped on")
    func inputsAfterTheEnd() {
        var machine = T.established()
        _ = machine.receive(T.request(101, "type='terminate'"), id: 1, isSecure: false, now: T.t0)
        #expect(machine.hasEnded)
        let abandoned = machine.requestAbandoned(1)
        let undelivered = machine.responseUndelivered(1, now: T.t0)
        let received = machine.upstreamReceived([Self.stanza], streamElements: false, streamManagement: false, now: T.t0)
        let streamError = machine.upstreamStreamError(ByteBuffer(string: "<stream:error/>"))
        let upstreamEnded = machine.upstreamEnded(.closed)
        let shutdown = machine.shutdown(redirect: "https://b.example/http-bind")
        let failed = machine.fail(.internalServerError)
        let wait = machine.waitTimerFired(1, now: T.t0)
        let inactivity = machine.inactivityTimerFired(generation: 0)
        machine.upstreamOpened(StreamInfo(id: "stream-2", from: "localhost", version: "1.0"), secure: true)
        for actions in [abandoned, undelivered, received, streamError, upstreamEnded, shutdown, failed, wait, inactivity] {
            #expect(actions.isEmpty)
        }
        #expect(machine.upstreamSecure)
        #expect(machine.creationActions().isEmpty)
        #expect(machine.heldRequestCount == 0)
    }
}
