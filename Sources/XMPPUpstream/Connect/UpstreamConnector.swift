import Logging
import NIOCore
import NIOPosix
import NIOSSL
import XMPPCore

/// An operator-configured upstream for one domain (`--route DOMAIN=HOST:PORT`,
/// `DOMAIN=tls://HOST:PORT`, `DOMAIN=tcp://HOST:PORT`); also a listen address.
public struct UpstreamRoute: Hashable, Sendable, CustomStringConvertible {
    public var host: String
    public var port: Int
    /// How the connection is secured: STARTTLS per policy (plain `HOST:PORT` and `tcp://`),
    /// or Direct TLS (`tls://`).
    public var transport: UpstreamTransport

    public init(host: String, port: Int, transport: UpstreamTransport = .startTLS) {
        self.host = host
        self.port = port
        self.transport = transport
    }

    /// Parses `HOST:PORT`, `[IPv6]:PORT`, or `HOST` (port 5222). Port 0 ("any free port") only for listeners.
    public init?(_ text: String, allowingPortZero: Bool = false) {
        self.init(text, allowingPortZero: allowingPortZero, defaultPort: 5222, transport: .startTLS)
    }

    /// Parses a route target: `tls://HOST[:PORT]` (Direct TLS, port 5223 by default),
    /// `tcp://HOST[:PORT]` or plain `HOST[:PORT]` (STARTTLS per policy, port 5222 by default).
    /// Other schemes, paths and empty hosts are refused.
    public init?(route text: String) {
        for transport in UpstreamTransport.allCases {
            let scheme = "\(transport.rawValue)://"
            if text.lowercased().hasPrefix(scheme) {
                let rest = String(text.dropFirst(scheme.count))
                guard !rest.contains("/") else { return nil }
                self.init(rest, allowingPortZero: false, defaultPort: transport.defaultPort, transport: transport)
                return
            }
        }
        guard !text.contains("/") else { return nil }
        self.init(text, allowingPortZero: false, defaultPort: UpstreamTransport.startTLS.defaultPort, transport: .startTLS)
    }

    private init?(_ text: String, allowingPortZero: Bool, defaultPort: Int, transport: UpstreamTransport) {
        let ports = allowingPortZero ? 0...65535 : 1...65535
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            let host = String(text[text.index(after: text.startIndex)..<close])
            let rest = text[text.index(after: close)...]
            guard !host.isEmpty else { return nil }
            if rest.isEmpty {
                self.init(host: host, port: defaultPort, transport: transport)
            } else {
                guard rest.hasPrefix(":"), let port = Int(rest.dropFirst()), ports.contains(port) else { return nil }
                self.init(host: host, port: port, transport: transport)
            }
            return
        }
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        switch parts.count {
        case 1 where !text.isEmpty:
            self.init(host: text, port: defaultPort, transport: transport)
        case 2:
            guard !parts[0].isEmpty, let port = Int(parts[1]), ports.contains(port) else { return nil }
            self.init(host: String(parts[0]), port: port, transport: transport)
        default:
            return nil
        }
    }

    /// `HOST:PORT` (`[IPv6]:PORT`), with `tls://` in front for Direct TLS.
    public var description: String {
        let address = self.host.contains(":") ? "[\(self.host)]:\(self.port)" : "\(self.host):\(self.port)"
        switch self.transport {
        case .startTLS: return address
        case .directTLS: return "tls://\(address)"
        }
    }
}

/// How Tether reaches XMPP servers.
public struct UpstreamConfiguration: Sendable {
    public var routes: [String: UpstreamRoute] = [:]
    /// `nil`: `off` for routes to loopback addresses, `required` for everything else.
    public var tlsPolicy: UpstreamTLSPolicy?
    /// Verifies server certificates (system CAs, or the configured CA file).
    public var tlsContext: NIOSSLContext?
    public var addressPolicy = AddressPolicy()
    /// Verifies server certificates on Direct TLS connections: the same trust as `tlsContext`,
    /// offering ALPN `xmpp-client` (XEP-0368). `nil`: `tlsContext` is used (without ALPN).
    public var directTLSContext: NIOSSLContext?
    /// Look up `_xmpp-client._tcp` (and `_xmpps-client._tcp`) SRV records for domains without a route.
    public var srvResolver: (any SRVResolving)? = SystemSRVResolver()
    /// Also look up `_xmpps-client._tcp` (XEP-0368 Direct TLS) next to `_xmpp-client._tcp`.
    public var directTLS = true
    /// Turns SRV targets and route hosts into the addresses to race (each checked by
    /// `addressPolicy` first, unless it came from a route).
    public var addressResolver: any AddressResolving = SystemAddressResolver()
    /// How long one address may take to connect.
    public var connectTimeout: TimeAmount = .seconds(10)
    /// Happy Eyeballs (RFC 8305 §5): a further address is attempted when this much time has
    /// passed without the earlier attempts connecting. Kept within 10 ms–2 s.
    public var connectionAttemptDelay: TimeAmount = HappyEyeballsStateMachine<SocketAddress>.defaultAttemptDelay
    public var streamOpenTimeout: TimeAmount = .seconds(15)
    public var framerLimits = XMLStreamFramer.Limits()
    /// Send a PROXY protocol header first on every upstream connection.
    public var proxyProtocol: ProxyProtocolVersion?
    /// Bytes queued for the server above which it counts as not keeping up: the client side
    /// stops being read (where it can be) and, if the server still has not caught up after
    /// `slowReaderTimeout`, the stream is cut (`UpstreamError.serverNotReading`). Four times
    /// this cuts at once: memory stays bounded whatever the client sends.
    public var maxQueuedBytes = 1 << 20
    public var slowReaderTimeout: TimeAmount = .seconds(10)
    /// How long a closing stream waits for the server to answer its closing ping (see
    /// `UpstreamStreamStateMachine.close(barrierID:)`) before it closes anyway.
    public var closingTimeout: TimeAmount = .seconds(3)

