import CResolv
import NIOCore
import NIOPosix

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Something that can look up SRV records; `SystemSRVResolver` in production, fakes in tests.
public protocol SRVResolving: Sendable {
    /// Looks up the SRV records of `name` (e.g. `_xmpp-client._tcp.example.com`).
    func lookup(_ name: String) async throws -> SRVLookupResult
}

/// SRV lookups through glibc's libresolv.
///
/// Every lookup gets its own heap-allocated `struct __res_state`, so lookups may run concurrently
/// (the `res_n*` functions are thread-safe only on private states). The blocking call runs on
/// `NIOThreadPool.singleton`, never on an event loop; it is bounded by `timeoutSeconds` and `attempts`
/// (glibc doubles the timeout on each further attempt) and cannot be cancelled once started.
public struct SystemSRVResolver: SRVResolving {
    /// An IPv4 nameserver to ask instead of those in /etc/resolv.conf (tests, split DNS).
    public var nameserver: (host: String, port: Int)?
    /// Seconds to wait for a reply on the first attempt (at least 1).
    public var timeoutSeconds: Int
    /// How many rounds over the nameservers glibc makes before giving up (at least 1).
    public var attempts: Int

    public init(nameserver: (host: String, port: Int)? = nil, timeoutSeconds: Int = 5, attempts: Int = 2) {
        self.nameserver = nameserver
        self.timeoutSeconds = timeoutSeconds
        self.attempts = attempts
    }

    public func lookup(_ name: String) async throws -> SRVLookupResult {
        try await NIOThreadPool.singleton.runIfActive {
            try self.blockingLookup(name)
        }
    }

    /// The largest DNS message (RFC 1035 over TCP): a buffer this size never truncates an answer.
    static let answerCapacity = 65_536

    func blockingLookup(_ name: String) throws -> SRVLookupResult {
        guard let received = try self.blockingQuery(name, type: Int32(ns_t_srv.rawValue)) else { return .noRecords }
        do throws(SRVAnswerParser.Malformed) {
            return SRVAnswerParser.result(of: try SRVAnswerParser.records(in: received))
        } catch {
            throw SRVLookupError(name: name, reason: .malformedAnswer, detail: error.detail)
        }
    }

    /// One query of `type` for `name`: the raw reply, or `nil` for NXDOMAIN and NODATA.
    func blockingQuery(_ name: String, type: Int32) throws -> [UInt8]? {
        func failure(_ reason: SRVLookupError.Reason, _ detail: String) -> SRVLookupError {
            SRVLookupError(name: name, reason: reason, detail: detail)
        }
        // res_nquery would silently cut a name at NUL and send non-ASCII bytes as they are; a DNS
        // name has at most 253 characters (254 with the final dot).
        guard !name.isEmpty, name.utf8.count <= 254, name.utf8.allSatisfy({ $0 > 0 && $0 < 0x80 }) else {
            throw failure(.invalidRequest, "not an ASCII domain name of at most 253 characters (IDNs must be A-labels)")
        }

        guard let state = tether_res_state_allocate() else {
            throw failure(.resolverUnavailable, "out of memory")
        }
        defer { tether_res_state_free(state) }
        guard tether_res_ninit(state) == 0 else {
            throw failure(.resolverUnavailable, "res_ninit failed: \(String(cString: strerror(errno)))")
        }
        defer { tether_res_nclose(state) }

        tether_res_set_timeout(state, Int32(clamping: self.timeoutSeconds), Int32(clamping: self.attempts))
        if let nameserver = self.nameserver {
            guard let port = UInt16(exactly: nameserver.port), port != 0,
                tether_res_set_nameserver_ipv4(state, nameserver.host, port) == 0
            else {
                throw failure(.invalidRequest, "nameserver \(nameserver.host):\(nameserver.port) is not an IPv4 address and port")
            }
        }

        var answer = [UInt8](repeating: 0, count: Self.answerCapacity)
        let (length, queryErrno) = answer.withUnsafeMutableBufferPointer { buffer in
            let length = tether_res_nquery(state, name, Int32(ns_c_in.rawValue), type, buffer.baseAddress, Int32(buffer.count))
            return (length, errno)
        }
        guard length >= 0 else {
            switch tether_res_h_errno(state) {
            case HOST_NOT_FOUND, NO_DATA:
                return nil
            case TRY_AGAIN:
                throw failure(.temporaryFailure, "no usable reply (timeout, SERVFAIL or REFUSED)")
            case NO_RECOVERY:
                throw failure(.nonRecoverable, "the nameserver rejected the query, or it could not be built")
            case let code:
                throw failure(.nonRecoverable, "resolver error \(code): \(String(cString: strerror(queryErrno)))")
            }
        }
        // glibc reports the full reply length even when it had to cut the reply to fit the buffer.
        return Array(answer.prefix(min(Int(length), answer.count)))
    }
}

