// libFuzzer target for raw HTTP request bytes through the connection pipeline as Tether builds it
// (NIO's HTTP/1.1 server pipeline with the WebSocket upgrader, then HTTPEdgeHandler): BOSH
// bodies and their framing (Content-Length, chunked, Expect), Host, Origin and proxy headers,
// upgrades, the operational endpoints, host-meta and CORS preflights.
// Broken invariants stop the process with fatalError; see Fuzzing/README.md.

import NIOCore
import NIOHTTP1
import PipelineHarness
import XMPPCore

@testable import TetherServer

/// The origins the `.origins` CORS configurations allow.
let allowedOrigins: Set<String> = ["https://app.example.com", "http://localhost:8080"]

/// Input: byte 0 chooses the connection (bit 0 the peer is a trusted proxy, bit 1 the believed
/// proxy header is `Forwarded`, bits 2–3 CORS: any origin, two origins, disabled, two origins
/// with `--public-host chat.example.com`; bit 4 served domains with no session room, bit 5 small
/// limits, bits 6–7 the chunking); the rest is what the client sends.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let input = [UInt8](UnsafeRawBufferPointer(start: start, count: count))
    guard let flags = input.first else { return 0 }
    var configuration = fuzzConfiguration(servedButFull: flags & 0x10 != 0)
    configuration.clientAddressHeader = flags & 0x02 != 0 ? .forwarded : .xForwardedFor
    switch (flags >> 2) & 3 {
    case 1: configuration.cors = .origins(allowedOrigins)
    case 2: configuration.cors = .disabled(origins: nil)
    case 3:
        configuration.cors = .origins(allowedOrigins)
        configuration.publicHosts = ["chat.example.com"]
    default: configuration.cors = .anyOrigin
    }
    if flags & 0x20 != 0 {
        configuration.maxRequestBodyBytes = 256
        configuration.maxHeaderBytes = 512
        configuration.xmlLimits = XMLStreamFramer.Limits(maxElementBytes: 128, maxDepth: 3)
        configuration.webSocket.allowMissingOrigin = false
    }
    let peer = flags & 0x01 != 0 ? FuzzConnection.trustedPeer : FuzzConnection.untrustedPeer
    let connection = FuzzConnection(configuration: configuration, peer: peer)
    var random = SplitMix64(seed: fnv1a(input))
    for chunk in chunks(Array(input.dropFirst()), mode: Int(flags >> 6), random: &random) {
        guard connection.send(chunk) else { break }
    }
    // Idle keep-alive connections, slow requests and refused ones must all be closed by the server.
    connection.finishSilently(configuration)

    let (responses, upgraded) = readResponses(connection.output, requests: connection.requests.heads)
    for response in responses {
        checkResponse(response, configuration: configuration)
    }
    if let upgraded {
        let compressed = responses.last!.value("sec-websocket-extensions") != nil
        checkServerFrames(readFrames(upgraded), compressed: compressed)
    }
    return 0
}

func checkResponse(_ response: WireResponse, configuration: TetherConfiguration) {
    let status = response.status
    check(status == 100 || status >= 200 || status == 101, "interim status \(status)")
    if status == 100 {
        check(response.headers.isEmpty, "100 Continue with headers")
        return
    }
    if status == 101 {
        check(response.value("sec-websocket-protocol") == "xmpp", "101 without Sec-WebSocket-Protocol: xmpp")
        check(response.values("x-content-type-options") == ["nosniff"], "101 without nosniff")
        return
    }
    // NIO's own 400 for bytes its parser refuses (Tether never sees the request): an empty body
    // gives a browser nothing to sniff, so it is exempt from the header rules.
    if isNIOProtocolError(response) { return }
    check(response.values("x-content-type-options") == ["nosniff"], "a \(status) without exactly one X-Content-Type-Options: nosniff")
    // No page is served in these configurations (the demo is off): every answer is data.
    check(response.values("content-security-policy") == ["default-src 'none'; frame-ancestors 'none'"], "a \(status) without the data-only CSP")
    let types = response.values("content-type")
    check(types.count <= 1, "\(types.count) Content-Type headers")
    let essence = types.first.map { String($0.split(separator: ";", maxSplits: 1).first ?? "").trimmingCharacters().lowercased() }
    if let essence {
        check(["text/plain", "text/xml", "application/xml", "application/jrd+json", "application/xrd+xml"].contains(essence), "Content-Type \(types[0])")
    }
    // A BOSH answer (XEP-0124 §4: a <body/> element) is XML whatever the client's `content` asked for.
    let path = response.request.map { String($0.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)[0]) }
    let isBOSH = response.request?.method == .POST && ["/http-bind", "/http-bind/", "/http-bind/node1"].contains(path ?? "")
    if status == 200 && (isBOSH || response.body.starts(with: Array("<body".utf8))) {
        check(essence == "text/xml" || essence == "application/xml", "a BOSH 200 served as \(types.first ?? "nothing")")
    }
    let allowOrigin = response.values("access-control-allow-origin")
    check(allowOrigin.count <= 1, "\(allowOrigin.count) Access-Control-Allow-Origin headers (browsers refuse duplicates)")
    if let origin = allowOrigin.first, origin != "*" {
        guard case .origins(let allowed) = configuration.cors else {
            fatalError("invariant broken: Access-Control-Allow-Origin: \(origin) under \(configuration.cors)")
        }
        check(allowed.contains(origin.lowercased()), "echoed an origin that is not allowed: \(origin)")
    }
    if case .disabled = configuration.cors {
        // host-meta is readable by any origin (XEP-0156 §3) and says so itself.
        check(
            allowOrigin.isEmpty || allowOrigin == ["*"] && response.value("content-type").map { $0.contains("xrd") || $0.contains("jrd") } == true,
            "CORS headers while CORS is disabled")
    }
}

extension String {
    fileprivate func trimmingCharacters() -> String {
        var text = Substring(self)
        while text.first == " " || text.first == "\t" { text = text.dropFirst() }
        while text.last == " " || text.last == "\t" { text = text.dropLast() }
        return String(text)
    }
}
