import NIOCore
import Testing

@testable import XMPPUpstream
@testable import XMPPUpstreamCore

@Suite("Upstream address policy and routes")
struct AddressPolicyTests {
    static func allows(_ policy: AddressPolicy, _ address: String) throws -> Bool {
        policy.allows(try SocketAddress(ipAddress: address, port: 5222))
    }

    @Test(
        "special-purpose addresses are refused, ordinary global ones allowed; IPv6 carrying IPv4 is judged by that IPv4",
        arguments: [
            // IPv4 special-purpose registry, inside and just outside each block.
            ("0.0.0.0", false), ("0.1.2.3", false), ("10.1.2.3", false), ("100.64.0.1", false), ("100.127.255.255", false),
            ("100.63.255.255", true), ("100.128.0.0", true), ("127.0.0.1", false), ("127.255.255.254", false),
            ("169.254.169.254", false), ("172.16.0.1", false), ("172.31.255.255", false), ("172.32.0.1", true),
            ("192.0.0.1", false), ("192.0.0.9", false), ("192.0.0.10", false), ("192.0.0.171", false), ("192.0.1.1", true),
            ("192.0.2.1", false), ("192.31.196.1", false), ("192.52.193.1", false), ("192.88.99.1", false),
            ("192.168.1.1", false), ("192.175.48.1", false), ("198.18.0.1", false), ("198.19.255.255", false),
            ("198.20.0.1", true), ("198.51.100.7", false), ("203.0.113.9", false), ("224.0.0.1", false),
            ("239.255.255.255", false), ("240.0.0.1", false), ("255.255.255.255", false), ("223.255.255.255", true),
            ("8.8.8.8", true), ("93.184.216.34", true), ("1.1.1.1", true),
            // IPv6 special-purpose registry.
            ("::", false), ("::1", false), ("100::1", false), ("100:0:0:1::1", false), ("2001:2::1", false),
            ("2001:1::1", false), ("2001:1::3", false), ("2001:3::1", false), ("2001:4:112::1", false), ("2001:10::1", false),
            ("2001:20::1", false), ("2001:30::1", false), ("2001:1ff:ffff::1", false), ("2001:200::1", true),
            ("2001:db8::1", false), ("2620:4f:8000::1", false), ("2620:4f:7fff::1", true), ("3fff::1", false),
            ("3fff:fff::1", false), ("3fff:1000::1", true), ("5f00::1", false), ("fc00::1", false), ("fd12:3456::1", false),
            ("fe80::1", false), ("febf::1", false), ("fec0::1", false), ("ff02::1", false), ("ff0e::1", false),
            ("2a00:1450:4001:82b::200e", true), ("2606:4700:4700::1111", true),
            // IPv4-mapped (RFC 4291 §2.5.5.2): the IPv4 address decides.
            ("::ffff:10.0.0.1", false), ("::ffff:127.0.0.1", false), ("::ffff:169.254.169.254", false), ("::ffff:8.8.8.8", true),
            // IPv4-compatible (deprecated): refused whatever it carries.
            ("::127.0.0.1", false), ("::8.8.8.8", false),
            // IPv4-translated (SIIT, RFC 2765 §2.1): never a destination, refused whatever it carries.
            ("::ffff:0:7f00:1", false), ("::ffff:0:808:808", false),
            // NAT64 well-known prefix (RFC 6052).
            ("64:ff9b::7f00:1", false), ("64:ff9b::a00:1", false), ("64:ff9b::c0a8:101", false), ("64:ff9b::a9fe:a9fe", false),
            ("64:ff9b::192.0.2.1", false), ("64:ff9b::808:808", true), ("64:ff9b::1.1.1.1", true),
            // Local-use NAT64 (RFC 8215): every RFC 6052 layout must read as an allowed address.
            ("64:ff9b:1::a00:1", false),
            ("64:ff9b:1:0:a:0:800:0", false),  // the /64 layout is 10.0.0.8 (a /96 reading would see 8.0.0.0)
            ("64:ff9b:1::808:808", false),  // read with the /48 layout it is 0.0.0.0
            ("64:ff9b:1:808:808:808:808:808", true),  // 8.8.8.8 in every layout
            // 6to4 (RFC 3056): bits 16–47.
            ("2002:7f00:1::", false), ("2002:a00:1::1", false), ("2002:c058:6301::1", false), ("2002:808:808::1", true),
            // Teredo (RFC 4380 §4): server in bits 32–63, client inverted in bits 96–127; both must pass.
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", false),  // the RFC's example: client 192.0.2.45
            ("2001:0:4136:e378:8000:63bf:80ff:fffe", false),  // client 127.0.0.1
            ("2001:0:a00:1:8000:63bf:f7f7:f7f7", false),  // server 10.0.0.1
            ("2001:0:4136:e378:8000:63bf:f7f7:f7f7", true),  // server 65.54.227.120, client 8.8.8.8
        ])
    func ranges(address: String, allowed: Bool) throws {
        #expect(try Self.allows(AddressPolicy(), address) == allowed)
    }

