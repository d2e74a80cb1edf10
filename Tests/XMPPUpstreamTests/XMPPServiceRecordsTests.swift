import Testing

@testable import XMPPUpstream
@testable import XMPPUpstreamCore

/// How `_xmpps-client._tcp` and `_xmpp-client._tcp` answers become the targets to try (XEP-0368 §3).
@Suite("XEP-0368 record merge and order")
struct XMPPServiceRecordsTests {
    struct NoAnswer: Error, CustomStringConvertible {
        var description: String { "timed out" }
    }

    static func record(_ priority: UInt16, _ weight: UInt16, _ port: UInt16, _ target: String) -> SRVRecord {
        SRVRecord(priority: priority, weight: weight, port: port, target: target)
    }

    static func plan(
        _ startTLS: Result<SRVLookupResult, any Error>, _ directTLS: Result<SRVLookupResult, any Error>?, seed: UInt64 = 1
    ) -> XMPPServiceRecords.Plan {
        var random = SplitMix64(state: seed)
        return XMPPServiceRecords.plan(domain: "example.org", startTLS: startTLS, directTLS: directTLS, random: &random)
    }

    @Test("priorities are mixed across both kinds: the lower priority wins whatever its kind (§3 rule 1)")
    func prioritiesAcrossKinds() {
        let plan = Self.plan(
            .success(.records([Self.record(5, 0, 5222, "plain-first"), Self.record(30, 0, 5222, "plain-last")])),
            .success(.records([Self.record(10, 0, 443, "direct")]))
        )
        #expect(
            plan
                == .targets([
                    UpstreamTarget(host: "plain-first", port: 5222, transport: .startTLS),
                    UpstreamTarget(host: "direct", port: 443, transport: .directTLS),
                    UpstreamTarget(host: "plain-last", port: 5222, transport: .startTLS),
                ])
        )
    }

    @Test("at equal priority Direct TLS comes first, whatever the weights and the seed")
    func equalPriorityPrefersDirectTLS() {
        for seed in UInt64(1)...200 {
            let plan = Self.plan(
                .success(.records([Self.record(10, 1000, 5222, "plain")])),
                .success(.records([Self.record(10, 1, 5223, "direct")])),
                seed: seed
            )
            #expect(
                plan
                    == .targets([
                        UpstreamTarget(host: "direct", port: 5223, transport: .directTLS),
                        UpstreamTarget(host: "plain", port: 5222, transport: .startTLS),
                    ]),
                "seed \(seed)"
            )
        }
    }

    @Test("within one kind and priority, weights decide as RFC 2782 says (3:1 over 4000 draws)")
    func weightsWithinAKind() {
        var random = SplitMix64(state: 9)
        var heavyFirst = 0
        for _ in 0..<4000 {
            let ordered = XMPPServiceRecords.order(
                startTLS: [Self.record(1, 1, 5222, "plain")],
                directTLS: [Self.record(1, 1, 5223, "light"), Self.record(1, 3, 5223, "heavy")],
                random: &random
            )
            #expect(ordered.count == 3)
            #expect(ordered.last?.host == "plain")
            if ordered.first?.host == "heavy" { heavyFirst += 1 }
        }
        #expect((2800...3200).contains(heavyFirst), "heavy first \(heavyFirst) times")
    }

    @Test("only Direct TLS records: they are used, no fallback to DOMAIN:5222")
    func directOnly() {
        #expect(
            Self.plan(.success(.noRecords), .success(.records([Self.record(0, 0, 5223, "tls.example.org")])))
                == .targets([UpstreamTarget(host: "tls.example.org", port: 5223, transport: .directTLS)])
        )
        // "." for STARTTLS does not veto the Direct TLS records.
        #expect(
            Self.plan(.success(.serviceNotAvailable), .success(.records([Self.record(0, 0, 5223, "tls.example.org")])))
                == .targets([UpstreamTarget(host: "tls.example.org", port: 5223, transport: .directTLS)])
        )
    }

    @Test("DOMAIN:5222 with STARTTLS only when neither lookup returns records; failed lookups are named")
    func fallback() {
        let fallback = UpstreamTarget(host: "example.org", port: 5222, transport: .startTLS)
        #expect(Self.plan(.success(.noRecords), .success(.noRecords)) == .fallback(fallback, lookupFailures: []))
        #expect(Self.plan(.success(.noRecords), nil) == .fallback(fallback, lookupFailures: []))
        // A "." for Direct TLS only says Direct TLS is not offered.
        #expect(Self.plan(.success(.noRecords), .success(.serviceNotAvailable)) == .fallback(fallback, lookupFailures: []))
        #expect(Self.plan(.failure(NoAnswer()), .failure(NoAnswer())) == .fallback(fallback, lookupFailures: ["timed out", "timed out"]))
        // One lookup failing while the other has records: the records are used.
        #expect(
            Self.plan(.failure(NoAnswer()), .success(.records([Self.record(0, 0, 5223, "tls.example.org")])))
                == .targets([UpstreamTarget(host: "tls.example.org", port: 5223, transport: .directTLS)])
        )
    }

    @Test("'.' for _xmpp-client with nothing for Direct TLS: not available, no fallback")
    func notAvailable() {
        #expect(Self.plan(.success(.serviceNotAvailable), .success(.noRecords)) == .serviceNotAvailable)
        #expect(Self.plan(.success(.serviceNotAvailable), .success(.serviceNotAvailable)) == .serviceNotAvailable)
        #expect(Self.plan(.success(.serviceNotAvailable), nil) == .serviceNotAvailable)
    }
}

