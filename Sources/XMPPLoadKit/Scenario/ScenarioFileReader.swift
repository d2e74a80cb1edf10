import XMPPClientCore
import Yams

/// Walks the YAML tree: typed reads that fail with the key's path.
struct ScenarioFileReader {
    let file: String

    func error(_ node: ScenarioNode, _ message: String) -> ScenarioFileError {
        ScenarioFileError(file: self.file, line: node.line, key: node.path, message: message)
    }

    /// The mapping's entries; any key outside `allowed` is an error.
    func mapping(_ node: ScenarioNode, allowed: [String]) throws -> [String: ScenarioNode] {
        guard case .mapping(let mapping) = node.node else { throw self.error(node, "must be a mapping (key: value)") }
        var entries: [String: ScenarioNode] = [:]
        for (key, value) in mapping {
            guard case .scalar(let scalar) = key else { throw self.error(node, "keys must be plain names") }
            let name = scalar.string
            let child = node.child(name, value)
            guard allowed.contains(name) else {
                throw self.error(child, "unknown key (expected one of: \(allowed.joined(separator: ", ")))")
            }
            guard entries[name] == nil else { throw self.error(child, "is given twice") }
            entries[name] = child
        }
        return entries
    }

    func scalar(_ node: ScenarioNode) throws -> String {
        guard case .scalar(let scalar) = node.node else { throw self.error(node, "must be a single value") }
        return scalar.string
    }

    func string(_ node: ScenarioNode) throws -> String {
        try self.scalar(node)
    }

    func double(_ node: ScenarioNode) throws -> Double {
        let text = try self.scalar(node)
        guard let value = Double(text), value.isFinite else { throw self.error(node, "must be a number, not '\(text)'") }
        return value
    }

    func int(_ node: ScenarioNode) throws -> Int {
        let text = try self.scalar(node)
        guard let value = Int(text) else { throw self.error(node, "must be a whole number, not '\(text)'") }
        return value
    }

