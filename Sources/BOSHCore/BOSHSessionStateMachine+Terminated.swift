import NIOCore

extension BOSHSessionStateMachine {
    /// A session that has ended with nobody to tell (a tombstone): the verdict waits for the
    /// client's next request until the inactivity timer fires.
    struct Terminated {
        /// The verdict, with the stanzas that stay in it (XEP-0198, or a stream already closed).
        let body: BOSHHTTPResponse
        let condition: TerminateCondition?
        /// hex(SHA-1) the next `key` must hash to (§15), when the client used keys.
        let expectedKeyHash: String?

        /// §15: on a keyed session only the client's next key collects what was kept.
        func answer(_ request: BOSHRequest, id: BOSHRequestID, context: Context) -> [Action] {
            if let expected = self.expectedKeyHash, request.key.map(BOSHSessionStateMachine.sha1Hex) != expected {
                return [.respond(id, context.terminalResponse(.terminate(self.condition), condition: self.condition))]
            }
            return [.respond(id, self.body)]
        }
    }
}
