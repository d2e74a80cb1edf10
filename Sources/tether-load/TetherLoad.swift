import ArgumentParser
import Foundation
import XMPPLoadKit

#if canImport(Glibc)
    import Glibc
#endif

@main
struct TetherLoad: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tether-load",
        abstract: "A load generator for XMPP clients over BOSH, WebSocket or plain TCP.",
        subcommands: [Run.self, Merge.self, Provision.self, Stub.self]
    )
}

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Simulate XMPP clients against an endpoint and measure it.",
        discussion: """
            Sessions log in (SASL PLAIN, restart, bind, presence) at --ramp-rate, then exchange messages \
            in pairs at --message-rate in total for --duration seconds, then log out. Every message \
            carries its send time; any message not delivered within --drain seconds is lost, and a run \
            with lost messages, failed sessions or errors exits with status 1. With --scenario FILE the \
            file describes the load instead (populations, arrival processes, behaviours such as reload, \
            tab-close, suspend, flap, storm, presence and muc, SLOs that decide the exit status); see the \
            README's scenario reference. --part K/N with --start-at spreads one scenario over N machines.
            """
    )

    @Option(name: .long, help: ArgumentHelp("A scenario file (YAML or JSON): populations, arrivals, behaviours, SLOs. Replaces the load flags below.", valueName: "path"))
    var scenario: String?

    @Option(name: .long, help: "bosh, websocket or tcp (default bosh).")
    var transport: String?

    @Option(name: .long, help: ArgumentHelp("http://host:port/http-bind, ws://host:port/xmpp-websocket or tcp://host:5222.", valueName: "url"))
    var url: String?

    @Option(name: .long, help: "XMPP domain (default localhost).")
    var domain: String?

    @Option(name: .long, help: ArgumentHelp("User name pattern; %d is the user number (default user%d).", valueName: "pattern"))
    var users: String?

    @Option(name: .long, help: ArgumentHelp("Password pattern; %d is the user number (default pass%d).", valueName: "pattern"))
    var password: String?

    @Option(name: .long, help: "Number of the first user (default 1).")
    var firstUser: Int?

    @Option(name: .long, help: "Sessions in all (default 2).")
    var sessions: Int?

    @Option(name: .long, help: "How many of the sessions stay idle (log in, no messages; default 0).")
    var idleSessions: Int?

    @Option(name: .long, help: "New sessions per second (default 100).")
    var rampRate: Double?

    @Option(name: .long, help: "Messages per second, all pairs together (default 10).")
    var messageRate: Double?

    @Option(name: .long, help: "Seconds of message exchange (per step with --stepped; default 10); an all-idle run (--idle-sessions = --sessions) holds its sessions this long.")
    var duration: Double?

    @Option(name: .long, help: ArgumentHelp("Stepped rates START:STEP:MAX (msg/s): find the knee.", valueName: "start:step:max"))
    var stepped: String?

    @Option(name: .long, help: ArgumentHelp("With --stepped: a first step at this rate (msg/s), reported but left out of the knee search.", valueName: "rate"))
    var referenceRate: Double?

    @Option(name: .customLong("p99-bound-ms"), help: "The p99 latency bound of a stepped run, milliseconds (default 100).")
    var p99BoundMs: Double?

    @Option(name: .long, help: "Seconds to wait for messages in flight after sending stops (default 5).")
    var drain: Double?

    @Option(name: .long, help: "Extra body bytes per message (default 0).")
    var payloadBytes: Int?

    @Option(name: .long, help: "Resource asked for at bind (default load).")
    var resource: String?

    @Option(name: .long, help: "SASL mechanism: PLAIN (default) or SCRAM-SHA-1.")
    var sasl: String?

    @Flag(name: .long, help: "Leave without unavailable presence and stream close/terminate.")
    var noLogout = false

    @Option(name: .long, help: "BOSH 'wait', seconds (default 30).")
    var boshWait: Int?

    @Option(name: .long, help: "Seconds a session may take to log in (default 30).")
    var loginTimeout: Double?

    @Option(name: .long, help: "Event-loop threads of the load generator (default 1, which keeps its CPU easy to read).")
    var threads: Int?

    @Option(name: .long, help: "PID of the server process, to sample its RSS and read its CPU time per step (Linux /proc).")
    var serverPid: Int32?

    @Option(name: .long, help: "PID of the server behind the measured one (e.g. the XMPP server behind Tether), to read its CPU time per step too.")
    var upstreamPid: Int32?

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Run part K of N of the load (every Nth pair and session of each population, from the Kth on), for runs spread over N machines; merge the results with 'tether-load merge'.",
            valueName: "K/N"))
    var part: String?

    @Option(
        name: .customLong("metrics-listen"),
        help: ArgumentHelp(
            "Serve the generator's live figures at http://HOST:PORT/metrics (Prometheus text format) while the run lasts; port 0 picks one, printed on stderr.",
            valueName: "host:port"))
    var metricsListen: String?

    @Option(
        name: .customLong("start-at"),
        help: ArgumentHelp(
            "Begin the arrivals at this Unix time (seconds), so that the parts of a distributed run start together; an error if it has passed by more than 1 s once the sessions are set up.",
            valueName: "unix-time"))
    var startAt: Double?

    @Option(name: .long, help: ArgumentHelp("Write the JSON result here.", valueName: "path"))
    var json: String?

    @Option(name: .long, help: ArgumentHelp("Write the HTML report here.", valueName: "path"))
    var html: String?

    @Flag(name: .long, help: "Start the in-process upstream stub (a measuring instrument, not a real server) and, with --transport tcp and no --url, aim at it.")
    var upstreamStub = false

    @Option(name: .long, help: ArgumentHelp("Where the stub listens with --upstream-stub.", valueName: "host:port"))
    var stubListen: String = "127.0.0.1:0"

    var options: CommandLineOptions {
        var options = CommandLineOptions()
        options.scenarioFile = self.scenario
        options.transport = self.transport
        options.url = self.url
        options.domain = self.domain
        options.users = self.users
        options.password = self.password
        options.firstUser = self.firstUser
        options.sessions = self.sessions
        options.idleSessions = self.idleSessions
        options.rampRate = self.rampRate
        options.messageRate = self.messageRate
        options.duration = self.duration
        options.stepped = self.stepped
        options.referenceRate = self.referenceRate
        options.p99BoundMilliseconds = self.p99BoundMs
        options.drain = self.drain
        options.payloadBytes = self.payloadBytes
        options.resource = self.resource
        options.sasl = self.sasl
        options.noLogout = self.noLogout
        options.boshWait = self.boshWait
        options.loginTimeout = self.loginTimeout
        options.threads = self.threads
        options.serverPID = self.serverPid
        options.upstreamPID = self.upstreamPid
        options.part = self.part
        options.startAt = self.startAt
        return options
    }

    func run() async throws {
        var stub: UpstreamStub?
        if self.upstreamStub {
            let (host, port) = try parseHostPort(self.stubListen)
            let started = try await UpstreamStub.start(.init(host: host, port: port))
            stub = started
            FileHandle.standardError.write(Data("upstream stub listening on \(host):\(started.port)\n".utf8))
        }
        // With the stub and plain TCP, a missing --url aims at the stub.
        let stubURL = stub.flatMap { stub in (self.transport ?? "bosh") == "tcp" && self.scenario == nil ? "tcp://127.0.0.1:\(stub.port)" : nil }
        let scenario: LoadScenario
        do {
            scenario = try self.options.scenario(defaultURL: stubURL)
        } catch {
            await stub?.stop()
            throw ValidationError("\(error)")
        }
        var metricsServer: MetricsServer?
        let metrics = self.metricsListen == nil ? nil : LiveMetrics()
        if let address = self.metricsListen, let metrics {
            do {
                let (host, port) = try parseHostPort(address)
                let server = try await MetricsServer.start(host: host, port: port, metrics: metrics)
                metricsServer = server
                FileHandle.standardError.write(Data("metrics listening on \(host):\(server.port)\n".utf8))
            } catch {
                await stub?.stop()
                throw ValidationError("--metrics-listen \(address): \(error)")
            }
        }
        let progress = ProgressLine(enabled: isatty(STDERR_FILENO) == 1)
        let result: LoadResult
        do {
            result = try await LoadRunner(
                scenario: scenario,
                progress: {
                    progress.show($0)
                    metrics?.update($0)
                }
            ).run()
        } catch {
            progress.finish()
            await metricsServer?.stop()
            await stub?.stop()
            throw error
        }
        progress.finish()
        await metricsServer?.stop()
        await stub?.stop()

        try Self.report(result, json: self.json, html: self.html)
    }
}

