import Foundation
import NIOCore
import NIOPosix
import Testing
import XMPPUpstream

/// A real DNS server (Debian's dnsmasq) on a free loopback port, authoritative for `.test`,
/// serving the given `--srv-host` records. Killed by PID when `body` ends.
func withDnsmasq(srvHosts: [String], _ body: (Int) async throws -> Void) async throws {
    guard FileManager.default.isExecutableFile(atPath: "/usr/sbin/dnsmasq") else {
        throw TestFailure("dnsmasq is not installed: run scripts/install-deps.sh")
    }
    let channel = try await DatagramBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).get()
    let port = channel.localAddress!.port!
    try await channel.close()
    let process = try ChildProcess.spawn("/usr/sbin/dnsmasq", [
        "--keep-in-foreground", "--no-resolv", "--no-hosts", "--conf-file=/dev/null", "--user=root", "--pid-file=",
        "--port=\(port)", "--listen-address=127.0.0.1", "--bind-interfaces", "--local=/test/",
    ] + srvHosts.map { "--srv-host=\($0)" })
    do {
        // Ready when it answers (NXDOMAIN for a name under --local); a loaded machine can take a while.
        let probe = SystemSRVResolver(nameserver: ("127.0.0.1", port), timeoutSeconds: 1, attempts: 1)
        var ready = false
        for _ in 0..<20 where !ready {
            ready = (try? await probe.lookup("_probe._tcp.ready.test")) == .noRecords
            if !ready { try await Task.sleep(for: .milliseconds(100)) }
        }
        guard ready else { throw TestFailure("dnsmasq did not answer on port \(port)") }
        try await body(port)
        await process.stop()
    } catch {
        await process.stop()
        throw error
    }
}
