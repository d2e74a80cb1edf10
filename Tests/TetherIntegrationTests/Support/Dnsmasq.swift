import Foundation
import NIOCore
import NIOPosix
import Testing
import XMPPUpstream

/// A real DNS server (Debian's dnsmasq) on a free loopback port, authoritative for `.test`,
/// serving the given `--srv-host` records and `--host-record` addresses (`name,ipv4,ipv6`).
/// Killed by PID when `body` ends.
///
/// dnsmasq binds the port for UDP and TCP; a port free for UDP may be taken for TCP by another
/// test's connection, so a start that fails is retried on another port.
func withDnsmasq(srvHosts: [String], hostRecords: [String] = [], _ body: (Int) async throws -> Void) async throws {
    guard FileManager.default.isExecutableFile(atPath: "/usr/sbin/dnsmasq") else {
        throw TestFailure("dnsmasq is not installed: run scripts/install-deps.sh")
    }
    let log = FileManager.default.temporaryDirectory.appendingPathComponent("tether-dnsmasq-\(UUID().uuidString).log").path
    defer { try? FileManager.default.removeItem(atPath: log) }
    for _ in 0..<5 {
        let port = try freePort()
        let process = try ChildProcess.spawn(
            "/usr/sbin/dnsmasq",
            [
                "--keep-in-foreground", "--no-resolv", "--no-hosts", "--conf-file=/dev/null", "--user=root", "--pid-file=",
                "--port=\(port)", "--listen-address=127.0.0.1", "--bind-interfaces", "--local=/test/", "--log-facility=-",
            ] + srvHosts.map { "--srv-host=\($0)" } + hostRecords.map { "--host-record=\($0)" }, stderr: log)
        // Ready when it answers (NXDOMAIN for a name under --local); a loaded machine can take a while.
        let probe = SystemSRVResolver(nameserver: ("127.0.0.1", port), timeoutSeconds: 1, attempts: 1)
        var ready = false
        for _ in 0..<50 where !ready && process.isRunning {
            ready = (try? await probe.lookup("_probe._tcp.ready.test")) == .noRecords
            if !ready { try await Task.sleep(for: .milliseconds(200)) }
        }
        guard ready else {
            await process.stop()
            continue
        }
        do {
            try await body(port)
            await process.stop()
            return
        } catch {
            await process.stop()
            throw error
        }
    }
    throw TestFailure("dnsmasq did not start: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
}
