import Logging
import NIOCore
import NIOPosix
import Synchronization
import Testing
import XMPPCore

@testable import TetherServer

/// The pieces both transports share: admission and the registry that drains sessions.
@Suite("Sessions: admission and registry")
struct SessionsTests {
    static func client(_ address: String) throws -> ClientOrigin {
        ClientOrigin(address: try SocketAddress(ipAddress: address, port: 4000), isSecure: false, destination: nil)
    }

    @Test("draining comes before the limits; a refusal names its limit and is counted once; a release frees the place")
    func gate() throws {
        let metrics = TetherMetrics()
        let status = ServerStatus()
        let gate = SessionGate(
            limiter: SessionLimiter(limits: .init(maxSessions: 100, maxSessionsPerAddress: 1, newSessionsPerSecondPerAddress: 50, newSessionBurstPerAddress: 200)),
            status: status, metrics: metrics, logger: Logger(label: "test")
        )
        let alice = try Self.client("203.0.113.1")
        #expect(gate.admit(alice, transport: .bosh, redirect: nil) == .admitted)
        #expect(gate.admit(alice, transport: .websocket, redirect: nil) == .refused(limit: "max-sessions-per-address"))
        #expect(gate.admit(try Self.client("203.0.113.2"), transport: .websocket, redirect: nil) == .admitted, "another address")
        gate.release(alice)
        #expect(gate.admit(alice, transport: .websocket, redirect: nil) == .admitted)
        _ = status.beginDraining()
        #expect(gate.admit(try Self.client("203.0.113.3"), transport: .bosh, redirect: "wss://b.example/ws") == .draining(redirect: "wss://b.example/ws"))
        let exposition = String(decoding: metrics.scrape(bosh: [], webSocket: []), as: UTF8.self)
        #expect(exposition.contains("tether_limit_hits_total{limit=\"max-sessions-per-address\"} 1"), "\(exposition)")
    }

    final class Recorder: RegisteredSession, @unchecked Sendable {
        let eventLoop: any EventLoop
        let stateCell = SessionStateCell()
        let told = Mutex<[String?]>([])
        let onItsLoop = Atomic<Bool>(true)

        init(eventLoop: any EventLoop) { self.eventLoop = eventLoop }

        func shutdown(redirect: String?) {
            if !self.eventLoop.inEventLoop { self.onItsLoop.store(false, ordering: .relaxed) }
            self.told.withLock { $0.append(redirect) }
        }
    }

    @Test("shutdown tells every registered session once, on its own event loop, and returns when all were told; removed ones are not told")
    func registryShutdown() async throws {
        let registry = SessionRegistry<Int, Recorder>()
        let group = MultiThreadedEventLoopGroup.singleton
        let sessions = (0..<200).map { _ in Recorder(eventLoop: group.next()) }
        for (index, session) in sessions.enumerated() { registry.add(session, for: index) }
        sessions[7].stateCell.set(.open)
        #expect(registry.count == 200)
        #expect(registry.states.filter { $0 == .open }.count == 1)
        #expect(registry.remove(3) === sessions[3])
        #expect(registry.remove(3) == nil, "removed once")
        await registry.shutdown(redirect: "https://b.example/http-bind")
        for (index, session) in sessions.enumerated() {
            #expect(session.told.withLock { $0 } == (index == 3 ? [] : ["https://b.example/http-bind"]), "\(index)")
            let onItsLoop = session.onItsLoop.load(ordering: .relaxed)
            #expect(onItsLoop)
        }
    }
}
