import AsyncHTTPClient
import Foundation
import NIOCore
import Testing
import TetherServer

/// Headless Chromium running Strophe.js on one origin, Tether on another, a real Prosody behind.
/// Each test asserts what the page shows and what the other party received.
@Suite("Browser: Strophe.js in Chromium, cross-origin", .serialized)
struct BrowserTests {
    /// Everything one browser test needs.
    struct Stack {
        let tether: TetherFixture
        let http: HTTPClient
        let page: PageServer
        let browser: Browser
        var boshURL: String { self.tether.boshURL }
        var webSocketURL: String { "ws://127.0.0.1:\(self.tether.port)/xmpp-websocket" }

        func openPage() async throws {
            try await self.browser.open("\(self.page.origin)/client.html")
            try await self.browser.waitForText(of: "status") { $0 == "idle" }
        }

        /// Bob, logged in over BOSH by the test itself (the other party).
        func bob() async throws -> BOSHTestClient {
            let bob = BOSHTestClient(http: self.http, url: self.boshURL)
            try await bob.login(user: "bob", password: "secret")
            return bob
        }
    }

    /// Prosody, Tether allowing only the page's origin (unless `allowedOrigins` says otherwise), the page server, Chromium.
    static func withStack(
        allowedOrigins: [String]? = nil,
        configure: @escaping (inout TetherConfiguration) -> Void = { _ in },
        _ body: @escaping (Stack) async throws -> Void
    ) async throws {
        let page = try await PageServer.start(pages: ["/client.html": StropheTestPage.html])
        do {
            try await withProsodyAndTether { _, tether, http in
                try await withBrowser(http: http) { browser in
                    try await body(Stack(tether: tether, http: http, page: page, browser: browser))
                }
            } configure: { configuration, _ in
                configuration.cors = CORSPolicy(origins: allowedOrigins ?? [page.origin], disabled: false)
                configure(&configuration)
            }
            await page.stop()
        } catch {
            await page.stop()
            throw error
        }
    }

    @Test("BOSH from another origin: Strophe.js logs in and messages flow both ways")
    func boshRoundTrip() async throws {
        try await Self.withStack { stack in try await Self.roundTrip(stack, webSocket: false) }
    }

    @Test("WebSocket from another origin: Strophe.js logs in and messages flow both ways")
    func webSocketRoundTrip() async throws {
        try await Self.withStack { stack in try await Self.roundTrip(stack, webSocket: true) }
    }

    static func roundTrip(_ stack: Stack, webSocket: Bool) async throws {
        try await stack.openPage()
        if webSocket {
            try await stack.browser.run("client.connectWebSocket(arguments[0], 'alice@localhost/browser', 'secret', false)", [stack.webSocketURL])
        } else {
            try await stack.browser.run("client.connectBOSH(arguments[0], 'alice@localhost/browser', 'secret')", [stack.boshURL])
        }
        try await stack.browser.waitForText(of: "status") { $0 == "connected" }
        let jid = try await stack.browser.text(of: "jid")
        #expect(jid.hasPrefix("alice@localhost/"))
        #expect(webSocket ? stack.tether.server.webSocketSessionCount == 1 : stack.tether.server.sessionCount == 1)
        let bob = try await stack.bob()
        _ = try await bob.send("<message xmlns='jabber:client' to='\(jid)' type='chat' id='to-page'><body>hello page</body></message>")
        try await stack.browser.waitForText(of: "messages") { $0.contains("bob@localhost/test | hello page") }
        try await stack.browser.run("client.send('bob@localhost/test', 'hello bob from the page')")
        let received = try await bob.receive(until: { $0.contains("hello bob from the page") })
        #expect(received.contains { $0.contains("from='\(jid)'") })
    }

    @Test("BOSH keepalive: a page reload re-attaches to the same session; a message sent during the reload arrives after it")
    func boshReload() async throws {
        try await Self.withStack { stack in try await Self.reload(stack) }
    }

