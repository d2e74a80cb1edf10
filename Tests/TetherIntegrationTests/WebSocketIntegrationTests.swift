import Foundation
import NIOCore
import NIOHTTP1
import NIOWebSocket
import Testing
import TetherServer
import XMPPCore

/// XMPP over WebSocket (RFC 7395) through Tether to a real Prosody.
@Suite("WebSocket against Prosody", .serialized, .timeLimit(.minutes(3)))
struct WebSocketIntegrationTests {
    @Test("a WebSocket upgrade after BOSH requests on the same kept-alive connection gets 101 (RFC 6455 §4.1; regression: 400, then silence)")
    func upgradeAfterBOSH() async throws {
        try await withProsodyAndTether(users: []) { _, tether, _ in
            let connection = try await RawConnection.connect(port: tether.port)
            let body = "<body rid='5' to='unserved.example' wait='5' hold='1' ver='1.6' xmlns='http://jabber.org/protocol/httpbind'/>"
            for round in 1...2 {
                _ = await connection.write("POST /http-bind HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")
                #expect(await connection.waitFor(timeout: .seconds(20)) { $0.components(separatedBy: "condition='host-unknown'").count == round + 1 }, "\(connection.text)")
            }
            _ = await connection.write(
                "GET /xmpp-websocket HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: xmpp\r\n\r\n")
            #expect(await connection.waitFor(timeout: .seconds(20)) { $0.contains("HTTP/1.1 101 Switching Protocols") }, "\(connection.text)")
            #expect(connection.text.lowercased().contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="))
            await connection.close()
        }
    }

    @Test("the upgrade answers exactly 'xmpp'; no subprotocol → 400, a refused origin → 403, plain GET → 426")
    func handshake() async throws {
        try await withProsodyAndTether(users: []) { _, tether, http in
            let client = try await WebSocketTestClient.connect(port: tether.port, origin: "https://app.example", protocols: "xmpp, other")
            #expect(client.subprotocol == "xmpp")
            await client.drop()

            func upgrade(origin: String?, protocols: String?, upgradeHeaders: Bool = true) async throws -> (status: Int, text: String) {
                var request = "GET /xmpp-websocket HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                if upgradeHeaders {
                    request += "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                }
                if let origin { request += "Origin: \(origin)\r\n" }
                if let protocols { request += "Sec-WebSocket-Protocol: \(protocols)\r\n" }
                return try await rawHTTP(port: tether.port, request + "\r\n")
            }
            let noProtocol = try await upgrade(origin: "https://app.example", protocols: nil)
            #expect(noProtocol.status == 400)
            #expect(noProtocol.text.contains("'xmpp' WebSocket subprotocol"))
            let evil = try await upgrade(origin: "https://evil.example", protocols: "xmpp")
            #expect(evil.status == 403)
            let plain = try await upgrade(origin: nil, protocols: nil, upgradeHeaders: false)
            #expect(plain.status == 426)
        } configure: { configuration, _ in
            configuration.cors = .origins(["https://app.example"])
        }
    }

    @Test("a WebSocket client and a BOSH client exchange messages through one Tether; every message is one self-contained element", arguments: Edge.allCases)
    func webSocketAndBOSH(edge: Edge) async throws {
        try await withEndpoints(edge) { endpoints in
            let ws = try await endpoints.webSocket()
            try await ws.send(WebSocketTestClient.openTag)
            let opening = try await ws.receive(until: { $0.contains("<mechanisms") })
            let open = try required(opening.first)
            #expect(open.hasPrefix("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' from='localhost' id='"))
            #expect(open.hasSuffix("version='1.0' xml:lang='en'/>"))
            let features = try required(opening.last)
            #expect(features.hasPrefix("<stream:features xmlns:stream='http://etherx.jabber.org/streams'>"))
            #expect(!features.contains("starttls"))
            await ws.drop()

            let alice = try await endpoints.webSocket()
            let jid = try await alice.login(user: "alice", password: "secret")
            #expect(jid == "alice@localhost/ws")
            let bob = endpoints.bosh()
            try await bob.login(user: "bob", password: "secret")

            try await alice.send("<message xmlns='jabber:client' to='bob@localhost/test' id='w1'><body>from WebSocket 🦊</body></message>")
            let atBob = try await bob.receive(until: { $0.contains("id='w1'") })
            #expect(atBob.contains { $0.contains("from WebSocket 🦊") })

            _ = try await bob.send("<message xmlns='jabber:client' to='alice@localhost/ws' id='b1'><body>from BOSH שלום</body></message>")
            let atAlice = try await alice.receive(until: { $0.contains("id='b1'") })
            let message = try required(atAlice.last)
            #expect(message.hasPrefix("<message xmlns='jabber:client'"))
            #expect(BOSHTestClient.text(of: "body", in: message) == "from BOSH שלום")
        }
    }

