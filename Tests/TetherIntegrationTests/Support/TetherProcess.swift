import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// The `tether` executable (the build's `.build/debug/tether`) serving on a free loopback port,
/// as an operator runs it: what a stranger on the network reaches. Stopped by PID.
final class TetherProcess: Sendable {
    let process: ChildProcess
    /// The plain listener's port.
    let port: Int
    /// Every bound port, in the order tether printed them: `--listen` ones, then `--listen-tls` ones.
    let ports: [Int]
    let directory: URL

    private init(process: ChildProcess, ports: [Int], directory: URL) {
        self.process = process
        self.port = ports[0]
        self.ports = ports
        self.directory = directory
    }

    var stderr: String { (try? String(contentsOf: self.directory.appendingPathComponent("stderr"), encoding: .utf8)) ?? "" }
    var boshURL: String { "http://127.0.0.1:\(self.port)/http-bind" }

    /// Starts `tether serve` with `arguments` (a `--listen` on port 0 is added: the kernel picks
    /// a free one, no port is chosen ahead and raced for) and waits until every listener printed
    /// its "listening" line; `listeners` is how many there will be.
    static func start(_ arguments: [String], listeners: Int = 1) async throws -> TetherProcess {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tether-process-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let stdout = directory.appendingPathComponent("stdout").path
        let stderr = directory.appendingPathComponent("stderr").path
        let process = try ChildProcess.spawn(CommandLineTests.binary, ["serve", "--listen", "127.0.0.1:0"] + arguments, stdout: stdout, stderr: stderr)
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline {
            let printed = (try? String(contentsOfFile: stdout, encoding: .utf8)) ?? ""
            let ports = printed.split(separator: "\n").compactMap { line -> Int? in
                guard line.hasPrefix("tether listening on "), let colon = line.lastIndex(of: ":") else { return nil }
                return Int(line[line.index(after: colon)...])
            }
            if ports.count >= listeners { return TetherProcess(process: process, ports: ports, directory: directory) }
            guard process.isRunning else { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        let log = (try? String(contentsOfFile: stderr, encoding: .utf8)) ?? ""
        await process.stop()
        try? FileManager.default.removeItem(at: directory)
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
func withTetherProcess<T>(_ arguments: [String], listeners: Int = 1, _ body: (TetherProcess) async throws -> T) async throws -> T {
    let tether = try await TetherProcess.start(arguments, listeners: listeners)
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
