import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// `/demo/`: the page and the Strophe.js it loads, when the demo is on.
enum DemoEndpoint {
    enum Asset: Hashable, Sendable {
        /// `/demo` → `/demo/`, so the page's relative URLs resolve.
        case redirect
        case page
        case script
    }

    /// The answer for `asset`; for `.script`, `script` is the file's bytes (`nil`: unreadable).
    static func answer(_ asset: Asset, method: HTTPMethod, settings: DemoSettings?, script: ByteBuffer? = nil) -> HTTPAnswer {
        guard let settings, method == .GET else { return .notFound }
        switch asset {
        case .redirect:
            return .text(.movedPermanently, "See /demo/.\n", headers: [("Location", "/demo/")])
        case .page:
            return HTTPAnswer(
                status: .ok, contentType: "text/html; charset=utf-8", body: ByteBuffer(string: DemoPage.html),
                headers: [("Cache-Control", "no-cache"), ("X-Frame-Options", "DENY")], document: true
            )
        case .script:
            guard let script else { return .text(.notFound, "Strophe.js not found at \(settings.stropheScript).\n") }
            return HTTPAnswer(
                status: .ok, contentType: "text/javascript; charset=utf-8", body: script,
                headers: [("Cache-Control", "max-age=3600")], document: true
            )
        }
    }

    /// The script's answer once it has been read (404 naming the path when it cannot be); the
    /// future never fails.
    static func scriptAnswer(settings: DemoSettings?, on eventLoop: any EventLoop) -> EventLoopFuture<HTTPAnswer> {
        Self.readScript(at: settings?.stropheScript ?? "", on: eventLoop).flatMapErrorThrowing { _ in nil }.map { script in
            Self.answer(.script, method: .GET, settings: settings, script: script)
        }
    }

    /// Reads the script on NIO's blocking-I/O pool, never on an event loop (a slow disk would
    /// stall every connection of that loop).
    static func readScript(at path: String, on eventLoop: any EventLoop) -> EventLoopFuture<ByteBuffer?> {
        NIOThreadPool.singleton.runIfActive(eventLoop: eventLoop) {
            FileManager.default.contents(atPath: path).map { ByteBuffer(bytes: $0) }
        }
    }
}
