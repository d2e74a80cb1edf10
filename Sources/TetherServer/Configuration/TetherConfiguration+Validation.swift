import BOSHCore
import NIOCore
import XMPPCore
import XMPPUpstream

/// A configuration value Tether cannot run with, named by its `tether serve` option (the
/// configuration file uses the same names).
public struct ConfigurationError: Error, Hashable, CustomStringConvertible {
    public var message: String

    public init(_ message: String) {
        self.message = message
    }

    public var description: String { self.message }
}

extension TetherConfiguration {
    /// Checks every value against what Tether can run with. `TetherServer.start()` and
    /// `reload(_:)` call it, so a configuration built in code is held to the same rules as one
    /// read from the command line or a file (which only parse text into a configuration).
    public func validate() throws(ConfigurationError) {
        try Self.positive("--connect-timeout", self.upstream.connectTimeout)
        guard HappyEyeballsStateMachine<SocketAddress>.attemptDelayRange.contains(self.upstream.connectionAttemptDelay) else {
            throw ConfigurationError(
                "--connection-attempt-delay must be 10 to 2000 milliseconds (RFC 8305 §5), not \(self.upstream.connectionAttemptDelay.nanoseconds / 1_000_000)")
        }
        try Self.positive("stream-open timeout", self.upstream.streamOpenTimeout)
        try Self.nonNegative("--bosh-max-wait", self.bosh.maxWait)
        try Self.nonNegative("--bosh-max-hold", self.bosh.maxHold)
        try Self.positive("--bosh-max-inactivity", self.bosh.inactivity)
        try Self.nonNegative("--bosh-max-pause", self.bosh.maxPause)
        try Self.nonNegative("--bosh-polling", self.bosh.polling)
        try Self.positive("--websocket-ping-interval", self.webSocket.pingInterval)
        try Self.positive("--websocket-close-timeout", self.webSocket.closeTimeout)
        try Self.positive("--max-sessions", self.maxSessions)
        try Self.positive("--max-sessions-per-address", self.maxSessionsPerAddress)
        // 0: a bucket of `--new-session-burst` that never refills.
        try Self.nonNegative("--max-new-sessions-per-second", self.newSessionsPerSecondPerAddress)
        try Self.positive("--new-session-burst", self.newSessionBurstPerAddress)
        try Self.positive("--http-request-timeout", self.httpRequestTimeout)
        try Self.positive("--max-body-bytes", self.maxRequestBodyBytes)
        try Self.positive("--max-stanza-bytes", self.xmlLimits.maxElementBytes)
        try Self.positive("--max-xml-depth", self.xmlLimits.maxDepth)
        // A WebSocket frame may be this plus 64 KiB, and RFC 6455 frame lengths Tether accepts
        // are 32-bit (NIO's upgrader traps beyond).
        guard self.xmlLimits.maxElementBytes <= Self.largestStanzaLimit else {
            throw ConfigurationError("--max-stanza-bytes must be at most \(Self.largestStanzaLimit)")
        }
        guard self.upstream.framerLimits == self.xmlLimits else {
            throw ConfigurationError("the upstream framer's limits must be --max-stanza-bytes and --max-xml-depth (set xmlLimits, not upstream.framerLimits)")
        }
        // Each backing field, in case one was set on its own in code.
        try Self.positive("--max-queued-bytes-to-client", self.bosh.maxQueuedBytes)
        try Self.positive("--max-queued-bytes-to-client", self.webSocket.maxQueuedBytes)
        try Self.positive("--max-queued-bytes-to-server", self.upstream.maxQueuedBytes)
        try Self.positive("--max-header-bytes", self.maxHeaderBytes)
        try Self.positive("--slow-reader-timeout", self.webSocket.slowReaderTimeout)
        try Self.positive("--slow-reader-timeout", self.upstream.slowReaderTimeout)
        try Self.nonNegative("--shutdown-grace", self.shutdownGracePeriod)
        if let node = self.nodeID {
            // It is part of every sid and of the /http-bind/NODE path.
            guard !node.isEmpty, node.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }) else {
                throw ConfigurationError("--node-id '\(node)' may use only letters, digits, '-' and '_'")
            }
        }
        if let prebind = self.prebind {
            guard prebind.secret.utf8.count >= 16 else {
                throw ConfigurationError("the prebind secret must be at least 16 characters")
            }
            guard prebind.timeout > .zero else { throw ConfigurationError("--prebind-timeout must be greater than 0") }
        }
        if let hostMeta = self.hostMeta {
            if let url = hostMeta.boshURL, !url.lowercased().hasPrefix("https://") {
                throw ConfigurationError("--host-meta-bosh-url must be an https:// URL (XEP-0156 §2.2), not '\(url)'")
            }
            if let url = hostMeta.webSocketURL, !url.lowercased().hasPrefix("wss://") {
                throw ConfigurationError("--host-meta-websocket-url must be a wss:// URL (XEP-0156 §2.2), not '\(url)'")
            }
        }
        if !self.listenTLS.isEmpty && self.edgeTLS == nil {
            throw ConfigurationError("--listen-tls needs --tls-certificate and --tls-key")
        }
        if self.listenTLS.isEmpty && self.edgeTLS != nil {
            throw ConfigurationError("--tls-certificate and --tls-key are for --listen-tls, which is not given")
        }
        if self.domains.isEmpty && self.upstream.routes.isEmpty && !self.openDomains {
            throw ConfigurationError("no domain to serve: give --route, --domain or --open-domains")
        }
    }

    /// The largest `--max-stanza-bytes`: its WebSocket frame limit (64 KiB more) must fit 32 bits.
    public static let largestStanzaLimit = Int(UInt32.max) - 64 * 1024

    private static func positive(_ name: String, _ value: Int) throws(ConfigurationError) {
        guard value > 0 else { throw ConfigurationError("\(name) must be greater than 0") }
    }

    private static func nonNegative(_ name: String, _ value: Int) throws(ConfigurationError) {
        guard value >= 0 else { throw ConfigurationError("\(name) must not be negative") }
    }

    private static func positive(_ name: String, _ value: TimeAmount) throws(ConfigurationError) {
        guard value > .zero else { throw ConfigurationError("\(name) must be greater than 0") }
    }

    private static func nonNegative(_ name: String, _ value: TimeAmount) throws(ConfigurationError) {
        guard value >= .zero else { throw ConfigurationError("\(name) must not be negative") }
    }
}
