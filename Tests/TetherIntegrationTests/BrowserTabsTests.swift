import AsyncHTTPClient
import Foundation
import NIOCore
import Testing
import TetherServer

/// Eight BOSH "tabs" (Strophe.js connections in one page) of one headless Chromium against one
/// origin. Browsers keep at most six HTTP/1.1 connections per origin and every idle BOSH tab
/// holds one of them with its long-poll, so over HTTP/1.1 the seventh tab cannot even log in
/// until a long-poll's `wait` runs out; over HTTP/2 (Tether's TLS listener, or the shipped nginx
/// configuration, ALPN `h2`) all tabs share one connection.
@Suite("Browser: eight BOSH tabs, HTTP/1.1 against HTTP/2", .serialized, .timeLimit(.minutes(4)))
struct BrowserTabsTests {
    static let tabs = 8
    /// The BOSH `wait` of every tab: long enough that a stall cannot end by a poll's expiry
    /// while the test looks.
    static let wait = 50

    static func withStack(_ body: (TetherFixture, Int, HTTPClient, PageServer, Browser) async throws -> Void) async throws {
        try await Self.withStack(nginx: false) { tether, tlsPort, _, http, page, browser in
            try await body(tether, tlsPort, http, page, browser)
        }
    }

    /// Prosody, a Tether with a plain and a TLS listener, the page's server, and Chromium on the
    /// page; with `nginx`, the shipped `nginx/tether.conf` (`listen … ssl http2`) in front of the
    /// plain listener too.
    static func withStack(nginx: Bool, _ body: (TetherFixture, Int, NginxServer?, HTTPClient, PageServer, Browser) async throws -> Void) async throws {
        let certificates = try await EdgeTLSTests.Certificates.make()
        defer { try? FileManager.default.removeItem(at: certificates.directory) }
        let page = try await PageServer.start(pages: ["/tabs.html": MultiTabPage.html])
        do {
            let users = (0..<Self.tabs).map { "tab\($0)" } + ["bob"]
            try await withProsodyAndTether(users: users) { _, tether, http in
                guard tether.ports.count == 2 else { throw TestFailure("expected a plain and a TLS port, got \(tether.ports)") }
                try await withBrowser(http: http, acceptInsecureCertificates: true) { browser in
                    try await browser.open("\(page.origin)/tabs.html")
                    if nginx {
                        try await NginxTests.withNginx(tetherPorts: [tether.port]) { server, _, _ in
                            try await body(tether, tether.ports[1], server, http, page, browser)
                        }
                    } else {
                        try await body(tether, tether.ports[1], nil, http, page, browser)
                    }
                }
            } configure: { configuration, _ in
                try! EdgeTLSTests.configure(&configuration, certificates)
                configuration.cors = CORSPolicy(origins: [page.origin], disabled: false)
            }
            await page.stop()
        } catch {
            await page.stop()
            throw error
        }
    }

    static func status(_ browser: Browser, _ tab: Int) async throws -> String {
        (try await browser.run("return tabs.status(arguments[0])", [tab]) as? String) ?? "?"
    }

    static func waitForStatus(_ browser: Browser, _ tab: Int, timeout: Duration = .seconds(60)) async throws -> String {
        let deadline = ContinuousClock.now + timeout
        var status = "?"
        while ContinuousClock.now < deadline {
            status = try await Self.status(browser, tab)
            if status != "connecting" { return status }
            try await Task.sleep(for: .milliseconds(100))
        }
        return status
    }

    @Test("over HTTP/2 all eight tabs log in and exchange a message with bob; the server saw one HTTP/2 connection")
    func http2() async throws {
        try await Self.withStack { tether, tlsPort, http, _, browser in
            try await Self.eightTabsChat(service: "https://localhost:\(tlsPort)/http-bind", tether: tether, http: http, browser: browser)
            #expect(tether.server.http2ConnectionCount == 1)
        }
    }

    @Test("through the shipped nginx configuration (listen … ssl http2) all eight tabs log in and exchange a message with bob; every request reached nginx over HTTP/2")
    func nginxHTTP2() async throws {
        try await Self.withStack(nginx: true) { tether, _, nginx, http, _, browser in
            let nginx = try required(nginx, "nginx")
            try await Self.eightTabsChat(service: "https://localhost:\(nginx.port)/http-bind", tether: tether, http: http, browser: browser)
            let requests = nginx.accessLog.split(separator: "\n").filter { $0.contains("/http-bind") }
            #expect(requests.count >= Self.tabs * 2, "\(requests.count) BOSH requests in nginx's log")
            #expect(requests.allSatisfy { $0.contains(" HTTP/2.0\"") }, "\(requests.filter { !$0.contains(" HTTP/2.0\"") }.prefix(3))")
        }
    }

