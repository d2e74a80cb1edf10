import Foundation

/// Everything a load run does, as one value: where to connect, who logs in, how fast, for how long.
///
/// The command line builds one; tests build them directly.
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

    public var transport: Transport
    public var endpoint: Endpoint
    /// The XMPP domain (`to` of the stream, domain part of the JIDs).
    public var domain: String
    /// Users: `%d` is replaced by the user's number (`user%d` → `user1`, `user2`, …).
    public var userPattern: String
    /// Passwords: `%d` is replaced by the user's number.
    public var passwordPattern: String
    public var firstUser: Int
    /// Sessions to establish in all.
    public var sessions: Int
    /// Of those, how many only log in and stay idle; the others exchange messages in pairs.
    public var idleSessions: Int
    /// New sessions started per second during ramp-up.
    public var rampRate: Double
    /// Messages per second, all pairs together (ignored when `stepped` is set).
    public var messageRate: Double
    /// Seconds of message exchange (per step when `stepped` is set).
    public var duration: Double
    public var stepped: Stepped?
    /// With `stepped`: a first step at this rate, reported like the others but left out of the knee
    /// search (a fixed-rate reference point, e.g. CPU per message at 1000 msg/s, whatever the knee).
    public var referenceRate: Double?
    /// The latency bound of a stepped run: the knee is the highest rate whose p99 stays under it.
    public var p99BoundMilliseconds: Double
    /// How long to wait for messages still in flight after sending stops, before counting them lost.
    public var drainSeconds: Double
    /// Extra bytes of body text per message.
    public var payloadBytes: Int
    /// Resource asked for at bind.
    public var resource: String
    /// SASL mechanism the clients use.
    public var saslMechanism: SASLMechanism
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
        self.transport = transport
        self.endpoint = endpoint
        self.domain = domain
        self.userPattern = userPattern
        self.passwordPattern = passwordPattern
        self.firstUser = firstUser
        self.sessions = sessions
        self.idleSessions = idleSessions
        self.rampRate = rampRate
        self.messageRate = messageRate
        self.duration = duration
        self.stepped = stepped
        self.referenceRate = referenceRate
        self.p99BoundMilliseconds = p99BoundMilliseconds
        self.drainSeconds = drainSeconds
        self.payloadBytes = payloadBytes
        self.resource = resource
        self.saslMechanism = saslMechanism
        self.logout = logout
        self.boshWait = boshWait
        self.boshRequestTimeout = boshRequestTimeout
        self.loginTimeout = loginTimeout
        self.threads = threads
        self.serverPID = serverPID
        self.upstreamPID = upstreamPID
    }

    /// The localpart of user number `index` (0-based within this run).
    public func username(_ index: Int) -> String {
        Self.expand(self.userPattern, self.firstUser + index)
    }

    public func password(_ index: Int) -> String {
        Self.expand(self.passwordPattern, self.firstUser + index)
    }

    /// Sessions that exchange messages: an even number, paired (0,1), (2,3), …
    public var messagingSessions: Int {
        let active = Swift.max(0, self.sessions - self.idleSessions)
        return active - active % 2
    }

    /// Checks the options; returns what is wrong, if anything.
    public func validate() -> [String] {
        var problems: [String] = []
        if self.sessions < 1 { problems.append("sessions must be at least 1") }
        if self.idleSessions < 0 || self.idleSessions > self.sessions { problems.append("idle sessions must be between 0 and sessions") }
        if self.rampRate <= 0 { problems.append("ramp rate must be positive") }
        if self.messageRate < 0 { problems.append("message rate must not be negative") }
        if self.duration <= 0 { problems.append("duration must be positive") }
        if let rate = self.referenceRate {
            if self.stepped == nil { problems.append("a reference rate goes with a stepped run") }
            if rate <= 0 { problems.append("the reference rate must be positive") }
        }
        if self.threads < 1 { problems.append("threads must be at least 1") }
        if self.payloadBytes < 0 { problems.append("payload bytes must not be negative") }
        if !self.userPattern.contains("%d") && self.sessions > 1 { problems.append("the user pattern needs %d when there is more than one session") }
        switch (self.transport, self.endpoint.scheme) {
        case (.bosh, .http), (.websocket, .ws), (.tcp, .tcp): break
        default: problems.append("transport \(self.transport.rawValue) does not go with a \(self.endpoint.scheme.rawValue):// endpoint")
        }
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
