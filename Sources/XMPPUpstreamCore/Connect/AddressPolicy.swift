import NIOCore

#if canImport(Glibc)
    import Glibc
#endif

/// Keeps Tether from being an open proxy into private networks (PROTOCOL.md, "open-proxy abuse").
///
/// An address a client's domain resolves to is judged by the most specific entry of
/// `specialPurposeBlocks` that contains it (a more specific entry overrides the block it sits in,
/// as in the registries): no entry means an ordinary global address, which is allowed; a refused
/// block is refused. IPv6 forms that carry an IPv4 address (IPv4-mapped, NAT64, 6to4, Teredo) are
/// judged by the IPv4 address they carry: that is where a translator or tunnel, possibly on this
/// host, delivers the connection. So `64:ff9b::7f00:1` and `2002:7f00:1::` are refused like
/// 127.0.0.1, while `64:ff9b::808:808` (8.8.8.8 through NAT64) is allowed.
///
/// The operator's `allowedNetworks` come first. They are matched against the address and against
/// every IPv4 address it carries, so allowing `10.1.0.0/16` also allows `64:ff9b::a01:5` and
/// `::ffff:10.1.0.5`. Configured routes are the operator's own choice and are not checked.
public struct AddressPolicy: Hashable, Sendable {
    public var allowedNetworks: [IPNetwork]

    public init(allowedNetworks: [IPNetwork] = []) {
        self.allowedNetworks = allowedNetworks
    }

    public func allows(_ address: SocketAddress) -> Bool {
        guard let bytes = IPNetwork.bytes(of: address) else { return false }
        return self.allows(bytes: bytes)
    }

    func allows(bytes: [UInt8]) -> Bool {
        if self.allowedNetworks.contains(where: { $0.contains(bytes) }) { return true }
        guard let block = Self.block(containing: bytes) else { return true }
        switch block.verdict {
        case .refused:
            return false
        case .carriesIPv4(let embedding):
            // Every reading must pass: a tunnel or translator may deliver to any of them.
            return embedding.ipv4Addresses(in: bytes).allSatisfy { self.allows(bytes: $0) }
        }
    }

    /// The most specific special-purpose block holding the address, if any.
    static func block(containing bytes: [UInt8]) -> SpecialPurposeBlock? {
        var best: SpecialPurposeBlock?
        for block in Self.specialPurposeBlocks where block.network.contains(bytes) {
            if best.map({ block.network.prefixLength > $0.network.prefixLength }) ?? true {
                best = block
            }
        }
        return best
    }

    /// Whether the address is on this host (then traffic to it never leaves the machine).
    public static func isLoopback(_ address: SocketAddress) -> Bool {
        guard let bytes = IPNetwork.bytes(of: address) else { return false }
        return IPNetwork("127.0.0.0/8")!.contains(bytes) || IPNetwork("::1/128")!.contains(bytes)
    }
}

extension AddressPolicy {
    /// One entry of the IANA special-purpose address registries (RFC 6890, updated by RFC 8190).
    struct SpecialPurposeBlock: Hashable, Sendable {
        enum Verdict: Hashable, Sendable {
            /// Not a place an XMPP server a client names can legitimately be.
            case refused
            /// IPv6 carrying IPv4: the IPv4 rules (and allowlist) judge what it carries.
            case carriesIPv4(IPv4Embedding)
        }

        var network: IPNetwork
        var name: String
        var reference: String
        var verdict: Verdict

        init(_ network: String, _ name: String, _ reference: String, _ verdict: Verdict = .refused) {
            self.network = IPNetwork(network)!
            self.name = name
            self.reference = reference
            self.verdict = verdict
        }
    }

    /// Where an IPv6 address keeps the IPv4 address(es) it stands for.
    enum IPv4Embedding: Hashable, Sendable {
        /// The last 32 bits: IPv4-mapped (RFC 4291 §2.5.5.2), NAT64 /96 (RFC 6052 §2.2).
        case lastFourBytes
        /// Bits 16–47 (RFC 3056 §2).
        case sixToFour
        /// The Teredo server in bits 32–63 and the client's public address, inverted, in bits
        /// 96–127 (RFC 4380 §4): both are checked.
        case teredo
        /// A local-use NAT64 prefix (RFC 8215) may be any length from /48 to /96, and the length
        /// decides where the IPv4 address sits (RFC 6052 §2.2). Tether cannot know which one the
        /// local translator uses, so the address is read with each layout and every reading is
        /// checked; the u-octet and suffix are not trusted to be zero (translators may ignore them).
        case localUseTranslation

