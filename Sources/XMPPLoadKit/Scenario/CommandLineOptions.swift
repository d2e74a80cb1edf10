import XMPPClientCore

/// `tether-load run`'s options as given (nil: not on the command line), and how they become a
/// `LoadScenario`: either from the flags alone (`LoadScenario.init(transport:…)`, the same model
/// as a file) or from `--scenario FILE`, which only the flags that say nothing about the load
/// itself (`--threads`, `--server-pid`, `--upstream-pid`, `--part`, `--start-at`) may accompany.
public struct CommandLineOptions: Sendable, Hashable {
    public var scenarioFile: String?
    public var transport: String?
    public var url: String?
    public var domain: String?
    public var users: String?
    public var password: String?
    public var firstUser: Int?
    public var sessions: Int?
    public var idleSessions: Int?
    public var rampRate: Double?
    public var messageRate: Double?
    public var duration: Double?
    public var stepped: String?
    public var referenceRate: Double?
    public var p99BoundMilliseconds: Double?
    public var drain: Double?
    public var payloadBytes: Int?
    public var resource: String?
    public var sasl: String?
    public var noLogout = false
    public var boshWait: Int?
    public var loginTimeout: Double?
    public var threads: Int?
    public var serverPID: Int32?
    public var upstreamPID: Int32?
    /// `K/N`: this generator runs part K of N.
    public var part: String?
    /// Unix seconds at which arrivals begin.
    public var startAt: Double?

    public init() {}

    /// The flag names (as typed) of load options given beside `--scenario`.
    var loadFlagsGiven: [String] {
        var given: [String] = []
        func check(_ value: (some Any)?, _ name: String) { if value != nil { given.append(name) } }
        check(self.transport, "--transport")
        check(self.url, "--url")
        check(self.domain, "--domain")
        check(self.users, "--users")
        check(self.password, "--password")
        check(self.firstUser, "--first-user")
        check(self.sessions, "--sessions")
        check(self.idleSessions, "--idle-sessions")
        check(self.rampRate, "--ramp-rate")
        check(self.messageRate, "--message-rate")
        check(self.duration, "--duration")
        check(self.stepped, "--stepped")
        check(self.referenceRate, "--reference-rate")
        check(self.p99BoundMilliseconds, "--p99-bound-ms")
        check(self.drain, "--drain")
        check(self.payloadBytes, "--payload-bytes")
        check(self.resource, "--resource")
        check(self.sasl, "--sasl")
        if self.noLogout { given.append("--no-logout") }
        check(self.boshWait, "--bosh-wait")
        check(self.loginTimeout, "--login-timeout")
        return given
    }

    /// The scenario these options describe, validated; `defaultURL` stands in for a missing `--url`
    /// (the upstream stub's address). Errors are `CommandLineError`s or `ScenarioFileError`s.
    public func scenario(defaultURL: String? = nil) throws -> LoadScenario {
        var scenario: LoadScenario
        if let path = self.scenarioFile {
            if let flag = self.loadFlagsGiven.first {
                throw CommandLineError("\(flag) cannot be combined with --scenario: the file describes the load (see the README's scenario reference)")
            }
            scenario = try ScenarioFile.load(path: path)
        } else {
            scenario = try self.flagScenario(defaultURL: defaultURL)
        }
        if let threads = self.threads { scenario.threads = threads }
        if let pid = self.serverPID { scenario.serverPID = pid }
        if let pid = self.upstreamPID { scenario.upstreamPID = pid }
        if let text = self.part {
            guard let part = LoadPart(text) else { throw CommandLineError("--part must be K/N (this generator runs part K of N), not '\(text)'") }
            scenario.part = part
        }
        if let startAt = self.startAt { scenario.startAt = startAt }
        let problems = scenario.validate()
        guard problems.isEmpty else { throw CommandLineError(problems.joined(separator: "; ")) }
        return scenario
    }

    private func flagScenario(defaultURL: String?) throws -> LoadScenario {
        let transportName = self.transport ?? "bosh"
        guard let transport = LoadScenario.Transport(rawValue: transportName) else {
            throw CommandLineError("--transport must be bosh, websocket or tcp")
        }
        guard let text = self.url ?? defaultURL, let endpoint = Endpoint(text) else {
            throw CommandLineError("--url is missing or not http://, ws:// or tcp://")
        }
        guard let mechanism = SASLMechanism(rawValue: (self.sasl ?? "PLAIN").uppercased()) else {
            throw CommandLineError("--sasl must be PLAIN or SCRAM-SHA-1")
        }
        var stepped: LoadScenario.Stepped?
        if let text = self.stepped {
            guard let parsed = LoadScenario.Stepped(text) else {
                throw CommandLineError("--stepped must be START:STEP:MAX with START > 0, STEP > 0, MAX ≥ START")
            }
            stepped = parsed
        }
        let sessions = self.sessions ?? 2
        let idle = self.idleSessions ?? 0
        if idle < 0 || idle > sessions { throw CommandLineError("--idle-sessions must be between 0 and --sessions") }
        let rampRate = self.rampRate ?? 100
        if !(rampRate > 0) { throw CommandLineError("--ramp-rate must be positive") }
        if (self.messageRate ?? 0) < 0 { throw CommandLineError("--message-rate must not be negative") }
        if (self.payloadBytes ?? 0) < 0 { throw CommandLineError("--payload-bytes must not be negative") }
        let boshWait = self.boshWait ?? 30
        return LoadScenario(
            transport: transport, endpoint: endpoint, domain: self.domain ?? "localhost", userPattern: self.users ?? "user%d",
            passwordPattern: self.password ?? "pass%d", firstUser: self.firstUser ?? 1, sessions: sessions, idleSessions: idle,
            rampRate: rampRate, messageRate: self.messageRate ?? 10, duration: self.duration ?? 10, stepped: stepped,
            referenceRate: self.referenceRate, p99BoundMilliseconds: self.p99BoundMilliseconds ?? 100, drainSeconds: self.drain ?? 5,
            payloadBytes: self.payloadBytes ?? 0, resource: self.resource ?? "load", saslMechanism: mechanism, logout: !self.noLogout,
            boshWait: boshWait, boshRequestTimeout: Double(boshWait) + 15, loginTimeout: self.loginTimeout ?? 30
        )
    }
}
