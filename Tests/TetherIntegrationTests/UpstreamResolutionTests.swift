import AsyncHTTPClient
import Foundation
import Testing
import TetherServer
import XMPPUpstream

/// DNS SRV resolution and the open-proxy guard, against real dnsmasq and Prosody.
@Suite("Upstream resolution", .serialized, .timeLimit(.minutes(2)))
struct UpstreamResolutionTests {
    @Test("SRV records come back exactly; unknown names have none; a '.' target means not available")
    func lookups() async throws {
        try await withDnsmasq(srvHosts: [
            "_xmpp-client._tcp.example.test,xmpp1.example.test,5222,10,60",
            "_xmpp-client._tcp.example.test,xmpp2.example.test,5223,20,0",
            "_xmpp-client._tcp.closed.test",
        ]) { port in
            let resolver = SystemSRVResolver(nameserver: ("127.0.0.1", port), timeoutSeconds: 2, attempts: 2)
            let result = try await resolver.lookup("_xmpp-client._tcp.example.test")
            guard case .records(let records) = result else {
                Issue.record("expected records, got \(result)")
                return
            }
            #expect(
                Set(records) == [
                    SRVRecord(priority: 10, weight: 60, port: 5222, target: "xmpp1.example.test"),
                    SRVRecord(priority: 20, weight: 0, port: 5223, target: "xmpp2.example.test"),
                ]
            )
            #expect(try await resolver.lookup("_xmpp-client._tcp.closed.test") == .serviceNotAvailable)
            #expect(try await resolver.lookup("_xmpp-client._tcp.nothing.test") == .noRecords)
        }
    }

    @Test("a domain served through SRV: its loopback target is refused (host-unknown) until allowlisted, then it works")
    func srvToProsody() async throws {
        try await withProsody(.init(extraHosts: ["srv.test", "closed.test"])) { prosody in
            try await prosody.register(user: "carol", host: "srv.test", password: "secret")
            try await withDnsmasq(srvHosts: ["_xmpp-client._tcp.srv.test,127.0.0.1,\(prosody.c2sPort),0,0", "_xmpp-client._tcp.closed.test"]) { dnsPort in
                var configuration = TetherFixture.configuration(c2sPort: prosody.c2sPort)
                configuration.domains = ["srv.test", "closed.test"]
                configuration.upstream.srvResolver = SystemSRVResolver(nameserver: ("127.0.0.1", dnsPort), timeoutSeconds: 2, attempts: 1)
                configuration.upstream.tlsPolicy = .off
                try await withTether(configuration) { tether, http in
                    let client = BOSHTestClient(http: http, url: tether.boshURL)
                    let refused = try await client.create(to: "srv.test")
                    #expect(refused.condition == "host-unknown")
                    let closed = try await client.create(to: "closed.test")
                    #expect(closed.condition == "host-unknown")
                }
                configuration.upstream.addressPolicy = AddressPolicy(allowedNetworks: [IPNetwork("127.0.0.0/8")!])
                try await withTether(configuration) { tether, http in
                    let client = BOSHTestClient(http: http, url: tether.boshURL)
                    try await client.login(user: "carol", password: "secret", domain: "srv.test")
                    #expect(client.jid == "carol@srv.test/test")
                }
            }
        }
    }
}
