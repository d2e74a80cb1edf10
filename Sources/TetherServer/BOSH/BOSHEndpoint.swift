import BOSHCore
import Logging
import NIOCore
import NIOHTTP1

/// `POST /http-bind` once the edge has the whole body and has checked the origin: the body is
/// parsed, then goes to its session on this node or to the node that holds it (`PeerRelay`).
/// Every outcome leaves through `responder`, the request's one way back to its connection.
struct BOSHEndpoint: Sendable {
    let service: BOSHService
    let relay: PeerRelay

    func handle(
        body: ByteBuffer,
        headers: HTTPHeaders,
        client: ClientOrigin,
        configuration: TetherConfiguration,
        responder: BOSHResponder,
        on eventLoop: any EventLoop,
        newSessionsHere: Bool,
        logger: Logger
    ) {
        let request: BOSHRequest
        do {
            request = try BOSHRequest.parse(body, limits: configuration.xmlLimits)
        } catch {
            logger.info("refused BOSH body", metadata: ["error": "\(error)", "client": "\(client.description)"])
            // No parsable `ver` to tell legacy clients apart: answer the spec's terminal body.
            responder.respond(BOSHHTTPResponse(body: BOSHResponse.terminate(error.condition).encoded()))
            return
        }
        if let peer = self.relay.target(sid: request.sid, ownNode: configuration.nodeID, headers: headers) {
            // Peers share one configuration: the owner believes the header this node believes.
            self.relay.relay(
                body: body, to: peer, client: client, addressHeader: configuration.forwardedHeaders.header, wait: configuration.bosh.maxWait, on: eventLoop
            ).whenSuccess(responder.respond)
            return
        }
        self.service.handle(request, client: client, responder: responder, on: newSessionsHere ? eventLoop : nil)
    }
}
