import NIOCore
import NIOHTTP1

/// `/metrics`, `/healthz`, `/readyz`: for monitoring. `/metrics` carries no CORS headers (no
/// page of another origin may read it); the probes get the configured CORS policy's.
enum OperationsEndpoint {
    static func metrics(_ exposition: [UInt8]) -> HTTPAnswer {
        HTTPAnswer(status: .ok, contentType: "text/plain; version=0.0.4; charset=utf-8", body: ByteBuffer(bytes: exposition))
    }

    static let health = HTTPAnswer.text(.ok, "ok\n")

    /// A balancer stops sending new clients to a draining node.
    static func ready(isDraining: Bool) -> HTTPAnswer {
        isDraining ? .text(.serviceUnavailable, "draining\n") : .text(.ok, "ready\n")
    }
}