extension Run {
    /// What a run and a merge both end with: the files asked for, the summary, and exit status 1
    /// when the result fails its SLOs.
    static func report(_ result: LoadResult, json: String?, html: String?) throws {
        if let path = json {
            try ReportWriter.json(result).write(to: URL(fileURLWithPath: path))
        }
        if let path = html {
            try Data(HTMLReport.render(result).utf8).write(to: URL(fileURLWithPath: path))
        }
        print(ReportWriter.summary(result))
        if !result.passed {
            throw ExitCode(1)
        }
    }
}

struct Provision: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create the users and rosters a scenario needs in a private Prosody's data directory.",
        discussion: """
            Writes every user's account (password from the scenario's pattern) and, for presence \
            populations, mutual rosters (subscription both) as Prosody's internal storage files \
            (storage = "internal", authentication = "internal_plain"). Rooms need nothing: the first \
            occupant creates each. Run it before the load, against a Prosody of your own: it \
            overwrites those users' accounts and rosters.
            """
    )

    @Option(name: .long, help: ArgumentHelp("The scenario file.", valueName: "path"))
    var scenario: String

    @Option(name: .customLong("prosody-data"), help: ArgumentHelp("Prosody's data_path.", valueName: "directory"))
    var prosodyData: String

    func run() async throws {
        let scenario: LoadScenario
        do {
            scenario = try ScenarioFile.load(path: self.scenario)
        } catch {
            throw ValidationError("\(error)")
        }
        let problems = scenario.validate()
        guard problems.isEmpty else { throw ValidationError(problems.joined(separator: "; ")) }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: self.prosodyData, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw ValidationError("--prosody-data \(self.prosodyData): not a directory")
        }
        let summary = try ProsodyProvisioner(scenario: scenario).write(to: self.prosodyData)
        print("\(self.prosodyData) (\(scenario.domain)):\n\(summary)")
    }
}

