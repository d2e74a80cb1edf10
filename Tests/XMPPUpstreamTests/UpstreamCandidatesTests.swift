import NIOCore
import NIOPosix
import Testing

@testable import XMPPUpstream

/// Which addresses a domain without a route resolves to (RFC 6120 §3.2).
@Suite("Upstream candidates")
struct UpstreamCandidatesTests {
    struct FailingResolver: SRVResolving {
        struct NoAnswer: Error {}
        func lookup(_ name: String) async throws -> SRVLookupResult { throw NoAnswer() }
    }

    static func connector() -> UpstreamConnector {
        var configuration = UpstreamConfiguration()
        configuration.srvResolver = FailingResolver()
        configuration.addressPolicy = AddressPolicy(allowedNetworks: [IPNetwork("127.0.0.0/8")!, IPNetwork("::1/128")!])
        return UpstreamConnector(configuration: configuration)
    }

    @Test("§3.2.1: an SRV query without an answer falls back to DOMAIN:5222")
    func fallbackWhenSRVFails() async throws {
        let eventLoop = MultiThreadedEventLoopGroup.singleton.next()
        let candidates = try await Self.connector().candidates(for: "localhost", on: eventLoop).get()
        #expect(!candidates.isEmpty)
        #expect(candidates.allSatisfy { $0.address.port == 5222 && AddressPolicy.isLoopback($0.address) })
    }

    @Test("when the fallback does not resolve either, DNS is unavailable (transient), not the domain unknown")
    func resolverUnavailable() async throws {
        let eventLoop = MultiThreadedEventLoopGroup.singleton.next()
        do {
            _ = try await Self.connector().candidates(for: "no-such-domain.invalid", on: eventLoop).get()
            Issue.record("expected a failure")
        } catch let error as UpstreamError {
            guard case .resolverUnavailable = error else {
                Issue.record("expected resolverUnavailable, got \(error)")
                return
            }
            #expect(!error.isResolutionFailure)
        }
    }
}
