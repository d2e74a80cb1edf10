/// Why a client session failed or ended early: what kind of failure and the condition the peer
/// gave. Shared by every client Tether plays (the load generator's, prebind's), so a failure reads
/// the same in a load report and in a prebind answer.
///
/// Counted and logged by `key` (`stream-error:conflict`, `bosh-terminate:item-not-found`, …).
public struct ClientFailure: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Kind: String, Hashable, Sendable, Codable {
        /// The TCP connection could not be made.
        case connect
        /// `<stream:error>` with this condition.
        case streamError = "stream-error"
        /// `<failure xmlns='…xmpp-sasl'>` with this condition.
        case saslFailure = "sasl-failure"
        /// `<body type='terminate' condition='…'>`.
        case boshTerminate = "bosh-terminate"
        /// An HTTP status other than 200, or a failed WebSocket upgrade.
        case http
        /// XEP-0198 `<failed/>` in answer to `<resume/>`, with this condition.
        case resumeFailed = "resume-failed"
        /// An `<iq type='error'>` during bind.
        case bindError = "bind-error"
        /// Something the client did not expect (bad XML, missing feature, …).
        case protocolViolation = "protocol"
        /// The connection closed while the session was still wanted.
        case closed
        /// The session took too long to log in, or a request too long to answer.
        case timeout
    }

    public var kind: Kind
    public var condition: String

    public init(_ kind: Kind, _ condition: String) {
        self.kind = kind
        self.condition = condition
    }

    /// The counting key: `kind:condition`.
    public var key: String { "\(self.kind.rawValue):\(self.condition)" }
    public var description: String { self.key }
}
