import Foundation
import XMPPClientCore

/// Everything a load run does, as one value: who logs in (populations), where, how they arrive,
/// what they do, and for how long.
///
/// A scenario file (`ScenarioFile`) and the command line (`CommandLineOptions`) both build one;
/// tests build them directly.
public struct LoadScenario: Sendable, Codable, Hashable {
    /// How the simulated clients reach the server.
    public enum Transport: String, Sendable, Codable, Hashable, CaseIterable {
        /// XEP-0124/XEP-0206 over HTTP/1.1 keep-alive connections.
        case bosh
        /// RFC 7395 XMPP over WebSocket (subprotocol `xmpp`).
        case websocket
        /// A plain RFC 6120 client-to-server stream (no TLS): the reference.
        case tcp
    }

    /// A stepped run: one step per rate from `start` to `max` by `step`, each lasting `duration` seconds.
    public struct Stepped: Sendable, Codable, Hashable {
        public var start: Double
        public var step: Double
        public var max: Double

        public init(start: Double, step: Double, max: Double) {
            self.start = start
            self.step = step
            self.max = max
        }

        /// Parses `START:STEP:MAX` (messages per second).
        public init?(_ text: String) {
            let parts = text.split(separator: ":").compactMap { Double($0) }
            guard parts.count == 3, parts[0] > 0, parts[1] > 0, parts[2] >= parts[0] else { return nil }
            self.init(start: parts[0], step: parts[1], max: parts[2])
        }

        /// The rates of the steps, in order.
        public var rates: [Double] {
            var rates: [Double] = []
            var rate = self.start
            while rate <= self.max + 1e-9 {
                rates.append(rate)
                rate += self.step
            }
            return rates
        }
    }

    /// The XMPP domain (`to` of the stream, domain part of the JIDs).
    public var domain: String
    /// Users: `%d` is replaced by the user's number (`user%d` → `user1`, `user2`, …). Populations
    /// take consecutive numbers in the order listed, from `firstUser` on.
    public var userPattern: String
    /// Passwords: `%d` is replaced by the user's number.
    public var passwordPattern: String
    public var firstUser: Int
    /// Who logs in, how they arrive and what they do.
    public var populations: [Population]
    /// Seconds of the behaviours (message exchange, reloads, …; per step when `stepped` is set).
    public var duration: Double
    /// A stepped run: the chat rate of every population is scaled so that all chat together goes
    /// through these rates.
    public var stepped: Stepped?
    /// With `stepped`: a first step at this rate, reported like the others but left out of the knee
    /// search (a fixed-rate reference point, e.g. CPU per message at 1000 msg/s, whatever the knee).
    public var referenceRate: Double?
    /// The latency bound of a stepped run: the knee is the highest rate whose p99 stays under it.
    public var p99BoundMilliseconds: Double
    /// How long to wait for messages still in flight after sending stops, before counting them lost.
    public var drainSeconds: Double
    /// Resource asked for at bind.
    public var resource: String
    /// Log out cleanly at the end (unavailable presence, then close/terminate).
    public var logout: Bool
    /// BOSH `wait` (seconds the server may hold a request).
    public var boshWait: Int
    /// Seconds without a response after which a BOSH request is taken as lost and sent again.
    public var boshRequestTimeout: Double
    /// Seconds a session may take to log in before it counts as failed.
    public var loginTimeout: Double
    /// Event-loop threads of the load generator.
    public var threads: Int
    /// PID of the server process whose RSS is sampled, if any.
    public var serverPID: Int32?
    /// PID of the server behind the measured one (the XMPP server behind Tether), whose CPU per
    /// step is read alongside, if any.
    public var upstreamPID: Int32?
    /// This generator runs one part of the scenario (`--part K/N`); nil: all of it.
    public var part: LoadPart?
    /// Arrivals begin at this wall-clock time (Unix seconds, `--start-at`), so that the parts
    /// of a distributed run start together; nil: at once.
    public var startAt: Double?

    public init(
        domain: String = "localhost",
        userPattern: String = "user%d",
        passwordPattern: String = "pass%d",
        firstUser: Int = 1,
        populations: [Population],
        duration: Double = 10,
        stepped: Stepped? = nil,
        referenceRate: Double? = nil,
        p99BoundMilliseconds: Double = 100,
        drainSeconds: Double = 5,
        resource: String = "load",
        logout: Bool = true,
        boshWait: Int = 30,
        boshRequestTimeout: Double = 45,
        loginTimeout: Double = 30,
        threads: Int = 1,
        serverPID: Int32? = nil,
        upstreamPID: Int32? = nil
    ) {
        self.domain = domain
        self.userPattern = userPattern
        self.passwordPattern = passwordPattern
        self.firstUser = firstUser
        self.populations = populations
        self.duration = duration
        self.stepped = stepped
        self.referenceRate = referenceRate
        self.p99BoundMilliseconds = p99BoundMilliseconds
        self.drainSeconds = drainSeconds
        self.resource = resource
        self.logout = logout
        self.boshWait = boshWait
        self.boshRequestTimeout = boshRequestTimeout
        self.loginTimeout = loginTimeout
        self.threads = threads
        self.serverPID = serverPID
        self.upstreamPID = upstreamPID
    }

