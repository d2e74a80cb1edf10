import AsyncHTTPClient
import Foundation
import NIOSSL
import TetherServer

/// How a test reaches Tether: directly over plain HTTP/WS, through the shipped nginx
/// configuration over HTTPS/WSS, or on Tether's own TLS listener (`--listen-tls`, a throwaway
/// CA): BOSH over HTTP/2 (ALPN `h2`), WebSocket over TLS. Protocol tests run all three ways.
enum Edge: String, CaseIterable, Sendable, CustomStringConvertible {
    case direct
    case nginx
    case tls
    var description: String { self.rawValue }
}

/// The URLs and clients of one test's Tether, whichever edge is in front.
struct Endpoints {
    let prosody: ProsodyServer
    let tether: TetherFixture
    let http: HTTPClient
    let boshURL: String
    let webSocketPort: Int
    let tls: NIOSSLContext?

    func webSocket(offerCompression: Bool = false, answersPings: Bool = true) async throws -> WebSocketTestClient {
        try await WebSocketTestClient.connect(port: self.webSocketPort, answersPings: answersPings, offerCompression: offerCompression, tls: self.tls)
    }

    func bosh() -> BOSHTestClient {
        BOSHTestClient(http: self.http, url: self.boshURL)
    }
}

/// Prosody (users alice and bob), Tether, and nginx when asked; all stopped afterwards.
func withEndpoints(
    _ edge: Edge,
    prosody options: ProsodyServer.Options = .init(),
    users: [String] = ["alice", "bob"],
    _ body: (Endpoints) async throws -> Void,
    configure: (inout TetherConfiguration, ProsodyServer) -> Void = { _, _ in }
) async throws {
    let certificates = edge == .tls ? try await EdgeTLSTests.Certificates.make() : nil
    defer { certificates.map { try? FileManager.default.removeItem(at: $0.directory) } }
    try await withProsodyAndTether(prosody: options, users: users) { prosody, tether, http in
        switch edge {
        case .direct:
            try await body(Endpoints(prosody: prosody, tether: tether, http: http, boshURL: tether.boshURL, webSocketPort: tether.port, tls: nil))
        case .nginx:
            try await NginxTests.withNginx(tetherPorts: [tether.port]) { nginx, https, tls in
                try await body(
                    Endpoints(prosody: prosody, tether: tether, http: https, boshURL: "https://localhost:\(nginx.port)/http-bind", webSocketPort: nginx.port, tls: tls)
                )
            }
        case .tls:
            guard let certificates, let tlsPort = tether.ports.last, tether.ports.count == 2 else { throw TestFailure("no TLS listener: \(tether.ports)") }
            var client = HTTPClient.Configuration(tlsConfiguration: try certificates.clientTLS())
            client.httpVersion = .automatic
            let https = HTTPClient(eventLoopGroupProvider: .singleton, configuration: client)
            do {
                try await body(
                    Endpoints(
                        prosody: prosody, tether: tether, http: https, boshURL: "https://localhost:\(tlsPort)/http-bind", webSocketPort: tlsPort,
                        tls: try NIOSSLContext(configuration: certificates.clientTLS())))
                try await https.shutdown()
            } catch {
                try? await https.shutdown()
                throw error
            }
        }
    } configure: { configuration, prosody in
        if let certificates { try! EdgeTLSTests.configure(&configuration, certificates) }
        configure(&configuration, prosody)
    }
}