        func ipv4Addresses(in bytes: [UInt8]) -> [[UInt8]] {
            switch self {
            case .lastFourBytes:
                return [Array(bytes[12..<16])]
            case .sixToFour:
                return [Array(bytes[2..<6])]
            case .teredo:
                return [Array(bytes[4..<8]), bytes[12..<16].map { $0 ^ 0xFF }]
            case .localUseTranslation:
                // RFC 6052 §2.2 for prefix lengths 48, 56, 64 and 96 (byte 8 is the u-octet).
                return [
                    [bytes[6], bytes[7], bytes[9], bytes[10]],
                    [bytes[7], bytes[9], bytes[10], bytes[11]],
                    Array(bytes[9..<13]),
                    Array(bytes[12..<16]),
                ]
            }
        }
    }

    /// The IANA IPv4 and IPv6 Special-Purpose Address Registries (as of 2025), plus multicast and
    /// two deprecated IPv6 blocks that are not (or no longer) in them.
    ///
    /// Every block the registries mark not globally reachable is refused. The few marked globally
    /// reachable inside refused blocks (192.0.0.9–10, 2001:1::1–3, AMT, AS112) are anycast
    /// addresses of services answered by the *nearest* instance, which may be in the operator's own
    /// network: no XMPP server lives there, and reaching them is the internal reach this policy
    /// exists to prevent, so they are refused too, as are ORCHIDv2 and DETs (identifiers, not
    /// locators). Teredo, 6to4 and the NAT64 prefixes carry an IPv4 address, which decides.
    static let specialPurposeBlocks: [SpecialPurposeBlock] = [
        // IPv4
        .init("0.0.0.0/8", "\"This network\"", "RFC 791 §3.2"),
        .init("0.0.0.0/32", "\"This host on this network\"", "RFC 1122 §3.2.1.3"),
        .init("10.0.0.0/8", "Private-Use", "RFC 1918"),
        .init("100.64.0.0/10", "Shared Address Space", "RFC 6598"),
        .init("127.0.0.0/8", "Loopback", "RFC 1122 §3.2.1.3"),
        .init("169.254.0.0/16", "Link Local", "RFC 3927"),
        .init("172.16.0.0/12", "Private-Use", "RFC 1918"),
        .init("192.0.0.0/24", "IETF Protocol Assignments", "RFC 6890 §2.1"),
        .init("192.0.0.0/29", "IPv4 Service Continuity Prefix", "RFC 7335"),
        .init("192.0.0.8/32", "IPv4 dummy address", "RFC 7600"),
        .init("192.0.0.9/32", "Port Control Protocol Anycast (nearest instance)", "RFC 7723"),
        .init("192.0.0.10/32", "Traversal Using Relays around NAT Anycast (nearest instance)", "RFC 8155"),
        .init("192.0.0.170/31", "NAT64/DNS64 Discovery", "RFC 8880, RFC 7050 §2.2"),
        .init("192.0.2.0/24", "Documentation (TEST-NET-1)", "RFC 5737"),
        .init("192.31.196.0/24", "AS112-v4 (nearest instance)", "RFC 7535"),
        .init("192.52.193.0/24", "AMT relay anycast (nearest instance)", "RFC 7450"),
        .init("192.88.99.0/24", "Deprecated (6to4 Relay Anycast)", "RFC 7526"),
        .init("192.168.0.0/16", "Private-Use", "RFC 1918"),
        .init("192.175.48.0/24", "Direct Delegation AS112 Service (nearest instance)", "RFC 7534"),
        .init("198.18.0.0/15", "Benchmarking", "RFC 2544"),
        .init("198.51.100.0/24", "Documentation (TEST-NET-2)", "RFC 5737"),
        .init("203.0.113.0/24", "Documentation (TEST-NET-3)", "RFC 5737"),
        .init("224.0.0.0/4", "Multicast", "RFC 5771"),
        .init("240.0.0.0/4", "Reserved", "RFC 1112 §4"),
        .init("255.255.255.255/32", "Limited Broadcast", "RFC 8190, RFC 919 §7"),

        // IPv6
        .init("::/128", "Unspecified Address", "RFC 4291 §2.5.2"),
        .init("::1/128", "Loopback Address", "RFC 4291 §2.5.3"),
        // Deprecated and never a real destination; what still routes it (automatic tunnels)
        // sends to the IPv4 address from this host, so it is refused whatever it carries.
        .init("::/96", "IPv4-Compatible IPv6 Address (deprecated)", "RFC 4291 §2.5.5.1"),
        .init("::ffff:0:0/96", "IPv4-mapped Address", "RFC 4291 §2.5.5.2", .carriesIPv4(.lastFourBytes)),
        // Not in the registry: SIIT's IPv4-translated form, an address translators use
        // internally, never one to connect to (refused whatever it carries).
        .init("::ffff:0:0:0/96", "IPv4-translated Address", "RFC 2765 §2.1"),
        .init("64:ff9b::/96", "IPv4-IPv6 Translation (well-known prefix)", "RFC 6052 §2.1", .carriesIPv4(.lastFourBytes)),
        .init("64:ff9b:1::/48", "Local-Use IPv4/IPv6 Translation", "RFC 8215", .carriesIPv4(.localUseTranslation)),
        .init("100::/64", "Discard-Only Address Block", "RFC 6666"),
        .init("100:0:0:1::/64", "Dummy IPv6 Prefix", "RFC 9780"),
        .init("2001::/23", "IETF Protocol Assignments", "RFC 2928"),
        .init("2001::/32", "TEREDO", "RFC 4380 §4, RFC 8190", .carriesIPv4(.teredo)),
        .init("2001:1::1/128", "Port Control Protocol Anycast (nearest instance)", "RFC 7723"),
        .init("2001:1::2/128", "Traversal Using Relays around NAT Anycast (nearest instance)", "RFC 8155"),
        .init("2001:1::3/128", "DNS-SD Service Registration Protocol Anycast (nearest instance)", "RFC 9665"),
        .init("2001:2::/48", "Benchmarking", "RFC 5180"),
        .init("2001:3::/32", "AMT (nearest instance)", "RFC 7450"),
        .init("2001:4:112::/48", "AS112-v6 (nearest instance)", "RFC 7535"),
        .init("2001:10::/28", "Deprecated (previously ORCHID)", "RFC 4843"),
        .init("2001:20::/28", "ORCHIDv2 (identifiers, not locators)", "RFC 7343"),
        .init("2001:30::/28", "Drone Remote ID Protocol Entity Tags (identifiers, not locators)", "RFC 9374"),
        .init("2001:db8::/32", "Documentation", "RFC 3849"),
        .init("2002::/16", "6to4", "RFC 3056 §2", .carriesIPv4(.sixToFour)),
        .init("2620:4f:8000::/48", "Direct Delegation AS112 Service (nearest instance)", "RFC 7534"),
        .init("3fff::/20", "Documentation", "RFC 9637"),
        .init("5f00::/16", "Segment Routing (SRv6) SIDs", "RFC 9602"),
        .init("fc00::/7", "Unique-Local", "RFC 4193"),
        .init("fe80::/10", "Link-Local Unicast", "RFC 4291 §2.5.6"),
        // Not in the special-purpose registry: deprecated site-local, and multicast.
        .init("fec0::/10", "Site-Local (deprecated)", "RFC 3879 §4"),
        .init("ff00::/8", "Multicast", "RFC 4291 §2.7"),
    ]
}