    static func reload(_ stack: Stack) async throws {
        try await stack.openPage()
        try await stack.browser.run("client.connectBOSH(arguments[0], 'alice@localhost/browser', 'secret')", [stack.boshURL])
        try await stack.browser.waitForText(of: "status") { $0 == "connected" }
        let jid = try await stack.browser.text(of: "jid")
        let bob = try await stack.bob()
        // Strophe caches sid and rid with the first request it builds after login.
        try await stack.browser.waitUntil("return sessionStorage.getItem('strophe-bosh-session') !== null")
        // Reload while Tether holds the page's long-poll (the usual case for an idle page).
        try await stack.browser.waitUntil("var r = conn._proto._requests; return r.length === 1 && r[0].date && (new Date() - r[0].date) > 500")
        // The user reloads: the held request's connection goes away with the old page.
        try await stack.browser.reload()
        try await stack.browser.waitForText(of: "status") { $0 == "idle" }
        #expect(try await stack.browser.text(of: "messages").isEmpty)
        _ = try await bob.send("<message xmlns='jabber:client' to='\(jid)' type='chat' id='during-reload'><body>sent during the reload</body></message>")
        try await Task.sleep(for: .milliseconds(500))
        // The new page restores sid and rid from sessionStorage.
        try await stack.browser.run("client.restoreBOSH(arguments[0])", [stack.boshURL])
        try await stack.browser.waitForText(of: "status") { $0 == "attached" }
        try await stack.browser.waitForText(of: "messages") { $0.contains("sent during the reload") }
        #expect(try await stack.browser.text(of: "jid") == jid)
        #expect(stack.tether.server.sessionCount == 2)
        // Still the same session, both ways.
        try await stack.browser.run("client.send('bob@localhost/test', 'back after the reload')")
        _ = try await bob.receive(until: { $0.contains("back after the reload") })
    }

    @Test("WebSocket: XEP-0198 resumption after a reload, through Tether, with the message sent during the reload")
    func webSocketResume() async throws {
        try await Self.withStack { stack in try await Self.resume(stack) }
    }

    static func resume(_ stack: Stack) async throws {
        try await stack.openPage()
        try await stack.browser.run("client.connectWebSocket(arguments[0], 'alice@localhost/browser', 'secret', true)", [stack.webSocketURL])
        try await stack.browser.waitForText(of: "status") { $0 == "sm-enabled" }
        let jid = try await stack.browser.text(of: "jid")
        let bob = try await stack.bob()
        try await stack.browser.reload()
        try await stack.browser.waitForText(of: "status") { $0 == "idle" }
        // The WebSocket closed without <close/>: Tether dropped the upstream connection without
        // </stream:stream>, so Prosody keeps the session hibernating.
        try await waitUntil { stack.tether.server.webSocketSessionCount == 0 }
        _ = try await bob.send("<message xmlns='jabber:client' to='\(jid)' type='chat' id='while-hibernating'><body>sent while the page reloaded</body></message>")
        try await Task.sleep(for: .milliseconds(500))
        try await stack.browser.run("client.resumeWebSocket()")
        try await stack.browser.waitForText(of: "status") { $0 == "resumed" }
        try await stack.browser.waitForText(of: "messages") { $0.contains("sent while the page reloaded") }
        #expect(try await stack.browser.text(of: "jid") == jid)
        try await stack.browser.run("client.send('bob@localhost/test', 'resumed and talking')")
        _ = try await bob.receive(until: { $0.contains("resumed and talking") })
    }

    @Test("prebind: the backend asks Tether for a session, the page attaches with Strophe.js and chats")
    func prebindAttach() async throws {
        try await Self.withStack(configure: { $0.prebind = PrebindSettings(secret: WebEndpointTests.secret) }) { stack in
            try await Self.prebind(stack)
        }
    }

