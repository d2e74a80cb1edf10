import Foundation
import NIOCore
import NIOPosix
import Testing

/// A real DNS server (Debian's dnsmasq) on a free loopback port, authoritative for `.test`,
/// serving the given `--srv-host` records. Killed by PID when `body` ends.
func withDnsmasq(srvHosts: [String], _ body: (Int) async throws -> Void) async throws {
    guard FileManager.default.isExecutableFile(atPath: "/usr/sbin/dnsmasq") else {
        throw TestFailure("dnsmasq is not installed: run scripts/install-deps.sh")
    }
    let channel = try await DatagramBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).get()
    let port = channel.localAddress!.port!
    try await channel.close()
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/sbin/dnsmasq")
    process.arguments = [
        "--keep-in-foreground", "--no-resolv", "--no-hosts", "--conf-file=/dev/null", "--user=root", "--pid-file=",
        "--port=\(port)", "--listen-address=127.0.0.1", "--bind-interfaces", "--local=/test/",
    ] + srvHosts.map { "--srv-host=\($0)" }
    let null = FileHandle(forWritingAtPath: "/dev/null")
    process.standardOutput = null
    process.standardError = null
    try process.run()
    defer {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }
    try await Task.sleep(for: .milliseconds(300))
    try await body(port)
}
