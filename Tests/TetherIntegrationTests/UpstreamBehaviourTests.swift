import Foundation
import Testing
import TetherServer
import XMPPUpstream

/// What Tether sends upstream and what it filters, observed on a scripted server.
@Suite("Upstream behaviour (scripted server)", .serialized, .timeLimit(.minutes(1)))
struct UpstreamBehaviourTests {
    static func configuration(_ fake: FakeXMPPServer) -> TetherConfiguration {
        var configuration = TetherFixture.configuration(c2sPort: fake.port)
        configuration.upstream.tlsPolicy = .off
        return configuration
    }

    @Test("WebSocket: whitespace keepalives are never forwarded, <starttls/> is stripped, stanzas arrive alone")
    func whitespaceAndStartTLS() async throws {
        try await withFakeUpstream { fake in
            try await withTether(Self.configuration(fake)) { tether, _ in
                let client = try await WebSocketTestClient.connect(port: tether.port)
                try await client.send(WebSocketTestClient.openTag)
                #expect(try await client.next() == .text("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' from='localhost' id='fake' version='1.0'/>"))
                #expect(
                    try await client.next()
                        == .text("<stream:features xmlns:stream='http://etherx.jabber.org/streams'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>"))
                try await fake.send(" \n \n")
                try await fake.send("\n<message from='x@localhost' id='after-space'><body>hi</body></message>  ")
                #expect(try await client.next() == .text("<message xmlns='jabber:client' from='x@localhost' id='after-space'><body>hi</body></message>"))
            }
        }
    }

    @Test("WebSocket: an abrupt drop with XEP-0198 on closes upstream without </stream:stream>; without it, and on <close/>, it is sent")
    func abruptVersusClean() async throws {
        try await withFakeUpstream { fake in
            try await withTether(Self.configuration(fake)) { tether, _ in
                let client = try await WebSocketTestClient.connect(port: tether.port)
                try await client.send(WebSocketTestClient.openTag)
                _ = try await client.receive(until: { $0.contains("features") })
                try await fake.send("<enabled xmlns='urn:xmpp:sm:3' id='sm1' resume='true'/>")
                _ = try await client.receive(until: { $0.hasPrefix("<enabled") })
                await client.drop()
                try await fake.waitForDisconnect()
                #expect(!fake.received.contains("</stream:stream>"))
            }
        }
        try await withFakeUpstream { fake in
            try await withTether(Self.configuration(fake)) { tether, _ in
                let client = try await WebSocketTestClient.connect(port: tether.port)
                try await client.send(WebSocketTestClient.openTag)
                _ = try await client.receive(until: { $0.contains("features") })
                await client.drop()
                try await fake.waitForDisconnect()
                // Without stream management nothing waits for a resumption: the stream is ended.
                #expect(fake.received.hasSuffix("</stream:stream>"))
            }
        }
        try await withFakeUpstream { fake in
            try await withTether(Self.configuration(fake)) { tether, _ in
                let client = try await WebSocketTestClient.connect(port: tether.port)
                try await client.send(WebSocketTestClient.openTag)
                _ = try await client.receive(until: { $0.contains("features") })
                try await client.send("<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>")
                try await fake.waitForDisconnect()
                #expect(fake.received.hasSuffix("</stream:stream>"))
            }
        }
    }

    @Test("BOSH: shutdown closes every upstream stream with </stream:stream>; the client gets see-other-uri when redirected")
    func shutdownClosesUpstream() async throws {
        try await withFakeUpstream { fake in
            var configuration = Self.configuration(fake)
            configuration.redirectURI = "https://other.example/http-bind"
            try await withTether(configuration) { tether, http in
                let client = BOSHTestClient(http: http, url: tether.boshURL)
                let created = try await client.create(wait: 30)
                #expect(created.children.first?.contains("bind") == true)
                async let held = client.send()
                // Shut down once Tether holds the request (not after a fixed time: a busy machine may take longer).
                let deadline = ContinuousClock.now + .seconds(20)
                while ContinuousClock.now < deadline {
                    let metrics = try await rawHTTP(port: tether.port, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                    if metrics.text.contains("\ntether_bosh_held_requests 1") { break }
                    try await Task.sleep(for: .milliseconds(20))
                }
                await tether.server.shutdown()
                let answer = try await held
                #expect(answer.condition == "see-other-uri")
                #expect(answer.children == ["<uri>https://other.example/http-bind</uri>"])
                try await fake.waitForDisconnect()
                #expect(fake.received.hasSuffix("</stream:stream>"))
            }
        }
    }

    @Test("the upstream stream header carries to, xml:lang and version from the client")
    func streamHeader() async throws {
        try await withFakeUpstream { fake in
            try await withTether(Self.configuration(fake)) { tether, http in
                let client = BOSHTestClient(http: http, url: tether.boshURL)
                _ = try await client.create()
                #expect(
                    fake.received.hasPrefix(
                        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' xml:lang='en' version='1.0'>"))
            }
        }
    }
}
