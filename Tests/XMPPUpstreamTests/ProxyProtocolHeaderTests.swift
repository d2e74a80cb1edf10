import NIOCore
import Testing

@testable import XMPPUpstream
@testable import XMPPUpstreamCore

@Suite("PROXY protocol header")
struct ProxyProtocolHeaderTests {
    @Test("v1 text for IPv4 and IPv6; UNKNOWN when the families differ")
    func v1() throws {
        let v4 = ProxyProtocolHeader(source: try SocketAddress(ipAddress: "203.0.113.7", port: 51000), destination: try SocketAddress(ipAddress: "127.0.0.1", port: 5280))
        #expect(String(buffer: v4.encoded(.v1)) == "PROXY TCP4 203.0.113.7 127.0.0.1 51000 5280\r\n")
        let v6 = ProxyProtocolHeader(source: try SocketAddress(ipAddress: "2001:db8::7", port: 1), destination: try SocketAddress(ipAddress: "::1", port: 5280))
        #expect(String(buffer: v6.encoded(.v1)) == "PROXY TCP6 2001:db8::7 ::1 1 5280\r\n")
        let mixed = ProxyProtocolHeader(source: try SocketAddress(ipAddress: "203.0.113.7", port: 1), destination: try SocketAddress(ipAddress: "::1", port: 5280))
        #expect(String(buffer: mixed.encoded(.v1)) == "PROXY UNKNOWN\r\n")
    }

    @Test("v2 binary: signature, PROXY command, TCP over IPv4, addresses and ports in network order")
    func v2() throws {
        let header = ProxyProtocolHeader(source: try SocketAddress(ipAddress: "203.0.113.7", port: 51000), destination: try SocketAddress(ipAddress: "127.0.0.1", port: 5280))
        var bytes = header.encoded(.v2)
        #expect(bytes.readBytes(length: 12) == [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A])
        #expect(bytes.readInteger(as: UInt8.self) == 0x21)
        #expect(bytes.readInteger(as: UInt8.self) == 0x11)
        #expect(bytes.readInteger(as: UInt16.self) == 12)
        #expect(bytes.readBytes(length: 4) == [203, 0, 113, 7])
        #expect(bytes.readBytes(length: 4) == [127, 0, 0, 1])
        #expect(bytes.readInteger(as: UInt16.self) == 51000)
        #expect(bytes.readInteger(as: UInt16.self) == 5280)
        #expect(bytes.readableBytes == 0)
    }
}
