import NIOCore

extension BOSHSessionStateMachine {
    /// What lives through every phase of a session: its terms, fixed at creation, and the few
    /// things that outlast the active phase (the inactivity clock times the tombstone too).
    /// The active rules get it `inout`, next to the `Active` state they change.
    struct Context {
        let sid: String
        let parameters: BOSHSessionParameters
        let limits: BOSHLimits
        let domain: String
        let creationRID: UInt64
        /// Whether the upstream connection is encrypted or local; advertised as `secure`.
        var upstreamSecure = false
        /// Requests that repeated an rid already received (§14.3), for metrics.
        var retransmissions = 0
        var clock = InactivityClock()
        /// Why the client's request ended the session, in its rids' terms, for the log: which
        /// rule of §11 or §14 it broke.
        var endingDetail: String?

        func plainResponse(_ body: BOSHResponse) -> BOSHHTTPResponse {
            BOSHHTTPResponse(status: 200, body: body.encoded(), contentType: self.parameters.contentType)
        }

        /// Legacy clients (no `ver`) get HTTP status codes for the three conditions that have one (§17.2).
        func terminalResponse(_ body: BOSHResponse, condition: TerminateCondition?) -> BOSHHTTPResponse {
            if self.parameters.clientVersion == nil, let condition, condition.legacyHTTPStatus != 200 {
                return BOSHHTTPResponse(status: condition.legacyHTTPStatus, body: ByteBuffer(), contentType: self.parameters.contentType)
            }
            return BOSHHTTPResponse(status: 200, body: body.encoded(), contentType: self.parameters.contentType)
        }
    }
}
