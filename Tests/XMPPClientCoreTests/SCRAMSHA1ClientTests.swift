import Foundation
import Testing
import XMPPCore

@testable import XMPPClientCore

@Suite("SCRAM-SHA-1")
struct SCRAMSHA1ClientTests {
    /// RFC 5802 §5's example exchange.
    @Test("the RFC 5802 example: client-first, proof and server signature")
    func rfcExample() throws {
        var client = SCRAMSHA1Client(username: "user", password: "pencil", clientNonce: "fyko+d2lbbFgONRv9qkxdawL")
        #expect(client.clientFirst == "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL")
        let final = try client.clientFinal(serverFirst: "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096")
        #expect(final == "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=")
        try client.verify(serverFinal: "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=")
        #expect(throws: SCRAMSHA1Client.Failure.serverSignatureMismatch) { try client.verify(serverFinal: "v=AAAA") }
    }

    @Test("a server nonce that does not extend ours is refused")
    func nonceMismatch() {
        var client = SCRAMSHA1Client(username: "user", password: "pencil", clientNonce: "abc")
        #expect(throws: SCRAMSHA1Client.Failure.nonceMismatch) { try client.clientFinal(serverFirst: "r=xyz,s=QSXCR+Q6sek8bf92,i=4096") }
        #expect(throws: SCRAMSHA1Client.Failure.malformedChallenge) { try client.clientFinal(serverFirst: "r=abcd,i=4096") }
    }

    @Test("the login machine runs the SCRAM exchange when asked to")
    func machine() throws {
        var machine = XMPPLoginStateMachine(username: "user", password: "pencil", domain: "localhost", resource: "r", mechanisms: [.scramSHA1])
        _ = machine.connected()
        guard case .send(let auth) = machine.received(try serverElement(XMPPLoginStateMachineTests.plainFeatures)) else {
            Issue.record("no auth")
            return
        }
        #expect(auth.contains("mechanism='SCRAM-SHA-1'"))
        // The nonce is random: answer with one that extends it, and check a response comes back.
        let start = auth.range(of: "'>")!.upperBound
        let end = auth.range(of: "</auth>")!.lowerBound
        let first = String(decoding: Base64.decode(String(auth[start..<end]))!, as: UTF8.self)
        let nonce = String(first.split(separator: "r=").last!)
        let serverFirst = "r=\(nonce)server,s=QSXCR+Q6sek8bf92,i=64"
        let challenge = "<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>\(Base64.encode(Array(serverFirst.utf8)))</challenge>"
        guard case .send(let response) = machine.received(try serverElement(challenge)) else {
            Issue.record("no response")
            return
        }
        #expect(response.hasPrefix("<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"))
        // A success without the right server signature is refused.
        let forged = "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>\(Base64.encode(Array("v=AAAA".utf8)))</success>"
        #expect(machine.received(try serverElement(forged)) == .fail(ClientFailure(.protocolViolation, "scram-server-signature")))
    }
}
