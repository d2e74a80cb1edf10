// libFuzzer target for the edge's policies on values a stranger chooses: AddressPolicy (where an
// upstream connection may go, for domains a client names), ForwardedHeaders (who the client is,
// behind trusted proxies) and CORSPolicy (which origins may use Tether, and what is echoed).
// Broken invariants stop the process with fatalError; see Fuzzing/README.md.

import NIOCore
import NIOHTTP1
import XMPPUpstream

@testable import TetherServer

/// IPv6 forms that carry an IPv4 address (IPv4-mapped, IPv4-compatible, NAT64, 6to4, Teredo) must
/// be refused whenever the IPv4 address they carry is refused. On since the AddressPolicy rewrite
/// (hardening-core, merged into main) judges them by what they carry; before it, the policy
/// allowed e.g. `::7f00:1`, `64:ff9b::7f00:1` and `2002:7f00:1::1` (127.0.0.1 inside each).
let checksEmbeddedIPv4 = true

/// Input: byte 0 picks the policy (modulo 3); the rest is read by `Input` as that policy's values.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    var input = Input(UnsafeRawBufferPointer(start: start, count: count))
    switch input.byte() % 3 {
    case 0: fuzzAddressPolicy(&input)
    case 1: fuzzForwardedHeaders(&input)
    default: fuzzCORS(&input)
    }
    return 0
}

// MARK: AddressPolicy

/// Networks no version of the policy may let a client's domain reach (unless allowlisted).
let alwaysRefused = [
    "0.0.0.0/8", "10.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.168.0.0/16", "224.0.0.0/4",
    "255.255.255.255/32", "::/128", "::1/128", "fc00::/7", "fe80::/10", "ff00::/8",
].map { IPNetwork($0)! }

func fuzzAddressPolicy(_ input: inout Input) {
    let allowed = (0..<Int(input.byte() % 3)).map { _ in input.network() }
    let policy = AddressPolicy(allowedNetworks: allowed)
    while !input.isEmpty {
        let kind = input.byte()
        var embedded: [[UInt8]] = []
        let bytes: [UInt8]
        switch kind & 7 {
        case 0: bytes = input.bytes(4)
        case 1: bytes = input.bytes(16)
        default:
            let v4 = input.bytes(4)
            bytes = embedding(v4, kind: kind, input: &input)
        }
        let address = socketAddress(bytes)
        let allows = policy.allows(address)
        check(policy.allows(address) == allows, "allows(\(address)) changed between calls")
        let allowlisted = allowed.contains { $0.contains(bytes) }
        if allowlisted {
            check(allows, "\(address) is in an allowed network but refused")
            continue
        }
        check(!(allows && alwaysRefused.contains { $0.contains(bytes) }), "\(address) allowed")
        check(!(allows && AddressPolicy.isLoopback(address)), "loopback \(address) allowed")
        if bytes.count == 16 {
            embedded = embeddedIPv4(bytes)
        }
        if checksEmbeddedIPv4, allows, let refused = embedded.first(where: { !policy.allows(socketAddress($0)) }) {
            fatalError("invariant broken: \(address) allowed though it carries \(socketAddress(refused)), which is refused")
        }
    }
}

/// An IPv6 address carrying `v4` as the kind byte says (bits 0–2: 2 IPv4-mapped, 3 IPv4-compatible,
/// 4 NAT64 64:ff9b::/96, 5 local-use NAT64 64:ff9b:1::/48 with the layout in bits 3–4, 6 6to4,
/// 7 Teredo with v4 as the client and the next four bytes as the server).
func embedding(_ v4: [UInt8], kind: UInt8, input: inout Input) -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: 16)
    switch kind & 7 {
    case 2:
        bytes[10] = 0xFF
        bytes[11] = 0xFF
        bytes[12..<16] = v4[...]
    case 3:
        bytes[12..<16] = v4[...]
    case 4:
        bytes[0..<4] = [0x00, 0x64, 0xFF, 0x9B]
        bytes[12..<16] = v4[...]
    case 5:
        bytes = [0x00, 0x64, 0xFF, 0x9B, 0x00, 0x01] + input.bytes(10)
        for (byte, position) in zip(v4, ipv4Positions(layout: Int(kind >> 3) & 3)) { bytes[position] = byte }
    case 6:
        bytes = [0x20, 0x02] + v4 + input.bytes(10)
    default:
        bytes = [0x20, 0x01, 0x00, 0x00] + input.bytes(4) + input.bytes(4) + v4.map { $0 ^ 0xFF }
    }
    return bytes
}

/// RFC 6052 §2.2: where the IPv4 bytes sit for prefixes /48, /56, /64, /96 (byte 8 is skipped).
func ipv4Positions(layout: Int) -> [Int] {
    [[6, 7, 9, 10], [7, 9, 10, 11], [9, 10, 11, 12], [12, 13, 14, 15]][layout]
}

