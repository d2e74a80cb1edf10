import Synchronization

/// The configuration in effect, replaced as a whole on reload (SIGHUP). Everything that decides
/// per request or per new session reads it here, so a reload applies to what starts afterwards
/// and live sessions keep running under the rules they started with.
final class ConfigurationStore: Sendable {
    /// One configuration, shared by reference: a connection keeps a word for it instead of a
    /// copy of the whole struct (hundreds of bytes per idle connection, and a copy of every
    /// reference it holds per request).
    final class Snapshot: Sendable {
        let value: TetherConfiguration

        init(_ value: TetherConfiguration) {
            self.value = value
        }
    }

    private let value: Mutex<Snapshot>

    init(_ configuration: TetherConfiguration) {
        self.value = Mutex(Snapshot(configuration))
    }

    var current: TetherConfiguration {
        self.snapshot.value
    }

    var snapshot: Snapshot {
        self.value.withLock { $0 }
    }

    func replace(with configuration: TetherConfiguration) {
        let snapshot = Snapshot(configuration)
        self.value.withLock { $0 = snapshot }
    }
}
