import Foundation
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// The admission defaults against the `tether` binary with no limit flags: a crowd behind one
/// address (a campus NAT) is served, a flooding address is slowed, and neither affects a third.
/// Other loopback addresses (127.0.0.2, 127.0.0.3) stand for other clients.
@Suite("Admission defaults against the tether binary", .serialized, .timeLimit(.minutes(4)))
struct AdmissionDefaultsTests {
    static let crowd = "127.0.0.1"
    static let flooder = "127.0.0.2"
    static let bystander = "127.0.0.3"

    /// A WebSocket session from `source` that opens a stream to the fake server; `false` when
    /// Tether refused it (`policy-violation`, or whatever stream error it got: `error`).
    static func session(port: Int, from source: String) async throws -> (WebSocketTestClient, Bool, error: String?) {
        let client = try await WebSocketTestClient.connect(port: port, from: source)
        try await client.send("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='crowd.example' version='1.0'/>")
        let answer = try await client.receive(until: { $0.contains("<stream:features") || $0.contains("<stream:error") }, timeout: .seconds(60))
        let error = answer.first { $0.contains("<stream:error") }
        return (client, error == nil, error)
    }

    /// What the crowd and the flooder got.
    final class Tally: Sendable {
        private let state = Mutex((crowd: [WebSocketTestClient](), crowdRefused: 0, crowdErrors: Set<String>(), served: 0, refused: 0, flooding: true))
        func joined(_ client: WebSocketTestClient, served: Bool, error: String?) {
            self.state.withLock {
                $0.crowd.append(client)
                if !served { $0.crowdRefused += 1 }
                if let error { $0.crowdErrors.insert(error) }
            }
        }
        var crowdErrors: Set<String> { self.state.withLock { $0.crowdErrors } }
        func flooded(served: Bool) { self.state.withLock { if served { $0.served += 1 } else { $0.refused += 1 } } }
        func stopFlooding() { self.state.withLock { $0.flooding = false } }
        var flooding: Bool { self.state.withLock { $0.flooding } }
        var crowd: [WebSocketTestClient] { self.state.withLock { $0.crowd } }
        var crowdRefused: Int { self.state.withLock { $0.crowdRefused } }
        var flood: (served: Int, refused: Int) { self.state.withLock { ($0.served, $0.refused) } }
    }

    @Test("2,000 sessions from one address in bursts of 200 are all served with default flags; a flooding address is throttled; a third address keeps chatting")
    func crowdBehindOneAddress() async throws {
        // Its own thread: on the loops the test's 2,000 WebSocket clients share, a loaded machine
        // delayed some stream headers past Tether's 15 s stream-open timeout (58 and 150 of the
        // crowd refused with remote-connection-failed in two full runs, every connection accepted).
        let fakeLoop = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { fakeLoop.shutdownGracefully { _ in } }
        let fake = try await FakeXMPPServer.start(group: fakeLoop)
        do {
            try await withProsody { prosody in
                for user in ["alice", "bob"] { try await prosody.register(user: user, password: "secret") }
                try await withTetherProcess([
                    "--route", "localhost=127.0.0.1:\(prosody.c2sPort)",
                    "--route", "crowd.example=127.0.0.1:\(fake.port)",
                ]) { tether in
                    let alice = try await WebSocketTestClient.connect(port: tether.port, from: Self.bystander)
                    let bob = try await WebSocketTestClient.connect(port: tether.port, from: Self.bystander)
                    try await alice.login(user: "alice", password: "secret", resource: "a")
                    try await bob.login(user: "bob", password: "secret", resource: "b")

                    let tally = Tally()
                    let started = ContinuousClock.now
                    var chatted = 0
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        // The flooder: eight connections' worth of sessions, each one closed and
                        // the next opened as fast as Tether answers, for as long as the crowd logs in.
                        for _ in 0..<8 {
                            group.addTask {
                                while tally.flooding {
                                    let (client, served, _) = try await Self.session(port: tether.port, from: Self.flooder)
                                    tally.flooded(served: served)
                                    await client.drop()
                                }
                            }
                        }
                        // The crowd: 10 bursts of 200 at once, each 4.5 s after the last one was
                        // answered (at most 44 new sessions/s). Paced from the answers, not from
                        // the clock: on a loaded machine a burst's admissions can bunch up at its
                        // end, and a next burst started by the clock would find the bucket empty
                        // (regression: 3 of the crowd refused in a full run).
                        for burst in 0..<10 {
                            try await withThrowingTaskGroup(of: Void.self) { wave in
                                for _ in 0..<200 {
                                    wave.addTask {
                                        let (client, served, error) = try await Self.session(port: tether.port, from: Self.crowd)
                                        tally.joined(client, served: served, error: error)
                                    }
                                }
                                try await wave.waitForAll()
                            }
                            // Meanwhile the bystanders' messages keep arriving.
                            chatted += 1
                            try await alice.send("<message xmlns='jabber:client' to='bob@localhost/b' id='c\(burst)'><body>burst \(burst)</body></message>")
                            let received = try await bob.receive(until: { $0.contains("id='c\(burst)'") })
                            #expect(received.last?.contains("burst \(burst)") == true)
                            if burst < 9 { try await Task.sleep(for: .milliseconds(4500)) }
                        }
                        tally.stopFlooding()
                        try await group.waitForAll()
                    }
                    // Why Tether gave up on an upstream (a connect or stream-open timeout towards
                    // the in-process scripted server, seen on a loaded machine), for the next time.
                    let upstreamFailures = tether.stderr.split(separator: "\n").filter { $0.contains("upstream unavailable") }
                    #expect(
                        tally.crowdRefused == 0,
                        "\(tally.crowdRefused) of the crowd's 2,000 sessions refused: \(tally.crowdErrors); \(upstreamFailures.count) upstream failures logged, the first: \(upstreamFailures.prefix(3)); the scripted server accepted \(fake.connectionCount)"
                    )
                    #expect(tally.crowd.count == 2000)
                    let (served, refused) = tally.flood
                    let elapsed = (ContinuousClock.now - started).components.seconds
                    print("admission: flooder served \(served), refused \(refused) in \(elapsed) s; crowd 2000 served")
                    // Its burst and then the sustained rate, however fast this machine let it try:
                    // never more than the bucket allows (plus the eight attempts in flight).
                    let allowance = 200 + 50 * Int(elapsed + 1) + 8
                    #expect(served <= allowance, "the flooder got \(served) sessions in \(elapsed) s (allowance \(allowance))")
                    if served + refused > allowance { #expect(refused > 0) }
                    #expect(served >= min(200, served + refused), "the flooding address did not get its burst (\(served))")
                    #expect(chatted == 10)
                    for client in tally.crowd { await client.drop() }
                    await alice.drop()
                    await bob.drop()
                }
            }
            await fake.stop()
        } catch {
            await fake.stop()
            throw error
        }
    }
}