    /// The command line's model: one transport and endpoint; the first sessions chat in pairs at
    /// `messageRate` in total, the last `idleSessions` (and an odd one out) stay idle; all start
    /// evenly at `rampRate` in user order. That is two populations, `chat` and `idle`, the idle one
    /// arriving right after the chat one.
    public init(
        transport: Transport = .tcp,
        endpoint: Endpoint,
        domain: String = "localhost",
        userPattern: String = "user%d",
        passwordPattern: String = "pass%d",
        firstUser: Int = 1,
        sessions: Int = 2,
        idleSessions: Int = 0,
        rampRate: Double = 100,
        messageRate: Double = 10,
        duration: Double = 10,
        stepped: Stepped? = nil,
        referenceRate: Double? = nil,
        p99BoundMilliseconds: Double = 100,
        drainSeconds: Double = 5,
        payloadBytes: Int = 0,
        resource: String = "load",
        saslMechanism: SASLMechanism = .plain,
        logout: Bool = true,
        boshWait: Int = 30,
        boshRequestTimeout: Double = 45,
        loginTimeout: Double = 30,
        threads: Int = 1,
        serverPID: Int32? = nil,
        upstreamPID: Int32? = nil
    ) {
        let active = Swift.max(0, sessions - Swift.max(0, idleSessions))
        let messaging = active - active % 2
        let idle = Swift.max(0, sessions - messaging)
        var populations: [Population] = []
        if messaging > 0 {
            populations.append(
                Population(
                    name: "chat", transport: transport, endpoint: endpoint, sessions: messaging, arrival: .constant(rate: rampRate, start: 0),
                    saslMechanism: saslMechanism, behaviours: [.chat(.init(rate: messageRate, payloadBytes: payloadBytes))]
                )
            )
        }
        if idle > 0 {
            let start = rampRate > 0 ? Double(messaging) / rampRate : 0
            populations.append(
                Population(
                    name: "idle", transport: transport, endpoint: endpoint, sessions: idle, arrival: .constant(rate: rampRate, start: start),
                    saslMechanism: saslMechanism, behaviours: [.idle(.init())]
                )
            )
        }
        self.init(
            domain: domain, userPattern: userPattern, passwordPattern: passwordPattern, firstUser: firstUser, populations: populations,
            duration: duration, stepped: stepped, referenceRate: referenceRate, p99BoundMilliseconds: p99BoundMilliseconds,
            drainSeconds: drainSeconds, resource: resource, logout: logout, boshWait: boshWait, boshRequestTimeout: boshRequestTimeout,
            loginTimeout: loginTimeout, threads: threads, serverPID: serverPID, upstreamPID: upstreamPID
        )
    }

    /// The localpart of user number `index` (0-based within this run).
    public func username(_ index: Int) -> String {
        Self.expand(self.userPattern, self.firstUser + index)
    }

    public func password(_ index: Int) -> String {
        Self.expand(self.passwordPattern, self.firstUser + index)
    }

    /// Sessions in all populations.
    public var sessions: Int { self.populations.reduce(0) { $0 + $1.sessions } }

    /// Sessions that exchange messages (all chat populations).
    public var messagingSessions: Int { self.populations.filter { $0.chat != nil }.reduce(0) { $0 + $1.sessions } }

    /// Messages per second of all chat populations together.
    public var chatRate: Double { self.populations.compactMap { $0.chat?.rate }.reduce(0, +) }

    /// The run index of the first session of population `index`.
    public func firstSession(ofPopulation index: Int) -> Int {
        self.populations.prefix(index).reduce(0) { $0 + $1.sessions }
    }

    /// Sessions of population `index` that this generator runs (all of them without a part).
    public func sessionsInPart(ofPopulation index: Int) -> Int {
        let population = self.populations[index]
        guard let part = self.part else { return population.sessions }
        if population.chat != nil { return 2 * part.share(of: population.sessions / 2) }
        if let size = population.groupSize { return size * part.share(of: population.sessions / size) }
        return part.share(of: population.sessions)
    }

    /// Messages per second of all chat populations together, as this part sends them.
    public var chatRateInPart: Double {
        guard let part = self.part else { return self.chatRate }
        return self.populations.reduce(0) { total, population in
            guard let chat = population.chat, population.sessions >= 2 else { return total }
            let pairs = population.sessions / 2
            return total + chat.rate * Double(part.share(of: pairs)) / Double(pairs)
        }
    }

