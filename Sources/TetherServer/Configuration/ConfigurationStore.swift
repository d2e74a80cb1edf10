import Synchronization
import XMPPUpstream

/// The configuration in effect, replaced as a whole on reload (SIGHUP). Everything that decides
/// per request or per new session reads it here, so a reload applies to what starts afterwards
/// and live sessions keep running under the rules they started with.
final class ConfigurationStore: Sendable {
    private let value: Mutex<TetherConfiguration>
    /// Put into every configuration stored (the server's metrics), so a reload keeps it.
    private let upstreamTLSHandshakeObserver: (@Sendable (UpstreamTLSHandshake) -> Void)?

    init(_ configuration: TetherConfiguration, upstreamTLSHandshakeObserver: (@Sendable (UpstreamTLSHandshake) -> Void)? = nil) {
        self.upstreamTLSHandshakeObserver = upstreamTLSHandshakeObserver
        var configuration = configuration
        if let observer = upstreamTLSHandshakeObserver { configuration.upstream.tlsHandshakeObserver = observer }
        self.value = Mutex(configuration)
    }

    var current: TetherConfiguration {
        self.value.withLock { $0 }
    }

    func replace(with configuration: TetherConfiguration) {
        var configuration = configuration
        if let observer = self.upstreamTLSHandshakeObserver { configuration.upstream.tlsHandshakeObserver = observer }
        self.value.withLock { $0 = configuration }
    }
}
