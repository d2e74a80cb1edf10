import Synchronization

/// Where a session is in its life, as `/metrics` reports it (`tether_sessions_by_state`).
enum SessionState: UInt8, CaseIterable, Sendable {
    /// Waiting for the client's stream to start or for the upstream stream to be negotiated.
    case connecting
    /// Relaying stanzas.
    case open
    /// Ended or ending: a BOSH verdict waiting for the client's next request, a WebSocket in its
    /// closing handshake.
    case closing

    var label: String {
        switch self {
        case .connecting: return "connecting"
        case .open: return "open"
        case .closing: return "closing"
        }
    }
}

/// A session's state, written on its event loop and read by the metrics scrape from any thread.
final class SessionStateCell: Sendable {
    private let value = Atomic<UInt8>(SessionState.connecting.rawValue)

    init() {}

    var state: SessionState {
        SessionState(rawValue: self.value.load(ordering: .relaxed)) ?? .connecting
    }

    func set(_ state: SessionState) {
        self.value.store(state.rawValue, ordering: .relaxed)
    }
}
