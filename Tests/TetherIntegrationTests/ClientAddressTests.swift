import Foundation
import NIOCore
import NIOHTTP1
import Testing
import XMPPUpstream

@testable import TetherServer

/// The client's address through a trusted proxy: in Tether's logs and in the PROXY protocol header upstream.
@Suite("Client addresses", .serialized, .timeLimit(.minutes(1)))
struct ClientAddressTests {
    @Test("trusted X-Forwarded-For reaches the logs and the PROXY v1 header; from an untrusted peer it is ignored", arguments: [true, false])
    func proxyV1(trusted: Bool) async throws {
        try await withFakeUpstream { fake in
            var configuration = UpstreamBehaviourTests.configuration(fake)
            configuration.upstream.proxyProtocol = .v1
            if !trusted { configuration.trustedProxies = [] }
            try await withTether(configuration) { tether, http in
                let client = BOSHTestClient(http: http, url: tether.boshURL)
                let body = "<body rid='1' to='localhost' wait='5' hold='1' ver='1.6' xmlns='http://jabber.org/protocol/httpbind'/>"
                let created = try await client.post(body, headers: [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")])
                #expect(created.attributes["sid"] != nil)
                let expected = trusted ? "203.0.113.7" : "127.0.0.1"
                #expect(fake.received.hasPrefix("PROXY TCP4 \(expected) 127.0.0.1 "))
                #expect(fake.received.contains(" \(tether.port)\r\n<?xml version='1.0'?><stream:stream"))
                #expect(tether.logs.all.contains { $0.contains("session created") && $0.contains("client=\(expected)") })
            }
        }
    }

    @Test("PROXY v2 over WebSocket carries the forwarded address in binary")
    func proxyV2() async throws {
        try await withFakeUpstream { fake in
            var configuration = UpstreamBehaviourTests.configuration(fake)
            configuration.upstream.proxyProtocol = .v2
            try await withTether(configuration) { tether, _ in
                let client = try await WebSocketTestClient.connect(port: tether.port, forwardedFor: "198.51.100.23")
                try await client.send(WebSocketTestClient.openTag)
                _ = try await client.receive(until: { $0.contains("features") })
                let received = fake.receivedBytes
                #expect(received.prefix(12) == [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A])
                #expect(Array(received[16..<20]) == [198, 51, 100, 23])
                #expect(tether.logs.all.contains { $0.contains("websocket session opened") && $0.contains("client=198.51.100.23") })
            }
        }
    }
}
