#if canImport(Glibc)
import Glibc
#endif
import NIOCore

/// Keeps Tether from being an open proxy into private networks (PROTOCOL.md, "open-proxy abuse").
///
/// Addresses a client's domain resolves to are refused when they are loopback, private,
/// link-local, unique-local or unspecified, unless the operator allowlisted the network.
/// Configured routes are the operator's own choice and are not checked.
public struct AddressPolicy: Hashable, Sendable {
    public var allowedNetworks: [IPNetwork]

    public init(allowedNetworks: [IPNetwork] = []) {
        self.allowedNetworks = allowedNetworks
    }

    public func allows(_ address: SocketAddress) -> Bool {
        guard let bytes = IPNetwork.bytes(of: address) else { return false }
        if self.allowedNetworks.contains(where: { $0.contains(bytes) }) { return true }
        return !Self.restricted.contains { $0.contains(bytes) }
    }

    static let restricted: [IPNetwork] = [
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
        "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/4", "240.0.0.0/4",
        "::/128", "::1/128", "::ffff:0:0/96", "fc00::/7", "fe80::/10", "ff00::/8",
    ].map { IPNetwork($0)! }

    /// Whether the address is on this host (then traffic to it never leaves the machine).
    public static func isLoopback(_ address: SocketAddress) -> Bool {
        guard let bytes = IPNetwork.bytes(of: address) else { return false }
        return IPNetwork("127.0.0.0/8")!.contains(bytes) || IPNetwork("::1/128")!.contains(bytes)
    }
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
