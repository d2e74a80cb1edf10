import Logging
import NIOCore
import NIOPosix
import NIOSSL
import XMPPCore

/// An operator-configured upstream for one domain (`--route DOMAIN=HOST:PORT`).
public struct UpstreamRoute: Hashable, Sendable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `HOST:PORT`, `[IPv6]:PORT`, or `HOST` (port 5222). Port 0 ("any free port") only for listeners.
    public init?(_ text: String, allowingPortZero: Bool = false) {
        let ports = allowingPortZero ? 0...65535 : 1...65535
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            let host = String(text[text.index(after: text.startIndex)..<close])
            let rest = text[text.index(after: close)...]
            if rest.isEmpty {
                self.init(host: host, port: 5222)
            } else {
                guard rest.hasPrefix(":"), let port = Int(rest.dropFirst()), ports.contains(port) else { return nil }
                self.init(host: host, port: port)
            }
            return
        }
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        switch parts.count {
        case 1 where !text.isEmpty:
            self.init(host: text, port: 5222)
        case 2:
            guard !parts[0].isEmpty, let port = Int(parts[1]), ports.contains(port) else { return nil }
            self.init(host: String(parts[0]), port: port)
        default:
            return nil
        }
    }

    public var description: String { self.host.contains(":") ? "[\(self.host)]:\(self.port)" : "\(self.host):\(self.port)" }
}

/// How Tether reaches XMPP servers.
public struct UpstreamConfiguration: Sendable {
    public var routes: [String: UpstreamRoute] = [:]
    /// `nil`: `off` for routes to loopback addresses, `required` for everything else.
    public var tlsPolicy: UpstreamTLSPolicy?
    /// Verifies server certificates (system CAs, or the configured CA file).
    public var tlsContext: NIOSSLContext?
    public var addressPolicy = AddressPolicy()
    /// Look up `_xmpp-client._tcp` SRV records for domains without a route.
    public var srvResolver: (any SRVResolving)? = SystemSRVResolver()
    public var connectTimeout: TimeAmount = .seconds(10)
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
}

/// Resolves a domain to candidate addresses and opens a negotiated stream to the first that answers.
public struct UpstreamConnector: Sendable {
    public var configuration: UpstreamConfiguration
    /// Counts this connector's streams while they close (shared by the whole server).
    public let closing: ClosingStreams

    public init(configuration: UpstreamConfiguration, closing: ClosingStreams = ClosingStreams()) {
        self.configuration = configuration
        self.closing = closing
    }

