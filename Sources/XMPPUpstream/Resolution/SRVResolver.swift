// TEMPORARY STUB (to be replaced by the libresolv implementation).
public struct SRVRecord: Sendable, Hashable { public var priority: UInt16; public var weight: UInt16; public var port: UInt16; public var target: String }
public enum SRVLookupResult: Sendable, Hashable { case records([SRVRecord]); case noRecords; case serviceNotAvailable }
public protocol SRVResolving: Sendable { func lookup(_ name: String) async throws -> SRVLookupResult }
public struct SystemSRVResolver: SRVResolving {
    public init() {}
    public func lookup(_ name: String) async throws -> SRVLookupResult { .noRecords }
}
public enum SRVOrdering { public static func order(_ records: [SRVRecord], random: inout some RandomNumberGenerator) -> [SRVRecord] { records } }
