import CResolv
import NIOCore
import NIOPosix

/// One `_xmpp-client._tcp` SRV record (RFC 2782).
public struct SRVRecord: Sendable, Hashable {
    public var priority: UInt16
    public var weight: UInt16
    public var port: UInt16
    public var target: String

    public init(priority: UInt16, weight: UInt16, port: UInt16, target: String) {
        self.priority = priority
        self.weight = weight
        self.port = port
        self.target = target
    }
}

public enum SRVLookupResult: Sendable, Hashable {
    case records([SRVRecord])
    /// NXDOMAIN or no SRV records: fall back to the domain itself (RFC 6120 §3.2.2).
    case noRecords
    /// A single record with target ".": the service is decidedly not available there.
    case serviceNotAvailable
}

public struct SRVLookupError: Error, Sendable, CustomStringConvertible {
    public var name: String
    public var reason: String
    public var description: String { "SRV lookup for \(self.name) failed: \(self.reason)" }
}

public protocol SRVResolving: Sendable {
    func lookup(_ name: String) async throws -> SRVLookupResult
}

/// SRV lookups through glibc's resolver (`/etc/resolv.conf`), run on NIO's blocking-I/O thread pool.
public struct SystemSRVResolver: SRVResolving {
    public var nameserver: (host: String, port: Int)?
    public var timeoutSeconds: Int
    public var attempts: Int

    /// - Parameter nameserver: an IPv4 nameserver to ask instead of the system's (tests, split DNS).
    public init(nameserver: (host: String, port: Int)? = nil, timeoutSeconds: Int = 5, attempts: Int = 2) {
        self.nameserver = nameserver
        self.timeoutSeconds = timeoutSeconds
        self.attempts = attempts
    }

    public func lookup(_ name: String) async throws -> SRVLookupResult {
        let resolver = self
        return try await NIOThreadPool.singleton.runIfActive {
            try resolver.blockingLookup(name)
        }
    }

    func blockingLookup(_ name: String) throws -> SRVLookupResult {
        var answer = [UInt8](repeating: 0, count: 8192)
        var resolverError: Int32 = 0
        let length = answer.withUnsafeMutableBufferPointer { buffer in
            if let nameserver = self.nameserver {
                return tether_srv_query(name, buffer.baseAddress, Int32(buffer.count), nameserver.host, Int32(nameserver.port), Int32(self.timeoutSeconds), Int32(self.attempts), &resolverError)
            }
            return tether_srv_query(name, buffer.baseAddress, Int32(buffer.count), nil, 0, Int32(self.timeoutSeconds), Int32(self.attempts), &resolverError)
        }
        if length < 0 {
            switch resolverError {
            case HOST_NOT_FOUND, NO_DATA: return .noRecords
            case TRY_AGAIN: throw SRVLookupError(name: name, reason: "temporary failure (timeout or SERVFAIL)")
            default: throw SRVLookupError(name: name, reason: "resolver error \(resolverError)")
            }
        }
        var records = [tether_srv_record](repeating: tether_srv_record(), count: 64)
        let count = answer.withUnsafeBufferPointer { answerBuffer in
            records.withUnsafeMutableBufferPointer { recordBuffer in
                tether_srv_parse(answerBuffer.baseAddress, length, recordBuffer.baseAddress, Int32(recordBuffer.count))
            }
        }
        guard count >= 0 else { throw SRVLookupError(name: name, reason: "malformed answer") }
        let parsed = records.prefix(Int(count)).map { record -> SRVRecord in
            var record = record
            let target = withUnsafeBytes(of: &record.target) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            return SRVRecord(priority: record.priority, weight: record.weight, port: record.port, target: target.hasSuffix(".") ? String(target.dropLast()) : target)
        }
        if parsed.isEmpty { return .noRecords }
        if parsed.count == 1, parsed[0].target.isEmpty || parsed[0].target == "." { return .serviceNotAvailable }
        return .records(parsed.filter { !$0.target.isEmpty })
    }
}

/// RFC 2782 ordering: ascending priority; within a priority, a weighted random order.
public enum SRVOrdering {
    public static func order(_ records: [SRVRecord], random: inout some RandomNumberGenerator) -> [SRVRecord] {
        var ordered: [SRVRecord] = []
        let priorities = Set(records.map(\.priority)).sorted()
        for priority in priorities {
            // Weight-0 records first, so they have a small chance when others exist (RFC 2782).
            var remaining = records.filter { $0.priority == priority }.sorted { ($0.weight == 0 ? 0 : 1) < ($1.weight == 0 ? 0 : 1) }
            while !remaining.isEmpty {
                let total = remaining.reduce(0) { $0 + Int($1.weight) }
                // 0 is a possible draw only to give weight-0 records their small chance.
                let lowest = remaining.contains { $0.weight == 0 } ? 0 : 1
                let pick = total == 0 ? 0 : Int.random(in: lowest...total, using: &random)
                var running = 0
                var chosen = remaining.count - 1
                for (index, record) in remaining.enumerated() {
                    running += Int(record.weight)
                    if running >= pick {
                        chosen = index
                        break
                    }
                }
                ordered.append(remaining.remove(at: chosen))
            }
        }
        return ordered
    }
}
