import Foundation

extension WebSocketTestClient {
    static let openTag = "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>"

    /// Open, SASL PLAIN, restart, and (unless resuming) bind + presence, as an RFC 7395 client.
    @discardableResult
    func login(user: String, password: String, resource: String = "ws", bind: Bool = true) async throws -> String? {
        try await self.send(Self.openTag)
        _ = try await self.receive(until: { $0.contains("<mechanisms") })
        let credentials = Data("\0\(user)\0\(password)".utf8).base64EncodedString()
        try await self.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>\(credentials)</auth>")
        let result = try await self.receive(until: { $0.hasPrefix("<success") || $0.hasPrefix("<failure") })
        guard result.last?.hasPrefix("<success") == true else { throw TestFailure("SASL failed: \(result)") }
        try await self.send(Self.openTag)
        _ = try await self.receive(until: { $0.contains("urn:ietf:params:xml:ns:xmpp-bind") })
        guard bind else { return nil }
        try await self.send("<iq xmlns='jabber:client' type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>\(resource)</resource></bind></iq>")
        let bound = try await self.receive(until: { $0.contains("bind1") })
        guard let jid = BOSHTestClient.text(of: "jid", in: bound.last ?? "") else { throw TestFailure("bind failed: \(bound)") }
        try await self.send("<presence xmlns='jabber:client'/>")
        return jid
    }
}
