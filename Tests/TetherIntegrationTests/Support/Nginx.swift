import Foundation
import NIOCore
import NIOPosix

/// A private nginx (Debian's package) running the repository's `nginx/tether.conf` with a
/// throwaway certificate, in front of one or more Tethers. Stopped by PID.
final class NginxServer: @unchecked Sendable {
    let directory: URL
    let port: Int
    let caFile: String
    private let process: ChildProcess

    static var kit: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("nginx")
    }

    static var shippedConfig: URL { Self.kit.appendingPathComponent("tether.conf") }

    private init(directory: URL, port: Int, caFile: String, process: ChildProcess) {
        self.directory = directory
        self.port = port
        self.caFile = caFile
        self.process = process
    }

    /// The shipped server block, pointed at this directory's certificate and the given addresses.
    /// `tetherPorts` replace the shipped node ports in order (5280 for the single node, 5281, 5282… for a cluster).
    /// `plainHTTP` serves plain HTTP instead of HTTPS; `proxyBind` makes nginx reach Tether from
    /// that local address (so a test can tell nginx from its own client on loopback);
    /// `passForwarded` drops the line that clears a client's `Forwarded` header (an older or
    /// hand-written config), to show Tether itself does not believe it.
    static func adapt(_ shipped: String, directory: URL, listenPort: Int, tetherPorts: [Int], plainHTTP: Bool = false, proxyBind: String? = nil, passForwarded: Bool = false)
        -> String
    {
        var text = shipped
        for (index, port) in tetherPorts.enumerated() {
            let shippedPort = tetherPorts.count == 1 && shipped.contains("127.0.0.1:5280") ? 5280 : 5281 + index
            text = text.replacingOccurrences(of: "127.0.0.1:\(shippedPort);", with: "127.0.0.1:\(port);")
        }
        if passForwarded {
            text = text.split(separator: "\n", omittingEmptySubsequences: false).filter { !$0.contains("proxy_set_header Forwarded") }.joined(separator: "\n")
        }
        if let proxyBind {
            text = text.replacingOccurrences(of: "proxy_pass http://tether;", with: "proxy_pass http://tether;\n        proxy_bind \(proxyBind);")
            text = text.replacingOccurrences(of: "proxy_pass http://tether_websocket;", with: "proxy_pass http://tether_websocket;\n        proxy_bind \(proxyBind);")
        }
        return
            text
            .replacingOccurrences(of: "listen 443 ssl http2;", with: plainHTTP ? "listen 127.0.0.1:\(listenPort);" : "listen 127.0.0.1:\(listenPort) ssl http2;")
            .replacingOccurrences(of: "listen [::]:443 ssl http2;", with: "")
            .replacingOccurrences(of: "/etc/ssl/certs/chat.example.org.pem", with: directory.appendingPathComponent("localhost.crt").path)
            .replacingOccurrences(of: "/etc/ssl/private/chat.example.org.key", with: directory.appendingPathComponent("localhost.key").path)
            .replacingOccurrences(of: "server_name chat.example.org;", with: "server_name localhost;")
    }

    /// Writes the main configuration around `tether.conf` (already in `directory`).
    static func writeMainConfig(in directory: URL) throws -> String {
        let path = directory.appendingPathComponent("nginx.conf").path
        let temp = directory.appendingPathComponent("tmp").path
        try FileManager.default.createDirectory(atPath: temp, withIntermediateDirectories: true)
        try """
        user root;
        worker_processes 1;
        daemon off;
        pid \(directory.path)/nginx.pid;
        error_log \(directory.path)/error.log info;
        events { worker_connections 1024; }
        http {
            access_log \(directory.path)/access.log;
            client_body_temp_path \(temp)/body;
            proxy_temp_path \(temp)/proxy;
            fastcgi_temp_path \(temp)/fastcgi;
            uwsgi_temp_path \(temp)/uwsgi;
            scgi_temp_path \(temp)/scgi;
            include tether.conf;
        }
        """.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    static func makeDirectory() async throws -> (URL, String) {
        guard FileManager.default.isExecutableFile(atPath: "/usr/sbin/nginx") else {
            throw TestFailure("nginx is not installed: run scripts/install-deps.sh --with-nginx")
        }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tether-nginx-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let caFile = try await makeCertificates(in: directory, hosts: ["localhost"])
        return (directory, caFile)
    }

    static func start(tetherPorts: [Int], config: String = "tether.conf", plainHTTP: Bool = false, proxyBind: String? = nil, passForwarded: Bool = false) async throws
        -> NginxServer
    {
        let (directory, caFile) = try await Self.makeDirectory()
        let port = try freePort()
        let shipped = try String(contentsOf: Self.kit.appendingPathComponent(config), encoding: .utf8)
        try Self.adapt(shipped, directory: directory, listenPort: port, tetherPorts: tetherPorts, plainHTTP: plainHTTP, proxyBind: proxyBind, passForwarded: passForwarded)
            .write(to: directory.appendingPathComponent("tether.conf"), atomically: true, encoding: .utf8)
        for snippet in ["tether-bosh-proxy.conf"] {
            try FileManager.default.copyItem(at: Self.kit.appendingPathComponent(snippet), to: directory.appendingPathComponent(snippet))
        }
        let main = try Self.writeMainConfig(in: directory)
        let process = try ChildProcess.spawn("/usr/sbin/nginx", ["-p", directory.path, "-c", main])
        let server = NginxServer(directory: directory, port: port, caFile: caFile, process: process)
        for _ in 0..<100 {
            if let channel = try? await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connect(host: "127.0.0.1", port: port).get() {
                try? await channel.close()
                return server
            }
            guard process.isRunning else { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        let log = (try? String(contentsOf: directory.appendingPathComponent("error.log"), encoding: .utf8)) ?? ""
        await server.stop()
        throw TestFailure("nginx did not start: \(log)")
    }

    /// Runs `nginx -t` on a configuration directory; returns exit status and output.
    static func check(mainConfig: String, directory: URL) async throws -> (Int32, String) {
        let output = directory.appendingPathComponent("check.log").path
        let process = try ChildProcess.spawn("/usr/sbin/nginx", ["-t", "-p", directory.path, "-c", mainConfig], stderr: output)
        let status = await process.wait(timeout: .seconds(20)) ?? -1
        return (status, (try? String(contentsOfFile: output, encoding: .utf8)) ?? "")
    }

    var errorLog: String { (try? String(contentsOf: self.directory.appendingPathComponent("error.log"), encoding: .utf8)) ?? "" }
    /// nginx's `combined` format: the request line says the protocol (`"POST /http-bind HTTP/2.0"`).
    var accessLog: String { (try? String(contentsOf: self.directory.appendingPathComponent("access.log"), encoding: .utf8)) ?? "" }

    /// Fast shutdown (SIGTERM); the master takes its workers with it. SIGKILL for stragglers.
    func stop() async {
        let workers = Self.children(of: self.process.pid)
        await self.process.stop()
        for worker in workers { kill(worker, SIGKILL) }
        try? FileManager.default.removeItem(at: self.directory)
    }

    private static func children(of parent: Int32) -> [Int32] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { Int32($0) }.filter { pid in
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { return false }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return fields.count > 1 && Int32(fields[1]) == parent
        }
    }
}