    /// Opens a stream for `header.to`. Must be called on `eventLoop`; the delegate is called there.
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
        return self.candidates(for: header.to, on: eventLoop).flatMap { candidates -> EventLoopFuture<UpstreamConnection> in
            self.connectFirst(candidates[...], header: header, prelude: prelude, on: eventLoop, delegate: delegateBox, logger: logger, lastError: nil)
        }
    }

    struct Candidate: Sendable {
        var address: SocketAddress
        var tlsPolicy: UpstreamTLSPolicy
    }

    func candidates(for domain: String, on eventLoop: any EventLoop) -> EventLoopFuture<[Candidate]> {
        let configuration = self.configuration
        if let route = configuration.routes[domain] {
            return HostResolver.resolve(host: route.host, port: route.port, on: eventLoop).flatMapThrowing { addresses in
                guard !addresses.isEmpty else { throw UpstreamError.noAddresses(route.host) }
                return addresses.map {
                    Candidate(address: $0, tlsPolicy: configuration.tlsPolicy ?? (AddressPolicy.isLoopback($0) ? .off : .required))
                }
            }
        }
        let policy = configuration.tlsPolicy ?? .required
        /// The hosts to try, and the SRV lookup's error when it failed and DOMAIN:5222 stands in.
        let targets: EventLoopFuture<(hosts: [(host: String, port: Int)], srvFailure: (any Error)?)>
        if let srv = configuration.srvResolver {
            targets = eventLoop.makeFutureWithTask { () -> (SRVLookupResult, (any Error)?) in
                do {
                    return (try await srv.lookup("_xmpp-client._tcp.\(domain)"), nil)
                } catch {
                    // RFC 6120 §3.2.1: no answer to the SRV query is not "no service": fall back to
                    // DOMAIN:5222. If that cannot be resolved either, DNS is failing (not the domain).
                    return (.noRecords, error)
                }
            }.flatMapThrowing { result, failure in
                switch result {
                case .records(let records):
                    var random = SystemRandomNumberGenerator()
                    return (SRVOrdering.order(records, random: &random).map { ($0.target, Int($0.port)) }, nil)
                case .noRecords:
                    return ([(domain, 5222)], failure)
                case .serviceNotAvailable:
                    throw UpstreamError.noAddresses("\(domain) (SRV says the service is not available)")
                }
            }
        } else {
            targets = eventLoop.makeSucceededFuture(([(domain, 5222)], nil))
        }
        return targets.flatMap { targets in
            let resolutions = targets.hosts.map { HostResolver.resolve(host: $0.host, port: $0.port, on: eventLoop) }
            return EventLoopFuture.whenAllComplete(resolutions, on: eventLoop).flatMapThrowing { results in
                var resolved: [SocketAddress] = []
                for case .success(let addresses) in results { resolved += addresses }
                if resolved.isEmpty, let failure = targets.srvFailure {
                    throw UpstreamError.resolverUnavailable("SRV lookup for \(domain) failed (\(failure)), and \(domain) itself did not resolve")
                }
                guard !resolved.isEmpty else { throw UpstreamError.noAddresses(domain) }
                let allowed = resolved.filter { configuration.addressPolicy.allows($0) }
                guard !allowed.isEmpty else { throw UpstreamError.addressNotAllowed(resolved.map(\.description).joined(separator: ", ")) }
                return allowed.map { Candidate(address: $0, tlsPolicy: policy) }
            }
        }
    }

    private func connectFirst(
        _ candidates: ArraySlice<Candidate>,
        header: StreamHeader,
        prelude: ByteBuffer?,
        on eventLoop: any EventLoop,
        delegate: NIOLoopBound<any UpstreamStreamDelegate>,
        logger: Logger,
        lastError: (any Error)?
    ) -> EventLoopFuture<UpstreamConnection> {
        guard let candidate = candidates.first else {
            return eventLoop.makeFailedFuture(
                UpstreamError.connectFailed(lastError.map { String(describing: $0) } ?? "no candidates")
            )
        }
        let configuration = self.configuration
        return ClientBootstrap(group: eventLoop)
            .connectTimeout(configuration.connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelOption(.writeBufferWaterMark, value: .init(low: configuration.maxQueuedBytes / 2, high: configuration.maxQueuedBytes))
            .connect(to: candidate.address)
            .flatMapThrowing { channel -> UpstreamConnection in
                let handler = UpstreamChannelHandler(
                    machine: UpstreamStreamStateMachine(header: header, tlsPolicy: candidate.tlsPolicy),
                    prelude: prelude,
                    framerLimits: configuration.framerLimits,
                    tlsContext: configuration.tlsContext,
                    serverHostname: header.to,
                    addressIsLoopback: AddressPolicy.isLoopback(candidate.address),
                    streamOpenTimeout: configuration.streamOpenTimeout,
                    maxQueuedBytes: configuration.maxQueuedBytes,
                    slowReaderTimeout: configuration.slowReaderTimeout,
                    closingTimeout: configuration.closingTimeout,
                    closingStreams: self.closing,
                    delegate: delegate.value
                )
                try channel.pipeline.syncOperations.addHandler(handler)
                return UpstreamConnection(channel: channel, remoteAddress: candidate.address, handler: handler)
            }
            .flatMapError { error in
                logger.debug("upstream connect failed", metadata: ["address": "\(candidate.address)", "error": "\(error)"])
                return self.connectFirst(candidates.dropFirst(), header: header, prelude: prelude, on: eventLoop, delegate: delegate, logger: logger, lastError: error)
            }
    }
}