    public init() {}

    /// Sets `tlsContext` (STARTTLS) and `directTLSContext` (the same, plus ALPN `xmpp-client`)
    /// from one client configuration.
    public mutating func setTLS(_ configuration: TLSConfiguration) throws {
        self.tlsContext = try NIOSSLContext(configuration: configuration)
        var direct = configuration
        direct.applicationProtocols = [UpstreamTLSHandshake.alpnProtocol]
        self.directTLSContext = try NIOSSLContext(configuration: direct)
    }
}

/// One completed TLS handshake with a server, for metrics and logs.
public struct UpstreamTLSHandshake: Sendable {
    /// XEP-0368 §4's ALPN protocol name for client-to-server streams.
    public static let alpnProtocol = "xmpp-client"

    public var transport: UpstreamTransport
    public var duration: Duration
    public var tlsVersion: TLSVersion?
    /// The ALPN protocol the server chose, if any.
    public var negotiatedProtocol: String?

    /// `direct` or `starttls`: the `kind` label of `tether_upstream_tls_handshake_seconds`.
    public var kind: String {
        switch self.transport {
        case .directTLS: return "direct"
        case .startTLS: return "starttls"
        }
    }
}

/// Resolves a domain to candidate addresses and opens a negotiated stream to the first that answers.
public struct UpstreamConnector: Sendable {
    public var configuration: UpstreamConfiguration
    /// Counts this connector's streams while they close (shared by the whole server).
    public let closing: ClosingStreams
    /// Told of every completed TLS handshake (the server's metrics): a part of the server, not
    /// of its configuration, so a reload cannot lose it.
    public let tlsHandshakeObserver: (@Sendable (UpstreamTLSHandshake) -> Void)?

    public init(
        configuration: UpstreamConfiguration,
        closing: ClosingStreams = ClosingStreams(),
        tlsHandshakeObserver: (@Sendable (UpstreamTLSHandshake) -> Void)? = nil
    ) {
        self.configuration = configuration
        self.closing = closing
        self.tlsHandshakeObserver = tlsHandshakeObserver
    }

    /// Opens a stream for `header.to`. Must be called on `eventLoop`; the delegate is called there.
    ///
    /// The targets (a route, or the SRV records of both kinds in XEP-0368 order, or DOMAIN:5222)
    /// are tried one after another; the addresses of each are raced (Happy Eyeballs, RFC 8305)
    /// and the first connection established is the stream's. A target is given up only when
    /// every one of its addresses failed to connect.
    /// - Parameter client: who the stream is for; sent as a PROXY protocol header when configured.
    public func connect(
        header: StreamHeader,
        client: ProxyProtocolHeader? = nil,
        on eventLoop: any EventLoop,
        delegate: any UpstreamStreamDelegate,
        logger: Logger
    ) -> EventLoopFuture<UpstreamConnection> {
        let delegateBox = NIOLoopBound(delegate, eventLoop: eventLoop)
        let prelude = self.configuration.proxyProtocol.flatMap { version in client.map { $0.encoded(version) } }
        return self.plan(for: header.to, on: eventLoop, logger: logger).flatMap { targets -> EventLoopFuture<UpstreamConnection> in
            self.connectFirst(targets[...], header: header, prelude: prelude, on: eventLoop, delegate: delegateBox, logger: logger, failures: [])
        }
    }

    /// One target with the addresses it resolved to (already past the address policy).
    struct ResolvedTarget: Sendable {
        var target: UpstreamTarget
        var addresses: [SocketAddress]
        /// Configured by the operator: loopback addresses need no TLS unless a policy says so.
        var isRoute: Bool
    }