    @Test("every registry entry is a network address with a name and a reference")
    func registryTable() {
        for block in AddressPolicy.specialPurposeBlocks {
            for (index, byte) in block.network.address.enumerated() {
                let networkBits = min(8, max(0, block.network.prefixLength - 8 * index))
                #expect(byte & UInt8(truncatingIfNeeded: 0xFF >> networkBits) == 0, "\(block.network) has host bits set")
            }
            #expect(!block.name.isEmpty && block.reference.hasPrefix("RFC "), "\(block.network)")
        }
        #expect(Set(AddressPolicy.specialPurposeBlocks.map(\.network)).count == AddressPolicy.specialPurposeBlocks.count)
    }

    @Test("the most specific block decides: Teredo inside 2001::/23, the IPv4-compatible /96 around ::1")
    func mostSpecificBlock() {
        #expect(AddressPolicy.block(containing: IPNetwork("2001:0:4136:e378::")!.address)?.name == "TEREDO")
        #expect(AddressPolicy.block(containing: IPNetwork("2001:1::1")!.address)?.reference == "RFC 7723")
        #expect(AddressPolicy.block(containing: IPNetwork("::1")!.address)?.name == "Loopback Address")
        #expect(AddressPolicy.block(containing: IPNetwork("::7f00:1")!.address)?.reference == "RFC 4291 §2.5.5.1")
        #expect(AddressPolicy.block(containing: IPNetwork("2a00::1")!.address) == nil)
    }

    @Test("an allowlisted network is allowed")
    func allowlist() throws {
        let policy = AddressPolicy(allowedNetworks: [IPNetwork("10.0.0.0/8")!])
        #expect(try Self.allows(policy, "10.9.9.9"))
        #expect(try !Self.allows(policy, "192.168.0.1"))
    }

    @Test("an allowlisted IPv4 network also allows the IPv6 forms carrying its addresses, and nothing beside them")
    func allowlistCoversCarriedIPv4() throws {
        let policy = AddressPolicy(allowedNetworks: [IPNetwork("10.1.0.0/16")!])
        #expect(try Self.allows(policy, "64:ff9b::a01:5"))
        #expect(try Self.allows(policy, "::ffff:10.1.0.5"))
        #expect(try Self.allows(policy, "2002:a01:5::1"))
        #expect(try Self.allows(policy, "2001:0:4136:e378:8000:63bf:f5fe:fffa"))  // Teredo client 10.1.0.5
        #expect(try !Self.allows(policy, "64:ff9b::a02:5"))  // 10.2.0.5
        #expect(try !Self.allows(policy, "2001:0:a01:5:8000:63bf:80ff:fffe"))  // server 10.1.0.5, client 127.0.0.1
        #expect(try !Self.allows(policy, "::10.1.0.5"))  // IPv4-compatible stays refused
    }

    @Test("an allowlisted IPv6 network wins over the registry, embedded IPv4 or not")
    func allowlistIPv6() throws {
        let policy = AddressPolicy(allowedNetworks: [IPNetwork("fd00::/8")!, IPNetwork("2001:db8::/32")!, IPNetwork("64:ff9b::/96")!])
        #expect(try Self.allows(policy, "fd12::1"))
        #expect(try Self.allows(policy, "2001:db8::1"))
        #expect(try Self.allows(policy, "64:ff9b::7f00:1"))
        #expect(try !Self.allows(policy, "fc00::1"))
        #expect(try !Self.allows(policy, "2002:7f00:1::"))
    }

    @Test("isLoopback: 127/8 and ::1 only")
    func loopback() throws {
        #expect(AddressPolicy.isLoopback(try SocketAddress(ipAddress: "127.0.0.2", port: 1)))
        #expect(AddressPolicy.isLoopback(try SocketAddress(ipAddress: "::1", port: 1)))
        #expect(!AddressPolicy.isLoopback(try SocketAddress(ipAddress: "10.0.0.1", port: 1)))
    }

    @Test("routes parse host:port, [v6]:port and bare hosts; junk is refused")
    func routes() {
        #expect(UpstreamRoute("xmpp.example.org:5223") == UpstreamRoute(host: "xmpp.example.org", port: 5223))
        #expect(UpstreamRoute("[::1]:5222") == UpstreamRoute(host: "::1", port: 5222))
        #expect(UpstreamRoute("example.org") == UpstreamRoute(host: "example.org", port: 5222))
        #expect(UpstreamRoute("example.org:0") == nil)
        #expect(UpstreamRoute("a:b:c") == nil)
        #expect(UpstreamRoute("") == nil)
    }
}
