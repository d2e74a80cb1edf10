import BOSHCore
import Logging
import NIOCore
import XMPPCore
import XMPPUpstream

/// Creates BOSH sessions, finds them by sid, and ends them all at shutdown.
final class BOSHService: Sendable {
    private let sessions = SessionRegistry<String, BOSHSession>()
    private let store: ConfigurationStore
    private var configuration: TetherConfiguration { self.store.current }
    private let group: any EventLoopGroup
    private let logger: Logger
    private let gate: SessionGate
    private let metrics: TetherMetrics
    private let upstream: UpstreamLinks

    init(store: ConfigurationStore, gate: SessionGate, metrics: TetherMetrics, upstream: UpstreamLinks, group: any EventLoopGroup, logger: Logger) {
        self.upstream = upstream
        self.store = store
        self.gate = gate
        self.metrics = metrics
        self.group = group
        self.logger = logger
    }

    var sessionCount: Int { self.sessions.count }

    /// Every live session's state, for the metrics scrape.
    var sessionStates: [SessionState] { self.sessions.states }

    private var isDraining: Bool { self.gate.status.isDraining }

    /// Handles a parsed request body: a new session when it has no sid, otherwise the session's next request.
    ///
    /// - Parameter eventLoop: for a new session, the loop of the HTTP/1 connection that carried
    ///   the request: the session lives there (connections are spread over the loops, so
    ///   sessions are too), and its client's requests on that connection and their answers need
    ///   no hop to another thread, which costs a wake-up of that thread. `nil` (prebind, HTTP/2):
    ///   the group's next loop.
    func handle(_ request: BOSHRequest, client: ClientOrigin, responder: BOSHResponder, on eventLoop: (any EventLoop)?) {
        guard let sid = request.sid else {
            self.create(request, client: client, responder: responder, on: eventLoop ?? self.group.next())
            return
        }
        guard let session = self.sessions[sid] else {
            if self.isDraining {
                // Draining: the session this request belongs to may have just been ended by the
                // shutdown; its client must hear the same answer as the held requests did, not
                // item-not-found (which tells it to give up rather than to reconnect elsewhere).
                let redirect = self.configuration.redirectURI
                responder.respond(Self.refusal(redirect == nil ? .systemShutdown : .seeOtherURI, for: request, uri: redirect))
            } else {
                responder.respond(Self.refusal(.itemNotFound, for: request))
            }
            return
        }
        session.eventLoop.executeHere {
            session.receive(request, responder: responder, isSecure: client.isSecure)
        }
    }

    private func create(_ request: BOSHRequest, client: ClientOrigin, responder: BOSHResponder, on eventLoop: any EventLoop) {
        let configuration = self.configuration
        let clientAddress = client.description
        if self.isDraining {
            responder.respond(Self.refusal(configuration.redirectURI == nil ? .systemShutdown : .seeOtherURI, for: request, uri: configuration.redirectURI))
            return
        }
        guard let domain = request.to?.lowercased(), !domain.isEmpty else {
            responder.respond(Self.refusal(.improperAddressing, for: request))
            return
        }
        guard configuration.serves(domain: domain) else {
            self.logger.notice("refused session for unserved domain", metadata: ["to": "\(domain)", "client": "\(clientAddress)"])
            responder.respond(Self.refusal(.hostUnknown, for: request))
            return
        }
        var connector = self.upstream.connector(configuration.upstream)
        if let route = request.route {
            guard configuration.allowedRouteAttributes.contains(route), let target = Self.parseRouteAttribute(route) else {
                self.logger.notice("refused route attribute", metadata: ["route": "\(route)", "client": "\(clientAddress)"])
                responder.respond(Self.refusal(.hostUnknown, for: request))
                return
            }
            connector.configuration.routes[domain] = target
        }
        switch self.gate.admit(client, transport: .bosh, redirect: configuration.redirectURI) {
        case .admitted:
            break
        case .refused:
            responder.respond(Self.refusal(.policyViolation, for: request))
            return
        case .draining(let redirect):
            responder.respond(Self.refusal(redirect == nil ? .systemShutdown : .seeOtherURI, for: request, uri: redirect))
            return
        }
        let sid = Self.makeSID(node: configuration.nodeID)
        var logger = self.logger
        logger[metadataKey: "client"] = "\(clientAddress)"
        logger[metadataKey: "transport"] = "bosh"
        let session = BOSHSession(
            sid: sid,
            creation: request,
            domain: domain,
            limits: configuration.bosh,
            isSecure: client.isSecure,
            eventLoop: eventLoop,
            logger: logger,
            metrics: self.metrics,
            onEnd: { [weak self] sid in
                guard let self else { return }
                if self.sessions.remove(sid) != nil {
                    self.gate.release(client)
                }
            }
        )
        self.sessions.add(session, for: sid)
        // Admitted just before draining began, and registered after the shutdown looked: the
        // registry's shutdown did not see it, so it is told here.
        let drainedMeanwhile = self.isDraining
        let header = StreamHeader(to: domain, from: request.from, language: request.language, version: request.xmppVersion ?? "1.0")
        let proxyHeader = client.destination.map { ProxyProtocolHeader(source: client.address, destination: $0) }
        let sessionConnector = connector
        let links = self.upstream
        eventLoop.executeHere {
            session.start(creation: request, responder: responder, upstream: links, connector: sessionConnector, header: header, client: proxyHeader)
            if drainedMeanwhile { session.shutdown(redirect: configuration.redirectURI) }
        }
    }

    /// Tells every session the server is going away (the server is draining by then: a session
    /// admitted just before and registered just after is told by `create`); returns when all
    /// registered have been told.
    func shutdown() async {
        await self.sessions.shutdown(redirect: self.configuration.redirectURI)
    }

    /// An answer for a request that has no session to answer it (§17.2). Only a creation request
    /// tells whether the client is legacy (no `ver`); an unknown sid gets the modern terminal body.
    static func refusal(_ condition: TerminateCondition, for request: BOSHRequest, uri: String? = nil) -> BOSHHTTPResponse {
        if request.sid == nil, request.version == nil, condition.legacyHTTPStatus != 200 {
            return BOSHHTTPResponse(status: condition.legacyHTTPStatus, body: ByteBuffer(), contentType: request.content)
        }
        if condition == .seeOtherURI, let uri {
            return BOSHHTTPResponse(body: BOSHResponse.seeOtherURI(uri).encoded(), contentType: request.content)
        }
        return BOSHHTTPResponse(body: BOSHResponse.terminate(condition).encoded(), contentType: request.content)
    }

    /// A session id: 128 bits from the system CSPRNG (XEP-0124 §19.3), hex-encoded, after the
    /// node's name when one is configured (`node1.3f…`).
    static func makeSID(node: String? = nil) -> String {
        var generator = SystemRandomNumberGenerator()
        let high = generator.next() as UInt64
        let low = generator.next() as UInt64
        return (node.map { "\($0)." } ?? "") + Self.hex(high) + Self.hex(low)
    }

    /// The node a sid belongs to, when it names one.
    static func node(of sid: String) -> String? {
        guard let dot = sid.firstIndex(of: ".") else { return nil }
        return String(sid[..<dot])
    }

    private static func hex(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }

    /// `xmpp:host:port` (XEP-0124 §7.1: not a URI, so not parsed as one).
    static func parseRouteAttribute(_ route: String) -> UpstreamRoute? {
        guard route.hasPrefix("xmpp:") else { return nil }
        return UpstreamRoute(String(route.dropFirst("xmpp:".count)))
    }
}
