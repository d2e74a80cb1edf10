import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A child process for the test harness, spawned with posix_spawn and reaped with a
/// non-blocking waitpid.
///
/// Not Foundation's `Process`: its reaper thread blocks in `wait4` on any child that closes the
/// descriptors it inherited (dnsmasq, nginx), which stalls every other `waitUntilExit` in the
/// process, and `waitUntilExit` blocks a Swift concurrency thread. Here every wait is an async
/// poll, and the child starts with no blocked signals, so SIGTERM works.
final class ChildProcess: Sendable {
    let pid: pid_t
    let executable: String
    private let status = Mutex<Int32?>(nil)

    private init(pid: pid_t, executable: String) {
        self.pid = pid
        self.executable = executable
    }

    /// Starts `executable`; stdout/stderr go to the given files (or /dev/null).
    static func spawn(_ executable: String, _ arguments: [String], directory: String? = nil, stdout: String? = nil, stderr: String? = nil) throws -> ChildProcess {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdout ?? "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, stderr ?? "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        // NIO's sockets are not close-on-exec: without this a child would hold the test's
        // connections and listeners open (glibc 2.34+, looked up because Swift does not see _np).
        if let symbol = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np") {
            typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
            _ = unsafeBitCast(symbol, to: AddCloseFrom.self)(&actions, 3)
        }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigmask(&attributes, &none)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGTERM, SIGINT, SIGPIPE, SIGCHLD, SIGHUP] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        // A working directory through coreutils' `env -C` (glibc's addchdir_np is not visible to Swift).
        let command = directory.map { ["/usr/bin/env", "-C", $0, executable] } ?? [executable]
        let argv: [UnsafeMutablePointer<CChar>?] = (command + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, command[0], &actions, &attributes, argv, environ)
        guard result == 0 else { throw TestFailure("cannot start \(executable): \(String(cString: strerror(result)))") }
        return ChildProcess(pid: pid, executable: executable)
    }

    /// The exit status once the child has ended (reaping it), else `nil`.
    var exitStatus: Int32? {
        self.status.withLock { status in
            if status != nil { return status }
            var raw: Int32 = 0
            let reaped = waitpid(self.pid, &raw, WNOHANG)
            if reaped == self.pid {
                // WIFEXITED → exit code; killed by a signal → 128 + signal, as shells report it.
                let signal = raw & 0x7F
                status = signal == 0 ? (raw >> 8) & 0xFF : 128 + signal
            } else if reaped < 0 {
                status = -1
            }
            return status
        }
    }

    var isRunning: Bool { self.exitStatus == nil }

    /// Waits for the child to end; `nil` when it is still running after `timeout`.
    @discardableResult
    func wait(timeout: Duration = .seconds(30)) async -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let status = self.exitStatus { return status }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return self.exitStatus
    }

    func signal(_ signal: Int32) {
        if self.isRunning { kill(self.pid, signal) }
    }

    /// SIGTERM, then SIGKILL after `grace`; always reaps.
    func stop(grace: Duration = .seconds(2)) async {
        self.signal(SIGTERM)
        if await self.wait(timeout: grace) == nil {
            self.signal(SIGKILL)
            await self.wait(timeout: .seconds(5))
        }
    }

    /// Runs a command to completion; fails the test setup on a non-zero exit.
    @discardableResult
    static func run(_ executable: String, _ arguments: [String], directory: String? = nil, timeout: Duration = .seconds(30)) async throws -> Int32 {
        let child = try ChildProcess.spawn(executable, arguments, directory: directory)
        guard let status = await child.wait(timeout: timeout) else {
            await child.stop()
            throw TestFailure("\(executable) did not finish within \(timeout)")
        }
        return status
    }
}

/// A loopback TCP port bound without listening: connecting to it is refused, and nobody else
/// can bind it until `release()`.
final class ReservedPort: Sendable {
    let port: Int
    private let descriptor: Int32

    init() throws {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw TestFailure("socket() failed") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
        }
        guard bound == 0, named == 0 else {
            close(descriptor)
            throw TestFailure("cannot reserve a port")
        }
        self.descriptor = descriptor
        self.port = Int(UInt16(bigEndian: address.sin_port))
    }

    func release() {
        close(self.descriptor)
    }
}
