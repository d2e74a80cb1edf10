import Logging
import XMPPCore

/// Admission of new sessions for both transports: draining first, then the session limits. A
/// refusal is logged and counted here, once, whichever transport asked.
struct SessionGate: Sendable {
    let limiter: SessionLimiter
    let status: ServerStatus
    let metrics: TetherMetrics
    let logger: Logger

    /// - Parameter redirect: where a draining node sends clients (`--redirect-uri`).
    func admit(_ client: ClientOrigin, transport: TetherMetrics.Transport, redirect: String?) -> SessionAdmission {
        if self.status.isDraining { return .draining(redirect: redirect) }
        if let refusal = self.limiter.admit(client.description) {
            self.logger.notice("limit reached", metadata: ["limit": "\(refusal.rawValue)", "client": "\(client.description)", "transport": "\(transport.rawValue)"])
            self.metrics.limitHit(refusal.rawValue)
            return .refused(limit: refusal.rawValue)
        }
        self.metrics.sessionCreated(transport)
        return .admitted
    }

    /// An admitted session ended.
    func release(_ client: ClientOrigin) {
        self.limiter.release(client.description)
    }
}
