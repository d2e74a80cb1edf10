import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// The `tether` executable (the build's `.build/debug/tether`) serving on a free loopback port,
/// as an operator runs it: what a stranger on the network reaches. Stopped by PID.
final class TetherProcess: Sendable {
    let process: ChildProcess
    let port: Int
    let directory: URL

    private init(process: ChildProcess, port: Int, directory: URL) {
        self.process = process
        self.port = port
        self.directory = directory
    }

    var stderr: String { (try? String(contentsOf: self.directory.appendingPathComponent("stderr"), encoding: .utf8)) ?? "" }
    var boshURL: String { "http://127.0.0.1:\(self.port)/http-bind" }

    /// Starts `tether serve` with `arguments` (a `--listen` on a free port is added) and waits for
    /// its "listening" line.
    static func start(_ arguments: [String]) async throws -> TetherProcess {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tether-process-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let port = try freePort()
        let stdout = directory.appendingPathComponent("stdout").path
        let process = try ChildProcess.spawn(
            CommandLineTests.binary,
            ["serve", "--listen", "127.0.0.1:\(port)"] + arguments,
            stdout: stdout,
            stderr: directory.appendingPathComponent("stderr").path
        )
        let server = TetherProcess(process: process, port: port, directory: directory)
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline {
            if ((try? String(contentsOfFile: stdout, encoding: .utf8)) ?? "").contains("tether listening on") { return server }
            guard process.isRunning else { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        let log = server.stderr
        await server.stop()
        throw TestFailure("tether did not start: \(log)")
    }

    /// SIGTERM, as an operator stops it; the exit status, or nil when it had to be killed.
    @discardableResult
    func terminate(timeout: Duration = .seconds(15)) async -> Int32? {
        self.process.signal(SIGTERM)
        let status = await self.process.wait(timeout: timeout)
        if status == nil { await self.process.stop() }
        return status
    }

    func stop() async {
        await self.process.stop()
        try? FileManager.default.removeItem(at: self.directory)
    }
}

/// Runs `body` with a `tether` process, stopped afterwards whatever happens (its log is
/// printed when `body` fails).
func withTetherProcess<T>(_ arguments: [String], _ body: (TetherProcess) async throws -> T) async throws -> T {
    let tether = try await TetherProcess.start(arguments)
    do {
        let result = try await body(tether)
        await tether.stop()
        return result
    } catch {
        // The whole log is kept for a look afterwards; its end is printed.
        let kept = FileManager.default.temporaryDirectory.appendingPathComponent("tether-failed-\(UUID().uuidString).log")
        try? tether.stderr.write(to: kept, atomically: true, encoding: .utf8)
        print("tether log (whole log in \(kept.path)):\n\(tether.stderr.suffix(4000))")
        await tether.stop()
        throw error
    }
}
