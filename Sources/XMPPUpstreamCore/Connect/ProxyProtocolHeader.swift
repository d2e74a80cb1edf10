import NIOCore

/// The PROXY protocol header (HAProxy's spec, v1 text or v2 binary) Tether can send first on an
/// upstream connection, so a server that accepts it (ejabberd, Prosody with mod_net_proxy,
/// MongooseIM) sees the browser's address instead of Tether's.
public enum ProxyProtocolVersion: String, Hashable, Sendable, CaseIterable {
    case v1
    case v2
}

/// The client's address and the listener it reached, sent ahead of the stream (HAProxy's PROXY
/// protocol) so a server behind Tether can see, log and limit the real client.
public struct ProxyProtocolHeader: Hashable, Sendable {
    /// The client (browser) address and port.
    public var source: SocketAddress
    /// The address the client connected to (Tether's listener or the edge proxy's).
    public var destination: SocketAddress

    public init(source: SocketAddress, destination: SocketAddress) {
        self.source = source
        self.destination = destination
    }

    static let v2Signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]

    public func encoded(_ version: ProxyProtocolVersion) -> ByteBuffer {
        let source = IPNetwork.bytes(of: self.source)
        let destination = IPNetwork.bytes(of: self.destination)
        let sameFamily = source != nil && source?.count == destination?.count
        var buffer = ByteBuffer()
        switch version {
        case .v1:
            guard sameFamily, let sourceIP = self.source.ipAddress, let destinationIP = self.destination.ipAddress else {
                buffer.writeString("PROXY UNKNOWN\r\n")
                return buffer
            }
            let family = source!.count == 4 ? "TCP4" : "TCP6"
            buffer.writeString("PROXY \(family) \(sourceIP) \(destinationIP) \(self.source.port ?? 0) \(self.destination.port ?? 0)\r\n")
        case .v2:
            buffer.writeBytes(Self.v2Signature)
            guard sameFamily, let source, let destination else {
                buffer.writeInteger(UInt8(0x20))  // version 2, LOCAL: no address information
                buffer.writeInteger(UInt8(0x00))
                buffer.writeInteger(UInt16(0))
                return buffer
            }
            buffer.writeInteger(UInt8(0x21))  // version 2, PROXY
            buffer.writeInteger(UInt8(source.count == 4 ? 0x11 : 0x21))  // TCP over IPv4 / IPv6
            buffer.writeInteger(UInt16(source.count * 2 + 4))
            buffer.writeBytes(source)
            buffer.writeBytes(destination)
            buffer.writeInteger(UInt16(self.source.port ?? 0))
            buffer.writeInteger(UInt16(self.destination.port ?? 0))
        }
        return buffer
    }
}
