import NIOCore
import NIOHTTP1
import Testing

@testable import TetherServer

/// The edge's routing table and the endpoints whose answers are plain values.
@Suite("HTTP endpoints")
struct HTTPEndpointTests {
    static let routes: [(path: String, node: String?, endpoint: HTTPEndpoint)] = [
        ("/http-bind", nil, .bosh),
        ("/http-bind/", nil, .bosh),
        ("/http-bind/n1", "n1", .bosh),
        ("/http-bind/n2", "n1", .notFound),
        ("/http-bind/n1", nil, .notFound),
        ("/prebind", nil, .prebind),
        ("/.well-known/host-meta", nil, .hostMeta(json: false)),
        ("/.well-known/host-meta.json", nil, .hostMeta(json: true)),
        ("/demo", nil, .demo(.redirect)),
        ("/demo/", nil, .demo(.page)),
        ("/demo/index.html", nil, .demo(.page)),
        ("/demo/strophe.js", nil, .demo(.script)),
        ("/metrics", nil, .metrics),
        ("/healthz", nil, .health),
        ("/readyz", nil, .ready),
        ("/HTTP-BIND", nil, .notFound),
        ("/demo/../metrics", nil, .notFound),
        ("", nil, .notFound),
    ]

    @Test("every path has one endpoint; /http-bind/NODE only for this node's name; anything else is 404", arguments: 0..<Self.routes.count)
    func routing(index: Int) {
        let route = Self.routes[index]
        #expect(HTTPEndpoint(path: route.path, nodeID: route.node) == route.endpoint, "\(route.path)")
    }

    @Test("XEP-0156 host-meta: only with a public URL, only GET/HEAD, only for a served domain (Host with port or trailing dot alike)")
    func hostMeta() {
        var configuration = TetherConfiguration()
        configuration.domains = ["example.org"]
        #expect(HostMetaEndpoint.answer(method: .GET, host: "example.org", json: false, configuration: configuration).status == .notFound, "off without a URL")
        configuration.hostMeta = HostMetaSettings(boshURL: "https://chat.example.org/http-bind")
        let xrd = HostMetaEndpoint.answer(method: .GET, host: "Example.org:443", json: false, configuration: configuration)
        #expect(xrd.status == .ok && xrd.contentType == "application/xrd+xml; charset=utf-8")
        #expect(String(buffer: xrd.body).contains("href='https://chat.example.org/http-bind'"))
        #expect(xrd.headers.contains { $0 == ("Access-Control-Allow-Origin", "*") })
        let head = HostMetaEndpoint.answer(method: .HEAD, host: "example.org.", json: true, configuration: configuration)
        #expect(head.status == .ok && head.contentType == "application/jrd+json" && head.body.readableBytes == 0)
        #expect(HostMetaEndpoint.answer(method: .POST, host: "example.org", json: false, configuration: configuration).status == .notFound)
        #expect(HostMetaEndpoint.answer(method: .GET, host: "other.org", json: false, configuration: configuration).status == .notFound)
        #expect(HostMetaEndpoint.answer(method: .GET, host: nil, json: false, configuration: configuration).status == .notFound)
    }

    @Test("the demo: off unless enabled, GET only; the page is a document with framing denied; a missing script is 404 naming its path")
    func demo() {
        #expect(DemoEndpoint.answer(.page, method: .GET, settings: nil).status == .notFound)
        let settings = DemoSettings(stropheScript: "/nowhere/strophe.js")
        #expect(DemoEndpoint.answer(.page, method: .POST, settings: settings).status == .notFound)
        let page = DemoEndpoint.answer(.page, method: .GET, settings: settings)
        #expect(page.status == .ok && page.document && page.headers.contains { $0 == ("X-Frame-Options", "DENY") })
        let redirect = DemoEndpoint.answer(.redirect, method: .GET, settings: settings)
        #expect(redirect.status == .movedPermanently && redirect.headers.contains { $0 == ("Location", "/demo/") })
        let missing = DemoEndpoint.answer(.script, method: .GET, settings: settings, script: nil)
        #expect(missing.status == .notFound && String(buffer: missing.body).contains("/nowhere/strophe.js"))
        let script = DemoEndpoint.answer(.script, method: .GET, settings: settings, script: ByteBuffer(string: "var Strophe;"))
        #expect(script.status == .ok && script.contentType == "text/javascript; charset=utf-8" && String(buffer: script.body) == "var Strophe;")
    }

    @Test("readiness is 503 while draining; health is always ok")
    func operations() {
        #expect(OperationsEndpoint.ready(isDraining: false).status == .ok)
        #expect(OperationsEndpoint.ready(isDraining: true).status == .serviceUnavailable)
        #expect(String(buffer: OperationsEndpoint.health.body) == "ok\n")
        #expect(OperationsEndpoint.metrics(Array("tether_up 1\n".utf8)).contentType == "text/plain; version=0.0.4; charset=utf-8")
    }
}
