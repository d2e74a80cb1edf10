import Testing
import XMPPCore

@testable import XMPPUpstreamCore

@Suite("What an upstream error means for its session")
struct UpstreamEndingTests {
    static let cases: [(error: UpstreamError?, ending: UpstreamEnding)] = [
        (nil, .closed),
        (.dnsFailure("x.example"), .unreachable),
        (.noAddresses("x.example"), .unreachable),
        (.addressNotAllowed("10.0.0.1"), .unreachable),
        (.resolverUnavailable("res_ninit"), .failed),
        (.connectFailed("refused"), .failed),
        (.timedOut("stream open"), .failed),
        (.tlsNotOffered, .failed),
        (.tlsRefused, .failed),
        (.tlsHandshakeFailed("certificate"), .failed),
        (.protocolViolation("plaintext after <proceed/>"), .failed),
        (.closedByPeer, .failed),
        (.serverNotReading(queuedBytes: 1 << 20), .serverNotReading),
    ]

    @Test(
        "one mapping for BOSH and WebSocket: resolution failures are host-unknown, a server that stops reading a limit, anything else remote-connection-failed",
        arguments: Self.cases)
    func mapping(error: UpstreamError?, ending: UpstreamEnding) {
        #expect(UpstreamEnding(error) == ending)
        if let error, ending != .serverNotReading {
            #expect(UpstreamEnding(connectFailure: error) == ending)
        }
        #expect((ending.limit != nil) == (ending == .serverNotReading))
    }

    @Test("a connect failure that is not an UpstreamError (a NIO error) is remote-connection-failed")
    func foreignError() {
        struct Other: Error {}
        #expect(UpstreamEnding(connectFailure: Other()) == .failed)
    }
}
