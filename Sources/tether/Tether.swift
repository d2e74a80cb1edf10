import ArgumentParser
import Foundation
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import TetherServer
import UnixSignals

@main
struct Tether: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tether",
        abstract: "An XMPP connection manager: BOSH (XEP-0124/0206) in front of any XMPP server.",
        subcommands: [Serve.self],
        defaultSubcommand: Serve.self
    )
}

/// `tether serve`: reads the options (and `--config`), runs the server until SIGTERM, reloads on SIGHUP.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the connection manager.",
        discussion: """
            Every option can also be set in a configuration file (--config) with the same name: \
            one 'name = value' per line, '#' for comments, a repeatable option once per value, \
            a flag as 'name = true'. Command-line values come after the file's.
            """
    )

    @Option(name: .long, help: ArgumentHelp("Configuration file with the same names as these options.", valueName: "path"))
    var config: String?

    @OptionGroup var options: ServeOptions

    func run() async throws {
        // Before the configuration: the default --max-sessions is what this limit allows.
        let descriptors = DescriptorBudget.raiseToHardLimit()
        var options = self.options
        if let path = self.config {
            options = try ServeOptions.merged(file: path, commandLine: CommandLine.arguments)
        }
        if let loops = options.eventLoops {
            guard (1...1024).contains(loops) else { throw ValidationError("--event-loops must be between 1 and 1024") }
            // Before anything uses NIO's shared event-loop group: it is sized once, on first use.
            NIOSingletons.groupLoopCountSuggestion = loops
        }
        let configuration: TetherConfiguration
        do {
            configuration = try options.makeConfiguration()
        } catch {
            throw ValidationError(String(describing: error))
        }
        let level = options.logLevel
        let format: LineLogHandler.Format = options.logFormat == .json ? .json : .text
        LoggingSystem.bootstrap { label in
            var handler = LineLogHandler(label: label, format: format)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "tether")
        logger.notice(
            "session limits",
            metadata: [
                "open-files": "\(descriptors.descriptors)",
                "max-sessions":
                    "\(configuration.maxSessions)\(options.maxSessions == nil ? " (from the open-files limit, \(DescriptorBudget.descriptorsPerSession) per session)" : "")",
                "max-sessions-per-address": "\(configuration.maxSessionsPerAddress)",
                "new-sessions": "\(configuration.newSessionsPerSecondPerAddress)/s per address, bursts of \(configuration.newSessionBurstPerAddress)",
            ])
        if let asked = options.maxSessions, asked > descriptors.sessions {
            logger.warning(
                "--max-sessions is more than the open-files limit allows: connections will fail with EMFILE first",
                metadata: [
                    "max-sessions": "\(asked)", "open-files": "\(descriptors.descriptors)", "allows": "\(descriptors.sessions)",
                ])
        }
        let server = TetherServer(configuration: configuration, logger: logger)
        // SIGHUP re-reads the configuration file (and the files it names) with this command line.
        let path = self.config
        let commandLine = CommandLine.arguments
        let initialOptions = self.options
        let service = TetherService(server: server, logger: logger) {
            let options = try path.map { try ServeOptions.merged(file: $0, commandLine: commandLine) } ?? initialOptions
            return try options.makeConfiguration()
        }
        let group = ServiceGroup(
            configuration: .init(services: [.init(service: service)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        )
        try await group.run()
    }
}

/// Runs the server until SIGTERM/SIGINT, then drains it; reloads its configuration on SIGHUP.
struct TetherService: Service {
    let server: TetherServer
    let logger: Logger
    /// Reads and validates the configuration again.
    let loadConfiguration: @Sendable () throws -> TetherConfiguration

    func run() async throws {
        let addresses = try await self.server.start()
        for address in addresses {
            // Scripts and tests read the bound port from this line.
            let line = "tether listening on \(address.ipAddress ?? "?"):\(address.port ?? 0)\n"
            FileHandle.standardOutput.write(Data(line.utf8))
        }
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for await _ in hangups {
                    self.reload()
                }
            }
            try? await gracefulShutdown()
            group.cancelAll()
        }
        await self.server.shutdown()
    }

    /// A configuration that does not validate is refused whole: the running one stays.
    private func reload() {
        let configuration: TetherConfiguration
        do {
            configuration = try self.loadConfiguration()
        } catch {
            self.logger.error("configuration reload refused; the running configuration stays in effect", metadata: ["error": "\(ServeOptions.message(for: error))"])
            return
        }
        let notes: [String]
        do {
            notes = try self.server.reload(configuration)
        } catch {
            self.logger.error("configuration reload refused; the running configuration stays in effect", metadata: ["error": "\(error)"])
            return
        }
        for note in notes {
            self.logger.warning("\(note)")
        }
        self.logger.notice("configuration reloaded")
    }
}
