import BOSHCore
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import Synchronization
import XMPPClientCore
import XMPPCore

/// `POST /prebind`: a web application's backend has Tether log a user in on a new BOSH session
/// (SASL PLAIN with the credentials or token it supplies, then resource binding) and gets back
/// `{jid, sid, rid}` for the browser to attach with (Strophe.js `attach()`, Converse.js `prebind_url`).
///
/// The login is an ordinary BOSH client played inside Tether, through the same session code as
/// every browser: the session it leaves behind is indistinguishable from one a browser created.
final class PrebindService: Sendable {
    struct Request: Decodable {
        var jid: String
        var password: String
        var resource: String?
    }

    struct Answer: Encodable {
        var jid: String
        var sid: String
        var rid: UInt64
    }

    private let store: ConfigurationStore
    private let bosh: BOSHService
    private let logger: Logger
    private var configuration: TetherConfiguration { self.store.current }

    init(store: ConfigurationStore, bosh: BOSHService, logger: Logger) {
        self.store = store
        self.bosh = bosh
        self.logger = logger
    }

    /// `Authorization: Bearer SECRET`, compared in constant time whatever the lengths (see `SecretComparison`).
    func authorizes(_ headers: HTTPHeaders, secret: String) -> Bool {
        guard let value = headers.first(name: "authorization"), value.lowercased().hasPrefix("bearer ") else { return false }
        let offered = value.dropFirst("bearer ".count).trimmingCharacters(in: .whitespaces)
        return SecretComparison.matches(offered, secret)
    }

    /// Runs the login; the answer is an HTTP status and a JSON body. Bounded by `timeout`.
    func handle(body: ByteBuffer, client: ClientOrigin, timeout: Duration) async -> (HTTPResponseStatus, ByteBuffer) {
        let request: Request
        do {
            request = try JSONDecoder().decode(Request.self, from: Data(body.readableBytesView))
        } catch {
            return Self.error(.badRequest, "bad-request", "expected JSON {\"jid\": \"user@domain\", \"password\": \"…\", \"resource\": \"…\" (optional)}")
        }
        guard let jid = Self.splitJID(request.jid) else {
            return Self.error(.badRequest, "bad-request", "jid must be user@domain or user@domain/resource")
        }
        let outcome = await Self.withTimeout(timeout) {
            await self.login(username: jid.local, domain: jid.domain, password: request.password, resource: jid.resource ?? request.resource, client: client)
        }
        switch outcome {
        case nil:
            self.logger.warning("prebind timed out", metadata: ["jid": "\(jid.local)@\(jid.domain)"])
            return Self.error(.gatewayTimeout, "timeout", "the XMPP server did not complete the login in time")
        case .success(let answer)?:
            self.logger.info("prebound session", metadata: ["jid": "\(answer.jid)", "sid": "\(answer.sid)", "client": "\(client.description)"])
            let encoded = (try? JSONEncoder().encode(answer)) ?? Data()
            return (.ok, ByteBuffer(bytes: encoded))
        case .failure(let failure)?:
            self.logger.notice("prebind failed", metadata: ["jid": "\(jid.local)@\(jid.domain)", "reason": "\(failure)"])
            switch (failure.kind, failure.condition) {
            case (.saslFailure, let condition):
                return Self.error(.forbidden, condition, "authentication failed: \(condition)")
            case (.boshTerminate, TerminateCondition.hostUnknown.rawValue):
                return Self.error(.notFound, failure.condition, "this Tether does not serve \(jid.domain)")
            case (.boshTerminate, TerminateCondition.policyViolation.rawValue):
                return Self.error(.tooManyRequests, failure.condition, "a session limit was reached")
            default:
                return Self.error(.badGateway, "login-failed", failure.key)
            }
        }
    }