    @Test("a malformed message ends only its own session with not-well-formed, then <close/>", arguments: Edge.allCases)
    func malformed(edge: Edge) async throws {
        try await withEndpoints(edge) { endpoints in
            let bad = try await endpoints.webSocket()
            try await bad.login(user: "alice", password: "secret", resource: "bad")
            let good = try await endpoints.webSocket()
            try await good.login(user: "bob", password: "secret", resource: "good")

            try await bad.send("<message xmlns='jabber:client'><body>unterminated")
            let texts = try await bad.receive(until: { $0.hasPrefix("<close") })
            #expect(
                texts.suffix(2) == [
                    "<stream:error xmlns:stream='http://etherx.jabber.org/streams'><not-well-formed xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>",
                    "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>",
                ]
            )
            try await bad.send("<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>")
            #expect(try await bad.next() == .close(code: 1000))

            try await good.send("<message xmlns='jabber:client' to='bob@localhost/good' id='still'><body>still here</body></message>")
            let received = try await good.receive(until: { $0.contains("id='still'") })
            #expect(received.last?.contains("still here") == true)
        }
    }

    @Test(
        "two elements in one message and a message not starting with '<' are refused",
        arguments: [
            "<presence xmlns='jabber:client'/><presence xmlns='jabber:client'/>", " <presence xmlns='jabber:client'/>",
        ])
    func framingRules(message: String) async throws {
        try await withProsodyAndTether { _, tether, _ in
            let client = try await WebSocketTestClient.connect(port: tether.port)
            try await client.login(user: "alice", password: "secret")
            try await client.send(message)
            let texts = try await client.receive(until: { $0.hasPrefix("<close") })
            #expect(texts.contains("<stream:error xmlns:stream='http://etherx.jabber.org/streams'><not-well-formed xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>"))
        }
    }

    @Test("a binary frame closes the WebSocket with 1003", arguments: Edge.allCases)
    func binary(edge: Edge) async throws {
        try await withEndpoints(edge, users: []) { endpoints in
            let client = try await endpoints.webSocket()
            try await client.sendFrame(WebSocketFrame(fin: true, opcode: .binary, data: ByteBuffer(bytes: [1, 2, 3])))
            #expect(try await client.next() == .close(code: 1003))
        }
    }

    @Test("closing: <close/> is answered with <close/>, and the client's close frame with a close frame", arguments: Edge.allCases)
    func closing(edge: Edge) async throws {
        try await withEndpoints(edge) { endpoints in
            let client = try await endpoints.webSocket()
            try await client.login(user: "alice", password: "secret")
            try await client.send("<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>")
            let texts = try await client.receive(until: { $0.hasPrefix("<close") })
            #expect(texts.last == "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>")
            try await client.sendClose()
            #expect(try await client.next() == .close(code: 1000))
            #expect(try await client.next() == .disconnected)
            // Tether's side of the close runs on its own loop, which can be seconds behind under
            // the whole suite (a fixed 200 ms wait failed there).
            let deadline = ContinuousClock.now + .seconds(10)
            while endpoints.tether.server.webSocketSessionCount > 0 && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(endpoints.tether.server.webSocketSessionCount == 0)
        }
    }

    @Test("an unserved domain in <open/> gets <open/>, host-unknown and <close/>")
    func unknownHost() async throws {
        try await withProsodyAndTether(users: []) { _, tether, _ in
            let client = try await WebSocketTestClient.connect(port: tether.port)
            try await client.send("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='example.org' version='1.0'/>")
            #expect(try await client.next() == .text("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' from='example.org' version='1.0'/>"))
            #expect(
                try await client.next()
                    == .text("<stream:error xmlns:stream='http://etherx.jabber.org/streams'><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>"))
            #expect(try await client.next() == .text("<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>"))
        }
    }

    @Test("an upstream stream error is relayed as its own message, then <close/>", arguments: Edge.allCases)
    func upstreamStreamError(edge: Edge) async throws {
        try await withEndpoints(edge) { endpoints in
            let first = try await endpoints.webSocket()
            try await first.login(user: "alice", password: "secret", resource: "same")
            let second = try await endpoints.webSocket()
            try await second.login(user: "alice", password: "secret", resource: "same")
            let texts = try await first.receive(until: { $0.hasPrefix("<close") })
            let error = try required(texts.first { $0.hasPrefix("<stream:error") })
            #expect(error.hasPrefix("<stream:error xmlns:stream='http://etherx.jabber.org/streams'>"))
            #expect(error.contains("<conflict"))
        }
    }

    @Test("XEP-0198: a client that drops its WebSocket resumes through Tether without losing a message sent meanwhile", arguments: Edge.allCases)
    func streamManagementResumption(edge: Edge) async throws {
        try await withEndpoints(edge) { endpoints in
            try await Self.resume(through: endpoints)
        }
    }

    /// (A separate function: as a closure this body crashes the 6.3 compiler's region analysis.)
    static func resume(through endpoints: Endpoints) async throws {
        let alice = try await endpoints.webSocket()
        try await alice.login(user: "alice", password: "secret", resource: "phone")
        try await alice.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
        let enabled = try await alice.receive(until: { $0.hasPrefix("<enabled") })
        let enabledElement = try required(enabled.last)
        let previd = try required(enabledElement.components(separatedBy: "id='").dropFirst().first?.components(separatedBy: "'").first)
        // Let any presence and roster traffic settle, then vanish without <close/>.
        try await Task.sleep(for: .milliseconds(300))
        await alice.drop()

        let bob = try await endpoints.webSocket()
        try await bob.login(user: "bob", password: "secret")
        try await Task.sleep(for: .milliseconds(500))
        try await bob.send("<message xmlns='jabber:client' type='chat' to='alice@localhost/phone' id='while-away'><body>sent while you were away</body></message>")
        try await Task.sleep(for: .milliseconds(500))

        let again = try await endpoints.webSocket()
        try await again.login(user: "alice", password: "secret", bind: false)
        try await again.send("<resume xmlns='urn:xmpp:sm:3' h='0' previd='\(previd)'/>")
        let resumed = try await again.receive(until: { $0.contains("while-away") })
        #expect(resumed.contains { $0.hasPrefix("<resumed") })
        #expect(resumed.contains { $0.contains("sent while you were away") })
    }

    @Test("200 concurrent WebSocket sessions each exchange a message")
    func twoHundredSessions() async throws {
        let users = (0..<200).map { "user\($0)" }
        try await withProsodyAndTether(users: users) { _, tether, _ in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<200 {
                    group.addTask {
                        let client = try await WebSocketTestClient.connect(port: tether.port)
                        try await client.login(user: "user\(index)", password: "secret", resource: "r")
                        try await client.send("<message xmlns='jabber:client' to='user\(index)@localhost/r' id='m\(index)'><body>hello \(index)</body></message>")
                        let received = try await client.receive(until: { $0.contains("id='m\(index)'") }, timeout: .seconds(60))
                        #expect(received.last?.contains("hello \(index)") == true)
                        try await client.send("<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>")
                        _ = try await client.receive(until: { $0.hasPrefix("<close") }, timeout: .seconds(30))
                        await client.drop()
                    }
                }
                try await group.waitForAll()
            }
        }
    }

    @Test("permessage-deflate: negotiated when offered, compressed both ways, declined when disabled", arguments: Edge.allCases)
    func compression(edge: Edge) async throws {
        try await withEndpoints(edge) { endpoints in
            let client = try await endpoints.webSocket(offerCompression: true)
            #expect(client.extensions == "permessage-deflate; server_no_context_takeover; client_no_context_takeover")
            try await client.send(WebSocketTestClient.openTag, compressed: true)
            var events: [WebSocketTestClient.Event] = []
            while events.count < 2 { events.append(try await client.next()) }
            guard case .compressedText(let open) = events[0], case .compressedText(let features) = events[1] else {
                Issue.record("expected compressed <open/> and features, got \(events)")
                return
            }
            #expect(open.hasPrefix("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' from='localhost'"))
            #expect(features.contains("<mechanism>PLAIN</mechanism>"))
            let plain = try await endpoints.webSocket()
            #expect(plain.extensions == nil)
            await plain.drop()
            await client.drop()
        }
        try await withEndpoints(edge, users: []) { endpoints in
            let client = try await endpoints.webSocket(offerCompression: true)
            #expect(client.extensions == nil)
            try await client.send(WebSocketTestClient.openTag)
            guard case .text(let open) = try await client.next() else {
                Issue.record("expected an uncompressed <open/>")
                return
            }
            #expect(open.hasPrefix("<open"))
            await client.drop()
        } configure: { configuration, _ in
            configuration.webSocket.perMessageDeflate = false
        }
    }

    @Test("a message larger than the stanza limit is a policy violation for that session only")
    func oversized() async throws {
        try await withProsodyAndTether { _, tether, _ in
            let big = try await WebSocketTestClient.connect(port: tether.port)
            try await big.login(user: "alice", password: "secret")
            try await big.send("<message xmlns='jabber:client' to='bob@localhost'><body>\(String(repeating: "x", count: 20_000))</body></message>")
            let texts = try await big.receive(until: { $0.hasPrefix("<close") })
            #expect(
                texts.suffix(2).first
                    == "<stream:error xmlns:stream='http://etherx.jabber.org/streams'><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>")
        } configure: { configuration, _ in
            configuration.xmlLimits = .init(maxElementBytes: 10_000, maxDepth: 32)
        }
    }

    @Test("pings keep a responsive client; a client that stops answering is closed")
    func pings() async throws {
        try await withProsodyAndTether { _, tether, _ in
            let responsive = try await WebSocketTestClient.connect(port: tether.port)
            try await responsive.login(user: "alice", password: "secret")
            let silent = try await WebSocketTestClient.connect(port: tether.port, answersPings: false)
            try await silent.login(user: "bob", password: "secret")
            // The silent client is pinged, does not answer, and is disconnected at the next ping.
            var silentEvents: [WebSocketTestClient.Event] = []
            while silentEvents.last != .disconnected, let event = try? await silent.next(timeout: .seconds(10)) {
                silentEvents.append(event)
            }
            #expect(silentEvents.contains(.ping))
            #expect(silentEvents.last == .disconnected)
            try await Task.sleep(for: .milliseconds(1_500))  // the responsive client has answered pings meanwhile
            try await responsive.send("<message xmlns='jabber:client' to='alice@localhost/ws' id='alive'><body>alive</body></message>")
            let received = try await responsive.receive(until: { $0.contains("id='alive'") })
            #expect(received.last?.contains("alive") == true)
            #expect(tether.server.webSocketSessionCount == 1)
        } configure: { configuration, _ in
            configuration.webSocket.pingInterval = .seconds(1)
        }
    }

    @Test("shutdown with a redirect sends <close see-other-uri='…'/> (§3.6.1)")
    func shutdownRedirect() async throws {
        try await withProsodyAndTether { _, tether, _ in
            let client = try await WebSocketTestClient.connect(port: tether.port)
            try await client.login(user: "alice", password: "secret")
            async let stopping: Void = tether.server.shutdown()
            let texts = try await client.receive(until: { $0.hasPrefix("<close") })
            #expect(texts.last == "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing' see-other-uri='wss://other.example/xmpp-websocket'/>")
            #expect(!texts.contains { $0.hasPrefix("<stream:error") })
            await stopping
        } configure: { configuration, _ in
            configuration.redirectURI = "wss://other.example/xmpp-websocket"
        }
    }

    @Test("shutdown tells WebSocket clients system-shutdown, then <close/>")
    func shutdown() async throws {
        try await withProsodyAndTether { _, tether, _ in
            let client = try await WebSocketTestClient.connect(port: tether.port)
            try await client.login(user: "alice", password: "secret")
            try await Task.sleep(for: .milliseconds(200))
            async let stopping: Void = tether.server.shutdown()
            let texts = try await client.receive(until: { $0.hasPrefix("<close") })
            #expect(texts.contains("<stream:error xmlns:stream='http://etherx.jabber.org/streams'><system-shutdown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>"))
            try await client.send("<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>")
            #expect(try await client.next() == .close(code: 1000))
            await stopping
        }
    }
}
