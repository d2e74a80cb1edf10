import Foundation
import Testing

/// The `tether` executable as operators run it.
@Suite("tether command line", .serialized)
struct CommandLineTests {
    /// The build's `tether`, or the one `TETHER_TEST_BINARY` names (a release build, or an older
    /// one to show that a regression test fails without its fix).
    static let binary: String = {
        if let path = ProcessInfo.processInfo.environment["TETHER_TEST_BINARY"], !path.isEmpty { return path }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return root.appendingPathComponent(".build/debug/tether").path
    }()

    /// Runs tether with arguments; returns exit status, stdout and stderr. With `until`, waits for
    /// that line on stdout and then stops the server with SIGTERM, as an operator would.
    static func run(_ arguments: [String], timeout: Duration = .seconds(10), until line: String? = nil) async throws -> (status: Int32, stdout: String, stderr: String) {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tether-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let stdoutPath = directory.appendingPathComponent("stdout").path
        let stderrPath = directory.appendingPathComponent("stderr").path
        let process = try ChildProcess.spawn(Self.binary, arguments, stdout: stdoutPath, stderr: stderrPath)
        func stdout() -> String { (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? "" }
        if let line {
            let deadline = ContinuousClock.now + timeout
            while ContinuousClock.now < deadline && process.isRunning && !stdout().contains(line) {
                try await Task.sleep(for: .milliseconds(20))
            }
            process.signal(SIGTERM)
        }
        guard let status = await process.wait(timeout: timeout) else {
            await process.stop()
            throw TestFailure("tether \(arguments) did not exit within \(timeout)")
        }
        return (status, stdout(), (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "")
    }

    @Test("--help documents every option")
    func help() async throws {
        let result = try await Self.run(["serve", "--help"])
        #expect(result.status == 0)
        for option in [
            "--listen", "--route", "--cors-origin", "--no-cors", "--upstream-tls", "--ca-file", "--bosh-max-wait", "--bosh-max-inactivity", "--bosh-max-pause", "--bosh-max-hold",
            "--bosh-polling", "--config", "--client-address-header", "--public-host",
        ] {
            #expect(result.stdout.contains(option), "missing \(option)")
        }
    }

    @Test(
        "bad flags and values exit non-zero with a message naming them",
        arguments: [
            (["serve", "--bogus"], "--bogus"),
            (["serve", "--route", "localhost"], "--route 'localhost' is not domain=host:port"),
            (["serve", "--route", "localhost=127.0.0.1:5222", "--upstream-tls", "maybe"], "--upstream-tls must be required, optional or off"),
            (["serve", "--route", "localhost=127.0.0.1:5222", "--ca-file", "/nonexistent.pem"], "--ca-file '/nonexistent.pem' cannot be read"),
            (["serve", "--route", "localhost=127.0.0.1:5222", "--bosh-max-inactivity", "0"], "--bosh-max-inactivity must be greater than 0"),
            (["serve"], "no domain to serve"),
            (["serve", "--route", "localhost=127.0.0.1:5222", "--listen-tls", "127.0.0.1:0"], "--listen-tls needs --tls-certificate and --tls-key"),
            (
                ["serve", "--route", "localhost=127.0.0.1:5222", "--listen-tls", "127.0.0.1:0", "--tls-certificate", "/nonexistent.pem", "--tls-key", "/nonexistent.key"],
                "--tls-certificate '/nonexistent.pem' holds no readable PEM certificate"
            ),
            (
                ["serve", "--route", "localhost=127.0.0.1:5222", "--listen-tls", "127.0.0.1:0", "--tls-certificate", "/nonexistent.pem"],
                "give both --tls-certificate and --tls-key"
            ),
            (["serve", "--route", "localhost=127.0.0.1:5222", "--client-address-header", "x-real-ip"], "--client-address-header must be x-forwarded-for or forwarded"),
            (["serve", "--route", "localhost=127.0.0.1:5222", "--public-host", "chat.example.org/path"], "--public-host 'chat.example.org/path' is not a host name"),
        ])
    func badFlags(arguments: [String], message: String) async throws {
        let result = try await Self.run(arguments)
        #expect(result.status != 0)
        #expect(result.stderr.contains(message), "stderr: \(result.stderr)")
    }

    @Test("a configuration file uses the option names; the command line adds to it; a bad file names the line")
    func configurationFile() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tether-config-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let good = directory.appendingPathComponent("good.conf")
        try """
        # Tether test configuration
        listen = 127.0.0.1:0
        route = localhost=127.0.0.1:5222
        cors-origin = https://app.example
        bosh-max-wait = 20
        """.write(to: good, atomically: true, encoding: .utf8)
        let started = try await Self.run(["serve", "--config", good.path, "--log-level", "warning"], until: "tether listening on 127.0.0.1:")
        #expect(started.stdout.contains("tether listening on 127.0.0.1:"))
        #expect(started.status == 0)

        let bad = directory.appendingPathComponent("bad.conf")
        try "route = localhost=127.0.0.1:5222\nbosh-max-wait = soon\n".write(to: bad, atomically: true, encoding: .utf8)
        let refused = try await Self.run(["serve", "--config", bad.path])
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("bad.conf"))
        #expect(refused.stderr.contains("bosh-max-wait"))
    }
}

extension CommandLineTests {
    @Test("the example configuration shipped with the systemd unit is accepted")
    func exampleConfiguration() async throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let example = root.appendingPathComponent("deploy/tether.conf.example").path
        let unit = try String(contentsOfFile: root.appendingPathComponent("deploy/tether.service").path, encoding: .utf8)
        #expect(unit.contains("ExecStart=/usr/local/bin/tether serve --config /etc/tether/tether.conf"))
        // The same settings, listening on a free port so the test can start it.
        let copy = FileManager.default.temporaryDirectory.appendingPathComponent("tether-example-\(UUID().uuidString).conf")
        defer { try? FileManager.default.removeItem(at: copy) }
        let text = try String(contentsOfFile: example, encoding: .utf8)
        #expect(text.contains("listen = 127.0.0.1:5280\n"))
        try text.replacingOccurrences(of: "listen = 127.0.0.1:5280\n", with: "listen = 127.0.0.1:0\n").write(to: copy, atomically: true, encoding: .utf8)
        let started = try await Self.run(["serve", "--config", copy.path], until: "tether listening on")
        #expect(started.stdout.contains("tether listening on 127.0.0.1:"))
        #expect(started.status == 0)
    }
}
