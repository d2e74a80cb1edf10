import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket
import XMPPClientCore
import XMPPCore

/// An RFC 7395 client: HTTP upgrade with subprotocol `xmpp`, then one element per text message,
/// `<open/>` and `<close/>` in the framing namespace instead of stream headers.
///
/// The server's messages are fed, one after another, into a framer opened on a synthetic root,
/// so each arrives as a complete top-level element whatever the frame boundaries.
final class WebSocketLoadSession: LoadSession {
    private var channel: (any Channel)?
    /// Bumped for every connection, so events of one the page left are ignored.
    private var generation = 0
    private let framer = XMLStreamFramer(limits: .init(maxElementBytes: 1 << 20, maxDepth: 64))
    private var open: ByteBuffer {
        ByteBuffer(
            string: "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='\(XMLEscaping.escapeAttribute(self.worker.scenario.domain))' version='1.0'/>"
        )
    }

    override var usesStreamManagement: Bool { self.page.hasBehaviour }
    override var advertisedTimeout: Double? { self.streamManagement.maxSeconds }

    override func connect() {
        let endpoint = self.endpoint
        self.generation += 1
        let generation = self.generation
        let bound = NIOLoopBound(self, eventLoop: self.eventLoop)
        let upgraded = self.eventLoop.makePromise(of: Void.self)
        ClientBootstrap(group: self.eventLoop)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .connectTimeout(.seconds(10))
            .channelInitializer { channel in
                let upgrader = NIOWebSocketClientUpgrader(
                    maxFrameSize: 1 << 20,
                    automaticErrorHandling: true,
                    upgradePipelineHandler: { channel, response in
                        channel.eventLoop.makeCompletedFuture {
                            guard response.headers.first(name: "Sec-WebSocket-Protocol")?.lowercased() == "xmpp" else {
                                upgraded.fail(ClientFailure(.http, "no-xmpp-subprotocol"))
                                channel.close(promise: nil)
                                return
                            }
                            let session = bound.value
                            try channel.pipeline.syncOperations.addHandler(
                                LoadConnectionHandler<WebSocketFrame>(
                                    read: { session.frameReceived($0, generation: generation) }, closed: { session.connectionClosed(generation: generation) }))
                            upgraded.succeed()
                        }
                    }
                )
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers(
                        // Frames the server sends right behind its 101 can arrive in the same read:
                        // they belong to the WebSocket, not to be dropped with the HTTP decoder.
                        leftOverBytesStrategy: .forwardBytes,
                        withClientUpgrade: (upgraders: [upgrader], completionHandler: { _ in })
                    )
                }
            }
            .connect(host: endpoint.host, port: endpoint.port)
            .assumeIsolated()
            .whenComplete { result in
                let session = bound.value
                guard session.generation == generation else {
                    if case .success(let channel) = result { channel.close(promise: nil) }
                    return
                }
                switch result {
                case .success(let channel):
                    session.channel = channel
                    if session.isFinished {
                        channel.close(promise: nil)
                        return
                    }
                    var headers = HTTPHeaders()
                    headers.add(name: "Host", value: endpoint.hostHeader)
                    headers.add(name: "Sec-WebSocket-Protocol", value: "xmpp")
                    headers.add(name: "Content-Length", value: "0")
                    let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: endpoint.path, headers: headers)
                    channel.write(HTTPClientRequestPart.head(head), promise: nil)
                    channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
                    channel.closeFuture.whenComplete { _ in upgraded.fail(ClientFailure(.http, "upgrade-refused")) }
                case .failure(let error):
                    upgraded.fail(error)
                    session.transportFailed(ClientFailure(.connect, TCPLoadSession.describe(error)))
                }
            }
        upgraded.futureResult.assumeIsolated().whenComplete { result in
            let session = bound.value
            guard session.generation == generation else { return }
            switch result {
            case .success:
                session.framer.reset()
                _ = try? session.framer.feed(ByteBuffer(string: "<ws xmlns='jabber:client'>"))
                session.transportConnected()
            case .failure(let error):
                if let failure = error as? ClientFailure, failure.kind == .http {
                    session.transportFailed(failure)
                }
            }
        }
    }

    override func openStream() {
        self.sendText(self.open)
    }

    override func restartStream() {
        self.sendText(self.open)
    }

    override func send(_ element: ByteBuffer) {
        self.sendText(element)
    }

    override func closeStream() {
        self.sendText(ByteBuffer(string: "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>"))
    }

    override func abort() {
        self.channel?.close(promise: nil)
    }

    /// What a browser does when the page goes: a close frame (1001, going away), no `<close/>`.
    override func leavePage() {
        self.generation += 1
        guard let channel = self.channel else { return }
        self.channel = nil
        var data = ByteBuffer()
        data.write(webSocketErrorCode: .goingAway)
        channel.writeAndFlush(WebSocketFrame(fin: true, opcode: .connectionClose, maskKey: .random(), data: data), promise: nil)
        channel.close(promise: nil)
    }

    override func reattach() {
        self.connect()
    }

    /// Asleep: nothing read (the server's pings go unanswered), nothing sent.
    override func suspendPage(seconds: Double, announce: Bool) {
        self.channel?.setOption(.autoRead, value: false).whenFailure { _ in }
    }

    /// Awake: read again and prove the session with a ping; if the connection died meanwhile
    /// (found now, or before), resume the XEP-0198 session on a new one.
    override func wakePage() {
        guard let channel = self.channel, channel.isActive else {
            self.resumeOnNewConnection()
            return
        }
        channel.setOption(.autoRead, value: true).whenFailure { _ in }
        self.sendProofPing()
    }

    override func freezeInFlight() -> Bool {
        guard let channel = self.channel, channel.isActive else { return false }
        channel.setOption(.autoRead, value: false).whenFailure { _ in }
        return true
    }

    /// The network cuts the connection (a reset): what the server wrote there since the freeze
    /// is lost, and XEP-0198 resumption must bring it again.
    override func cutFrozen() {
        self.reset()
        self.resumeOnNewConnection()
    }

    override func dropAll() {
        self.reset()
    }

    /// Drops the connection with a TCP reset; its late events are ignored.
    private func reset() {
        self.generation += 1
        guard let channel = self.channel else { return }
        self.channel = nil
        channel.resetConnection()
    }

    private func resumeOnNewConnection() {
        self.channel = nil
        guard self.beginResumption() else { return }
        self.connect()
    }

    /// Tries to resume the abandoned session; the server should answer `<failed/>`.
    override func verifyAbandoned() {
        guard let resume = self.streamManagement.resume else {
            self.verified(expired: false, condition: "not-resumable")
            return
        }
        self.beginResumption(resume)
        self.connect()
    }

    private func sendText(_ bytes: ByteBuffer) {
        guard let channel = self.channel else { return }
        // Clients mask every frame (RFC 6455 §5.3); NIO's encoder applies `maskKey`.
        let frame = WebSocketFrame(fin: true, opcode: .text, maskKey: .random(), data: bytes)
        channel.writeAndFlush(frame, promise: nil)
    }

    fileprivate func frameReceived(_ frame: WebSocketFrame, generation: Int) {
        guard generation == self.generation else { return }
        switch frame.opcode {
        case .text, .continuation:
            let events: [XMLStreamFramer.Event]
            do {
                events = try self.framer.feed(frame.unmaskedData)
            } catch {
                self.transportFailed(ClientFailure(.protocolViolation, "xml"))
                return
            }
            for event in events {
                guard case .element(let element) = event else { continue }
                if element.name.namespace == XMLNamespaces.framing {
                    if element.name.localName == "close" {
                        if self.closedWhileRecovering() { return }
                        self.streamClosed()
                        self.abort()
                    }
                    // <open/>: the stream is open; features follow.
                    continue
                }
                self.received(element)
            }
        case .ping:
            let pong = WebSocketFrame(fin: true, opcode: .pong, maskKey: .random(), data: frame.unmaskedData)
            self.channel?.writeAndFlush(pong, promise: nil)
        case .connectionClose:
            if self.closedWhileRecovering() { return }
            self.streamClosed()
            self.abort()
        case .binary:
            self.transportFailed(ClientFailure(.protocolViolation, "binary-frame"))
        default:
            break
        }
    }

    fileprivate func connectionClosed(generation: Int) {
        guard generation == self.generation else { return }
        self.channel = nil
        if self.closedWhileRecovering() { return }
        self.streamClosed()
    }

    /// A connection the server closed while the page slept or was cut off (its close frame or
    /// `<close/>` read on waking, or the TCP close): the XEP-0198 session outlives it, so the
    /// page resumes on a new one instead of failing.
    private func closedWhileRecovering() -> Bool {
        guard self.machine.isEstablished else { return false }
        switch self.page.state {
        case .waking, .frozen:
            self.reset()
            if case .frozen = self.page.state {
                // The cut comes at its time and resumes then.
                return true
            }
            self.resumeOnNewConnection()
            return true
        default:
            return false
        }
    }
}
