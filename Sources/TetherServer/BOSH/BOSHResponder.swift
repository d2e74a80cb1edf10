import BOSHCore
import NIOCore
import Synchronization

/// Where a BOSH answer goes: the HTTP connection that carried the request, on its own event loop.
struct BOSHResponder: Sendable {
    /// Writes the answer; `delivered` tells whether it reached the connection (false when the
    /// connection was already gone, so the session can queue the payloads again).
    let write: @Sendable (BOSHHTTPResponse, _ delivered: @escaping @Sendable (Bool) -> Void) -> Void
    /// Drops the HTTP connection without an answer (XEP-0124 §19.1).
    let close: @Sendable () -> Void
    /// Tells the session when the connection closes before an answer was written.
    let connection: BOSHConnectionWatch

    init(
        connection: BOSHConnectionWatch = BOSHConnectionWatch(),
        write: @escaping @Sendable (BOSHHTTPResponse, _ delivered: @escaping @Sendable (Bool) -> Void) -> Void,
        close: @escaping @Sendable () -> Void
    ) {
        self.connection = connection
        self.write = write
        self.close = close
    }

    /// Writes the answer when nothing depends on whether it arrives.
    func respond(_ response: BOSHHTTPResponse) {
        self.write(response) { _ in }
    }
}

/// Lets the session that holds a request learn that its HTTP connection closed unanswered
/// (a page reload, a dropped connection), whichever of the two happens first.
final class BOSHConnectionWatch: Sendable {
    private enum State {
        case open((@Sendable () -> Void)?)
        case closed
        case answered
    }

    private let state = Mutex(State.open(nil))

    init() {}

    /// Runs `action` when the connection closes before an answer (at once if it already has).
    func onAbandoned(_ action: @escaping @Sendable () -> Void) {
        let closed = self.state.withLock { state -> Bool in
            switch state {
            case .open:
                state = .open(action)
                return false
            case .closed: return true
            case .answered: return false
            }
        }
        if closed { action() }
    }

    /// The answer is on its way: closing from now on is not an abandonment.
    func answered() {
        self.state.withLock { $0 = .answered }
    }

    /// The connection closed; runs the registered action if no answer was written.
    func closed() {
        let action = self.state.withLock { state -> (@Sendable () -> Void)? in
            guard case .open(let action) = state else { return nil }
            state = .closed
            return action
        }
        action?()
    }
}