    private func login(username: String, domain: String, password: String, resource: String?, client: ClientOrigin) async -> Result<Answer, ClientFailure> {
        // The same login the load generator plays; SCRAM-SHA-1 (mutual authentication) where the
        // server offers it. The browser that attaches sends its own initial presence.
        var machine = XMPPLoginStateMachine(
            username: username, password: password, domain: domain, resource: resource, mechanisms: [.scramSHA1, .plain], sendsInitialPresence: false)
        _ = machine.connected()
        // Random, and far enough below 2^53 that a long session never overflows (§14.1).
        var rid = UInt64.random(in: 1 << 20..<1 << 44)
        let wait = self.configuration.bosh.maxWait
        let creation =
            "<body xmlns='\(XMLNamespaces.httpBind)' xmlns:xmpp='\(XMLNamespaces.xbosh)' rid='\(rid)' to='\(XMLEscaping.escapeAttribute(domain))' xml:lang='en' wait='\(wait)' hold='1' ver='1.6' xmpp:version='1.0'/>"
        var answer = await self.exchange(creation, client: client)
        guard answer.type != "terminate", let sid = answer.sid else {
            return .failure(ClientFailure(.boshTerminate, answer.condition ?? "undefined-condition"))
        }
        let terminate = { (rid: UInt64) in "<body xmlns='\(XMLNamespaces.httpBind)' rid='\(rid)' sid='\(sid)' type='terminate'/>" }
        while true {
            var payloads: [String] = []
            var restart = false
            for element in answer.elements where !restart {
                switch machine.received(element) {
                case .send(let payload):
                    payloads.append(payload)
                case .restartStream:
                    // Whatever follows <success/> belongs to the old stream (RFC 6120 §6.4.6).
                    restart = true
                case .established(let jid, _):
                    // Nothing is held now: the browser's first request uses the next rid.
                    return .success(Answer(jid: jid, sid: sid, rid: rid + 1))
                case .fail(let failure):
                    if answer.type != "terminate" { _ = await self.exchange(terminate(rid + 1), client: client) }
                    return .failure(failure)
                case .openStream, .resumed, .closed, .none:
                    break
                }
            }
            if answer.type == "terminate" {
                return .failure(ClientFailure(.boshTerminate, answer.condition ?? "undefined-condition"))
            }
            rid += 1
            if Task.isCancelled {
                _ = await self.exchange(terminate(rid), client: client)
                return .failure(ClientFailure(.timeout, "login"))
            }
            let body: String
            if restart {
                body =
                    "<body xmlns='\(XMLNamespaces.httpBind)' xmlns:xmpp='\(XMLNamespaces.xbosh)' rid='\(rid)' sid='\(sid)' to='\(XMLEscaping.escapeAttribute(domain))' xml:lang='en' xmpp:restart='true'/>"
            } else {
                // With nothing to send this is an empty poll, held until the server says more.
                body = "<body xmlns='\(XMLNamespaces.httpBind)' rid='\(rid)' sid='\(sid)'>\(payloads.joined())</body>"
            }
            answer = await self.exchange(body, client: client)
        }
    }

    /// A BOSH answer as the login reads it: the body's attributes and its children as a stream's elements.
    private struct BOSHAnswer {
        var type: String?
        var condition: String?
        var sid: String?
        var elements: [XMLElementSlice] = []

        static let internalError = BOSHAnswer(type: "terminate", condition: TerminateCondition.internalServerError.rawValue)
    }

    /// One request through the BOSH service, as if it came over HTTP; its answer, framed as a
    /// browser's client would frame it.
    private func exchange(_ text: String, client: ClientOrigin) async -> BOSHAnswer {
        let limits = self.configuration.xmlLimits
        guard let request = try? BOSHRequest.parse(ByteBuffer(string: text), limits: limits) else { return .internalError }
        let response: BOSHHTTPResponse? = await withCheckedContinuation { continuation in
            let once = Mutex(false)
            let finish: @Sendable (BOSHHTTPResponse?) -> Void = { response in
                guard
                    once.withLock({ done in
                        defer { done = true }
                        return !done
                    })
                else { return }
                continuation.resume(returning: response)
            }
            self.bosh.handle(
                request, client: client,
                responder: BOSHResponder(
                    write: { response, delivered in
                        delivered(true)
                        finish(response)
                    },
                    close: { finish(nil) }
                ), on: nil)
        }
        guard let response, response.status == 200 else { return .internalError }
        let framer = XMLStreamFramer(limits: limits)
        guard let events = try? framer.feed(response.body) + framer.finish() else { return .internalError }
        var answer = BOSHAnswer()
        for event in events {
            switch event {
            case .rootOpened(let root):
                answer.type = root.attributes.value(of: "type")
                answer.condition = root.attributes.value(of: "condition")
                answer.sid = root.attributes.value(of: "sid")
            case .element(let element):
                answer.elements.append(element)
            case .rootClosed:
                break
            }
        }
        return answer
    }

    private static func splitJID(_ jid: String) -> (local: String, domain: String, resource: String?)? {
        let slash = jid.firstIndex(of: "/")
        let bare = slash.map { jid[..<$0] } ?? jid[...]
        let resource = slash.map { String(jid[jid.index(after: $0)...]) }
        let parts = bare.split(separator: "@", omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else { return nil }
        return (String(parts[0]), parts[1].lowercased(), resource?.isEmpty == true ? nil : resource)
    }

    private static func error(_ status: HTTPResponseStatus, _ code: String, _ detail: String) -> (HTTPResponseStatus, ByteBuffer) {
        let encoded = (try? JSONEncoder().encode(["error": code, "detail": detail])) ?? Data()
        return (status, ByteBuffer(bytes: encoded))
    }

    /// `operation`'s result, or nil when `timeout` passes first (the operation is then cancelled).
    private static func withTimeout<T: Sendable>(_ timeout: Duration, _ operation: @escaping @Sendable () async -> T) async -> T? {
        await withCheckedContinuation { (continuation: CheckedContinuation<T?, Never>) in
            let once = Mutex(false)
            let finish: @Sendable (T?) -> Void = { value in
                guard
                    once.withLock({ done in
                        defer { done = true }
                        return !done
                    })
                else { return }
                continuation.resume(returning: value)
            }
            let work = Task { await operation() }
            let timer = Task {
                try? await Task.sleep(for: timeout)
                guard !Task.isCancelled else { return }
                work.cancel()
                finish(nil)
            }
            Task {
                let value = await work.value
                timer.cancel()
                finish(value)
            }
        }
    }
}
