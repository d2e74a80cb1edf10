import Logging
import NIOCore
import NIOHTTP1

/// `POST /prebind`, backend to Tether only: no CORS headers, a shared secret, JSON in and out.
/// The login runs as a task of `PrebindService`; the edge only writes the answer when it is ready.
struct PrebindEndpoint: Sendable {
    let service: PrebindService

    /// The answer, at once for a refusal, after the login otherwise (bounded by the settings' timeout).
    func answer(
        method: HTTPMethod,
        headers: HTTPHeaders,
        body: ByteBuffer,
        client: ClientOrigin,
        settings: PrebindSettings?,
        on eventLoop: any EventLoop,
        logger: Logger
    ) -> EventLoopFuture<HTTPAnswer> {
        guard let settings else {
            return eventLoop.makeSucceededFuture(.notFound)
        }
        guard method == .POST else {
            return eventLoop.makeSucceededFuture(.text(.methodNotAllowed, "Use POST.\n", headers: [("Allow", "POST")]))
        }
        guard self.service.authorizes(headers, secret: settings.secret) else {
            logger.notice("prebind refused: wrong or missing secret", metadata: ["client": "\(client.description)"])
            return eventLoop.makeSucceededFuture(
                Self.json(.unauthorized, ByteBuffer(string: "{\"error\":\"unauthorized\"}"), extra: [("WWW-Authenticate", "Bearer realm=\"tether-prebind\"")]))
        }
        let service = self.service
        return eventLoop.makeFutureWithTask {
            let (status, answer) = await service.handle(body: body, client: client, timeout: settings.timeout)
            return Self.json(status, answer)
        }
    }

    /// Credentials and session ids: never cached.
    private static func json(_ status: HTTPResponseStatus, _ body: ByteBuffer, extra: [(String, String)] = []) -> HTTPAnswer {
        HTTPAnswer(status: status, contentType: "application/json", body: body, headers: extra + [("Cache-Control", "no-store")])
    }
}
