import BOSHCore
import NIOCore
import Testing
import XMPPCore
import XMPPUpstream

@testable import TetherServer

/// `TetherConfiguration.validate()`: the one place every value is checked, whether the
/// configuration came from the command line, a file, or code.
@Suite("Configuration validation")
struct ConfigurationValidationTests {
    static func valid() -> TetherConfiguration {
        var configuration = TetherConfiguration()
        configuration.domains = ["example.org"]
        return configuration
    }

    static let invalid: [(change: @Sendable (inout TetherConfiguration) -> Void, message: String)] = [
        ({ $0.domains = [] }, "no domain to serve: give --route, --domain or --open-domains"),
        ({ $0.upstream.connectTimeout = .zero }, "--connect-timeout must be greater than 0"),
        ({ $0.upstream.connectionAttemptDelay = .milliseconds(5) }, "--connection-attempt-delay must be 10 to 2000 milliseconds (RFC 8305 §5), not 5"),
        ({ $0.bosh.maxWait = -1 }, "--bosh-max-wait must not be negative"),
        ({ $0.bosh.inactivity = 0 }, "--bosh-max-inactivity must be greater than 0"),
        ({ $0.webSocket.closeTimeout = .zero }, "--websocket-close-timeout must be greater than 0"),
        ({ $0.maxSessions = 0 }, "--max-sessions must be greater than 0"),
        ({ $0.newSessionsPerSecondPerAddress = -1 }, "--max-new-sessions-per-second must not be negative"),
        ({ $0.xmlLimits.maxDepth = 0 }, "--max-xml-depth must be greater than 0"),
        ({ $0.maxQueuedBytesToClient = 0 }, "--max-queued-bytes-to-client must be greater than 0"),
        ({ $0.webSocket.maxQueuedBytes = 0 }, "--max-queued-bytes-to-client must be greater than 0"),
        ({ $0.upstream.slowReaderTimeout = .zero }, "--slow-reader-timeout must be greater than 0"),
        ({ $0.xmlLimits.maxElementBytes = Int(UInt32.max) }, "--max-stanza-bytes must be at most \(Int(UInt32.max) - 65536)"),
        ({ $0.upstream.framerLimits.maxDepth = 99 }, "the upstream framer's limits must be --max-stanza-bytes and --max-xml-depth (set xmlLimits, not upstream.framerLimits)"),
        ({ $0.listenTLS = [UpstreamRoute(host: "127.0.0.1", port: 0)] }, "--listen-tls needs --tls-certificate and --tls-key"),
        ({ $0.slowReaderTimeout = .zero }, "--slow-reader-timeout must be greater than 0"),
        ({ $0.shutdownGracePeriod = .seconds(-1) }, "--shutdown-grace must not be negative"),
        ({ $0.nodeID = "node 1" }, "--node-id 'node 1' may use only letters, digits, '-' and '_'"),
        ({ $0.prebind = PrebindSettings(secret: "short") }, "the prebind secret must be at least 16 characters"),
        (
            { $0.hostMeta = HostMetaSettings(boshURL: "http://example.org/http-bind") },
            "--host-meta-bosh-url must be an https:// URL (XEP-0156 §2.2), not 'http://example.org/http-bind'"
        ),
        (
            { $0.hostMeta = HostMetaSettings(webSocketURL: "ws://example.org/xmpp-websocket") },
            "--host-meta-websocket-url must be a wss:// URL (XEP-0156 §2.2), not 'ws://example.org/xmpp-websocket'"
        ),
    ]

    @Test("the defaults with a domain validate; each value Tether cannot run with is refused, named by its option", arguments: 0..<Self.invalid.count)
    func refusals(index: Int) {
        #expect(throws: Never.self) { try Self.valid().validate() }
        var configuration = Self.valid()
        Self.invalid[index].change(&configuration)
        #expect(throws: ConfigurationError(Self.invalid[index].message)) { try configuration.validate() }
    }

    @Test("one setting per limit: the stanza limits reach the upstream framer, the client queue limit and the slow-reader timeout reach both transports")
    func oneSourcePerLimit() {
        var configuration = Self.valid()
        configuration.xmlLimits = .init(maxElementBytes: 4096, maxDepth: 9)
        configuration.maxQueuedBytesToClient = 12_345
        configuration.slowReaderTimeout = .seconds(7)
        #expect(configuration.upstream.framerLimits == .init(maxElementBytes: 4096, maxDepth: 9))
        #expect(configuration.bosh.maxQueuedBytes == 12_345 && configuration.webSocket.maxQueuedBytes == 12_345)
        #expect(configuration.webSocket.slowReaderTimeout == .seconds(7) && configuration.upstream.slowReaderTimeout == .seconds(7))
    }

    @Test("a server built in code with a configuration that does not validate refuses to start, and a reload with one is refused whole")
    func serverRefuses() async throws {
        var broken = Self.valid()
        broken.bosh.inactivity = 0
        broken.listen = [UpstreamRoute(host: "127.0.0.1", port: 0)]
        let server = TetherServer(configuration: broken)
        await #expect(throws: ConfigurationError("--bosh-max-inactivity must be greater than 0")) { try await server.start() }

        var good = Self.valid()
        good.listen = [UpstreamRoute(host: "127.0.0.1", port: 0)]
        let running = TetherServer(configuration: good)
        #expect(throws: ConfigurationError("no domain to serve: give --route, --domain or --open-domains")) {
            var empty = good
            empty.domains = []
            try running.reload(empty)
        }
        #expect(running.configuration.domains == ["example.org"], "the running configuration stays")
    }
}
