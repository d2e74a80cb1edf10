import NIOCore
import NIOPosix
import XMPPClientCore
import XMPPCore

/// A minimal in-process XMPP server for measuring, not for correctness: it accepts any SASL PLAIN
/// login, binds the requested resource, routes `<message>` between connected JIDs (full or bare),
/// answers `<iq type='get'>` with an empty result and ignores presence. No TLS, no roster, no storage.
///
/// It exists so Tether's own capacity (or the load generator's) can be measured at scales where a
/// real server would be the bottleneck. Never use it in place of a real server in correctness tests.
///
/// All connections share one event loop, so the routing table needs no lock.
public final class UpstreamStub: Sendable {
    public struct Options: Sendable, Hashable {
        public var host: String
        /// 0 picks a free port (see `port`).
        public var port: Int
        /// Drop every Nth routed message (0: none). For testing loss accounting.
        public var dropEveryNthMessage: Int

        public init(host: String = "127.0.0.1", port: Int = 0, dropEveryNthMessage: Int = 0) {
            self.host = host
            self.port = port
            self.dropEveryNthMessage = dropEveryNthMessage
        }
    }

    public let options: Options
    private let group: MultiThreadedEventLoopGroup
    private let channel: any Channel
    private let router: NIOLoopBound<StubRouter>

    /// The port it listens on.
    public var port: Int { self.channel.localAddress?.port ?? self.options.port }

    private init(options: Options, group: MultiThreadedEventLoopGroup, channel: any Channel, router: NIOLoopBound<StubRouter>) {
        self.options = options
        self.group = group
        self.channel = channel
        self.router = router
    }

    /// Starts listening on its own single-threaded event loop group.
    public static func start(_ options: Options = Options()) async throws -> UpstreamStub {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        do {
            let router = try await loop.submit { NIOLoopBound(StubRouter(dropEveryNth: options.dropEveryNthMessage), eventLoop: loop) }.get()
            let channel = try await ServerBootstrap(group: loop, childGroup: loop)
                .serverChannelOption(.backlog, value: 4096)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(StubConnectionHandler(router: router.value))
                    }
                }
                .bind(host: options.host, port: options.port)
                .get()
            return UpstreamStub(options: options, group: group, channel: channel, router: router)
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
    }

    /// Stops listening, closes every connection and the event loop.
    public func stop() async {
        try? await self.channel.close()
        try? await self.group.shutdownGracefully()
    }

    /// What the stub has routed so far.
    public struct Counters: Sendable, Hashable {
        public var routed: Int
        public var dropped: Int
        public var undeliverable: Int
        public var connected: Int
    }

    public func counters() async throws -> Counters {
        let router = self.router
        return try await self.channel.eventLoop.submit {
            let value = router.value
            return Counters(routed: value.routed, dropped: value.dropped, undeliverable: value.undeliverable, connected: value.connected)
        }.get()
    }
}

/// Who is connected, by full and bare JID. Loop-bound.
final class StubRouter {
    private var byFullJID: [String: StubConnectionHandler] = [:]
    private var byBareJID: [String: [StubConnectionHandler]] = [:]
    let dropEveryNth: Int
    private(set) var routed = 0
    private(set) var dropped = 0
    private(set) var undeliverable = 0
    private var messageCount = 0
    private var streamCounter = 0

    var connected: Int { self.byFullJID.count }

    func nextStreamID() -> Int {
        self.streamCounter += 1
        return self.streamCounter
    }

    func has(_ fullJID: String) -> Bool { self.byFullJID[fullJID] != nil }

    init(dropEveryNth: Int) {
        self.dropEveryNth = dropEveryNth
    }

    func register(_ connection: StubConnectionHandler, fullJID: String, bareJID: String) {
        self.byFullJID[fullJID] = connection
        self.byBareJID[bareJID, default: []].append(connection)
    }

    func unregister(_ connection: StubConnectionHandler, fullJID: String, bareJID: String) {
        if self.byFullJID[fullJID] === connection { self.byFullJID[fullJID] = nil }
        self.byBareJID[bareJID]?.removeAll { $0 === connection }
        if self.byBareJID[bareJID]?.isEmpty == true { self.byBareJID[bareJID] = nil }
    }

    /// Delivers a message to `to` (full JID, else every resource of the bare JID). Returns false if nobody is there.
    func route(_ stanza: ByteBuffer, to: String) -> Bool {
        self.messageCount += 1
        if self.dropEveryNth > 0, self.messageCount % self.dropEveryNth == 0 {
            self.dropped += 1
            return true
        }
        if let connection = self.byFullJID[to] {
            connection.deliver(stanza)
            self.routed += 1
            return true
        }
        let bare = to.split(separator: "/", maxSplits: 1).first.map(String.init) ?? to
        if let connections = self.byBareJID[bare], !connections.isEmpty {
            for connection in connections { connection.deliver(stanza) }
            self.routed += 1
            return true
        }
        self.undeliverable += 1
        return false
    }
}

