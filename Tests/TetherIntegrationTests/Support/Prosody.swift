import Foundation
import NIOCore
import NIOPosix
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A private Prosody 0.12 (Debian's package) for one test: its own directory (under /dev/shm,
/// see `baseDirectory`) with config, data, pidfile, certificates and log; listening on
/// 127.0.0.1 only, on free ports it picks; started in the foreground as a child of the test
/// process and stopped by PID.
///
/// Always pair `start` with `stop` on every path. The simplest way is `withProsody`
/// (Environment.swift), which stops it whether the body returns or throws and prints
/// `logTail()` on failure:
///
///     try await withProsody(.init(tls: true)) { prosody in
///         try await prosody.register(user: "alice", password: "secret")
///         // connect to 127.0.0.1:\(prosody.c2sPort), trust prosody.caFile …
///     }
///
/// By hand (Swift has no async `defer`): `let prosody = try await ProsodyServer.start()`, then
/// `do { …; await prosody.stop() } catch { print(prosody.logTail()); await prosody.stop(); throw error }`.
/// Safety nets: a server dropped without `stop()` is SIGKILLed in `deinit`, and the first
/// `start()` of a test process kills fixture Prosodys orphaned by an earlier, crashed test
/// process (identified by their `--config …/tether-prosody-*/prosody.cfg.lua` and a parent of 1).
///
/// Launched as `/usr/bin/prosody --config <dir>/prosody.cfg.lua -F` with the test's own user
/// (root here): the config says `run_as_root = true`, so neither `prosody` nor `prosodyctl`
/// tries to switch to the `prosody` user, and every file stays in its own directory. The
/// system Prosody's /etc/prosody (and its certificates), /var/lib/prosody and ports are never
/// touched. Startup takes ~0.1 s (~0.7 s with `tls`: RSA keys), `stop()` ~20 ms when idle.
final class ProsodyServer: Sendable {
    struct Options: Sendable {
        /// Offer STARTTLS with a server certificate (SAN DNS:<host>) signed by a throwaway CA;
        /// `caFile` is that CA. Without it mod_tls is not loaded and STARTTLS is not offered.
        var tls = false
        /// More virtual hosts beside `localhost` (each gets its own certificate when `tls`).
        var extraHosts: [String] = []
        /// Serve Prosody's own BOSH (/http-bind) and WebSocket (/xmpp-websocket) on `httpPort`.
        var httpEndpoints = false
        /// How long mod_smacks keeps a dropped session for resumption (XEP-0198).
        var smacksHibernationSeconds = 60
        /// Listen on ::1 as well as 127.0.0.1.
        var ipv6 = false
        /// Load mod_carbons (XEP-0280).
        var carbons = false
        /// More modules to load (names without `mod_`).
        var extraModules: [String] = []
        /// Raw Lua appended to the global section of the config (before the VirtualHosts).
        var extraConfig = ""
        /// Minimum level written to the log file: debug, info, warn or error.
        var logLevel = "info"
        /// Also listen for XEP-0368 Direct TLS on `directTLSPort` (`c2s_direct_tls_ports`;
        /// needs `tls`). Prosody picks each host's certificate by SNI.
        var directTLS = false
        /// Listen for plain c2s (STARTTLS when `tls`) on `c2sPort`. Off with `directTLS`: a
        /// server reachable over Direct TLS only (`c2sPort` then has no listener).
        var plainC2S = true
        /// A MUC service (XEP-0045) at `conference.localhost`.
        var muc = false
    }

    /// Where the per-server directories go: /dev/shm (tmpfs) when writable — creating a file
    /// there is ~20× faster than on this VM's ext4 /tmp (~1 ms each), which Prosody's own
    /// storage and `writeAccounts` feel — else the temporary directory.
    static let baseDirectory: URL = {
        let shm = "/dev/shm"
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: shm, isDirectory: &isDirectory), isDirectory.boolValue,
            FileManager.default.isWritableFile(atPath: shm)
        {
            return URL(fileURLWithPath: shm, isDirectory: true)
        }
        return FileManager.default.temporaryDirectory
    }()

    static let prosodyPath = "/usr/bin/prosody"
    static let prosodyctlPath = "/usr/bin/prosodyctl"

    let directory: URL
    let options: Options
    let c2sPort: Int
    /// The Direct TLS c2s port, when `directTLS`.
    let directTLSPort: Int?
    /// mod_bosh at http://127.0.0.1:<httpPort>/http-bind and mod_websocket at
    /// ws://127.0.0.1:<httpPort>/xmpp-websocket, when `httpEndpoints`.
    let httpPort: Int?
    /// PEM of the throwaway CA that signed the server certificates, when `tls`.
    let caFile: String?
    private let child: Mutex<ChildProcess>

    /// The running Prosody's PID (a new one after `restart()`).
    var pid: Int32 { self.child.withLock { $0.pid } }
    var isRunning: Bool { self.process.isRunning }
    var hosts: [String] { ["localhost"] + self.options.extraHosts }
    var configPath: String { self.directory.appendingPathComponent("prosody.cfg.lua").path }
    var logPath: String { self.directory.appendingPathComponent("prosody.log").path }
    var dataPath: String { self.directory.appendingPathComponent("data").path }
    private var consolePath: String { self.directory.appendingPathComponent("console.log").path }
    private var process: ChildProcess { self.child.withLock { $0 } }

    private init(directory: URL, options: Options, c2sPort: Int, directTLSPort: Int?, httpPort: Int?, caFile: String?, process: ChildProcess) {
        self.directory = directory
        self.options = options
        self.c2sPort = c2sPort
        self.directTLSPort = directTLSPort
        self.httpPort = httpPort
        self.caFile = caFile
        self.child = Mutex(process)
    }

    deinit {
        // Safety net for a server that was never stopped: no Prosody outlives its fixture.
        let process = self.child.withLock { $0 }
        if process.isRunning {
            process.signal(SIGKILL)
            for _ in 0..<500 where process.exitStatus == nil { usleep(2_000) }
            try? FileManager.default.removeItem(at: self.directory)
        }
    }

    /// Writes the config, starts Prosody and returns once its c2s (and HTTP) ports accept
    /// connections. Retries on fresh ports when one was taken between picking and binding.
    static func start(_ options: Options = .init()) async throws -> ProsodyServer {
        guard FileManager.default.isExecutableFile(atPath: Self.prosodyPath) else {
            throw TestFailure("Prosody is not installed: run scripts/install-deps.sh")
        }
        _ = Self.orphansReaped
        let directory = Self.baseDirectory.appendingPathComponent("tether-prosody-\(UUID().uuidString)")
        do {
            try FileManager.default.createDirectory(at: directory.appendingPathComponent("data"), withIntermediateDirectories: true)
            try FileManager.default.createDirectory(at: directory.appendingPathComponent("certs"), withIntermediateDirectories: true)
            let hosts = ["localhost"] + options.extraHosts
            let caFile = options.tls ? try await makeCertificates(in: directory.appendingPathComponent("certs"), hosts: hosts) : nil
            var lastError: any Error = TestFailure("Prosody did not start")
            for attempt in 1...3 {
                let c2sPort = try freePort()
                let httpPort = options.httpEndpoints ? try freePort() : nil
                let directTLSPort = options.directTLS ? try freePort() : nil
                let config = Self.config(directory: directory, options: options, c2sPort: c2sPort, directTLSPort: directTLSPort, httpPort: httpPort)
                try config.write(to: directory.appendingPathComponent("prosody.cfg.lua"), atomically: true, encoding: .utf8)
                let logOffset = Self.fileSize(directory.appendingPathComponent("prosody.log").path)
                let process = try Self.launch(directory: directory)
                let server = ProsodyServer(
                    directory: directory, options: options, c2sPort: c2sPort, directTLSPort: directTLSPort, httpPort: httpPort, caFile: caFile, process: process
                )
                do {
                    try await server.waitUntilReady(logOffset: logOffset)
                    return server
                } catch let error as PortTaken where attempt < 3 {
                    print("Prosody could not bind (\(error)); retrying on other ports")
                    lastError = error
                    await process.stop(grace: .seconds(3))
                } catch {
                    print("Prosody did not start: \(error)\n\(server.logTail())")
                    await process.stop(grace: .seconds(3))
                    throw error
                }
            }
            throw lastError
        } catch {
            try? FileManager.default.removeItem(at: directory)
            throw error
        }
    }

    private static func launch(directory: URL) throws -> ChildProcess {
        try Self.spawnWithoutInheritedDescriptors(
            Self.prosodyPath, ["--config", directory.appendingPathComponent("prosody.cfg.lua").path, "-F"],
            directory: directory.path,
            stdout: directory.appendingPathComponent("console.log").path,
            stderr: directory.appendingPathComponent("console.err").path
        )
    }

    /// `ChildProcess.spawn` through bash, which closes every inherited descriptor above 2 and
    /// then execs `executable` (same PID). NIO opens its sockets without SOCK_CLOEXEC and
    /// posix_spawn passes them on, so a Prosody would otherwise hold the test process's
    /// listening sockets and connections for its whole life: another fixture's port stays
    /// "in use" (seen: 4 of 4 parallel starts collided), a closed connection sends no FIN.
    private static func spawnWithoutInheritedDescriptors(
        _ executable: String, _ arguments: [String], directory: String, stdout: String, stderr: String
    ) throws -> ChildProcess {
        let script = #"fds=(/proc/$$/fd/*); for fd in "${fds[@]##*/}"; do if (( fd > 2 )); then eval "exec $fd>&-"; fi; done; exec "$@""#
        return try ChildProcess.spawn("/bin/bash", ["-c", script, "bash", executable] + arguments, directory: directory, stdout: stdout, stderr: stderr)
    }

    private static func config(directory: URL, options: Options, c2sPort: Int, directTLSPort: Int?, httpPort: Int?) -> String {
        func lua(_ list: [String]) -> String { "{ " + list.map(luaString).joined(separator: ", ") + " }" }
        func path(_ name: String) -> String { luaString(directory.appendingPathComponent(name).path) }
        var modules = ["roster", "saslauth", "disco", "ping", "smacks", "posix"]
        if options.tls { modules.append("tls") }
        if options.carbons { modules.append("carbons") }
        if httpPort != nil { modules += ["bosh", "websocket"] }
        modules += options.extraModules
        var disabled = ["s2s"]
        if !options.tls { disabled.append("tls") }
        let interfaces = options.ipv6 ? ["127.0.0.1", "::1"] : ["127.0.0.1"]
        let hosts = (["localhost"] + options.extraHosts).map { "VirtualHost \(luaString($0))" }.joined(separator: "\n")
        return """
            -- Written by Tether's tests (ProsodyServer); isolated from the system Prosody.
            run_as_root = true
            daemonize = false
            pidfile = \(path("prosody.pid"))
            data_path = \(path("data"))
            certificates = \(path("certs"))
            log = { { levels = { min = \(luaString(options.logLevel)) }, to = "file", filename = \(path("prosody.log")) } }
            interfaces = \(lua(interfaces))
            local_interfaces = \(lua(interfaces))
            -- Crowds of sessions connect at once: the default accept queue (128) drops SYNs.
            network_settings = { tcp_backlog = 4096 }
            c2s_ports = { \(options.plainC2S ? String(c2sPort) : "") }
            c2s_direct_tls_ports = { \(directTLSPort.map(String.init) ?? "") }
            legacy_ssl_ports = { }
            s2s_ports = { }
            s2s_direct_tls_ports = { }
            component_ports = { }
            http_ports = { \(httpPort.map(String.init) ?? "") }
            http_interfaces = \(lua(interfaces))
            https_ports = { }
            http_default_host = "localhost"
            modules_enabled = \(lua(modules))
            modules_disabled = \(lua(disabled))
            authentication = "internal_plain"
            storage = "internal"
            allow_registration = false
            c2s_require_encryption = false
            s2s_require_encryption = false
            allow_unencrypted_plain_auth = true
            consider_bosh_secure = true
            consider_websocket_secure = true
            cross_domain_websocket = true
            smacks_hibernation_time = \(options.smacksHibernationSeconds)
            \(options.extraConfig)
            \(hosts)
            \(options.muc ? "Component \"conference.localhost\" \"muc\"" : "")

            """
    }

    // MARK: Accounts

    /// Registers an account with `prosodyctl register` against this server's config (~50 ms).
    /// Safe to call concurrently, and while Prosody runs.
    func register(user: String, host: String = "localhost", password: String) async throws {
        let output = self.directory.appendingPathComponent("prosodyctl-\(UUID().uuidString)").path
        defer {
            try? FileManager.default.removeItem(atPath: output + ".out")
            try? FileManager.default.removeItem(atPath: output + ".err")
        }
        let child = try Self.spawnWithoutInheritedDescriptors(
            Self.prosodyctlPath, ["--config", self.configPath, "register", user, host, password],
            directory: self.directory.path, stdout: output + ".out", stderr: output + ".err"
        )
        guard let status = await child.wait(timeout: .seconds(30)) else {
            await child.stop()
            throw TestFailure("prosodyctl register \(user)@\(host) did not finish within 30 s")
        }
        guard status == 0 else {
            let said = [output + ".out", output + ".err"].compactMap { try? String(contentsOfFile: $0, encoding: .utf8) }.joined()
            let lines = said.split(separator: "\n").filter { !$0.contains("*****") }.suffix(5).joined(separator: "\n")
            throw TestFailure("prosodyctl register \(user)@\(host) failed with \(status): \(lines)")
        }
    }

    /// Writes accounts straight into the data directory, as mod_auth_internal_plain stores them
    /// (`data/<host>/accounts/<user>.dat`, names %-encoded like Prosody's datamanager:
    /// `srv.test` → `srv%2etest`). Microseconds per account; Prosody reads the files on each
    /// login, so accounts written while it runs work at once. Names must already be in
    /// nodeprep form: ASCII, lowercase, none of `"&'/:<>@` or spaces.
    func writeAccounts(_ users: [String], host: String = "localhost", password: String) throws {
        guard self.hosts.contains(host) else { throw TestFailure("\(host) is not a VirtualHost of this Prosody (\(self.hosts))") }
        let folder = URL(fileURLWithPath: self.dataPath).appendingPathComponent(Self.storageEncode(host)).appendingPathComponent("accounts")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let contents = Array("return {\n\t[\"password\"] = \(luaString(password));\n};\n".utf8)
        for user in users {
            guard Self.isStoredForm(user) else {
                throw TestFailure("\(user): not a nodeprepped ASCII username (lowercase, no \"&'/:<>@ or spaces)")
            }
            // Written beside and renamed into place, so a login never reads half a file.
            // (Not Data.write(options: .atomic): ~1 ms per file here, this is ~20 µs.)
            let target = folder.appendingPathComponent(Self.storageEncode(user) + ".dat").path
            let temporary = target + ".tmp"
            let descriptor = open(temporary, O_WRONLY | O_CREAT | O_TRUNC, 0o640)
            guard descriptor >= 0 else { throw TestFailure("cannot write \(temporary): \(String(cString: strerror(errno)))") }
            let written = contents.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress, $0.count) }
            close(descriptor)
            guard written == contents.count, rename(temporary, target) == 0 else {
                throw TestFailure("cannot write \(target): \(String(cString: strerror(errno)))")
            }
        }
    }

    /// Creates `<prefix>0` … `<prefix><count-1>` with one password (see `writeAccounts`); returns the names.
    @discardableResult
    func registerMany(prefix: String = "user", count: Int, password: String, host: String = "localhost") throws -> [String] {
        let users = (0..<count).map { "\(prefix)\($0)" }
        try self.writeAccounts(users, host: host, password: password)
        return users
    }

    /// Prosody's datamanager encoding for host and user path components: every byte that is
    /// not an ASCII letter or digit becomes `%xx` (lowercase hex).
    static func storageEncode(_ name: String) -> String {
        var encoded = ""
        for byte in name.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                encoded.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                let hex = String(byte, radix: 16)
                encoded += "%" + (hex.count == 1 ? "0" + hex : hex)
            }
        }
        return encoded
    }

    private static func isStoredForm(_ user: String) -> Bool {
        !user.isEmpty && user.utf8.count <= 1023
            && user.unicodeScalars.allSatisfy { $0.isASCII && $0.value > 0x20 && $0.value < 0x7F && !"\"&'/:<>@".unicodeScalars.contains($0) }
            && user == user.lowercased()
    }

    // MARK: Lifecycle

    /// Stops Prosody for good: SIGTERM by PID, SIGKILL if it has not exited after `grace`;
    /// reaps it and removes its directory. Idempotent.
    ///
    /// The grace is short on purpose: an idle Prosody exits ~10 ms after SIGTERM, but with
    /// client streams open it sends them `system-shutdown` and waits for their
    /// `</stream:stream>` (up to c2s_close_timeout + 1 = 6 s; ~1 s even for a connection that
    /// has just gone) — time a teardown that deletes everything anyway need not spend. Use
    /// `terminate()` to watch a graceful shutdown.
    func stop(grace: Duration = .milliseconds(500)) async {
        await self.process.stop(grace: grace)
        try? FileManager.default.removeItem(at: self.directory)
    }

    /// Graceful shutdown for fault tests: SIGTERM, then waits up to `timeout` for Prosody to
    /// close its streams and exit (no SIGKILL). Returns its exit status, or `nil` if it still
    /// runs. The directory stays; `restart()` brings it back, `stop()` cleans up.
    @discardableResult
    func terminate(timeout: Duration = .seconds(10)) async -> Int32? {
        let process = self.process
        process.signal(SIGTERM)
        return await process.wait(timeout: timeout)
    }

    /// Kills Prosody at once (SIGKILL) and reaps it, for fault tests: client connections are
    /// reset without `</stream:stream>`. The directory stays; `restart()` brings it back.
    func kill() async {
        let process = self.process
        process.signal(SIGKILL)
        await process.wait(timeout: .seconds(5))
    }

    /// SIGKILLs Prosody if it runs, then starts it again on the same ports, config and data
    /// (accounts survive; sessions and smacks hibernation do not).
    func restart() async throws {
        await self.kill()
        let logOffset = Self.fileSize(self.logPath)
        let process = try Self.launch(directory: self.directory)
        self.child.withLock { $0 = process }
        try await self.waitUntilReady(logOffset: logOffset)
    }

    /// The last lines of Prosody's log (and anything it printed to the console), for failing tests.
    func logTail(lines: Int = 40) -> String {
        var text =
            (try? String(contentsOfFile: self.logPath, encoding: .utf8)).map {
                $0.split(separator: "\n").suffix(lines).joined(separator: "\n")
            } ?? "(no log at \(self.logPath))"
        let console = [self.consolePath, self.directory.appendingPathComponent("console.err").path]
            .compactMap { try? String(contentsOfFile: $0, encoding: .utf8) }.joined()
            .split(separator: "\n").filter { !Self.isDependencyBanner($0) }
        if !console.isEmpty { text += "\n-- console:\n" + console.suffix(lines).joined(separator: "\n") }
        return text
    }

    /// The lua-unbound notice Debian's Prosody prints on every start (harmless: only s2s DNS uses it).
    private static func isDependencyBanner(_ line: Substring) -> Bool {
        line.hasPrefix("****") || line.contains("lua-unbound") || line.contains("luaunbound") || line.contains("Old DNS resolver")
            || line.contains("can be obtained in the following ways") || line.contains("More help can be found") || line.allSatisfy(\.isWhitespace)
    }

    private struct PortTaken: Error, CustomStringConvertible {
        var description: String
    }

    /// Ready = the log (from `logOffset` on) says c2s (and http) were activated on our ports,
    /// the pidfile holds this process's PID, and the c2s port accepts TCP. The log check matters: a Prosody that cannot bind its port only
    /// logs an error and keeps running, and the port would then answer for someone else.
    private func waitUntilReady(logOffset: UInt64, timeout: Duration = .seconds(15)) async throws {
        let deadline = ContinuousClock.now + timeout
        var wanted: [String: Int] = [:]
        if self.options.plainC2S { wanted["'c2s' on "] = self.c2sPort }
        if let directTLSPort = self.directTLSPort { wanted["'c2s_direct_tls' on "] = directTLSPort }
        if let httpPort = self.httpPort { wanted["'http' on "] = httpPort }
        let probedPort = self.options.plainC2S ? self.c2sPort : (self.directTLSPort ?? self.c2sPort)
        // Those lines are logged at info; with a quieter log only the TCP check is left.
        if !["debug", "info"].contains(self.options.logLevel) { wanted = [:] }
        while ContinuousClock.now < deadline {
            if let status = self.process.exitStatus {
                throw TestFailure("Prosody exited with status \(status) while starting")
            }
            let log = Self.read(self.logPath, from: logOffset)
            if let failure = log.split(separator: "\n").first(where: { $0.contains("Failed to open server port") || $0.contains("Error binding") }) {
                throw PortTaken(description: String(failure))
            }
            let activated = log.split(separator: "\n").filter { $0.contains("Activated service") }
            let listening = wanted.allSatisfy { service, port in
                activated.contains { $0.contains(service) && $0.contains("[127.0.0.1]:\(port)") }
            }
            // mod_posix writes the pidfile while loading, which may come after c2s is listening.
            let pidfile = try? String(contentsOfFile: self.directory.appendingPathComponent("prosody.pid").path, encoding: .utf8)
            let pidWritten = pidfile?.trimmingCharacters(in: .whitespacesAndNewlines) == String(self.pid)
            if listening, pidWritten, await Self.acceptsTCP(port: probedPort) { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw TestFailure("Prosody did not listen on 127.0.0.1:\(probedPort) within \(timeout)")
    }

    private static func acceptsTCP(port: Int) async -> Bool {
        guard
            let channel = try? await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(.seconds(1)).connect(host: "127.0.0.1", port: port).get()
        else { return false }
        try? await channel.close()
        return true
    }

    private static func fileSize(_ path: String) -> UInt64 {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.uint64Value ?? 0
    }

    private static func read(_ path: String, from offset: UInt64) -> String {
        guard let handle = FileHandle(forReadingAtPath: path) else { return "" }
        defer { try? handle.close() }
        guard (try? handle.seek(toOffset: offset)) != nil, let data = try? handle.readToEnd() else { return "" }
        return String(decoding: data, as: UTF8.self)
    }

    // MARK: Orphans

    private static let orphansReaped: Void = ProsodyServer.reapOrphans()

    /// Kills fixture Prosodys whose test process died (reparented to PID 1) and removes
    /// fixture directories that no live Prosody uses and that are older than ten minutes.
    /// Prosodys of other running test processes are left alone.
    static func reapOrphans() {
        // A test process that is PID 1 itself (a bare container) is every Prosody's parent.
        guard getpid() != 1 else { return }
        let files = FileManager.default
        var inUse: Set<String> = []
        for entry in (try? files.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = Int32(entry),
                let cmdline = try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(entry)/cmdline"))
            else { continue }
            let arguments = cmdline.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            guard arguments.contains(Self.prosodyPath), let flag = arguments.firstIndex(of: "--config"), flag + 1 < arguments.count,
                arguments[flag + 1].contains("/tether-prosody-"), arguments[flag + 1].hasSuffix("/prosody.cfg.lua")
            else { continue }
            let folder = (arguments[flag + 1] as NSString).deletingLastPathComponent
            // /proc/PID/stat: "pid (comm) state ppid …"; comm may hold spaces, so split after ")".
            guard let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else { continue }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            if fields.count > 1, fields[1] == "1" {
                Glibc.kill(pid, SIGKILL)
                try? files.removeItem(atPath: folder)
            } else {
                inUse.insert(folder)
            }
        }
        let temporary = Self.baseDirectory
        for name in (try? files.contentsOfDirectory(atPath: temporary.path)) ?? [] where name.hasPrefix("tether-prosody-") {
            let folder = temporary.appendingPathComponent(name).path
            guard !inUse.contains(folder), !inUse.contains((folder as NSString).resolvingSymlinksInPath),
                let modified = (try? files.attributesOfItem(atPath: folder))?[.modificationDate] as? Date,
                modified < Date().addingTimeInterval(-600)
            else { continue }
            try? files.removeItem(atPath: folder)
        }
    }
}

/// A Lua string literal for `text`: printable ASCII as is, everything else as `\ddd` bytes.
private func luaString(_ text: String) -> String {
    var literal = "\""
    for byte in text.utf8 {
        switch byte {
        case UInt8(ascii: "\\"): literal += "\\\\"
        case UInt8(ascii: "\""): literal += "\\\""
        case 0x20..<0x7F: literal.unicodeScalars.append(Unicode.Scalar(byte))
        default:
            let digits = String(byte)
            literal += "\\" + String(repeating: "0", count: 3 - digits.count) + digits
        }
    }
    return literal + "\""
}

/// A TCP port free on 127.0.0.1 right now (bound to 0, read back, released). The probe socket
/// is close-on-exec, so a child spawned meanwhile cannot inherit it and keep the port taken.
func freePort() throws -> Int {
    let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard descriptor >= 0 else { throw TestFailure("socket() failed: \(String(cString: strerror(errno)))") }
    defer { close(descriptor) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, length) }
    }
    let named = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
    }
    guard bound == 0, named == 0 else { throw TestFailure("cannot find a free port: \(String(cString: strerror(errno)))") }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// A throwaway CA and a server certificate it signs for `hosts`; returns the CA's PEM path.
/// Prosody finds `<host>.crt`/`<host>.key` in its certificates directory.
func makeCertificates(in directory: URL, hosts: [String]) async throws -> String {
    func openssl(_ arguments: [String]) async throws {
        let status = try await ChildProcess.run("/usr/bin/openssl", arguments, directory: directory.path)
        guard status == 0 else { throw TestFailure("openssl \(arguments.first ?? "") failed with \(status)") }
    }
    try await openssl([
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=Tether Test CA", "-keyout", "ca.key", "-out", "ca.crt",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    ])
    for host in hosts {
        try await openssl(["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=\(host)", "-keyout", "\(host).key", "-out", "\(host).csr"])
        let extensions = "subjectAltName=DNS:\(host)\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
        try extensions.write(to: directory.appendingPathComponent("\(host).ext"), atomically: true, encoding: .utf8)
        try await openssl([
            "x509", "-req", "-in", "\(host).csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
            "-extfile", "\(host).ext", "-out", "\(host).crt",
        ])
    }
    return directory.appendingPathComponent("ca.crt").path
}
