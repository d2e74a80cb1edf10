import AsyncHTTPClient
import Foundation
import Testing

/// The `tether` binary reloading its configuration on SIGHUP, with JSON logs, in front of a real Prosody.
@Suite("SIGHUP reload and JSON logs", .serialized)
struct ReloadTests {
    @Test("SIGHUP applies a new configuration without dropping live sessions; a bad one is refused and the old one stays")
    func reload() async throws {
        try await withProsody { prosody in
            try await prosody.register(user: "alice", password: "secret")
            try await prosody.register(user: "bob", password: "secret")
            try await Self.reload(c2sPort: prosody.c2sPort)
        }
    }

    static func reload(c2sPort: Int) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tether-reload-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let config = directory.appendingPathComponent("tether.conf")
        func write(_ corsOrigin: String, extra: String = "") throws {
            try """
            listen = 127.0.0.1:0
            route = localhost=127.0.0.1:\(c2sPort)
            cors-origin = \(corsOrigin)
            bosh-max-wait = 2
            log-format = json
            \(extra)
            """.write(to: config, atomically: true, encoding: .utf8)
        }
        try write("https://old.example")
        let stdoutPath = directory.appendingPathComponent("stdout").path
        let stderrPath = directory.appendingPathComponent("stderr").path
        let tether = try ChildProcess.spawn(CommandLineTests.binary, ["serve", "--config", config.path], stdout: stdoutPath, stderr: stderrPath)
        let http = HTTPClient(eventLoopGroupProvider: .singleton)
        do {
            func stderr() -> String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }
            func waitFor(_ text: String, in file: String) async throws -> String {
                let deadline = ContinuousClock.now + .seconds(15)
                while ContinuousClock.now < deadline {
                    let content = (try? String(contentsOfFile: file, encoding: .utf8)) ?? ""
                    if content.contains(text) { return content }
                    try await Task.sleep(for: .milliseconds(50))
                }
                throw TestFailure("'\(text)' never appeared; stderr: \(stderr())")
            }
            let listening = try await waitFor("tether listening on 127.0.0.1:", in: stdoutPath)
            let port = try required(listening.split(separator: "\n").first.flatMap { Int($0.split(separator: ":").last ?? "") }, "port")
            func preflight(_ origin: String) async throws -> Int {
                try await rawHTTP(
                    port: port, "OPTIONS /http-bind HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: \(origin)\r\nAccess-Control-Request-Method: POST\r\nConnection: close\r\n\r\n"
                ).status
            }
            let url = "http://127.0.0.1:\(port)/http-bind"
            let alice = BOSHTestClient(http: http, url: url)
            try await alice.login(user: "alice", password: "secret")
            #expect(try await preflight("https://old.example") == 204)
            #expect(try await preflight("https://new.example") == 403)

            try write("https://new.example")
            tether.signal(SIGHUP)
            _ = try await waitFor("configuration reloaded", in: stderrPath)
            #expect(try await preflight("https://new.example") == 204)
            #expect(try await preflight("https://old.example") == 403)
            // The session that started before the reload carries on.
            let bob = BOSHTestClient(http: http, url: url)
            try await bob.login(user: "bob", password: "secret")
            _ = try await bob.send("<message xmlns='jabber:client' to='alice@localhost/test' id='after-reload'><body>still there?</body></message>")
            let received = try await alice.receive(until: { $0.contains("id='after-reload'") })
            #expect(received.contains { $0.contains("still there?") })

            // A configuration that does not validate is refused whole.
            try write("https://bad.example", extra: "bosh-max-wait = soon")
            tether.signal(SIGHUP)
            _ = try await waitFor("configuration reload refused", in: stderrPath)
            #expect(try await preflight("https://new.example") == 204)
            #expect(try await preflight("https://bad.example") == 403)
            #expect(stderr().contains("bosh-max-wait"))

            // Every log line is one JSON object; session lines carry sid, client and transport;
            // credentials never appear.
            let lines = stderr().split(separator: "\n")
            #expect(!lines.isEmpty)
            var sawSession = false
            for line in lines {
                let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
                #expect(object?["level"] is String && object?["message"] is String, "not a log object: \(line)")
                if object?["message"] as? String == "session created" {
                    sawSession = true
                    #expect(object?["sid"] is String && object?["client"] as? String == "127.0.0.1" && object?["transport"] as? String == "bosh")
                }
            }
            #expect(sawSession)
            #expect(!stderr().contains("AGFsaWNlAHNlY3JldA=="))
            tether.signal(SIGTERM)
            #expect(await tether.wait(timeout: .seconds(15)) == 0)
            try await http.shutdown()
        } catch {
            await tether.stop()
            try? await http.shutdown()
            throw error
        }
    }
}
