import ArgumentParser
import BOSHCore
import Foundation
import Logging
import NIOCore
import NIOSSL
import TetherServer
import XMPPCore
import XMPPUpstream

/// Every option of `tether serve`; the configuration file uses the same names.
struct ServeOptions: ParsableArguments {
    /// Where every default comes from: the flags only parse text into a `TetherConfiguration`.
    static let defaults = TetherConfiguration()

    @Option(name: .long, help: ArgumentHelp("Address to listen on (repeatable; IPv6 as [::1]:5280). Default 127.0.0.1:5280.", valueName: "host:port"))
    var listen: [String] = []

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Address to listen on with TLS (repeatable), for https:// and wss:// without a proxy in front; needs --tls-certificate and --tls-key.", valueName: "host:port"))
    var listenTls: [String] = []

    @Option(name: .long, help: ArgumentHelp("PEM certificate chain (leaf first) of the --listen-tls listeners; read again on SIGHUP.", valueName: "path"))
    var tlsCertificate: String?

    @Option(name: .long, help: ArgumentHelp("PEM private key of --tls-certificate; read again on SIGHUP.", valueName: "path"))
    var tlsKey: String?

    @Option(name: .long, help: ArgumentHelp("XMPP domain to serve (repeatable). Domains of --route are always served.", valueName: "domain"))
    var domain: [String] = []