/// An IPv4 or IPv6 network in CIDR notation.
public struct IPNetwork: Hashable, Sendable, CustomStringConvertible {
    public var address: [UInt8]
    public var prefixLength: Int
    public let description: String

    public init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 1)
        guard let first = parts.first, let address = try? SocketAddress(ipAddress: String(first), port: 0),
            let bytes = IPNetwork.bytes(of: address)
        else { return nil }
        let length = parts.count == 2 ? Int(parts[1]) : bytes.count * 8
        guard let length, length >= 0, length <= bytes.count * 8 else { return nil }
        self.address = bytes
        self.prefixLength = length
        self.description = text
    }

    public func contains(_ bytes: [UInt8]) -> Bool {
        guard bytes.count == self.address.count else { return false }
        var remaining = self.prefixLength
        for index in 0..<bytes.count where remaining > 0 {
            let bits = min(8, remaining)
            let mask = UInt8(truncatingIfNeeded: 0xFF << (8 - bits))
            if bytes[index] & mask != self.address[index] & mask { return false }
            remaining -= bits
        }
        return true
    }

    /// The raw address bytes (4 or 16), or `nil` for a Unix socket.
    public static func bytes(of address: SocketAddress) -> [UInt8]? {
        guard let text = address.ipAddress else { return nil }
        var v4 = [UInt8](repeating: 0, count: 4)
        if inet_pton(AF_INET, text, &v4) == 1 { return v4 }
        var v6 = [UInt8](repeating: 0, count: 16)
        if inet_pton(AF_INET6, text, &v6) == 1 { return v6 }
        return nil
    }
}