    static func prebind(_ stack: Stack) async throws {
        let answer = try await WebEndpointTests.prebind(stack.tether, http: stack.http, json: #"{"jid": "alice@localhost", "password": "secret", "resource": "prebound"}"#)
        #expect(answer.status == 200)
        let prebound = try JSONDecoder().decode(WebEndpointTests.Prebound.self, from: Data(answer.body.utf8))
        try await stack.openPage()
        try await stack.browser.run("client.attachBOSH(arguments[0], arguments[1], arguments[2], arguments[3])", [stack.boshURL, prebound.jid, prebound.sid, prebound.rid])
        try await stack.browser.waitForText(of: "status") { $0 == "attached" }
        #expect(try await stack.browser.text(of: "jid") == "alice@localhost/prebound")
        let bob = try await stack.bob()
        _ = try await bob.send("<message xmlns='jabber:client' to='alice@localhost/prebound' type='chat'><body>to the prebound page</body></message>")
        try await stack.browser.waitForText(of: "messages") { $0.contains("to the prebound page") }
        try await stack.browser.run("client.send('bob@localhost/test', 'prebound page here')")
        _ = try await bob.receive(until: { $0.contains("prebound page here") })
        #expect(stack.tether.server.sessionCount == 2)
    }

    @Test("the demo page: a person logs in over BOSH or WebSocket and chats", arguments: ["bosh", "websocket"])
    func demoPage(transport: String) async throws {
        try await Self.withStack(configure: { $0.demo = DemoSettings() }) { stack in try await Self.demo(stack, transport: transport) }
    }

    static func demo(_ stack: Stack, transport: String) async throws {
        // Same origin as Tether, as an operator would open it: allowed although only the page server's origin is listed.
        let origin = "http://127.0.0.1:\(stack.tether.port)"
        try await stack.browser.open("\(origin)/demo/")
        try await stack.browser.run(
            """
            document.getElementById('jid').value = 'alice@localhost';
            document.getElementById('password').value = 'secret';
            document.querySelector('input[value=' + arguments[0] + ']').checked = true;
            document.getElementById('connect').click();
            """, [transport])
        try await stack.browser.waitForText(of: "status") { $0 == "connected" }
        try await stack.browser.waitForText(of: "log") { $0.contains("connected as alice@localhost/") && $0.contains("over \(transport)") }
        let bob = try await stack.bob()
        _ = try await bob.send("<message xmlns='jabber:client' to='alice@localhost' type='chat'><body>hi from bob</body></message>")
        try await stack.browser.waitForText(of: "log") { $0.contains("bob@localhost: hi from bob") }
        try await stack.browser.run(
            """
            document.getElementById('to').value = 'bob@localhost/test';
            document.getElementById('text').value = 'hi bob, from the demo page';
            document.getElementById('send').click();
            """)
        _ = try await bob.receive(until: { $0.contains("hi bob, from the demo page") })
    }

    @Test("a refused origin fails visibly in the page, over BOSH and WebSocket, and opens no session")
    func refusedOrigin() async throws {
        try await Self.withStack(allowedOrigins: ["https://app.example"]) { stack in try await Self.refused(stack) }
    }

    static func refused(_ stack: Stack) async throws {
        try await stack.openPage()
        try await stack.browser.run("client.connectBOSH(arguments[0], 'alice@localhost/browser', 'secret')", [stack.boshURL])
        // The CORS preflight is refused, so the browser never lets the page see an answer.
        try await stack.browser.waitForText(of: "errors") { $0.contains("http 0;") }
        #expect(try await stack.browser.text(of: "status") != "connected")
        #expect(stack.tether.server.sessionCount == 0)
        try await stack.openPage()
        try await stack.browser.run("client.connectWebSocket(arguments[0], 'alice@localhost/browser', 'secret', false)", [stack.webSocketURL])
        // The upgrade is refused with 403: the page never gets a stream.
        try await stack.browser.waitForText(of: "errors") { $0.contains("websocket failed;") }
        #expect(!(try await stack.browser.text(of: "log")).contains("status: connected"))
        #expect(stack.tether.server.webSocketSessionCount == 0)
        #expect(stack.tether.server.sessionCount == 0)
    }
}