    struct Candidate: Sendable {
        var address: SocketAddress
        var tlsPolicy: UpstreamTLSPolicy
        var transport: UpstreamTransport
    }

    /// Every address, in target order (within a target, in resolver order, before Happy
    /// Eyeballs interleaves them).
    func candidates(for domain: String, on eventLoop: any EventLoop) -> EventLoopFuture<[Candidate]> {
        let configuration = self.configuration
        return self.plan(for: domain, on: eventLoop, logger: Logger(label: "tether.upstream")).map { targets in
            targets.flatMap { resolved in
                resolved.addresses.map {
                    Candidate(address: $0, tlsPolicy: configuration.tlsPolicy(for: $0, route: resolved.isRoute), transport: resolved.target.transport)
                }
            }
        }
    }

    /// The targets for `domain`, each with its allowed addresses, in the order to try them.
    func plan(for domain: String, on eventLoop: any EventLoop, logger: Logger) -> EventLoopFuture<[ResolvedTarget]> {
        let configuration = self.configuration
        let resolver = configuration.addressResolver
        if let route = configuration.routes[domain] {
            let target = UpstreamTarget(host: route.host, port: route.port, transport: route.transport)
            return resolver.resolve(host: route.host, port: route.port, on: eventLoop).flatMapThrowing { addresses in
                guard !addresses.isEmpty else { throw UpstreamError.noAddresses(route.host) }
                return [ResolvedTarget(target: target, addresses: addresses, isRoute: true)]
            }
        }
        let services: EventLoopFuture<XMPPServiceRecords.Plan>
        if let srv = configuration.srvResolver {
            func lookup(_ transport: UpstreamTransport) -> EventLoopFuture<Result<SRVLookupResult, any Error>> {
                let name = transport.serviceName(for: domain)
                return eventLoop.makeFutureWithTask { () -> Result<SRVLookupResult, any Error> in
                    do {
                        return .success(try await srv.lookup(name))
                    } catch {
                        return .failure(error)
                    }
                }
            }
            // Both at once (XEP-0368 §3): a domain costs one round trip, not two.
            let plain = lookup(.startTLS)
            let direct = configuration.directTLS ? lookup(.directTLS).map(Optional.some) : eventLoop.makeSucceededFuture(nil)
            services = plain.and(direct).map { plain, direct in
                var random = SystemRandomNumberGenerator()
                return XMPPServiceRecords.plan(domain: domain, startTLS: plain, directTLS: direct, random: &random)
            }
        } else {
            services = eventLoop.makeSucceededFuture(.fallback(UpstreamTarget(host: domain, port: 5222, transport: .startTLS), lookupFailures: []))
        }
        return services.flatMap { plan -> EventLoopFuture<[ResolvedTarget]> in
            let targets: [UpstreamTarget]
            let lookupFailures: [String]
            switch plan {
            case .targets(let ordered):
                targets = ordered
                lookupFailures = []
            case .fallback(let target, let failures):
                // RFC 6120 §3.2.1: no answer to the SRV queries is not "no service": fall back to
                // DOMAIN:5222. If that cannot be resolved either, DNS is failing (not the domain).
                targets = [target]
                lookupFailures = failures
            case .serviceNotAvailable:
                return eventLoop.makeFailedFuture(UpstreamError.noAddresses("\(domain) (SRV says the service is not available)"))
            }
            logger.debug("upstream targets", metadata: ["domain": "\(domain)", "targets": "\(targets.map(\.description).joined(separator: " "))"])
            let resolutions = targets.map { resolver.resolve(host: $0.host, port: $0.port, on: eventLoop) }
            return EventLoopFuture.whenAllComplete(resolutions, on: eventLoop).flatMapThrowing { results in
                var resolved: [ResolvedTarget] = []
                var refused: [SocketAddress] = []
                for (target, result) in zip(targets, results) {
                    guard case .success(let addresses) = result, !addresses.isEmpty else { continue }
                    // The open-proxy guard: an address is checked before any attempt, and
                    // only checked addresses are ever connected to.
                    let allowed = addresses.filter { configuration.addressPolicy.allows($0) }
                    refused += addresses.filter { !configuration.addressPolicy.allows($0) }
                    if !allowed.isEmpty {
                        resolved.append(ResolvedTarget(target: target, addresses: allowed, isRoute: false))
                    }
                }
                if resolved.isEmpty && refused.isEmpty {
                    if !lookupFailures.isEmpty {
                        throw UpstreamError.resolverUnavailable(
                            "SRV lookup for \(domain) failed (\(lookupFailures.joined(separator: "; "))), and \(domain) itself did not resolve"
                        )
                    }
                    throw UpstreamError.noAddresses(domain)
                }
                guard !resolved.isEmpty else { throw UpstreamError.addressNotAllowed(refused.map(\.description).joined(separator: ", ")) }
                return resolved
            }
        }
    }