/// One client connection to the stub: stream negotiation and stanza handling.
final class StubConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum State {
        case awaitingStream
        case awaitingAuth
        case awaitingRestart(user: String)
        case bound(user: String)
    }

    private let router: StubRouter
    private let framer = XMLStreamFramer(limits: .init(maxElementBytes: 1 << 20, maxDepth: 64))
    private var state = State.awaitingStream
    private var context: ChannelHandlerContext?
    private var fullJID: String?
    private var bareJID: String?
    private var domain = "localhost"
    private var streamNumber = 0

    init(router: StubRouter) {
        self.router = router
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let fullJID = self.fullJID, let bareJID = self.bareJID {
            self.router.unregister(self, fullJID: fullJID, bareJID: bareJID)
        }
        self.fullJID = nil
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let events: [XMLStreamFramer.Event]
        do {
            events = try self.framer.feed(self.unwrapInboundIn(data))
        } catch {
            self.streamError(context: context, condition: "not-well-formed")
            return
        }
        for event in events {
            switch event {
            case .rootOpened(let root):
                self.streamOpened(context: context, root: root)
            case .element(let element):
                self.element(context: context, element)
            case .rootClosed:
                self.write(context: context, StreamHeader.closing)
                context.flush()
                context.close(promise: nil)
                return
            }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
        context.fireChannelReadComplete()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    /// A routed message for this connection (from another connection's read, same loop).
    func deliver(_ stanza: ByteBuffer) {
        guard let context = self.context else { return }
        context.writeAndFlush(self.wrapOutboundOut(stanza), promise: nil)
    }

    private func write(context: ChannelHandlerContext, _ text: String) {
        context.write(self.wrapOutboundOut(ByteBuffer(string: text)), promise: nil)
    }

    private func streamOpened(context: ChannelHandlerContext, root: XMLRootElement) {
        if let to = root.attributes.value(of: "to") { self.domain = to }
        self.streamNumber = self.router.nextStreamID()
        let header =
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
            + "id='stub\(self.streamNumber)' from='\(XMLEscaping.escapeAttribute(self.domain))' version='1.0'>"
        switch self.state {
        case .awaitingStream, .awaitingAuth:
            self.state = .awaitingAuth
            self.write(
                context: context,
                header
                    + "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>"
            )
        case .awaitingRestart(let user):
            self.state = .bound(user: user)
            self.write(
                context: context,
                header + "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>"
            )
        case .bound:
            self.streamError(context: context, condition: "conflict")
        }
    }

    private func element(context: ChannelHandlerContext, _ element: XMLElementSlice) {
        switch self.state {
        case .awaitingStream:
            self.streamError(context: context, condition: "invalid-namespace")
        case .awaitingAuth:
            guard element.name.localName == "auth", element.name.namespace == XMLNamespaces.sasl,
                StanzaScanner.attribute("mechanism", in: element.bytes) == "PLAIN",
                let user = Self.plainUser(element)
            else {
                self.write(context: context, "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><invalid-mechanism/></failure>")
                return
            }
            self.state = .awaitingRestart(user: user)
            self.write(context: context, "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")
            // The client's next bytes open a new stream.
            self.framer.reset()
        case .awaitingRestart:
            self.streamError(context: context, condition: "not-authorized")
        case .bound(let user):
            self.stanza(context: context, element, user: user)
        }
    }

    private func stanza(context: ChannelHandlerContext, _ element: XMLElementSlice, user: String) {
        let bytes = element.bytes
        switch element.name.localName {
        case "message":
            guard let from = self.fullJID, let to = StanzaScanner.attribute("to", in: bytes) else { return }
            // Re-stamp 'from' (as a server does): "<message" + " from='…'" + the rest.
            var stanza = ByteBufferAllocator().buffer(capacity: bytes.readableBytes + from.utf8.count + 9)
            stanza.writeStaticString("<message from='")
            stanza.writeString(XMLEscaping.escapeAttribute(from))
            stanza.writeStaticString("'")
            var rest = bytes
            rest.moveReaderIndex(forwardBy: 8)  // "<message"
            stanza.writeBuffer(&rest)
            if !self.router.route(stanza, to: to) {
                let id = StanzaScanner.attribute("id", in: bytes).map { " id='\(XMLEscaping.escapeAttribute($0))'" } ?? ""
                self.write(
                    context: context,
                    "<message type='error' from='\(XMLEscaping.escapeAttribute(to))'\(id)><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"
                )
            }
        case "iq":
            let id = XMLEscaping.escapeAttribute(StanzaScanner.attribute("id", in: bytes) ?? "")
            let type = StanzaScanner.attribute("type", in: bytes)
            if self.fullJID == nil, type == "set", element.hasChild("bind", namespace: XMPPLoginStateMachine.bindNamespace) {
                var resource = StanzaScanner.text(of: "resource", in: bytes) ?? ""
                if resource.isEmpty { resource = "stub\(self.streamNumber)" }
                let bare = "\(user)@\(self.domain)"
                var full = "\(bare)/\(resource)"
                if self.router.has(full) { full += "-\(self.streamNumber)" }
                self.fullJID = full
                self.bareJID = bare
                self.router.register(self, fullJID: full, bareJID: bare)
                self.write(
                    context: context,
                    "<iq type='result' id='\(id)'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>\(XMLEscaping.escapeText(full))</jid></bind></iq>"
                )
            } else if type == "get" || type == "set" {
                self.write(context: context, "<iq type='result' id='\(id)'/>")
            }
        default:
            // Presence and anything else: accepted, not routed.
            break
        }
    }

    private func streamError(context: ChannelHandlerContext, condition: String) {
        self.write(
            context: context,
            "<stream:error><\(condition) xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>\(StreamHeader.closing)"
        )
        context.flush()
        context.close(promise: nil)
    }

    /// The authentication identity of `<auth mechanism='PLAIN'>base64(authzid\0authcid\0password)</auth>`.
    static func plainUser(_ element: XMLElementSlice) -> String? {
        guard let text = StanzaScanner.text(of: "auth", in: element.bytes), let bytes = Base64.decode(text) else { return nil }
        let parts = bytes.split(separator: 0, omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[1].isEmpty else { return nil }
        return String(decoding: parts[1], as: UTF8.self)
    }
}