    /// Sessions this generator runs.
    public var sessionsInPart: Int {
        self.populations.indices.reduce(0) { $0 + self.sessionsInPart(ofPopulation: $1) }
    }

    /// The scenario as this part ran it: each population with the sessions it had here. Parts
    /// merged add up to the whole again.
    public var asRunByPart: LoadScenario {
        guard self.part != nil else { return self }
        var scenario = self
        for index in scenario.populations.indices { scenario.populations[index].sessions = self.sessionsInPart(ofPopulation: index) }
        return scenario
    }

    /// Checks the options; returns what is wrong, if anything, each naming its key.
    public func validate() -> [String] {
        var problems: [String] = []
        if self.populations.isEmpty { problems.append("populations: list at least one population (sessions must be at least 1)") }
        var names = Set<String>()
        for (index, population) in self.populations.enumerated() {
            let prefix = "populations[\(index)]" + (population.name.isEmpty ? "" : " (\(population.name))")
            if !names.insert(population.name).inserted { problems.append("\(prefix).name: '\(population.name)' is used twice") }
            problems += population.problems().map { "\(prefix).\($0.key): \($0.message)" }
        }
        if !(self.duration > 0) { problems.append("duration: must be positive") }
        if let rate = self.referenceRate {
            if self.stepped == nil { problems.append("reference-rate: a reference rate goes with a stepped run") }
            if !(rate > 0) { problems.append("reference-rate: must be positive") }
        }
        if self.stepped != nil, self.messagingSessions == 0 { problems.append("stepped: a stepped run needs a population that chats") }
        if !(self.drainSeconds >= 0) { problems.append("drain: must not be negative") }
        if self.threads < 1 { problems.append("threads: must be at least 1") }
        if self.boshWait < 1 { problems.append("bosh-wait: must be at least 1") }
        if !(self.loginTimeout > 0) { problems.append("login-timeout: must be positive") }
        if let part = self.part {
            problems += part.problems
            if self.stepped != nil { problems.append("part: a stepped run cannot be split (each part would judge its steps on its share of the rate)") }
        }
        if let startAt = self.startAt {
            let now = Date().timeIntervalSince1970
            if !(startAt > 0) || !(startAt < now + 86_400) {
                problems.append("start-at: must be a Unix time in seconds within the next day, not \(startAt)")
            }
        }
        if !self.userPattern.contains("%d") && self.sessions > 1 { problems.append("users: the user pattern needs %d when there is more than one session") }
        return problems
    }

    static func expand(_ pattern: String, _ number: Int) -> String {
        pattern.replacingOccurrences(of: "%d", with: String(number))
    }
}

/// Where to connect: `http://host:port/path`, `ws://host:port/path` or `tcp://host:port`. No TLS.
public struct Endpoint: Sendable, Codable, Hashable, CustomStringConvertible {
    public enum Scheme: String, Sendable, Codable, Hashable {
        case http, ws, tcp
    }

    public var scheme: Scheme
    public var host: String
    public var port: Int
    public var path: String

    public init(scheme: Scheme, host: String, port: Int, path: String = "/") {
        self.scheme = scheme
        self.host = host
        self.port = port
        self.path = path
    }

    /// Parses a URL of one of the three schemes; the port defaults to 80 (http, ws) or 5222 (tcp).
    public init?(_ text: String) {
        guard let schemeEnd = text.range(of: "://"), let scheme = Scheme(rawValue: String(text[..<schemeEnd.lowerBound]).lowercased()) else {
            return nil
        }
        let rest = text[schemeEnd.upperBound...]
        let authority = rest.prefix { $0 != "/" }
        let path = rest.dropFirst(authority.count)
        var host = String(authority)
        var port = scheme == .tcp ? 5222 : 80
        if host.hasPrefix("["), let close = host.firstIndex(of: "]") {
            let inner = String(host[host.index(after: host.startIndex)..<close])
            let after = host[host.index(after: close)...]
            if after.hasPrefix(":") {
                guard let parsed = Int(after.dropFirst()) else { return nil }
                port = parsed
            }
            host = inner
        } else if let colon = host.lastIndex(of: ":") {
            guard let parsed = Int(host[host.index(after: colon)...]) else { return nil }
            port = parsed
            host = String(host[..<colon])
        }
        guard !host.isEmpty, (1...65535).contains(port) else { return nil }
        self.init(scheme: scheme, host: host, port: port, path: path.isEmpty ? "/" : String(path))
    }

    /// The `Host` header value.
    public var hostHeader: String {
        let bracketed = self.host.contains(":") ? "[\(self.host)]" : self.host
        return (self.port == 80) ? bracketed : "\(bracketed):\(self.port)"
    }

    public var description: String {
        self.scheme == .tcp ? "tcp://\(self.host):\(self.port)" : "\(self.scheme.rawValue)://\(self.hostHeader)\(self.path)"
    }
}
