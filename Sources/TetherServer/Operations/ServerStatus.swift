import Synchronization

/// Whether the server is draining (for `/readyz`); shared by every connection.
final class ServerStatus: Sendable {
    private let draining = Mutex(false)

    var isDraining: Bool { self.draining.withLock { $0 } }

    /// Marks the server draining; `false` if it already was.
    func beginDraining() -> Bool {
        self.draining.withLock { draining in
            defer { draining = true }
            return !draining
        }
    }
}
