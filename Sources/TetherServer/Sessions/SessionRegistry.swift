import NIOCore
import Synchronization

/// A live session as the registry sees it: where it runs, its state for `/metrics`, and how it
/// is told that the server is going away.
protocol RegisteredSession: Sendable {
    var eventLoop: any EventLoop { get }
    var stateCell: SessionStateCell { get }
    /// Called on `eventLoop`.
    func shutdown(redirect: String?)
}

/// The live sessions of one transport, by key: counted, found, and all told at shutdown.
final class SessionRegistry<Key: Hashable & Sendable, Session: RegisteredSession>: Sendable {
    private let sessions = Mutex<[Key: Session]>([:])

    init() {}

    var count: Int { self.sessions.withLock { $0.count } }

    /// Every live session's state, for the metrics scrape.
    var states: [SessionState] { self.sessions.withLock { $0.values.map(\.stateCell.state) } }

    subscript(key: Key) -> Session? { self.sessions.withLock { $0[key] } }

    func add(_ session: Session, for key: Key) {
        self.sessions.withLock { $0[key] = session }
    }

    /// The session that was registered under `key`, if any (so the caller releases it once).
    @discardableResult
    func remove(_ key: Key) -> Session? {
        self.sessions.withLock { $0.removeValue(forKey: key) }
    }

    /// Tells every session at once, each on its own event loop; returns when all have been told
    /// (one after another, 10,000 sessions took one hop each in turn).
    func shutdown(redirect: String?) async {
        let sessions = self.sessions.withLock { Array($0.values) }
        await withTaskGroup(of: Void.self) { group in
            for session in sessions {
                group.addTask {
                    try? await session.eventLoop.submit { session.shutdown(redirect: redirect) }.get()
                }
            }
        }
    }
}