    func bool(_ node: ScenarioNode) throws -> Bool {
        switch try self.scalar(node).lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        case let text: throw self.error(node, "must be true or false, not '\(text)'")
        }
    }

    func endpoint(_ node: ScenarioNode) throws -> Endpoint {
        let text = try self.string(node)
        guard let endpoint = Endpoint(text) else { throw self.error(node, "must be an http://, ws:// or tcp:// URL, not '\(text)'") }
        return endpoint
    }

    func transport(_ node: ScenarioNode) throws -> LoadScenario.Transport {
        let text = try self.string(node)
        guard let transport = LoadScenario.Transport(rawValue: text.lowercased()) else {
            throw self.error(node, "must be bosh, websocket or tcp, not '\(text)'")
        }
        return transport
    }

    func sasl(_ node: ScenarioNode) throws -> SASLMechanism {
        let text = try self.string(node)
        guard let mechanism = SASLMechanism(rawValue: text.uppercased()) else { throw self.error(node, "must be PLAIN or SCRAM-SHA-1, not '\(text)'") }
        return mechanism
    }

    static let topKeys = [
        "url", "transport", "domain", "users", "password", "first-user", "sessions", "sasl", "duration", "drain", "resource", "logout",
        "bosh-wait", "bosh-request-timeout", "login-timeout", "threads", "stepped", "reference-rate", "p99-bound-ms", "populations",
    ]

    func scenario(_ root: ScenarioNode) throws -> LoadScenario {
        let top = try self.mapping(root, allowed: Self.topKeys)
        guard let populationsNode = top["populations"] else { throw self.error(root, "populations: missing (list at least one population)") }
        guard case .sequence(let sequence) = populationsNode.node, !sequence.isEmpty else {
            throw self.error(populationsNode, "must be a list of at least one population")
        }
        let defaults = PopulationDefaults(
            endpoint: try top["url"].map(self.endpoint),
            transport: try top["transport"].map(self.transport),
            sasl: try top["sasl"].map(self.sasl) ?? .plain,
            totalSessions: try top["sessions"].map(self.int)
        )
        if let total = defaults.totalSessions, total < 1, let node = top["sessions"] { throw self.error(node, "must be at least 1") }
        var populations: [Population] = []
        for (index, node) in sequence.enumerated() {
            let item = ScenarioNode(node: node, path: "\(populationsNode.path)[\(index)]")
            populations.append(try self.population(item, index: index, defaults: defaults))
        }
        var scenario = LoadScenario(populations: populations)
        if let node = top["domain"] { scenario.domain = try self.string(node) }
        if let node = top["users"] { scenario.userPattern = try self.string(node) }
        if let node = top["password"] { scenario.passwordPattern = try self.string(node) }
        if let node = top["first-user"] { scenario.firstUser = try self.int(node) }
        if let node = top["duration"] { scenario.duration = try self.double(node) }
        if let node = top["drain"] { scenario.drainSeconds = try self.double(node) }
        if let node = top["resource"] { scenario.resource = try self.string(node) }
        if let node = top["logout"] { scenario.logout = try self.bool(node) }
        if let node = top["bosh-wait"] { scenario.boshWait = try self.int(node) }
        scenario.boshRequestTimeout = try top["bosh-request-timeout"].map(self.double) ?? Double(scenario.boshWait) + 15
        if let node = top["login-timeout"] { scenario.loginTimeout = try self.double(node) }
        if let node = top["threads"] { scenario.threads = try self.int(node) }
        if let node = top["stepped"] {
            let text = try self.string(node)
            guard let stepped = LoadScenario.Stepped(text) else { throw self.error(node, "must be START:STEP:MAX with START > 0, STEP > 0, MAX ≥ START, not '\(text)'") }
            scenario.stepped = stepped
        }
        if let node = top["reference-rate"] { scenario.referenceRate = try self.double(node) }
        if let node = top["p99-bound-ms"] { scenario.p99BoundMilliseconds = try self.double(node) }
        return scenario
    }

    struct PopulationDefaults {
        var endpoint: Endpoint?
        var transport: LoadScenario.Transport?
        var sasl: SASLMechanism
        var totalSessions: Int?
    }

    static let populationKeys = ["name", "transport", "url", "sessions", "share", "arrival", "sasl", "behaviours", "slo"]

    func population(_ node: ScenarioNode, index: Int, defaults: PopulationDefaults) throws -> Population {
        let keys = try self.mapping(node, allowed: Self.populationKeys)
        let name = try keys["name"].map(self.string) ?? "population-\(index + 1)"
        guard let transport = try keys["transport"].map(self.transport) ?? defaults.transport else {
            throw self.error(node, "transport: missing (bosh, websocket or tcp, here or at the top)")
        }
        guard let endpoint = try keys["url"].map(self.endpoint) ?? defaults.endpoint else {
            throw self.error(node, "url: missing (here or at the top)")
        }
        guard let behavioursNode = keys["behaviours"] else { throw self.error(node, "behaviours: missing (list at least one: \(Self.behaviourNames))") }
        let behaviours = try self.behaviours(behavioursNode)
        let sessions: Int
        switch (keys["sessions"], keys["share"]) {
        case (let count?, nil):
            sessions = try self.int(count)
        case (nil, let shareNode?):
            let share = try self.double(shareNode)
            guard share > 0, share <= 1 else { throw self.error(shareNode, "must be more than 0 and at most 1") }
            guard let total = defaults.totalSessions else { throw self.error(shareNode, "a share needs the total: sessions at the top of the file") }
            var count = Int((share * Double(total)).rounded())
            // Chat goes in pairs: a share rounds down to an even number.
            if behaviours.contains(where: { $0.kind == .chat }) { count -= count % 2 }
            sessions = count
        case (_?, _?):
            throw self.error(node, "give sessions or share, not both")
        case (nil, nil):
            throw self.error(node, "sessions: missing (a count, or share: a fraction of the top-level sessions)")
        }
        let arrival = try keys["arrival"].map(self.arrival) ?? .constant(rate: 100, start: 0)
        return Population(
            name: name, transport: transport, endpoint: endpoint, sessions: sessions, arrival: arrival,
            saslMechanism: try keys["sasl"].map(self.sasl) ?? defaults.sasl, behaviours: behaviours,
            slo: try keys["slo"].map(self.slo) ?? .init()
        )
    }

    func arrival(_ node: ScenarioNode) throws -> Arrival {
        guard case .mapping(let mapping) = node.node, let processNode = mapping["process"] else {
            throw self.error(node, "must be a mapping with process: constant, ramp, poisson or burst")
        }
        let process = try self.string(node.child("process", processNode))
        switch process {
        case "constant":
            let keys = try self.mapping(node, allowed: ["process", "rate", "start"])
            return .constant(rate: try self.required(keys, "rate", in: node, self.double), start: try keys["start"].map(self.double) ?? 0)
        case "ramp":
            let keys = try self.mapping(node, allowed: ["process", "from", "to", "over", "start"])
            return .ramp(
                from: try keys["from"].map(self.double) ?? 0, to: try self.required(keys, "to", in: node, self.double),
                over: try self.required(keys, "over", in: node, self.double), start: try keys["start"].map(self.double) ?? 0
            )
        case "poisson":
            let keys = try self.mapping(node, allowed: ["process", "rate", "seed", "start"])
            let seed = try keys["seed"].map(self.int) ?? 1
            return .poisson(rate: try self.required(keys, "rate", in: node, self.double), seed: UInt64(bitPattern: Int64(seed)), start: try keys["start"].map(self.double) ?? 0)
        case "burst":
            let keys = try self.mapping(node, allowed: ["process", "at", "spread"])
            return .burst(at: try keys["at"].map(self.double) ?? 0, spread: try keys["spread"].map(self.double) ?? 0)
        default:
            throw self.error(node.child("process", processNode), "must be constant, ramp, poisson or burst, not '\(process)'")
        }
    }

    func required<T>(_ keys: [String: ScenarioNode], _ key: String, in node: ScenarioNode, _ read: (ScenarioNode) throws -> T) throws -> T {
        guard let value = keys[key] else { throw self.error(node, "\(key): missing") }
        return try read(value)
    }

    /// A list whose items are a behaviour's name alone (`- idle`) or a one-key mapping with its
    /// parameters (`- reload: {every: 30}`).
    func behaviours(_ node: ScenarioNode) throws -> [Behaviour] {
        guard case .sequence(let sequence) = node.node, !sequence.isEmpty else {
            throw self.error(node, "must be a list of at least one behaviour (\(Self.behaviourNames))")
        }
        var behaviours: [Behaviour] = []
        for (index, item) in sequence.enumerated() {
            let itemNode = ScenarioNode(node: item, path: "\(node.path)[\(index)]")
            let name: String
            let parameters: ScenarioNode?
            switch item {
            case .scalar(let scalar):
                name = scalar.string
                parameters = nil
            case .mapping(let mapping) where mapping.count == 1:
                let (key, value) = mapping[mapping.startIndex]
                name = key.string ?? ""
                parameters = itemNode.child(name, value)
            default:
                throw self.error(itemNode, "must be a behaviour name or a single name: {parameters} mapping")
            }
            behaviours.append(try self.behaviour(name, parameters, at: itemNode))
        }
        return behaviours
    }

    func behaviour(_ name: String, _ parameters: ScenarioNode?, at node: ScenarioNode) throws -> Behaviour {
        func keys(_ allowed: [String]) throws -> [String: ScenarioNode] {
            guard let parameters else { return [:] }
            // `- reload:` with nothing after it: every parameter at its default.
            if case .scalar(let scalar) = parameters.node, ["", "~", "null"].contains(scalar.string) { return [:] }
            return try self.mapping(parameters, allowed: allowed)
        }
        let at = parameters ?? node
        switch name {
        case "chat":
            let keys = try keys(["rate", "payload-bytes", "slo"])
            return .chat(
                .init(
                    rate: try self.required(keys, "rate", in: at, self.double), payloadBytes: try keys["payload-bytes"].map(self.int) ?? 0,
                    slo: try keys["slo"].map(self.slo) ?? .init()
                )
            )
        case "idle":
            let keys = try keys(["slo"])
            return .idle(.init(slo: try keys["slo"].map(self.slo) ?? .init()))
        case "reload":
            let keys = try keys(["every", "jitter", "gap", "retransmit", "slo"])
            return .reload(
                .init(
                    every: try self.required(keys, "every", in: at, self.double), jitter: try keys["jitter"].map(self.double) ?? 0,
                    gap: try keys["gap"].map(self.double) ?? 0.5, retransmit: try keys["retransmit"].map(self.bool) ?? false,
                    slo: try keys["slo"].map(self.slo) ?? .init()
                )
            )
        case "tab-close":
            let keys = try keys(["after", "jitter", "verify", "grace", "slo"])
            return .tabClose(
                .init(
                    after: try self.required(keys, "after", in: at, self.double), jitter: try keys["jitter"].map(self.double) ?? 0,
                    verify: try keys["verify"].map(self.bool) ?? true, grace: try keys["grace"].map(self.double) ?? 5,
                    slo: try keys["slo"].map(self.slo) ?? .init()
                )
            )
        case "suspend":
            let keys = try keys(["every", "jitter", "seconds", "announce", "slo"])
            return .suspend(
                .init(
                    every: try self.required(keys, "every", in: at, self.double), jitter: try keys["jitter"].map(self.double) ?? 0,
                    seconds: try self.required(keys, "seconds", in: at, self.double), announce: try keys["announce"].map(self.bool) ?? false,
                    slo: try keys["slo"].map(self.slo) ?? .init()
                )
            )
        case "flap":
            let keys = try keys(["every", "jitter", "unread", "slo"])
            return .flap(
                .init(
                    every: try self.required(keys, "every", in: at, self.double), jitter: try keys["jitter"].map(self.double) ?? 0,
                    unread: try keys["unread"].map(self.double) ?? 0.5, slo: try keys["slo"].map(self.slo) ?? .init()
                )
            )
        case "presence":
            let keys = try keys(["contacts", "every", "jitter", "slo"])
            return .presence(
                .init(
                    contacts: try self.required(keys, "contacts", in: at, self.int), every: try self.required(keys, "every", in: at, self.double),
                    jitter: try keys["jitter"].map(self.double) ?? 0, slo: try keys["slo"].map(self.slo) ?? .init()
                )
            )
        case "muc":
            let keys = try keys(["room-size", "rate", "payload-bytes", "service", "slo"])
            return .muc(
                .init(
                    roomSize: try self.required(keys, "room-size", in: at, self.int), rate: try self.required(keys, "rate", in: at, self.double),
                    payloadBytes: try keys["payload-bytes"].map(self.int) ?? 0, service: try keys["service"].map(self.string),
                    slo: try keys["slo"].map(self.slo) ?? .init()
                )
            )
        case "storm":
            let keys = try keys(["at", "within", "slo"])
            return .storm(
                .init(
                    at: try self.required(keys, "at", in: at, self.double), within: try keys["within"].map(self.double) ?? 0,
                    slo: try keys["slo"].map(self.slo) ?? .init()
                )
            )
        default:
            throw self.error(node, "unknown behaviour '\(name)' (expected one of: \(Self.behaviourNames))")
        }
    }

    static let behaviourNames = Behaviour.Kind.allCases.map(\.rawValue).joined(separator: ", ")

    func slo(_ node: ScenarioNode) throws -> ServiceLevelObjective {
        let keys = try self.mapping(node, allowed: ["p50-ms", "p99-ms", "min-success", "max-failures"])
        var slo = ServiceLevelObjective()
        slo.p50Milliseconds = try keys["p50-ms"].map(self.double)
        slo.p99Milliseconds = try keys["p99-ms"].map(self.double)
        slo.minSuccessRatio = try keys["min-success"].map(self.double)
        if let node = keys["max-failures"] {
            let value = try self.int(node)
            guard value >= 0 else { throw self.error(node, "must not be negative") }
            slo.maxFailures = UInt64(value)
        }
        return slo
    }
}