    private func connectFirst(
        _ targets: ArraySlice<ResolvedTarget>,
        header: StreamHeader,
        prelude: ByteBuffer?,
        on eventLoop: any EventLoop,
        delegate: NIOLoopBound<any UpstreamStreamDelegate>,
        logger: Logger,
        failures: [String]
    ) -> EventLoopFuture<UpstreamConnection> {
        guard let resolved = targets.first else {
            return eventLoop.makeFailedFuture(UpstreamError.connectFailed(failures.isEmpty ? "no candidates" : failures.joined(separator: "; ")))
        }
        let configuration = self.configuration
        let race = HappyEyeballsRace(
            addresses: resolved.addresses,
            attemptDelay: configuration.connectionAttemptDelay,
            eventLoop: eventLoop,
            logger: logger
        ) { eventLoop in
            ClientBootstrap(group: eventLoop)
                .connectTimeout(configuration.connectTimeout)
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .channelOption(.writeBufferWaterMark, value: .init(low: configuration.maxQueuedBytes / 2, high: configuration.maxQueuedBytes))
                .channelOption(.recvAllocator, value: ReadBuffers.allocator)
        }
        return race.run()
            .flatMapThrowing { channel, address -> UpstreamConnection in
                logger.debug("upstream connected", metadata: ["target": "\(resolved.target)", "address": "\(address)"])
                do {
                    return try self.establish(channel, address: address, resolved: resolved, header: header, prelude: prelude, delegate: delegate.value, logger: logger)
                } catch {
                    channel.close(promise: nil)
                    throw error
                }
            }
            .flatMapError { error in
                logger.debug("upstream target failed", metadata: ["target": "\(resolved.target)", "error": "\(error)"])
                return self.connectFirst(
                    targets.dropFirst(), header: header, prelude: prelude, on: eventLoop, delegate: delegate, logger: logger,
                    failures: failures + ["\(resolved.target): \(error)"]
                )
            }
    }

    /// Puts the stream on the connection that won: Direct TLS at once, or the stream header
    /// (and STARTTLS as the policy says).
    private func establish(
        _ channel: any Channel,
        address: SocketAddress,
        resolved: ResolvedTarget,
        header: StreamHeader,
        prelude: ByteBuffer?,
        delegate: any UpstreamStreamDelegate,
        logger: Logger
    ) throws -> UpstreamConnection {
        let configuration = self.configuration
        let directTLS = resolved.target.transport == .directTLS
        var streamPrelude = prelude
        if directTLS {
            guard let context = configuration.directTLSContext ?? configuration.tlsContext else {
                throw UpstreamError.tlsHandshakeFailed("no TLS configuration for Direct TLS")
            }
            // The PROXY header goes in the clear, before the ClientHello (what a TLS-terminating
            // proxy in front of the server reads first).
            if let prelude {
                channel.writeAndFlush(prelude, promise: nil)
                streamPrelude = nil
            }
            // SNI and the certificate check are for the XMPP domain, never the SRV target
            // (XEP-0368 §3, RFC 6120 §13.7.2.1), exactly as for STARTTLS.
            let tls = try NIOSSLClientHandler(context: context, serverHostname: header.to)
            try channel.pipeline.syncOperations.addHandler(tls, position: .first)
        }
        let handler = UpstreamChannelHandler(
            machine: UpstreamStreamStateMachine(
                header: header, tlsPolicy: configuration.tlsPolicy(for: address, route: resolved.isRoute), prelude: streamPrelude,
                timeouts: .init(streamOpen: configuration.streamOpenTimeout, closing: configuration.closingTimeout)
            ),
            framerLimits: configuration.framerLimits,
            tlsContext: configuration.tlsContext,
            serverHostname: header.to,
            addressIsLoopback: AddressPolicy.isLoopback(address),
            maxQueuedBytes: configuration.maxQueuedBytes,
            slowReaderTimeout: configuration.slowReaderTimeout,
            closingStreams: self.closing,
            directTLS: directTLS,
            tlsHandshakeObserver: self.tlsHandshakeObserver,
            logger: logger,
            delegate: delegate
        )
        try channel.pipeline.syncOperations.addHandler(handler)
        return UpstreamConnection(channel: channel, remoteAddress: address, handler: handler)
    }
}

extension UpstreamConfiguration {
    /// STARTTLS as configured; by default off for routes to loopback addresses, required otherwise.
    func tlsPolicy(for address: SocketAddress, route: Bool) -> UpstreamTLSPolicy {
        self.tlsPolicy ?? (route && AddressPolicy.isLoopback(address) ? .off : .required)
    }
}
