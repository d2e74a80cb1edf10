import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A TCP listener on [::1]:`port` that never accepts and whose accept queue is full, so the
/// kernel drops every further SYN unanswered: to a client, an address that blackholes (its
/// connect hangs until the client's own timeout). Everything is closed by `close()`.
///
/// Linux keeps one more connection than `listen`'s backlog: with a backlog of 0, one filler
/// connection (made here) fills the queue. `drain()` then empties it, so any attempt still
/// retrying its SYN after that gets through and is counted: a client that closed its losing
/// attempt is never seen here.
final class UnansweringListener {
    let port: Int
    private var listener: Int32
    private var filler: Int32
    private var accepted: [Int32] = []

    init(port: Int) throws {
        let listener = socket(AF_INET6, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard listener >= 0 else { throw TestFailure("socket: \(String(cString: strerror(errno)))") }
        var on: Int32 = 1
        setsockopt(listener, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &on, socklen_t(MemoryLayout<Int32>.size))
        var address = Self.loopback(port: port)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
        }
        guard bound == 0, listen(listener, 0) == 0 else {
            let reason = String(cString: strerror(errno))
            Glibc.close(listener)
            throw TestFailure("cannot listen on [::1]:\(port): \(reason)")
        }
        let filler = socket(AF_INET6, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(filler, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
        }
        guard filler >= 0, connected == 0 else {
            let reason = String(cString: strerror(errno))
            if filler >= 0 { Glibc.close(filler) }
            Glibc.close(listener)
            throw TestFailure("cannot fill the accept queue of [::1]:\(port): \(reason)")
        }
        _ = fcntl(listener, F_SETFL, fcntl(listener, F_GETFL) | O_NONBLOCK)
        self.port = port
        self.listener = listener
        self.filler = filler
    }

    private static func loopback(port: Int) -> sockaddr_in6 {
        var address = sockaddr_in6()
        address.sin6_family = sa_family_t(AF_INET6)
        address.sin6_port = in_port_t(UInt16(port).bigEndian)
        address.sin6_addr = in6addr_loopback
        return address
    }

    /// Accepts (and closes) whatever is queued now; returns how many connections that was.
    @discardableResult
    func drain() -> Int {
        var count = 0
        while self.listener >= 0 {
            let connection = accept(self.listener, nil, nil)
            guard connection >= 0 else { break }
            self.accepted.append(connection)
            count += 1
        }
        return count
    }

    func close() {
        for descriptor in self.accepted + [self.filler, self.listener] where descriptor >= 0 {
            Glibc.close(descriptor)
        }
        self.accepted = []
        self.filler = -1
        self.listener = -1
    }

    deinit { self.close() }
}

/// 127.0.0.1 as /proc/net/tcp writes it (little-endian hex), and IPv4-mapped in tcp6.
private let loopbackV4InProcNet: Set<String> = ["0100007F", "0000000000000000FFFF00000100007F"]

/// Established TCP connections to 127.0.0.1:`port`, from /proc/net/tcp and tcp6 of this network
/// namespace: which server port a client really connected to.
func establishedConnections(toPort port: Int) -> Int {
    var count = 0
    let wanted = String(format: "%04X", port)
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        guard let text = readProcFile(table) else { continue }
        for line in text.split(separator: "\n").dropFirst() {
            let fields = line.split(separator: " ")
            // sl local_address rem_address st …; addresses are HEX_IP:HEX_PORT, state 01 = ESTABLISHED.
            // Only to 127.0.0.1 (as IPv4, or IPv4-mapped in tcp6): a listener of another test on
            // [::1] may have the same port number, and its connections are not this one's
            // (regression: a full run counted ten of them).
            let remote = fields.count > 3 ? fields[2].split(separator: ":").map(String.init) : []
            guard remote.count == 2, fields[3] == "01", remote[1] == wanted, loopbackV4InProcNet.contains(remote[0]) else { continue }
            count += 1
        }
    }
    return count
}

/// The whole of a /proc file. Foundation's `String(contentsOfFile:)` trusts the size /proc
/// reports and returns only the first 4096 bytes (27 lines of /proc/net/tcp): read to EOF.
func readProcFile(_ path: String) -> String? {
    let descriptor = open(path, O_RDONLY | O_CLOEXEC)
    guard descriptor >= 0 else { return nil }
    defer { Glibc.close(descriptor) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65_536)
    // Bounded: /proc/net/tcp of a test machine is far below this.
    while bytes.count < 64 << 20 {
        let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
        if count < 0 && errno == EINTR { continue }
        guard count > 0 else { break }
        bytes += chunk[0..<count]
    }
    return String(decoding: bytes, as: UTF8.self)
}