/// Reads the SRV records out of a raw DNS reply with libresolv's `ns_*` parser.
///
/// Replies come from the network, so every length is checked before it is used: `ns_initparse` and
/// `ns_parserr` keep sections and RDATA inside the message, `dn_expand` keeps names (and their
/// compression pointers) inside it, and the SRV RDATA must be exactly its three integers plus one name.
enum SRVAnswerParser {
    struct Malformed: Error {
        var detail: String
    }

    /// The target "." (the root): "no service here" in RFC 2782.
    static let rootTarget = "."

    /// The SRV records of the answer section, in answer order; other types (the CNAMEs of an alias
    /// chain, say) are skipped. A "." target comes back as `rootTarget`.
    static func records(in message: [UInt8]) throws(Malformed) -> [SRVRecord] {
        guard message.count <= Int(NS_MAXMSG) else { throw Malformed(detail: "reply longer than a DNS message") }
        return try message.withUnsafeBufferPointer { buffer throws(Malformed) -> [SRVRecord] in
            guard let base = buffer.baseAddress else { throw Malformed(detail: "empty reply") }
            var handle = ns_msg()
            guard ns_initparse(base, Int32(buffer.count), &handle) == 0 else {
                throw Malformed(detail: "header or section counts do not match the \(buffer.count)-byte reply")
            }
            let answerCount = tether_ns_msg_count(&handle, ns_s_an)
            var records: [SRVRecord] = []
            for index in 0..<max(answerCount, 0) {
                var record = ns_rr()
                guard ns_parserr(&handle, ns_s_an, index, &record) == 0 else {
                    throw Malformed(detail: "answer record \(index) is truncated or has a bad owner name")
                }
                guard tether_ns_rr_type(&record) == Int32(ns_t_srv.rawValue),
                    tether_ns_rr_class(&record) == Int32(ns_c_in.rawValue)
                else { continue }
                records.append(try Self.srv(&record, in: &handle, index: index))
            }
            return records
        }
    }

    /// Decodes one SRV RDATA: priority, weight, port (16 bits each), then the target name.
    private static func srv(_ record: inout ns_rr, in handle: inout ns_msg, index: Int32) throws(Malformed) -> SRVRecord {
        let fixedLength = 6
        let rdataLength = Int(tether_ns_rr_rdlen(&record))
        // The shortest target is the root: a single zero byte.
        guard rdataLength >= fixedLength + 1, let rdata = tether_ns_rr_rdata(&record) else {
            throw Malformed(detail: "SRV record \(index) has \(rdataLength) bytes of RDATA")
        }
        var target = [CChar](repeating: 0, count: Int(NS_MAXDNAME))
        let nameLength = target.withUnsafeMutableBufferPointer { buffer in
            tether_dn_expand(
                tether_ns_msg_base(&handle), tether_ns_msg_end(&handle), rdata + fixedLength,
                buffer.baseAddress, Int32(buffer.count)
            )
        }
        guard nameLength == rdataLength - fixedLength else {
            throw Malformed(detail: "SRV record \(index) has a bad target name or stray bytes after it")
        }
        let presentation = String(decoding: target.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return SRVRecord(
            priority: UInt16(tether_ns_get16(rdata)),
            weight: UInt16(tether_ns_get16(rdata + 2)),
            port: UInt16(tether_ns_get16(rdata + 4)),
            target: Self.hostName(presentation)
        )
    }

    /// glibc's `dn_expand` prints names without the final dot and the root as "", other resolvers
    /// print "." and `host.example.`: normalise so callers only ever see `host.example` or `rootTarget`.
    static func hostName(_ presentation: String) -> String {
        if presentation.isEmpty || presentation == rootTarget { return rootTarget }
        guard presentation.hasSuffix(".") else { return presentation }
        // "a\." ends in an escaped dot, part of the last label; "a\\." ends in a real one.
        let backslashes = presentation.dropLast().reversed().prefix { $0 == "\\" }.count
        return backslashes % 2 == 0 ? String(presentation.dropLast()) : presentation
    }

    /// RFC 2782: a "." target means "decidedly not available"; such records are never connected to,
    /// and if nothing else is left the whole answer says so.
    static func result(of records: [SRVRecord]) -> SRVLookupResult {
        if records.isEmpty { return .noRecords }
        let usable = records.filter { $0.target != rootTarget }
        return usable.isEmpty ? .serviceNotAvailable : .records(usable)
    }
}
