/// The terminal binding conditions of XEP-0124 §17.2, with the exact names clients match on.
public enum TerminateCondition: String, Hashable, Sendable, CaseIterable {
    /// Unparsable body, wrong root, malformed attributes.
    case badRequest = "bad-request"
    /// The domain or route is no longer served.
    case hostGone = "host-gone"
    /// The `to` domain or `route` is unknown or not allowed, or DNS has nothing for it.
    case hostUnknown = "host-unknown"
    /// The creation request lacks `to`.
    case improperAddressing = "improper-addressing"
    case internalServerError = "internal-server-error"
    /// Unknown sid, rid outside the window, response no longer buffered, broken key chain.
    case itemNotFound = "item-not-found"
    /// Another request of the same session caused the termination.
    case otherRequest = "other-request"
    /// Too many requests, polling too fast, pause too long, oversized body or stanza.
    case policyViolation = "policy-violation"
    /// Upstream unreachable, not securable, or lost.
    case remoteConnectionFailed = "remote-connection-failed"
    /// Upstream sent `<stream:error/>` (copied inside the body).
    case remoteStreamError = "remote-stream-error"
    /// The client should use the URI in the body's `<uri/>` child.
    case seeOtherURI = "see-other-uri"
    case systemShutdown = "system-shutdown"
    case undefinedCondition = "undefined-condition"

    /// HTTP status for clients that sent no `ver` (XEP-0124 §17.2, legacy error reporting).
    public var legacyHTTPStatus: Int {
        switch self {
        case .badRequest: return 400
        case .policyViolation: return 403
        case .itemNotFound: return 404
        default: return 200
        }
    }
}