struct Merge: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Merge the JSON results of several runs (parts of one load) into one result.",
        discussion: """
            Counts are summed; every percentile comes from the summed HDR histograms the results carry, \
            never from averaging the parts' percentiles; SLOs are judged again on the merged figures. \
            Exits with status 1 when the merged result fails.
            """
    )

    @Argument(help: ArgumentHelp("Result files written by 'tether-load run --json'.", valueName: "result.json"))
    var files: [String]

    @Option(name: .long, help: ArgumentHelp("Write the merged JSON result here.", valueName: "path"))
    var json: String?

    @Option(name: .long, help: ArgumentHelp("Write the HTML report of the merged result here.", valueName: "path"))
    var html: String?

    func run() async throws {
        guard self.files.count >= 1 else { throw ValidationError("give at least one result file") }
        let merged: LoadResult
        do {
            merged = try ResultMerger.merge(files: self.files)
        } catch {
            throw ValidationError("\(error)")
        }
        try Run.report(merged, json: self.json, html: self.html)
    }
}

struct Stub: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the upstream stub alone: a minimal XMPP server for measuring (any SASL PLAIN login, bind, message routing). Not a real server.",
        discussion: "Prints 'stub listening on HOST:PORT' and serves until SIGINT/SIGTERM."
    )

    @Option(name: .long, help: ArgumentHelp("Address to listen on.", valueName: "host:port"))
    var listen: String = "127.0.0.1:5299"

    @Option(name: .long, help: "Drop every Nth message (to test loss accounting); 0 drops none.")
    var dropEvery: Int = 0

    func run() async throws {
        let (host, port) = try parseHostPort(self.listen)
        let stub = try await UpstreamStub.start(.init(host: host, port: port, dropEveryNthMessage: self.dropEvery))
        // Scripts read the bound port from this line.
        FileHandle.standardOutput.write(Data("stub listening on \(host):\(stub.port)\n".utf8))
        await waitForTerminationSignal()
        let counters = try await stub.counters()
        FileHandle.standardError.write(Data("stub: routed \(counters.routed), dropped \(counters.dropped), undeliverable \(counters.undeliverable)\n".utf8))
        await stub.stop()
    }
}

func parseHostPort(_ text: String) throws -> (String, Int) {
    guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]) else {
        throw ValidationError("expected host:port, got '\(text)'")
    }
    var host = String(text[..<colon])
    if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
    return (host, port)
}

/// Suspends until SIGINT or SIGTERM.
func waitForTerminationSignal() async {
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
        signal(SIGINT, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
        let queue = DispatchQueue(label: "tether-load.signals")
        let sources = [SIGINT, SIGTERM].map { DispatchSource.makeSignalSource(signal: $0, queue: queue) }
        let once = OnceFlag()
        for source in sources {
            source.setEventHandler {
                if once.take() { continuation.resume() }
            }
            source.resume()
        }
        // Keep the sources alive for the life of the process.
        SignalSources.keep(sources)
    }
}

final class OnceFlag: @unchecked Sendable {
    private var done = false
    private let lock = NSLock()
    func take() -> Bool {
        self.lock.lock()
        defer { self.lock.unlock() }
        if self.done { return false }
        self.done = true
        return true
    }
}

enum SignalSources {
    nonisolated(unsafe) private static var sources: [any DispatchSourceSignal] = []
    static func keep(_ new: [any DispatchSourceSignal]) { self.sources += new }
}