/// Every IPv4 address a 16-byte address may stand for, by its prefix.
func embeddedIPv4(_ bytes: [UInt8]) -> [[UInt8]] {
    let zeroes = bytes[0..<10].allSatisfy { $0 == 0 }
    if zeroes && bytes[10] == 0xFF && bytes[11] == 0xFF { return [Array(bytes[12..<16])] }
    // IPv4-compatible (deprecated, RFC 4291 §2.5.5.1); :: and ::1 are their own blocks.
    if zeroes && bytes[10] == 0 && bytes[11] == 0 && !(bytes[12..<15].allSatisfy { $0 == 0 } && bytes[15] <= 1) { return [Array(bytes[12..<16])] }
    if bytes[0..<12] == [0x00, 0x64, 0xFF, 0x9B, 0, 0, 0, 0, 0, 0, 0, 0] { return [Array(bytes[12..<16])] }
    if bytes[0..<6] == [0x00, 0x64, 0xFF, 0x9B, 0x00, 0x01] { return (0..<4).map { layout in ipv4Positions(layout: layout).map { bytes[$0] } } }
    if bytes[0..<2] == [0x20, 0x02] { return [Array(bytes[2..<6])] }
    if bytes[0..<4] == [0x20, 0x01, 0x00, 0x00] { return [Array(bytes[4..<8]), bytes[12..<16].map { $0 ^ 0xFF }] }
    return []
}

// MARK: ForwardedHeaders

func fuzzForwardedHeaders(_ input: inout Input) {
    let header: ClientAddressHeader = input.byte() & 1 == 0 ? .xForwardedFor : .forwarded
    // Usually a proxy network the addresses below fall into; sometimes input-built ones.
    var trusted: [IPNetwork] = []
    let trust = input.byte()
    if trust & 1 != 0 { trusted += ForwardedHeaders.loopback }
    if trust & 2 != 0 { trusted.append(IPNetwork("10.0.0.0/8")!) }
    if trust & 4 != 0 { trusted.append(IPNetwork("2001:db8::/32")!) }
    for _ in 0..<Int((trust >> 3) & 3) { trusted.append(input.network()) }
    let policy = ForwardedHeaders(trustedProxies: trusted, header: header)
    let peer = input.peer()
    let local: SocketAddress? = input.byte() & 1 == 0 ? FuzzAddresses.listener : nil
    let headers = input.headers()
    let result = policy.origin(peer: peer, local: local, headers: headers)

    check(result.destination == local, "destination \(String(describing: result.destination)) is not the listener")
    guard let peer else {
        check(result.address.ipAddress == "0.0.0.0" && !result.isSecure, "no peer gave \(result)")
        return
    }
    let peerTrusted = IPNetwork.bytes(of: peer).map { bytes in trusted.contains { $0.contains(bytes) } } ?? false
    if !peerTrusted {
        check(result.address == peer && !result.isSecure, "an untrusted peer \(peer) was taken for \(result)")
    }

    // Only the configured header counts: dropping or changing the other one changes nothing.
    let believed: Set<String> = header == .forwarded ? ["forwarded"] : ["x-forwarded-for", "x-forwarded-proto"]
    var others = HTTPHeaders(headers.filter { believed.contains($0.name.lowercased()) })
    let again = policy.origin(peer: peer, local: local, headers: others)
    check(again == result, "\(header) result changed when the other proxy header was dropped: \(result) → \(again)")
    let ignoredName = header == .forwarded ? ["X-Forwarded-For", "X-Forwarded-Proto"] : ["Forwarded"]
    for name in ignoredName {
        others.add(name: name, value: "for=192.0.2.77;proto=https, 192.0.2.78")
        others.add(name: name, value: "https")
    }
    let withOthers = policy.origin(peer: peer, local: local, headers: others)
    check(withOthers == result, "\(header) result changed when the other proxy header was forged: \(result) → \(withOthers)")

    // The address is the peer's or one written in the believed header.
    let believedValues = headers.filter { (header == .forwarded ? ["forwarded"] : ["x-forwarded-for"]).contains($0.name.lowercased()) }.map(\.value)
    if result.address != peer {
        check(peerTrusted, "an address other than the peer for an untrusted peer")
        let written = Set(believedValues.flatMap(addressesWritten))
        check(IPNetwork.bytes(of: result.address).map { written.contains($0) } == true, "\(result.address) is neither the peer nor in \(believedValues)")
    }
    if result.isSecure {
        let protoValues = header == .forwarded ? believedValues : headers.filter { $0.name.lowercased() == "x-forwarded-proto" }.map(\.value)
        check(protoValues.contains { $0.lowercased().contains("https") }, "secure without https in the believed header")
    }
}

