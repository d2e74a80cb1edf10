import BOSHCore
import NIOCore

/// Where a BOSH answer goes: the HTTP connection that carried the request, on its own event loop.
struct BOSHResponder: Sendable {
    let respond: @Sendable (BOSHHTTPResponse) -> Void
    /// Drops the HTTP connection without an answer (XEP-0124 §19.1).
    let close: @Sendable () -> Void
}
