import Foundation
import NIOCore
import NIOPosix
import Synchronization

/// A private Prosody (Debian's package) for one test: its own directory, config, data and
/// loopback ports, started in the foreground and stopped by PID.
final class ProsodyServer: @unchecked Sendable {
    struct Options: Sendable {
        /// Offer STARTTLS with a throwaway CA-signed certificate for `localhost`.
        var tls = false
        /// More virtual hosts beside `localhost`.
        var extraHosts: [String] = []
        /// Serve Prosody's own /http-bind and /xmpp-websocket too.
        var httpEndpoints = false
        /// How long mod_smacks keeps a dropped session for resumption.
        var smacksHibernationSeconds = 60
        /// Listen on ::1 as well as 127.0.0.1.
        var ipv6 = false
    }

    let directory: URL
    let options: Options
    let c2sPort: Int
    let httpPort: Int?
    let caFile: String?
    private let child: Mutex<ChildProcess>
    var pid: Int32 { self.child.withLock { $0.pid } }
    private var process: ChildProcess { self.child.withLock { $0 } }
    private var configPath: String { self.directory.appendingPathComponent("prosody.cfg.lua").path }
    private var logPath: String { self.directory.appendingPathComponent("prosody.log").path }

    private init(directory: URL, options: Options, c2sPort: Int, httpPort: Int?, caFile: String?, process: ChildProcess) {
        self.directory = directory
        self.options = options
        self.c2sPort = c2sPort
        self.httpPort = httpPort
        self.caFile = caFile
        self.child = Mutex(process)
    }

    static func start(_ options: Options = .init()) async throws -> ProsodyServer {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/prosody") else {
            throw TestFailure("Prosody is not installed: run scripts/install-deps.sh")
        }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tether-prosody-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory.appendingPathComponent("data"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: directory.appendingPathComponent("certs"), withIntermediateDirectories: true)
        let c2sPort = try freePort()
        let httpPort = options.httpEndpoints ? try freePort() : nil
        var caFile: String?
        if options.tls {
            caFile = try await makeCertificates(in: directory.appendingPathComponent("certs"), hosts: ["localhost"] + options.extraHosts)
        }
        let config = Self.config(directory: directory, options: options, c2sPort: c2sPort, httpPort: httpPort)
        try config.write(to: directory.appendingPathComponent("prosody.cfg.lua"), atomically: true, encoding: .utf8)
        let process = try Self.launch(directory: directory)
        let server = ProsodyServer(directory: directory, options: options, c2sPort: c2sPort, httpPort: httpPort, caFile: caFile, process: process)
        do {
            try await server.waitUntilListening()
        } catch {
            print("Prosody did not start; log:\n\(server.logTail())")
            await server.stop()
            throw error
        }
        return server
    }

    private static func launch(directory: URL) throws -> ChildProcess {
        try ChildProcess.spawn("/usr/bin/prosody", ["--config", directory.appendingPathComponent("prosody.cfg.lua").path, "-F"], directory: directory.path)
    }

    private static func config(directory: URL, options: Options, c2sPort: Int, httpPort: Int?) -> String {
        var modules = ["roster", "saslauth", "tls", "disco", "ping", "smacks", "posix"]
        if httpPort != nil { modules += ["bosh", "websocket"] }
        let hosts = (["localhost"] + options.extraHosts).map { "VirtualHost \"\($0)\"" }.joined(separator: "\n")
        return """
            -- Written by Tether's tests; isolated from the system Prosody.
            run_as_root = true
            daemonize = false
            pidfile = "\(directory.path)/prosody.pid"
            data_path = "\(directory.path)/data"
            log = { { levels = { min = "info" }, to = "file", filename = "\(directory.path)/prosody.log" } }
            interfaces = { "127.0.0.1"\(options.ipv6 ? ", \"::1\"" : "") }
            local_interfaces = { "127.0.0.1" }
            c2s_ports = { \(c2sPort) }
            c2s_direct_tls_ports = { }
            legacy_ssl_ports = { }
            s2s_ports = { }
            component_ports = { }
            http_ports = { \(httpPort.map(String.init) ?? "") }
            http_interfaces = { "127.0.0.1" }
            https_ports = { }
            modules_enabled = { \(modules.map { "\"\($0)\"" }.joined(separator: ", ")) }
            modules_disabled = { "s2s" }
            authentication = "internal_plain"
            allow_registration = false
            c2s_require_encryption = false
            allow_unencrypted_plain_auth = true
            consider_bosh_secure = true
            consider_websocket_secure = true
            smacks_hibernation_time = \(options.smacksHibernationSeconds)
            certificates = "\(directory.path)/certs"
            \(hosts)
            """
    }

    /// Registers an account with prosodyctl against this server's config.
    func register(user: String, host: String = "localhost", password: String) async throws {
        let status = try await ChildProcess.run("/usr/bin/prosodyctl", ["--config", self.configPath, "register", user, host, password], directory: self.directory.path)
        guard status == 0 else {
            throw TestFailure("prosodyctl register \(user)@\(host) failed with \(status)")
        }
    }

    /// Stops Prosody (SIGTERM, then SIGKILL) and removes its directory.
    func stop() async {
        await self.process.stop()
        try? FileManager.default.removeItem(at: self.directory)
    }

    /// Kills Prosody at once (for fault tests); `restart()` brings it back on the same ports and data.
    func kill() async {
        self.process.signal(SIGKILL)
        await self.process.wait(timeout: .seconds(5))
    }

    func restart() async throws {
        await self.kill()
        let process = try Self.launch(directory: self.directory)
        self.child.withLock { $0 = process }
        try await self.waitUntilListening()
    }

    func logTail(lines: Int = 40) -> String {
        guard let text = try? String(contentsOfFile: self.logPath, encoding: .utf8) else { return "(no log)" }
        return text.split(separator: "\n").suffix(lines).joined(separator: "\n")
    }

    private func waitUntilListening() async throws {
        for _ in 0..<200 {
            if let status = self.process.exitStatus { throw TestFailure("Prosody exited with \(status)") }
            if let channel = try? await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connect(host: "127.0.0.1", port: self.c2sPort).get() {
                try? await channel.close()
                if let httpPort = self.httpPort,
                    (try? await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connect(host: "127.0.0.1", port: httpPort).get()) == nil
                {
                    continue
                }
                return
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw TestFailure("Prosody did not listen on \(self.c2sPort) within 10 s")
    }
}

/// A TCP port free on 127.0.0.1 right now (bound to 0, read back, released).
func freePort() throws -> Int {
    let channel = try ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).wait()
    let port = channel.localAddress!.port!
    try channel.close().wait()
    return port
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