/// Every IP address literally present in a header value: the pieces between `,` `;` `=` and
/// spaces, without quotes, brackets or a port.
func addressesWritten(_ value: String) -> [[UInt8]] {
    value.split(whereSeparator: { ",;= \t".contains($0) }).flatMap { piece -> [[UInt8]] in
        var text = String(piece)
        text.removeAll { $0 == "\"" }
        var candidates = [text]
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            candidates.append(String(text[text.index(after: text.startIndex)..<close]))
        }
        if let colon = text.lastIndex(of: ":") { candidates.append(String(text[..<colon])) }
        return candidates.compactMap { (try? SocketAddress(ipAddress: $0, port: 0)).flatMap(IPNetwork.bytes(of:)) }
    }
}

// MARK: CORSPolicy

func fuzzCORS(_ input: inout Input) {
    // The operator's origins come from the command line, never with CR or LF in them.
    let configured = (0..<Int(input.byte() % 4)).map { _ in input.string() }
    let policy: CORSPolicy
    switch input.byte() % 5 {
    case 0: policy = .disabled(origins: nil)
    case 1: policy = .anyOrigin
    case 2: policy = .origins(Set(configured.map { $0.lowercased() }))
    case 3: policy = CORSPolicy(origins: configured + ["https://app.example.com"], disabled: true)
    default: policy = CORSPolicy(origins: configured + ["https://app.example.com"], disabled: false)
    }
    let choice = input.byte()
    let requested: String? = choice & 4 != 0 ? input.string() : nil
    let host: String?
    if choice & 8 != 0 {
        host = input.string()
    } else if choice & 16 != 0 {
        host = ["chat.example.com", "localhost:5280", "127.0.0.1:5280", "[::1]:5280", "rebind.example"][Int(input.byte() % 5)]
    } else {
        host = nil
    }
    let publicHosts: Set<String> = choice & 32 != 0 ? ["chat.example.com"] : []
    let secure = choice & 64 != 0
    var origin: String?
    switch choice % 4 {
    case 0: origin = nil
    case 1: origin = configured.first.map { input.byte() & 1 == 0 ? $0.uppercased() : $0 }
    case 2: origin = "https://app.example.com"
    default:
        // Often the page's own origin: the same-origin rules below are about these.
        if let host, input.byte() & 1 == 0 {
            origin = (input.byte() & 1 == 0 ? "https://" : "http://") + host
        } else {
            origin = input.string()
        }
    }

    let allows = policy.allows(origin: origin)
    let sameOriginAllows = policy.allows(origin: origin, host: host, publicHosts: publicHosts, secure: secure)
    check(!allows || sameOriginAllows, "same-origin check refused an allowed origin")
    if let origin, let host {
        let name = HTTPHost.name(of: host)
        let vouched = publicHosts.contains(name) || name == "localhost" || HTTPHost.isIPLiteral(name)
        let lowered = origin.lowercased()
        let sameOrigin = lowered == "https://" + host.lowercased() || (!secure && lowered == "http://" + host.lowercased())
        if vouched && sameOrigin {
            check(sameOriginAllows, "a same-origin request refused")
        } else {
            // A name no one vouched for (a DNS-rebinding page's), or an http page over TLS, is
            // just another origin.
            check(sameOriginAllows == allows, "same-origin exemption for \(origin) on host \(host) (secure: \(secure), public hosts: \(publicHosts))")
        }
    }
    let response = policy.responseHeaders(origin: origin)
    checkCORSHeaders(response, policy: policy, origin: origin, allows: allows)
    let preflight = policy.preflightHeaders(origin: origin, requestedHeaders: requested)
    switch policy {
    case .disabled:
        check(response.isEmpty && preflight?.isEmpty == true, "CORS headers while disabled")
    default:
        check((preflight != nil) == allows, "preflight \(preflight == nil ? "refused" : "allowed") for an origin allows() \(allows ? "allows" : "refuses")")
        if let preflight {
            checkCORSHeaders(preflight, policy: policy, origin: origin, allows: allows)
            check(preflight.contains { $0.0 == "Access-Control-Allow-Methods" }, "preflight without Allow-Methods")
        }
    }
}

