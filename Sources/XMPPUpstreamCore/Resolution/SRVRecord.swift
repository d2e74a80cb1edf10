import NIOCore

/// One SRV resource record (RFC 2782), as found under `_xmpp-client._tcp.DOMAIN` (RFC 6120 §3.2.1).
public struct SRVRecord: Sendable, Hashable {
    /// Lower is tried first.
    public var priority: UInt16
    /// Relative share among records of the same priority; 0 means "only if nothing else".
    public var weight: UInt16
    public var port: UInt16
    /// The host to resolve and connect to, without a trailing dot (`xmpp1.example.com`).
    public var target: String

    public init(priority: UInt16, weight: UInt16, port: UInt16, target: String) {
        self.priority = priority
        self.weight = weight
        self.port = port
        self.target = target
    }
}

/// What an SRV lookup established about a name.
public enum SRVLookupResult: Sendable, Hashable {
    /// Usable records, in answer order (order them with `SRVOrdering` before connecting).
    case records([SRVRecord])
    /// NXDOMAIN, or the name exists without SRV records (NODATA): fall back to the domain itself
    /// on port 5222 (RFC 6120 §3.2.2).
    case noRecords
    /// Only records whose target is "." came back: the service is decidedly not available at this
    /// domain (RFC 2782 "Usage rules": abort), so the caller must not fall back either.
    case serviceNotAvailable
}

/// An SRV lookup that produced no verdict about the name.
public struct SRVLookupError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Reason: Sendable, Hashable {
        /// No usable reply from any nameserver in time: a timeout, or SERVFAIL/REFUSED/NOTIMP on
        /// every try. glibc reports all of these as TRY_AGAIN, so they cannot be told apart.
        /// RFC 6120 §3.2.1 has a client that gets no response to its SRV query fall back (§3.2.2).
        case temporaryFailure
        /// The nameserver rejected the query for good (FORMERR), or the query could not be sent.
        case nonRecoverable
        /// A reply arrived but is not a well-formed DNS message (bad lengths, compression loops,
        /// an SRV record too short for its fields, bytes left over after the target).
        case malformedAnswer
        /// The name or the configured nameserver cannot be used as given.
        case invalidRequest
        /// The resolver could not be initialised (`res_ninit` failed: memory, /etc/resolv.conf).
        case resolverUnavailable
    }

    public var name: String
    public var reason: Reason
    /// Human-readable specifics for logs.
    public var detail: String

    public init(name: String, reason: Reason, detail: String) {
        self.name = name
        self.reason = reason
        self.detail = detail
    }

    public var description: String { "SRV lookup for \(self.name) failed (\(self.reason)): \(self.detail)" }
}

/// The order in which to try SRV targets (RFC 2782, "Usage rules").
public enum SRVOrdering {
    /// Ascending priority; within a priority, a weighted random order where each record's chance of
    /// coming next is its weight over the sum of the weights still left.
    ///
    /// Weight-0 records follow RFC 2782: they are put first and can only be chosen by a draw of 0,
    /// so next to weighted records they come late almost always, but not always. Two deliberate
    /// departures from the RFC's literal algorithm: when no weight-0 record is left the draw is
    /// from 1...sum (a draw of 0 would otherwise favour the first record), and a priority whose
    /// records all have weight 0 is shuffled uniformly (the RFC would keep the input order).
    public static func order(_ records: [SRVRecord], random: inout some RandomNumberGenerator) -> [SRVRecord] {
        let byPriority = Dictionary(grouping: records, by: \.priority)
        var ordered: [SRVRecord] = []
        ordered.reserveCapacity(records.count)
        for priority in byPriority.keys.sorted() {
            let group = byPriority[priority] ?? []
            var remaining = group.filter { $0.weight == 0 } + group.filter { $0.weight != 0 }
            while !remaining.isEmpty {
                let total = remaining.reduce(0) { $0 + Int($1.weight) }
                let chosen: Int
                if total == 0 {
                    chosen = Int.random(in: remaining.indices, using: &random)
                } else {
                    let draw = Int.random(in: (remaining[0].weight == 0 ? 0 : 1)...total, using: &random)
                    var runningSum = 0
                    chosen =
                        remaining.firstIndex { record in
                            runningSum += Int(record.weight)
                            return runningSum >= draw
                        } ?? remaining.count - 1
                }
                ordered.append(remaining.remove(at: chosen))
            }
        }
        return ordered
    }
}