@Suite("Route syntax")
struct UpstreamRouteSyntaxTests {
    @Test("tls:// is Direct TLS (port 5223 by default), tcp:// and plain HOST:PORT are STARTTLS (5222)")
    func schemes() {
        #expect(UpstreamRoute(route: "tls://xmpp.example.org:443") == UpstreamRoute(host: "xmpp.example.org", port: 443, transport: .directTLS))
        #expect(UpstreamRoute(route: "tls://xmpp.example.org") == UpstreamRoute(host: "xmpp.example.org", port: 5223, transport: .directTLS))
        #expect(UpstreamRoute(route: "TLS://[::1]:5223") == UpstreamRoute(host: "::1", port: 5223, transport: .directTLS))
        #expect(UpstreamRoute(route: "tcp://xmpp.example.org:5222") == UpstreamRoute(host: "xmpp.example.org", port: 5222, transport: .startTLS))
        #expect(UpstreamRoute(route: "tcp://xmpp.example.org") == UpstreamRoute(host: "xmpp.example.org", port: 5222, transport: .startTLS))
        #expect(UpstreamRoute(route: "127.0.0.1:5222") == UpstreamRoute(host: "127.0.0.1", port: 5222))
        #expect(UpstreamRoute(route: "[::1]:5222") == UpstreamRoute(host: "::1", port: 5222))
    }

    @Test("other schemes, paths, empty hosts and bad ports are refused")
    func refused() {
        for text in ["udp://h:1", "tls://", "tls://:5223", "tls://h:0", "tls://h:70000", "tls://h:5223/x", "http://h:80", "h/x", "tls://[]:1", "tls://a:b:c"] {
            #expect(UpstreamRoute(route: text) == nil, "\(text)")
        }
    }

    @Test("a route prints as it is written; plain routes and listen addresses keep their old form")
    func descriptions() {
        #expect(UpstreamRoute(route: "tls://h:443")?.description == "tls://h:443")
        #expect(UpstreamRoute(route: "tcp://h:5222")?.description == "h:5222")
        #expect(UpstreamRoute("[::1]:5280", allowingPortZero: true)?.description == "[::1]:5280")
        // The listen syntax does not take schemes.
        #expect(UpstreamRoute("tls://h:443") == nil)
    }
}
