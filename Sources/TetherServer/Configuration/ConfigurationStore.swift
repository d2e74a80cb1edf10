import Synchronization

/// The configuration in effect, replaced as a whole on reload (SIGHUP). Everything that decides
/// per request or per new session reads it here, so a reload applies to what starts afterwards
/// and live sessions keep running under the rules they started with.
final class ConfigurationStore: Sendable {
    private let value: Mutex<TetherConfiguration>

    init(_ configuration: TetherConfiguration) {
        self.value = Mutex(configuration)
    }

    var current: TetherConfiguration {
        self.value.withLock { $0 }
    }

    func replace(with configuration: TetherConfiguration) {
        self.value.withLock { $0 = configuration }
    }
}
