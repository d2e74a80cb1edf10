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

    public var suspend: Behaviour.Suspend? {
        for case .suspend(let suspend) in self.behaviours { return suspend }
        return nil
    }

    public var flap: Behaviour.Flap? {
        for case .flap(let flap) in self.behaviours { return flap }
        return nil
    }

    public var storm: Behaviour.Storm? {
        for case .storm(let storm) in self.behaviours { return storm }
        return nil
    }

    /// The page behaviours, which `PageLifecycleStateMachine` drives.
    public var hasPageBehaviour: Bool {
        self.behaviours.contains { [.reload, .tabClose, .suspend, .flap, .storm].contains($0.kind) }
    }

    public var presence: Behaviour.Presence? {
        for case .presence(let presence) in self.behaviours { return presence }
        return nil
    }

    public var muc: Behaviour.Muc? {
        for case .muc(let muc) in self.behaviours { return muc }
        return nil
    }

    /// Sessions per group (roster group or room) of a presence or muc population.
    public var groupSize: Int? { self.behaviours.lazy.compactMap(\.groupSize).first }

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
        if self.behaviours.isEmpty { problems.append(("behaviours", "list at least one (\(Behaviour.Kind.allCases.map(\.rawValue).joined(separator: ", ")))")) }
        let kinds = self.behaviours.map(\.kind)
        for kind in Set(kinds) where kinds.count(where: { $0 == kind }) > 1 {
            problems.append(("behaviours", "\(kind.rawValue) is listed twice"))
        }
        let set = Set(kinds)
        if set.contains(.chat), set.contains(.idle) { problems.append(("behaviours", "chat and idle exclude each other: put idle sessions in a population of their own")) }
        if set.contains(.tabClose), !set.isSubset(of: [.tabClose, .idle]) {
            problems.append(("behaviours", "tab-close goes only with idle: a closed tab takes no further part (put it in a population of its own)"))
        }
        if set.contains(.storm), !set.isSubset(of: [.storm, .idle]) {
            problems.append(("behaviours", "storm goes only with idle: messages to a session that drops without resumption are lost by design (put it in a population of its own)"))
        }
        for kind in [Behaviour.Kind.presence, .muc] where set.contains(kind) && set.count > 1 {
            problems.append(("behaviours", "\(kind.rawValue) goes alone: put other behaviours in a population of their own"))
        }
        if self.transport == .tcp {
            for kind in [Behaviour.Kind.reload, .tabClose, .suspend, .flap, .storm] where set.contains(kind) {
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
                problems += Self.everyProblems(reload.every, reload.jitter, key: key)
                if !(reload.gap >= 0) { problems.append(("\(key).gap", "must not be negative")) }
            case .tabClose(let tabClose):
                if !(tabClose.after >= 0) { problems.append(("\(key).after", "must not be negative")) }
                if !(tabClose.jitter >= 0) { problems.append(("\(key).jitter", "must not be negative")) }
                if !(tabClose.grace >= 0) { problems.append(("\(key).grace", "must not be negative")) }
            case .suspend(let suspend):
                problems += Self.everyProblems(suspend.every, suspend.jitter, key: key)
                if !(suspend.seconds > 0) { problems.append(("\(key).seconds", "must be positive")) }
                if suspend.announce, self.transport != .bosh { problems.append(("\(key).announce", "is BOSH's pause (XEP-0124 §10): needs transport bosh")) }
            case .flap(let flap):
                problems += Self.everyProblems(flap.every, flap.jitter, key: key)
                if !(flap.unread >= 0) { problems.append(("\(key).unread", "must not be negative")) }
            case .presence(let presence):
                if presence.contacts < 1 { problems.append(("\(key).contacts", "must be at least 1")) }
                problems += Self.everyProblems(presence.every, presence.jitter, key: key)
                if presence.contacts >= 1, self.sessions % (presence.contacts + 1) != 0 {
                    problems.append(("sessions", "presence groups users in rosters of contacts + 1 = \(presence.contacts + 1): \(self.sessions) is not a multiple"))
                }
            case .muc(let muc):
                if muc.roomSize < 2 { problems.append(("\(key).room-size", "must be at least 2")) }
                if !(muc.rate >= 0) { problems.append(("\(key).rate", "must not be negative")) }
                if muc.payloadBytes < 0 { problems.append(("\(key).payload-bytes", "must not be negative")) }
                if muc.roomSize >= 2, self.sessions % muc.roomSize != 0 {
                    problems.append(("sessions", "muc fills rooms of \(muc.roomSize): \(self.sessions) is not a multiple"))
                }
            case .storm(let storm):
                if !(storm.at >= 0) { problems.append(("\(key).at", "must not be negative")) }
                if !(storm.within >= 0) { problems.append(("\(key).within", "must not be negative")) }
            }
            problems += Self.sloProblems(behaviour.slo).map { ("\(key).slo.\($0.key)", $0.message) }
        }
        problems += Self.sloProblems(self.slo).map { ("slo.\($0.key)", $0.message) }
        return problems
    }

    static func everyProblems(_ every: Double, _ jitter: Double, key: String) -> [(key: String, message: String)] {
        var problems: [(String, String)] = []
        if !(every > 0) { problems.append(("\(key).every", "must be positive")) }
        if !(jitter >= 0) || !(jitter < every) { problems.append(("\(key).jitter", "must be at least 0 and less than every")) }
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