func checkCORSHeaders(_ headers: [(String, String)], policy: CORSPolicy, origin: String?, allows: Bool) {
    for (name, value) in headers {
        check(!value.utf8.contains(13) && !value.utf8.contains(10) && !name.utf8.contains(13) && !name.utf8.contains(10), "CR or LF in \(name): \(value.debugDescription)")
    }
    let echoed = headers.filter { $0.0 == "Access-Control-Allow-Origin" }.map(\.1)
    check(echoed.count <= 1, "\(echoed.count) Access-Control-Allow-Origin headers")
    if let value = echoed.first {
        if case .anyOrigin = policy {
            check(value == "*", "any-origin policy echoed \(value)")
        } else {
            check(allows && value == origin, "echoed \(value.debugDescription) for origin \(String(describing: origin)) (allowed: \(allows))")
        }
    }
    if case .origins = policy {
        check(headers.contains { $0 == ("Vary", "Origin") }, "origin-dependent answer without Vary: Origin")
    }
}

// MARK: Input

enum FuzzAddresses {
    static let listener = try! SocketAddress(ipAddress: "127.0.0.1", port: 5280)
}

func socketAddress(_ bytes: [UInt8]) -> SocketAddress {
    try! SocketAddress(packedIPAddress: ByteBuffer(bytes: bytes), port: 443)
}

/// Reads the fuzz input front to back; past its end every read gives zeroes.
struct Input {
    var rest: ArraySlice<UInt8>

    init(_ buffer: UnsafeRawBufferPointer) {
        self.rest = Array(buffer)[...]
    }

    var isEmpty: Bool { self.rest.isEmpty }

    mutating func byte() -> UInt8 { self.rest.popFirst() ?? 0 }

    mutating func bytes(_ count: Int) -> [UInt8] {
        let taken = Array(self.rest.prefix(count))
        self.rest = self.rest.dropFirst(count)
        return taken + [UInt8](repeating: 0, count: count - taken.count)
    }

    /// A string of up to 63 bytes, without CR or LF (NIO's parser never delivers them in a value).
    mutating func string() -> String {
        let bytes = self.bytes(Int(self.byte() % 64)).filter { $0 != 13 && $0 != 10 }
        return String(decoding: bytes, as: UTF8.self)
    }

    mutating func network() -> IPNetwork {
        let kind = self.byte()
        let bytes = self.bytes(kind & 1 == 0 ? 4 : 16)
        let length = Int(kind >> 1) % (bytes.count * 8 + 1)
        return IPNetwork("\(socketAddress(bytes).ipAddress!)/\(length)")!
    }

    /// The TCP peer: none, a Unix socket, or an IPv4/IPv6 address (often a loopback or 10/8 one,
    /// so the trusted-proxy path is taken).
    mutating func peer() -> SocketAddress? {
        let kind = self.byte()
        switch kind % 6 {
        case 0: return nil
        case 1: return try! SocketAddress(unixDomainSocketPath: "/tmp/tether.sock")
        case 2: return socketAddress([127, 0, 0, 1])
        case 3: return socketAddress([10] + self.bytes(3))
        case 4: return socketAddress(self.bytes(4))
        default: return socketAddress(self.bytes(16))
        }
    }

    /// Up to seven proxy-related headers, names in varied case, values raw or built from addresses.
    mutating func headers() -> HTTPHeaders {
        var headers = HTTPHeaders()
        for _ in 0..<Int(self.byte() % 8) {
            let kind = self.byte()
            let name = ["Forwarded", "X-Forwarded-For", "X-Forwarded-Proto", "forwarded", "X-FORWARDED-FOR", "x-forwarded-proto", "Via", "X-Real-IP"][Int(kind & 7)]
            headers.add(name: name, value: kind & 8 == 0 ? self.string() : self.addressList(forwarded: name.lowercased() == "forwarded"))
        }
        return headers
    }

    /// `a, b, c` for X-Forwarded-For or `for=a;proto=https, for=b` for Forwarded, in the forms
    /// proxies write addresses (bare, with a port, bracketed IPv6, quoted) and some they should not.
    mutating func addressList(forwarded: Bool) -> String {
        (0..<(1 + Int(self.byte() % 4))).map { _ in
            let form = self.byte()
            let address = socketAddress(form & 1 == 0 ? [10] + self.bytes(3) : self.bytes(form & 2 == 0 ? 4 : 16)).ipAddress!
            let isV6 = address.contains(":")
            var text: String
            switch (form >> 2) & 7 {
            case 0: text = address
            case 1: text = isV6 ? "[\(address)]:4711" : "\(address):4711"
            case 2: text = "\"[\(address)]\""
            case 3: text = "unknown"
            case 4: text = "_hidden"
            case 5: text = "\"\(address)\""
            default: text = " \(address) "
            }
            guard forwarded else { return text }
            let proto = ["", ";proto=https", ";proto=http", ";by=10.0.0.1;proto=HTTPS"][Int(form >> 5) & 3]
            return "for=\(text)\(proto)"
        }.joined(separator: self.byte() & 1 == 0 ? ", " : ",")
    }
}

func check(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String) {
    if !condition() { fatalError("invariant broken: \(message())") }
}
