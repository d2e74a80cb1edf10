import AsyncHTTPClient
import BOSHCore
import Logging
import NIOCore
import NIOHTTP1

/// Relays a BOSH request to the node that holds its session (scale-out without shared state).
///
/// The sid names its node; a request that reached another node (the client's address changed,
/// the balancer rebalanced) is posted once to that node's BOSH endpoint, and the answer comes
/// back unchanged. A relayed request carries `X-Tether-Relayed` so it is never relayed again,
/// and the client's address in the header the owner believes (`--client-address-header`; the owner
/// must trust its peers as proxies).
final class PeerRelay: Sendable {
    static let marker = "X-Tether-Relayed"

    private let peers: [String: String]
    /// Only nodes with peers need a client (it must be shut down before it goes away).
    private let client: HTTPClient?
    private let logger: Logger

    init(peers: [String: String], logger: Logger) {
        self.peers = peers
        self.client = peers.isEmpty ? nil : HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(timeout: .init(connect: .seconds(5))))
        self.logger = logger
    }

    /// The peer URL for a request's session, when another configured node holds it.
    func target(sid: String?, ownNode: String?, headers: HTTPHeaders) -> String? {
        guard let sid, let node = BOSHService.node(of: sid), node != ownNode, headers.first(name: Self.marker) == nil else { return nil }
        return self.peers[node].map { $0.hasSuffix("/") ? "\($0)http-bind/\(node)" : "\($0)/http-bind/\(node)" }
    }

    /// The owner's answer, or `remote-connection-failed` when the owner cannot be reached; the
    /// future never fails.
    func relay(
        body: ByteBuffer, to url: String, client: ClientOrigin, addressHeader: ClientAddressHeader, wait: Int, on eventLoop: any EventLoop
    ) -> EventLoopFuture<BOSHHTTPResponse> {
        eventLoop.makeFutureWithTask {
            await self.relay(body: body, to: url, client: client, addressHeader: addressHeader, wait: wait)
        }
    }

    private func relay(body: ByteBuffer, to url: String, client: ClientOrigin, addressHeader: ClientAddressHeader, wait: Int) async -> BOSHHTTPResponse {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "text/xml; charset=utf-8")
        request.headers.add(name: Self.marker, value: "1")
        request.headers.add(contentsOf: addressHeader.headers(naming: client))
        request.body = .bytes(body)
        do {
            guard let http = self.client else { throw HTTPClientError.alreadyShutdown }
            let response = try await http.execute(request, timeout: .seconds(Int64(wait + 15)))
            let bytes = try await response.body.collect(upTo: 8 << 20)
            return BOSHHTTPResponse(status: Int(response.status.code), body: bytes, contentType: response.headers.first(name: "content-type"))
        } catch {
            self.logger.warning("peer relay failed", metadata: ["url": "\(url)", "error": "\(error)"])
            return BOSHHTTPResponse(body: BOSHResponse.terminate(.remoteConnectionFailed).encoded())
        }
    }

    func shutdown() async {
        try? await self.client?.shutdown()
    }
}