    @Flag(name: .long, help: "Serve any domain a client names (resolved addresses are still checked). Off: Tether is never an open proxy.")
    var openDomains = false

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Upstream for a domain, bypassing SRV (repeatable): domain=host:port or domain=tcp://host:port (STARTTLS per --upstream-tls), domain=tls://host:port (Direct TLS, XEP-0368; port 5223 when omitted).",
            valueName: "domain=[tls://|tcp://]host:port"))
    var route: [String] = []

    @Option(name: .long, help: ArgumentHelp("A BOSH 'route' attribute value clients may use (repeatable); others get host-unknown.", valueName: "xmpp:host:port"))
    var allowRouteAttribute: [String] = []

    @Option(name: .long, help: ArgumentHelp("Private/loopback network that DNS-resolved upstreams may use (repeatable).", valueName: "cidr"))
    var allowUpstreamNetwork: [String] = []

    @Flag(name: .long, help: "Do not look up SRV records (neither _xmpp-client nor _xmpps-client); connect to DOMAIN:5222.")
    var noSrv = false

    @Flag(name: .long, help: "Do not look up _xmpps-client._tcp SRV records (XEP-0368 Direct TLS); only _xmpp-client._tcp with STARTTLS.")
    var noDirectTls = false

    @Option(name: .long, help: ArgumentHelp("Browser origin allowed by CORS and the WebSocket Origin check (repeatable; * for any). Default *.", valueName: "origin"))
    var corsOrigin: [String] = []

    @Flag(name: .long, help: "Emit no CORS headers (when the proxy in front owns CORS).")
    var noCors = false

    @Option(
        name: .long,
        help: ArgumentHelp(
            "A proxy (CIDR) whose Forwarded/X-Forwarded-For/X-Forwarded-Proto headers are believed (repeatable; replaces the default 127.0.0.0/8 and ::1; 'none' trusts nobody).",
            valueName: "cidr"))
    var trustedProxy: [String] = []

    @Option(
        name: .long,
        help: ArgumentHelp(
            "The one header a trusted proxy's client address (and scheme) is read from: x-forwarded-for (with X-Forwarded-Proto) or forwarded (RFC 7239). Default x-forwarded-for; the other is ignored.",
            valueName: "header"))
    var clientAddressHeader: String = ClientAddressHeader.xForwardedFor.rawValue

    @Option(
        name: .long,
        help: ArgumentHelp(
            "A host name this Tether is reached by (repeatable). When set, requests naming any other Host get 421 (DNS rebinding) and only these hosts count as same-origin.",
            valueName: "name"))
    var publicHost: [String] = []

    @Option(name: .long, help: ArgumentHelp("Send a PROXY protocol header (v1 or v2) first on upstream connections, carrying the client's address.", valueName: "version"))
    var upstreamProxyProtocol: String?

    @Option(
        name: .long, help: ArgumentHelp("STARTTLS towards the server: required, optional or off. Default: off for routes to loopback, required otherwise.", valueName: "policy"))
    var upstreamTls: String?

    @Option(name: .long, help: ArgumentHelp("PEM file of CA certificates to verify upstream servers with, instead of the system's.", valueName: "path"))
    var caFile: String?

    @Option(name: .long, help: ArgumentHelp("Seconds to connect to an upstream address.", valueName: "seconds"))
    var connectTimeout: Int = Self.defaults.upstream.connectTimeout.wholeSeconds

    @Option(
        name: .long,
        help: ArgumentHelp("Happy Eyeballs (RFC 8305): milliseconds to wait for a connection attempt before the next address is tried alongside it (10 to 2000).", valueName: "ms"))
    var connectionAttemptDelay: Int = Int(Self.defaults.upstream.connectionAttemptDelay.nanoseconds / 1_000_000)

    @Option(name: .long, help: ArgumentHelp("Longest BOSH 'wait' granted, seconds (keep it under the proxy's read timeout).", valueName: "seconds"))
    var boshMaxWait: Int = Self.defaults.bosh.maxWait

    @Option(name: .long, help: ArgumentHelp("Most BOSH requests held at once ('hold').", valueName: "count"))
    var boshMaxHold: Int = Self.defaults.bosh.maxHold

    @Option(name: .long, help: ArgumentHelp("BOSH 'inactivity': seconds without a request before a session ends.", valueName: "seconds"))
    var boshMaxInactivity: Int = Self.defaults.bosh.inactivity

    @Option(name: .long, help: ArgumentHelp("BOSH 'maxpause': longest pause a client may ask for, seconds.", valueName: "seconds"))
    var boshMaxPause: Int = Self.defaults.bosh.maxPause

    @Option(name: .long, help: ArgumentHelp("BOSH 'polling': shortest interval between empty polls, seconds.", valueName: "seconds"))
    var boshPolling: Int = Self.defaults.bosh.polling

    @Option(name: .long, help: ArgumentHelp("Seconds between WebSocket pings; a peer that misses one is closed. Keep it under the proxy's read timeout.", valueName: "seconds"))
    var websocketPingInterval: Int = Self.defaults.webSocket.pingInterval.wholeSeconds

    @Option(name: .long, help: ArgumentHelp("Seconds the WebSocket closing handshake may take before the connection is dropped.", valueName: "seconds"))
    var websocketCloseTimeout: Int = Self.defaults.webSocket.closeTimeout.wholeSeconds

    @Flag(name: .long, help: "Refuse WebSocket upgrades without an Origin header (by default non-browser clients may omit it).")
    var websocketRequireOrigin = false

    @Flag(name: .long, help: "Do not offer permessage-deflate (RFC 7692) to WebSocket clients.")
    var noWebsocketCompression = false

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Most live sessions (BOSH and WebSocket together); beyond, new ones get policy-violation. Default: what the open-files limit allows, two descriptors per session.",
            valueName: "count"))
    var maxSessions: Int?

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Event-loop threads serving connections and sessions. Default: one per CPU core. Fewer cost less CPU per BOSH message on a machine shared with the XMPP server (an answer from a session on another thread wakes that thread); read at start only.",
            valueName: "count"))
    var eventLoops: Int?

    @Option(name: .long, help: ArgumentHelp("Most live sessions from one client address (a NAT can hide thousands of users).", valueName: "count"))
    var maxSessionsPerAddress: Int = Self.defaults.maxSessionsPerAddress

    @Option(name: .long, help: ArgumentHelp("New sessions per second from one client address, sustained (0: only the burst, never refilled).", valueName: "count"))
    var maxNewSessionsPerSecond: Int = Self.defaults.newSessionsPerSecondPerAddress

    @Option(name: .long, help: ArgumentHelp("New sessions one client address may open at once before --max-new-sessions-per-second applies.", valueName: "count"))
    var newSessionBurst: Int = Self.defaults.newSessionBurstPerAddress

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Seconds an HTTP connection has to deliver a complete request (idle keep-alive and slow clients are closed; held BOSH requests are not).", valueName: "seconds"))
    var httpRequestTimeout: Int = Self.defaults.httpRequestTimeout.wholeSeconds

    @Option(name: .long, help: ArgumentHelp("Largest HTTP request body, bytes (413 beyond).", valueName: "bytes"))
    var maxBodyBytes: Int = Self.defaults.maxRequestBodyBytes

    @Option(name: .long, help: ArgumentHelp("Largest stanza in either direction, bytes (policy-violation beyond).", valueName: "bytes"))
    var maxStanzaBytes: Int = Self.defaults.xmlLimits.maxElementBytes

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Bytes queued for a client: BOSH stanzas not collected beyond it end the session (policy-violation); a WebSocket client behind by more is not fed until it catches up, and is cut off after --slow-reader-timeout.",
            valueName: "bytes"))
    var maxQueuedBytesToClient: Int = Self.defaults.maxQueuedBytesToClient

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Bytes queued for a server: behind by more, it gets --slow-reader-timeout to catch up (WebSocket clients are not read meanwhile); 4x this ends the session at once (policy-violation).",
            valueName: "bytes"))
    var maxQueuedBytesToServer: Int = Self.defaults.upstream.maxQueuedBytes

    @Option(name: .long, help: ArgumentHelp("Seconds a peer may stay behind by more than its queue limit before its session ends with policy-violation.", valueName: "seconds"))
    var slowReaderTimeout: Int = Self.defaults.slowReaderTimeout.wholeSeconds

    @Option(name: .long, help: ArgumentHelp("Largest HTTP request head (request line and headers), bytes (431 beyond).", valueName: "bytes"))
    var maxHeaderBytes: Int = Self.defaults.maxHeaderBytes

    @Option(name: .long, help: ArgumentHelp("Deepest XML nesting accepted.", valueName: "depth"))
    var maxXmlDepth: Int = Self.defaults.xmlLimits.maxDepth

    @Option(
        name: .long, help: ArgumentHelp("This node's name when several Tethers serve the same domain; it prefixes every BOSH sid and enables /http-bind/NAME.", valueName: "name"))
    var nodeId: String?

    @Option(name: .long, help: ArgumentHelp("Another node and its BOSH base URL (repeatable); requests for its sessions are relayed there.", valueName: "name=url"))
    var peer: [String] = []

    @Option(name: .long, help: ArgumentHelp("Where to send clients when this node shuts down (see-other-uri); without it they get system-shutdown.", valueName: "uri"))
    var redirectUri: String?

    @Option(name: .long, help: ArgumentHelp("Seconds shutdown waits for answers to reach clients.", valueName: "seconds"))
    var shutdownGrace: Int = Self.defaults.shutdownGracePeriod.wholeSeconds

    @Option(
        name: .long,
        help: ArgumentHelp("Enables POST /prebind: the shared secret backends send as 'Authorization: Bearer SECRET'. Prefer --prebind-secret-file.", valueName: "secret"))
    var prebindSecret: String?

    @Option(name: .long, help: ArgumentHelp("Enables POST /prebind with the secret read from this file (surrounding whitespace ignored).", valueName: "path"))
    var prebindSecretFile: String?

    @Option(name: .long, help: ArgumentHelp("Seconds a prebind login (connect, SASL, bind) may take before 504.", valueName: "seconds"))
    var prebindTimeout: Int = Int(PrebindSettings.defaultTimeout.components.seconds)

    @Option(name: .long, help: ArgumentHelp("Public BOSH URL listed in /.well-known/host-meta (XEP-0156); https only. Enables host-meta.", valueName: "url"))
    var hostMetaBoshUrl: String?

    @Option(name: .long, help: ArgumentHelp("Public WebSocket URL listed in /.well-known/host-meta (XEP-0156); wss only. Enables host-meta.", valueName: "url"))
    var hostMetaWebsocketUrl: String?

    @Flag(name: .long, help: "Serve the demo chat page at /demo/ (off by default).")
    var demo = false

    @Option(name: .long, help: ArgumentHelp("Strophe.js file the demo page loads (Debian: libjs-strophe).", valueName: "path"))
    var demoStropheScript: String = DemoSettings().stropheScript

    @Option(name: .long, help: ArgumentHelp("trace, debug, info, notice, warning, error or critical.", valueName: "level"))
    var logLevel: Logger.Level = .info

    @Option(name: .long, help: ArgumentHelp("text (one line per event) or json (one JSON object per line, metadata as fields).", valueName: "format"))
    var logFormat: LogFormat = .text

    /// Re-parses with the file's settings placed before the command line's.
    static func merged(file path: String, commandLine: [String]) throws -> ServeOptions {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ValidationError("cannot read configuration file \(path): \(error.localizedDescription)")
        }
        let fileArguments: [String]
        do {
            fileArguments = try ConfigurationFile.arguments(from: text)
        } catch {
            throw ValidationError("\(path): \(error)")
        }
        var cli = Array(commandLine.dropFirst())
        if cli.first == "serve" { cli.removeFirst() }
        var cleaned: [String] = []
        var skipNext = false
        for argument in cli {
            if skipNext {
                skipNext = false
                continue
            }
            if argument == "--config" {
                skipNext = true
                continue
            }
            if argument.hasPrefix("--config=") { continue }
            cleaned.append(argument)
        }
        do {
            return try ServeOptions.parse(fileArguments + cleaned)
        } catch {
            throw ValidationError("\(path): \(ServeOptions.message(for: error))")
        }
    }

    func makeConfiguration() throws -> TetherConfiguration {
        var configuration = TetherConfiguration()
        if !self.listen.isEmpty {
            configuration.listen = try self.listen.map { text in
                guard let address = UpstreamRoute(text, allowingPortZero: true), text.contains(":") || text.hasPrefix("[") else {
                    throw ValidationError("--listen '\(text)' is not host:port")
                }
                return address
            }
        }
        configuration.listenTLS = try self.listenTls.map { text in
            guard let address = UpstreamRoute(text, allowingPortZero: true), text.contains(":") || text.hasPrefix("[") else {
                throw ValidationError("--listen-tls '\(text)' is not host:port")
            }
            return address
        }
        switch (self.tlsCertificate, self.tlsKey) {
        case (nil, nil):
            break
        case (let certificate?, let key?):
            do {
                configuration.edgeTLS = try EdgeTLSSettings(certificatePath: certificate, keyPath: key)
            } catch {
                throw ValidationError(error.message)
            }
        default:
            throw ValidationError("give both --tls-certificate and --tls-key")
        }
        configuration.domains = Set(self.domain.map { $0.lowercased() })
        configuration.openDomains = self.openDomains
        for entry in self.route {
            let parts = entry.split(separator: "=", maxSplits: 1)
            guard parts.count == 2, !parts[0].isEmpty, let target = UpstreamRoute(route: String(parts[1])) else {
                throw ValidationError("--route '\(entry)' is not domain=host:port, domain=tcp://host:port or domain=tls://host:port")
            }
            configuration.upstream.routes[parts[0].lowercased()] = target
        }
        for route in self.allowRouteAttribute {
            guard route.hasPrefix("xmpp:"), UpstreamRoute(String(route.dropFirst(5))) != nil else {
                throw ValidationError("--allow-route-attribute '\(route)' is not xmpp:host:port")
            }
        }
        configuration.allowedRouteAttributes = Set(self.allowRouteAttribute)
        configuration.upstream.addressPolicy = AddressPolicy(
            allowedNetworks: try self.allowUpstreamNetwork.map { text in
                guard let network = IPNetwork(text) else { throw ValidationError("--allow-upstream-network '\(text)' is not a CIDR network") }
                return network
            }
        )
        if self.noSrv { configuration.upstream.srvResolver = nil }
        configuration.upstream.directTLS = !self.noDirectTls
        if !self.trustedProxy.isEmpty {
            configuration.trustedProxies = try self.trustedProxy.filter { $0 != "none" }.map { text in
                guard let network = IPNetwork(text) else { throw ValidationError("--trusted-proxy '\(text)' is not a CIDR network") }
                return network
            }
        }
        guard let header = ClientAddressHeader(rawValue: self.clientAddressHeader.lowercased()) else {
            throw ValidationError("--client-address-header must be x-forwarded-for or forwarded, not '\(self.clientAddressHeader)'")
        }
        configuration.clientAddressHeader = header
        configuration.publicHosts = try Set(
            self.publicHost.map { name in
                let host = HTTPHost.name(of: name)
                guard !host.isEmpty, !host.contains("/"), host.unicodeScalars.allSatisfy({ $0.isASCII && $0.value > 0x20 }) else {
                    throw ValidationError("--public-host '\(name)' is not a host name")
                }
                return host
            })
        if let version = self.upstreamProxyProtocol {
            guard let parsed = ProxyProtocolVersion(rawValue: version) else {
                throw ValidationError("--upstream-proxy-protocol must be v1 or v2, not '\(version)'")
            }
            configuration.upstream.proxyProtocol = parsed
        }
        configuration.cors = CORSPolicy(origins: self.corsOrigin.isEmpty ? ["*"] : self.corsOrigin, disabled: self.noCors)
        for origin in self.corsOrigin where origin != "*" {
            guard let url = URL(string: origin), url.scheme != nil, url.host != nil, url.path.isEmpty else {
                throw ValidationError("--cors-origin '\(origin)' is not an origin like https://example.com")
            }
        }
        if let policy = self.upstreamTls {
            guard let parsed = UpstreamTLSPolicy(rawValue: policy) else {
                throw ValidationError("--upstream-tls must be required, optional or off, not '\(policy)'")
            }
            configuration.upstream.tlsPolicy = parsed
        }
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv12
        if let caFile = self.caFile {
            guard FileManager.default.isReadableFile(atPath: caFile) else {
                throw ValidationError("--ca-file '\(caFile)' cannot be read")
            }
            do {
                tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(caFile))
            } catch {
                throw ValidationError("--ca-file '\(caFile)' holds no PEM certificates: \(error)")
            }
        }
        do {
            // STARTTLS and Direct TLS trust the same roots; Direct TLS also offers ALPN xmpp-client.
            try configuration.upstream.setTLS(tls)
        } catch {
            throw ValidationError("cannot set up TLS: \(error)")
        }
        configuration.upstream.connectTimeout = .seconds(Int64(self.connectTimeout))
        configuration.upstream.connectionAttemptDelay = .milliseconds(Int64(self.connectionAttemptDelay))
        configuration.bosh.maxWait = self.boshMaxWait
        configuration.bosh.maxHold = self.boshMaxHold
        configuration.bosh.inactivity = self.boshMaxInactivity
        configuration.bosh.maxPause = self.boshMaxPause
        configuration.bosh.polling = self.boshPolling
        configuration.webSocket.pingInterval = .seconds(Int64(self.websocketPingInterval))
        configuration.webSocket.closeTimeout = .seconds(Int64(self.websocketCloseTimeout))
        configuration.webSocket.allowMissingOrigin = !self.websocketRequireOrigin
        configuration.webSocket.perMessageDeflate = !self.noWebsocketCompression
        configuration.maxSessions = self.maxSessions ?? DescriptorBudget.current.sessions
        configuration.maxSessionsPerAddress = self.maxSessionsPerAddress
        configuration.newSessionsPerSecondPerAddress = self.maxNewSessionsPerSecond
        configuration.newSessionBurstPerAddress = self.newSessionBurst
        configuration.httpRequestTimeout = .seconds(Int64(self.httpRequestTimeout))
        configuration.maxRequestBodyBytes = self.maxBodyBytes
        configuration.maxQueuedBytesToClient = self.maxQueuedBytesToClient
        configuration.upstream.maxQueuedBytes = self.maxQueuedBytesToServer
        configuration.slowReaderTimeout = .seconds(Int64(self.slowReaderTimeout))
        configuration.maxHeaderBytes = self.maxHeaderBytes
        configuration.xmlLimits = .init(maxElementBytes: self.maxStanzaBytes, maxDepth: self.maxXmlDepth)
        configuration.redirectURI = self.redirectUri
        configuration.nodeID = self.nodeId
        for entry in self.peer {
            let parts = entry.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, !parts[0].isEmpty, let url = URL(string: parts[1]), url.scheme == "http" || url.scheme == "https", url.host != nil else {
                throw ValidationError("--peer '\(entry)' is not name=http://host:port")
            }
            configuration.peers[parts[0]] = parts[1]
        }
        if self.prebindSecret != nil && self.prebindSecretFile != nil {
            throw ValidationError("give --prebind-secret or --prebind-secret-file, not both")
        }
        var secret = self.prebindSecret
        if let path = self.prebindSecretFile {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw ValidationError("--prebind-secret-file '\(path)' cannot be read")
            }
            secret = text.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        if let secret {
            configuration.prebind = PrebindSettings(secret: secret, timeout: .seconds(self.prebindTimeout))
        }
        if self.hostMetaBoshUrl != nil || self.hostMetaWebsocketUrl != nil {
            configuration.hostMeta = HostMetaSettings(boshURL: self.hostMetaBoshUrl, webSocketURL: self.hostMetaWebsocketUrl)
        }
        if self.demo {
            configuration.demo = DemoSettings(stropheScript: self.demoStropheScript)
        }
        configuration.shutdownGracePeriod = .seconds(Int64(self.shutdownGrace))
        // The values themselves are checked where every configuration is, however it was built.
        do {
            try configuration.validate()
        } catch {
            throw ValidationError(error.message)
        }
        return configuration
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

/// `--log-format`: a line per event for people, a JSON object per line for log pipelines.
enum LogFormat: String, ExpressibleByArgument, Sendable {
    case text
    case json
}

extension TimeAmount {
    /// Whole seconds, as the options give them.
    var wholeSeconds: Int { Int(self.nanoseconds / 1_000_000_000) }
}
