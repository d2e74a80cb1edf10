import Logging
import NIOCore
import NIOPosix

/// Carries out `HappyEyeballsStateMachine` with real sockets on one event loop: starts the
/// attempts and the attempt-delay timer, closes the attempts that lost, and hands over the
/// winning channel (with nothing in its pipeline yet).
///
/// Every attempt's channel is known from the moment it exists (the bootstrap's initializer
/// records it), so one still connecting is cancelled by closing it. Each attempt is bounded by
/// the bootstrap's connect timeout, so a race ends at the latest one attempt delay per address
/// plus that timeout after it starts.
final class HappyEyeballsRace {
    typealias Machine = HappyEyeballsStateMachine<SocketAddress>

    private var machine: Machine
    private let eventLoop: any EventLoop
    private let logger: Logger
    private let bootstrap: (any EventLoop) -> ClientBootstrap
    private let promise: EventLoopPromise<(any Channel, SocketAddress)>
    private var channels: [Int: any Channel] = [:]
    private var timer: Scheduled<Void>?

    init(
        addresses: [SocketAddress],
        attemptDelay: TimeAmount,
        eventLoop: any EventLoop,
        logger: Logger,
        bootstrap: @escaping (any EventLoop) -> ClientBootstrap
    ) {
        self.machine = Machine(addresses: addresses, isIPv6: { $0.protocol == .inet6 }, attemptDelay: attemptDelay)
        self.eventLoop = eventLoop
        self.logger = logger
        self.bootstrap = bootstrap
        self.promise = eventLoop.makePromise()
    }

    /// Starts the race (on `eventLoop`); the future has the first channel to connect.
    func run() -> EventLoopFuture<(any Channel, SocketAddress)> {
        self.eventLoop.preconditionInEventLoop()
        self.perform(self.machine.start(now: .now()))
        return self.promise.futureResult
    }

    private func perform(_ actions: [Machine.Action]) {
        for action in actions {
            switch action {
            case .startAttempt(let attempt, let address):
                self.start(attempt, address: address)
            case .scheduleTimer(let id, let deadline):
                self.timer?.cancel()
                self.timer = self.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) {
                    self.perform(self.machine.attemptDelayElapsed(timer: id, now: .now()))
                }
            case .cancelAttempts(let attempts):
                for attempt in attempts {
                    self.channels.removeValue(forKey: attempt)?.close(promise: nil)
                }
            case .closeLoser(let attempt):
                self.channels.removeValue(forKey: attempt)?.close(promise: nil)
            case .won(let attempt, let address):
                self.timer?.cancel()
                self.timer = nil
                guard let channel = self.channels.removeValue(forKey: attempt) else {
                    self.promise.fail(UpstreamError.connectFailed("\(address): the connection went away"))
                    continue
                }
                self.promise.succeed((channel, address))
            case .gaveUp(let failures):
                self.timer?.cancel()
                self.timer = nil
                let reasons = failures.map { "\($0.address): \($0.reason)" }.joined(separator: "; ")
                self.promise.fail(UpstreamError.connectFailed(reasons.isEmpty ? "no addresses" : reasons))
            }
        }
    }

    private func start(_ attempt: Int, address: SocketAddress) {
        let loop = self.eventLoop
        let recorder = NIOLoopBound(self, eventLoop: loop)
        self.logger.trace("upstream connection attempt", metadata: ["attempt": "\(attempt)", "address": "\(address)"])
        self.bootstrap(loop)
            .channelInitializer { channel in
                // Runs on `loop` (the bootstrap's only loop), before the connect starts.
                recorder.value.channels[attempt] = channel
                return channel.eventLoop.makeSucceededVoidFuture()
            }
            .connect(to: address)
            .assumeIsolated()
            .whenComplete { result in
                switch result {
                case .success(let channel):
                    // A channel the initializer never saw is still this attempt's.
                    if self.channels[attempt] == nil { self.channels[attempt] = channel }
                    self.perform(self.machine.attemptConnected(attempt))
                case .failure(let error):
                    self.channels.removeValue(forKey: attempt)
                    self.logger.debug("upstream connect failed", metadata: ["address": "\(address)", "error": "\(error)"])
                    self.perform(self.machine.attemptFailed(attempt, reason: String(describing: error), now: .now()))
                }
            }
    }
}
