import AsyncHTTPClient
import TetherServer

/// A real Prosody with users `alice`, `bob` (password `secret`), and a Tether in front of it.
/// Both are stopped when `body` returns or throws.
func withProsodyAndTether<T>(
    prosody options: ProsodyServer.Options = .init(),
    users: [String] = ["alice", "bob"],
    _ body: (ProsodyServer, TetherFixture, HTTPClient) async throws -> T,
    configure: (inout TetherConfiguration, ProsodyServer) -> Void = { _, _ in }
) async throws -> T {
    try await withProsody(options) { prosody in
        for user in users {
            try await prosody.register(user: user, password: "secret")
        }
        var configuration = TetherFixture.configuration(c2sPort: prosody.c2sPort)
        configure(&configuration, prosody)
        return try await withTether(configuration) { tether, http in
            try await body(prosody, tether, http)
        }
    }
}

/// A real Prosody for `body`, stopped afterwards whatever happens.
func withProsody<T>(_ options: ProsodyServer.Options = .init(), _ body: (ProsodyServer) async throws -> T) async throws -> T {
    let prosody = try await ProsodyServer.start(options)
    do {
        let result = try await body(prosody)
        await prosody.stop()
        return result
    } catch {
        print("Prosody log tail:\n\(prosody.logTail())")
        await prosody.stop()
        throw error
    }
}
