import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization
import TetherServer
import XMPPUpstream

/// A Tether running in this process on a free loopback port, in front of a real upstream.
struct TetherFixture {
    let server: TetherServer
    let port: Int
    /// Every bound port: the `listen` ones, then the `listenTLS` ones.
    let ports: [Int]
    let logs: LogCapture
    var boshURL: String { "http://127.0.0.1:\(self.port)/http-bind" }

    /// A configuration that routes `localhost` to the given c2s port, TLS off (loopback).
    static func configuration(c2sPort: Int, domain: String = "localhost") -> TetherConfiguration {
        var configuration = TetherConfiguration()
        configuration.listen = [UpstreamRoute(host: "127.0.0.1", port: 0)]
        configuration.upstream.routes = [domain: UpstreamRoute(host: "127.0.0.1", port: c2sPort)]
        configuration.upstream.srvResolver = nil
        configuration.upstream.tlsContext = try! NIOSSLContext(configuration: .makeClientConfiguration())
        configuration.shutdownGracePeriod = .seconds(2)
        // Every test client comes from 127.0.0.1: the per-address limits are set per test where they are the subject.
        configuration.maxSessionsPerAddress = 10_000
        configuration.newSessionsPerSecondPerAddress = 10_000
        configuration.newSessionBurstPerAddress = 10_000
        return configuration
    }

    static func start(_ configuration: TetherConfiguration) async throws -> TetherFixture {
        let capture = LogCapture()
        let printed = ProcessInfo.processInfo.environment["TETHER_TEST_LOG"].flatMap { Logger.Level(rawValue: $0) }
        let logger = Logger(label: "tether-test") { label in
            var handlers: [any LogHandler] = [capture]
            if let printed {
                var stream = StreamLogHandler.standardError(label: label)
                stream.logLevel = printed
                handlers.append(stream)
            }
            return MultiplexLogHandler(handlers)
        }
        let server = TetherServer(configuration: configuration, logger: logger)
        let addresses = try await server.start()
        guard let port = addresses.first?.port else { throw TestFailure("no bound port") }
        return TetherFixture(server: server, port: port, ports: addresses.compactMap(\.port), logs: capture)
    }
}

/// Runs `body` with a Tether and an HTTP client, and always shuts both down.
func withTether<T>(
    _ configuration: TetherConfiguration,
    _ body: (TetherFixture, HTTPClient) async throws -> T
) async throws -> T {
    let tether = try await TetherFixture.start(configuration)
    let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(timeout: .init(connect: .seconds(30))))
    do {
        let result = try await body(tether, http)
        try await http.shutdown()
        await tether.server.shutdown()
        return result
    } catch {
        // What this in-process Tether logged (info and up), for failures that show only here.
        print("in-process tether log tail (\(error)):\n" + tether.logs.all.suffix(80).joined(separator: "\n"))
        try? await http.shutdown()
        await tether.server.shutdown()
        throw error
    }
}

/// Keeps Tether's log lines (info and above) so tests can assert what operators would see.
/// A value type like every log handler; the lines live in shared storage.
struct LogCapture: LogHandler {
    final class Storage: Sendable {
        let lines = Mutex<[String]>([])
    }

    let storage = Storage()
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .info

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.metadata[key] }
        set { self.metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let merged = self.metadata.merging(event.metadata ?? [:]) { $1 }
        let fields = merged.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        self.storage.lines.withLock { $0.append("\(event.level) \(event.message) \(fields)") }
    }

    var all: [String] { self.storage.lines.withLock { $0 } }
}
