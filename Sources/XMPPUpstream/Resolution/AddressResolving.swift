import CResolv
import NIOCore
import NIOPosix

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Turns a host name into the IPv6 and IPv4 addresses to race (RFC 8305 §3: both families
/// asked for together). Address literals come back as they are.
public protocol AddressResolving: Sendable {
    func resolve(host: String, port: Int, on eventLoop: any EventLoop) -> EventLoopFuture<[SocketAddress]>
}

/// getaddrinfo (AF_UNSPEC: AAAA and A in one call, /etc/hosts and nsswitch honoured), off the
/// event loops. The default.
public struct SystemAddressResolver: AddressResolving {
    public init() {}

    public func resolve(host: String, port: Int, on eventLoop: any EventLoop) -> EventLoopFuture<[SocketAddress]> {
        HostResolver.resolve(host: host, port: port, on: eventLoop)
    }
}

/// AAAA and A lookups through libresolv, sent in parallel to the same nameservers as the SRV
/// lookups (`nameserver`, or /etc/resolv.conf): for split DNS, and for tests that serve a
/// name's addresses from their own DNS server. /etc/hosts is not consulted.
extension SystemSRVResolver: AddressResolving {
    public func resolve(host: String, port: Int, on eventLoop: any EventLoop) -> EventLoopFuture<[SocketAddress]> {
        if let literal = try? SocketAddress(ipAddress: host, port: port) {
            return eventLoop.makeSucceededFuture([literal])
        }
        let lookups = [Int32(ns_t_aaaa.rawValue), Int32(ns_t_a.rawValue)].map { type in
            NIOThreadPool.singleton.runIfActive(eventLoop: eventLoop) {
                try self.blockingAddresses(host, type: type, port: port)
            }
        }
        return EventLoopFuture.whenAllComplete(lookups, on: eventLoop).flatMapThrowing { results in
            var addresses: [SocketAddress] = []
            var failure: (any Error)?
            for result in results {
                switch result {
                case .success(let found): addresses += found
                case .failure(let error): failure = failure ?? error
                }
            }
            // One family failing while the other answers is still an answer.
            if addresses.isEmpty, let failure { throw UpstreamError.dnsFailure("\(host): \(failure)") }
            return addresses
        }
    }

    func blockingAddresses(_ host: String, type: Int32, port: Int) throws -> [SocketAddress] {
        guard let reply = try self.blockingQuery(host, type: type) else { return [] }
        do throws(SRVAnswerParser.Malformed) {
            return try SRVAnswerParser.addresses(in: reply, type: type).compactMap { try? SocketAddress(ipAddress: $0, port: port) }
        } catch {
            throw SRVLookupError(name: host, reason: .malformedAnswer, detail: error.detail)
        }
    }
}

extension SRVAnswerParser {
    /// The A (4-byte) or AAAA (16-byte) records of the answer section, in presentation form;
    /// other types (the CNAMEs of an alias chain) are skipped, wrong lengths are malformed.
    static func addresses(in message: [UInt8], type: Int32) throws(Malformed) -> [String] {
        let (family, length) = type == Int32(ns_t_aaaa.rawValue) ? (AF_INET6, 16) : (AF_INET, 4)
        guard message.count <= Int(NS_MAXMSG) else { throw Malformed(detail: "reply longer than a DNS message") }
        return try message.withUnsafeBufferPointer { buffer throws(Malformed) -> [String] in
            guard let base = buffer.baseAddress else { throw Malformed(detail: "empty reply") }
            var handle = ns_msg()
            guard ns_initparse(base, Int32(buffer.count), &handle) == 0 else {
                throw Malformed(detail: "header or section counts do not match the \(buffer.count)-byte reply")
            }
            var addresses: [String] = []
            for index in 0..<max(tether_ns_msg_count(&handle, ns_s_an), 0) {
                var record = ns_rr()
                guard ns_parserr(&handle, ns_s_an, index, &record) == 0 else {
                    throw Malformed(detail: "answer record \(index) is truncated or has a bad owner name")
                }
                guard tether_ns_rr_type(&record) == type, tether_ns_rr_class(&record) == Int32(ns_c_in.rawValue) else { continue }
                guard Int(tether_ns_rr_rdlen(&record)) == length, let rdata = tether_ns_rr_rdata(&record) else {
                    throw Malformed(detail: "address record \(index) has \(tether_ns_rr_rdlen(&record)) bytes, not \(length)")
                }
                var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
                guard inet_ntop(family, rdata, &text, socklen_t(text.count)) != nil else {
                    throw Malformed(detail: "address record \(index) cannot be printed")
                }
                addresses.append(String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
            }
            return addresses
        }
    }
}
