import XMPPClientCore

/// A group of sessions that share a transport, an arrival process and behaviours: "800 browsers
/// on BOSH that chat and reload", "200 WebSocket tabs that get closed".
public struct Population: Sendable, Codable, Hashable {
    public var name: String
    public var transport: LoadScenario.Transport
    public var endpoint: Endpoint
    public var sessions: Int
    public var arrival: Arrival
    public var saslMechanism: SASLMechanism
    public var behaviours: [Behaviour]
    /// Bounds on login: `p99Milliseconds` of the whole login, `maxFailures` sessions that never
    /// logged in (none when unset).
    public var slo: ServiceLevelObjective

    public init(
        name: String, transport: LoadScenario.Transport, endpoint: Endpoint, sessions: Int, arrival: Arrival,
        saslMechanism: SASLMechanism = .plain, behaviours: [Behaviour], slo: ServiceLevelObjective = .init()
    ) {
        self.name = name
        self.transport = transport
        self.endpoint = endpoint
        self.sessions = sessions
        self.arrival = arrival
        self.saslMechanism = saslMechanism
        self.behaviours = behaviours
        self.slo = slo
    }

    public var chat: Behaviour.Chat? {
        for case .chat(let chat) in self.behaviours { return chat }
        return nil
    }

    public var reload: Behaviour.Reload? {
        for case .reload(let reload) in self.behaviours { return reload }
        return nil
    }

    public var tabClose: Behaviour.TabClose? {
        for case .tabClose(let tabClose) in self.behaviours { return tabClose }
        return nil
    }

    /// Checks the population on its own; each problem names its key relative to the population.
    func problems() -> [(key: String, message: String)] {
        var problems: [(String, String)] = []
        if self.name.isEmpty { problems.append(("name", "must not be empty")) }
        if self.sessions < 1 { problems.append(("sessions", "must be at least 1")) }
        problems += self.arrival.problems().map { ("arrival.\($0.key)", $0.message) }
        switch (self.transport, self.endpoint.scheme) {
        case (.bosh, .http), (.websocket, .ws), (.tcp, .tcp): break
        default: problems.append(("url", "transport \(self.transport.rawValue) does not go with a \(self.endpoint.scheme.rawValue):// endpoint"))
        }
        if self.behaviours.isEmpty { problems.append(("behaviours", "list at least one (chat, idle, reload, tab-close)")) }
        let kinds = self.behaviours.map(\.kind)
        for kind in Set(kinds) where kinds.count(where: { $0 == kind }) > 1 {
            problems.append(("behaviours", "\(kind.rawValue) is listed twice"))
        }
        let set = Set(kinds)
        if set.contains(.chat), set.contains(.idle) { problems.append(("behaviours", "chat and idle exclude each other: put idle sessions in a population of their own")) }
        if set.contains(.tabClose), !set.isSubset(of: [.tabClose, .idle]) {
            problems.append(("behaviours", "tab-close goes only with idle: a closed tab takes no further part (put it in a population of its own)"))
        }
        if self.transport == .tcp {
            for kind in [Behaviour.Kind.reload, .tabClose] where set.contains(kind) {
                problems.append(("behaviours", "\(kind.rawValue) is a browser behaviour: it needs transport bosh or websocket"))
            }
        }
        for behaviour in self.behaviours {
            let key = "behaviours.\(behaviour.kind.rawValue)"
            switch behaviour {
            case .chat(let chat):
                if !(chat.rate >= 0) { problems.append(("\(key).rate", "must not be negative")) }
                if chat.payloadBytes < 0 { problems.append(("\(key).payload-bytes", "must not be negative")) }
                if self.sessions % 2 != 0 { problems.append(("sessions", "chat goes in pairs: needs an even number of sessions, not \(self.sessions)")) }
            case .idle:
                break
            case .reload(let reload):
                if !(reload.every > 0) { problems.append(("\(key).every", "must be positive")) }
                if !(reload.jitter >= 0) || !(reload.jitter < reload.every) { problems.append(("\(key).jitter", "must be at least 0 and less than every")) }
                if !(reload.gap >= 0) { problems.append(("\(key).gap", "must not be negative")) }
            case .tabClose(let tabClose):
                if !(tabClose.after >= 0) { problems.append(("\(key).after", "must not be negative")) }
                if !(tabClose.jitter >= 0) { problems.append(("\(key).jitter", "must not be negative")) }
                if !(tabClose.grace >= 0) { problems.append(("\(key).grace", "must not be negative")) }
            }
            problems += Self.sloProblems(behaviour.slo).map { ("\(key).slo.\($0.key)", $0.message) }
        }
        problems += Self.sloProblems(self.slo).map { ("slo.\($0.key)", $0.message) }
        return problems
    }

    static func sloProblems(_ slo: ServiceLevelObjective) -> [(key: String, message: String)] {
        var problems: [(String, String)] = []
        if let value = slo.p50Milliseconds, !(value > 0) { problems.append(("p50-ms", "must be positive")) }
        if let value = slo.p99Milliseconds, !(value > 0) { problems.append(("p99-ms", "must be positive")) }
        if let value = slo.minSuccessRatio, !(0...1).contains(value) { problems.append(("min-success", "must be between 0 and 1")) }
        return problems
    }
}