    @Test(
        "Chromium opens a WebSocket (Strophe.js on wss://) as an RFC 8441 extended CONNECT on an HTTP/2 connection it already holds to the origin, one its credentialed requests use; the WebSocket tab chats with bob"
    )
    func webSocketOverHTTP2() async throws {
        try await Self.withStack(nginx: false) { tether, tlsPort, _, http, _, browser in
            try await browser.run("tabs.open(arguments[0], 0, 'secret', arguments[1])", ["https://localhost:\(tlsPort)/http-bind", Self.wait])
            #expect(try await Self.waitForStatus(browser, 0) == "connected")
            // Chromium keeps connections for requests with and without credentials apart: the
            // BOSH tab's CORS requests go without, a WebSocket goes with them, so it rides an
            // HTTP/2 connection only when a credentialed request opened one (Chromium 156 does
            // not open an HTTP/2 connection for a WebSocket: without one it uses HTTP/1.1).
            try await browser.run("fetch(arguments[0], {mode: 'no-cors', credentials: 'include'})", ["https://localhost:\(tlsPort)/healthz"])
            // Its connection is up before the WebSocket opens (however long that takes here).
            let deadline = ContinuousClock.now + .seconds(60)
            while tether.server.http2ConnectionCount < 2 && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
            try await browser.run("tabs.open(arguments[0], 1, 'secret', arguments[1])", ["wss://localhost:\(tlsPort)/xmpp-websocket", Self.wait])
            #expect(try await Self.waitForStatus(browser, 1) == "connected")
            #expect(tether.server.webSocketSessionCount == 1)
            // The BOSH tab's (CORS requests without credentials) and the credentialed one.
            #expect(tether.server.http2ConnectionCount == 2)
            #expect(
                tether.logs.all.contains { $0.contains("websocket session opened") && $0.contains("http=h2") },
                "\(tether.logs.all.filter { $0.contains("websocket") })")
            let bob = BOSHTestClient(http: http, url: tether.boshURL)
            try await bob.login(user: "bob", password: "secret")
            let jid = try required(try await browser.run("return tabs.jid(1)") as? String, "jid of the WebSocket tab")
            _ = try await bob.send("<message xmlns='jabber:client' to='\(jid)' type='chat'><body>to the WebSocket tab</body></message>")
            try await browser.waitUntil("return tabs.received(1, 'to the WebSocket tab')")
            try await browser.run("tabs.send(1, 'bob@localhost/test', 'from the WebSocket tab')")
            _ = try await bob.receive(until: { $0.contains("from the WebSocket tab") })
        }
    }

    /// Opens the eight tabs on `service`, each logging in before the next opens, then bob (over
    /// Tether's plain listener) and each tab exchange a message.
    static func eightTabsChat(service: String, tether: TetherFixture, http: HTTPClient, browser: Browser) async throws {
        for tab in 0..<Self.tabs {
            try await browser.run("tabs.open(arguments[0], arguments[1], 'secret', arguments[2])", [service, tab, Self.wait])
            #expect(try await Self.waitForStatus(browser, tab) == "connected", "tab \(tab)")
        }
        #expect(tether.server.sessionCount == Self.tabs)
        let bob = BOSHTestClient(http: http, url: tether.boshURL)
        try await bob.login(user: "bob", password: "secret")
        for tab in 0..<Self.tabs {
            let jid = try required(try await browser.run("return tabs.jid(arguments[0])", [tab]) as? String, "jid of tab \(tab)")
            _ = try await bob.send("<message xmlns='jabber:client' to='\(jid)' type='chat'><body>to tab \(tab)</body></message>")
            try await browser.waitUntil("return tabs.received(\(tab), 'to tab \(tab)')")
            try await browser.run("tabs.send(arguments[0], 'bob@localhost/test', arguments[1])", [tab, "from tab \(tab)"])
            _ = try await bob.receive(until: { $0.contains("from tab \(tab)") })
        }
    }

    @Test("over HTTP/1.1 six tabs log in and hold the browser's six connections to the origin: the seventh stays stuck logging in")
    func http1Stall() async throws {
        try await Self.withStack { tether, _, _, _, browser in
            let service = tether.boshURL
            for tab in 0..<6 {
                try await browser.run("tabs.open(arguments[0], arguments[1], 'secret', arguments[2])", [service, tab, Self.wait])
                #expect(try await Self.waitForStatus(browser, tab) == "connected", "tab \(tab)")
            }
            try await browser.run("tabs.open(arguments[0], arguments[1], 'secret', arguments[2])", [service, 6, Self.wait])
            // Its login needs a round trip per step, and each waits in the browser for a free
            // connection; none frees before a long-poll's `wait` (50 s from its start) runs out.
            try await Task.sleep(for: .seconds(10))
            #expect(try await Self.status(browser, 6) == "connecting")
            for tab in 0..<6 { #expect(try await Self.status(browser, tab) == "connected", "tab \(tab)") }
        }
    }
}
