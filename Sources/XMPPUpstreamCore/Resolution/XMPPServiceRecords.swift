/// What the SRV lookups for a domain add up to: the targets to try, in order (XEP-0368 §3,
/// RFC 6120 §3.2.1–3.2.2). Pure: the answers come in, the plan comes out.
public enum XMPPServiceRecords {
    public enum Plan: Hashable, Sendable {
        /// Try these, in this order.
        case targets([UpstreamTarget])
        /// Neither lookup returned records: `DOMAIN:5222` with STARTTLS (RFC 6120 §3.2.2).
        /// `lookupFailures` says which lookups got no answer at all (for the error if the
        /// domain does not resolve either: DNS is then failing, not the domain unknown).
        case fallback(UpstreamTarget, lookupFailures: [String])
        /// `_xmpp-client._tcp` holds only a "." target and no Direct TLS record stands in:
        /// the service is decidedly not available (RFC 2782), so there is no fallback either.
        case serviceNotAvailable
    }

    /// - Parameters:
    ///   - startTLS: the answer for `_xmpp-client._tcp.DOMAIN`.
    ///   - directTLS: the answer for `_xmpps-client._tcp.DOMAIN`, `nil` when Direct TLS is off.
    public static func plan(
        domain: String,
        startTLS: Result<SRVLookupResult, any Error>,
        directTLS: Result<SRVLookupResult, any Error>?,
        random: inout some RandomNumberGenerator
    ) -> Plan {
        func records(_ result: Result<SRVLookupResult, any Error>?) -> [SRVRecord] {
            if case .success(.records(let records)) = result { return records }
            return []
        }
        let plain = records(startTLS)
        let direct = records(directTLS)
        if !plain.isEmpty || !direct.isEmpty {
            return .targets(Self.order(startTLS: plain, directTLS: direct, random: &random))
        }
        if case .success(.serviceNotAvailable) = startTLS {
            return .serviceNotAvailable
        }
        var failures: [String] = []
        if case .failure(let error) = startTLS { failures.append(String(describing: error)) }
        if case .failure(let error)? = directTLS { failures.append(String(describing: error)) }
        return .fallback(UpstreamTarget(host: domain, port: UpstreamTransport.startTLS.defaultPort, transport: .startTLS), lookupFailures: failures)
    }

    /// Both record sets as one (XEP-0368 §3 rule 1): ascending priority across both kinds, so
    /// the operator decides which kind comes first. Within one priority, Direct TLS records
    /// come before STARTTLS records (the preference §3 allows clients: one round trip less,
    /// nothing sent in the clear), each kind in RFC 2782's weighted random order (`SRVOrdering`).
    public static func order(startTLS: [SRVRecord], directTLS: [SRVRecord], random: inout some RandomNumberGenerator) -> [UpstreamTarget] {
        let priorities = Set(startTLS.map(\.priority) + directTLS.map(\.priority)).sorted()
        var ordered: [UpstreamTarget] = []
        ordered.reserveCapacity(startTLS.count + directTLS.count)
        for priority in priorities {
            for (records, transport) in [(directTLS, UpstreamTransport.directTLS), (startTLS, .startTLS)] {
                let group = records.filter { $0.priority == priority }
                ordered += SRVOrdering.order(group, random: &random).map {
                    UpstreamTarget(host: $0.target, port: Int($0.port), transport: transport)
                }
            }
        }
        return ordered
    }
}
