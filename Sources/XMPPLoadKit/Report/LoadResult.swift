/// The result of a run, as written to `--json` and drawn in the HTML report.
///
/// Optional fields (`kneeRate`, `server`, a sample's `serverRSSKiB`) are absent from the JSON when
/// not measured. Latencies are in milliseconds, rates per second, CPU in seconds or percent of one core.
public struct LoadResult: Sendable, Codable {
    public struct Sessions: Sendable, Codable, Hashable {
        public var requested: Int
        public var started: Int
        public var established: Int
        /// Sessions that never got established (connect, auth, bind failures, timeouts).
        public var failed: Int
        public var closedCleanly: Int
        /// Seconds from the first start to the last establishment.
        public var rampSeconds: Double
        /// Established sessions per second over `rampSeconds`.
        public var establishmentRate: Double
        /// Start to initial presence.
        public var login: LatencySummary
        /// Time per login phase (connecting, awaitingFeatures, authenticating, awaitingBoundFeatures, binding, startingSession where a server requires an RFC 3921 session).
        public var phases: [String: LatencySummary]
        /// With `--server-pid`: CPU seconds the server process used from the first arrival until
        /// every session was established or had failed. Over `established`: what a login cost it.
        public var serverCPUSecondsDuringLogin: Double?
        /// The same for the `--upstream-pid` process (the XMPP server behind a connection manager).
        public var upstreamCPUSecondsDuringLogin: Double?
    }

    public struct Messages: Sendable, Codable, Hashable {
        public var targetRate: Double
        /// Messages sent per second of message phase.
        public var achievedRate: Double
        public var sent: UInt64
        public var delivered: UInt64
        /// Sent and never delivered within the drain period: always an error.
        public var lost: UInt64
        public var duplicates: UInt64
        public var unknown: UInt64
        public var messagingSeconds: Double
        /// Messages the schedule called for but the client did not send because its event loop
        /// ran more than 50 ms late (CPU-starved or stalled client). Not an error of the server.
        public var behindSchedule: UInt64
        /// End-to-end delivery latency (sender's timestamp to receipt), milliseconds.
        public var latency: LatencySummary
        /// With `--server-pid`: CPU seconds (user + system, all threads) the server process used from
        /// the start of the message phase to the end of its drain (not stepped runs).
        public var serverCPUSeconds: Double?
    }

    public struct Step: Sendable, Codable, Hashable {
        public var targetRate: Double
        public var achievedRate: Double
        public var sent: UInt64
        public var delivered: UInt64
        /// Still undelivered when the step's drain ended.
        public var undelivered: UInt64
        /// See `Messages.behindSchedule`.
        public var behindSchedule: UInt64
        public var latency: LatencySummary
        public var withinBound: Bool
        /// The reference step (`LoadScenario.referenceRate`): run first, not part of the knee search.
        public var reference: Bool?
        public var peakClientThreadCPUPercent: Double
        /// CPU seconds of the load generator's event-loop threads from the start of the step to the
        /// end of its drain.
        public var clientThreadCPUSeconds: Double?
        /// With `--server-pid`: CPU seconds (user + system, all threads) of the server process over
        /// the same window, read from `/proc/<pid>/stat`.
        public var serverCPUSeconds: Double?
        /// With `--upstream-pid`: the same for the server behind the measured one.
        public var upstreamCPUSeconds: Double?
        /// How busy the whole machine was over the step (all CPUs, every process), percent.
        public var machineBusyPercent: Double?
    }

    public struct CPU: Sendable, Codable, Hashable {
        public var wallSeconds: Double
        /// The whole process (includes an in-process upstream stub, if any).
        public var processSeconds: Double
        public var processPercent: Double
        /// The load generator's own event-loop threads only.
        public var clientThreadsSeconds: Double
        /// Busiest second of the busiest client thread, percent of one core.
        public var peakClientThreadPercent: Double
        /// A client thread was over 90 % of a core during some second, or the client fell behind its
        /// own schedule by more than 1 % of the messages: figures may reflect the client, not the server.
        public var clientSaturated: Bool
    }

    public struct Server: Sendable, Codable, Hashable {
        public var pid: Int32
        public var rssKiBAtStart: Int?
        public var rssKiBPeak: Int?
        public var rssKiBAtEnd: Int?
        /// RSS at the end of the message phase (or of the idle hold of an all-idle run), every
        /// session still up: `(rssKiBLoaded - rssKiBAtStart) / sessions` is the memory per session.
        public var rssKiBLoaded: Int?
        /// Sessions up when `rssKiBLoaded` was read.
        public var sessionsUpWhenLoaded: Int?
        /// A run without messages: how long the sessions were held idle, and the CPU seconds the
        /// server used meanwhile (their ratio is the idle sessions' share of one core).
        public var idleHoldSeconds: Double?
        public var cpuSecondsDuringIdleHold: Double?
    }

    /// One second of the run.
    public struct Sample: Sendable, Codable, Hashable {
        public var second: Double
        public var phase: String
        public var sessionsUp: Int
        public var sentPerSecond: Double
        public var deliveredPerSecond: Double
        public var p50: Double
        public var p90: Double
        public var p99: Double
        public var max: Double
        public var errors: Int
        public var clientCPUPercent: Double
        public var serverRSSKiB: Int?
        /// Each behaviour at this second, by `population/behaviour`: running counts, and the
        /// latency of what completed during the second.
        public var behaviours: [String: BehaviourSlice]?
    }

    /// One behaviour in one time slice of the timeline.
    public struct BehaviourSlice: Sendable, Codable, Hashable {
        /// Running totals at the end of the slice.
        public var attempts: UInt64
        public var successes: UInt64
        public var failures: UInt64
        /// Completed during the slice, and their p50 and p99 (ms).
        public var count: UInt64
        public var p50: Double
        public var p99: Double
    }

    /// The HDR histograms behind every latency summary, so results can be merged exactly.
    public struct Histograms: Sendable, Codable {
        /// Message delivery, all populations.
        public var delivery = LatencyHistogram()
        /// Whole logins, all populations.
        public var login = LatencyHistogram()
        /// Per login phase (`connecting`, `awaitingFeatures`, …).
        public var phases: [String: LatencyHistogram] = [:]
        /// Logins per population name.
        public var populations: [String: LatencyHistogram] = [:]
        /// Per behaviour: `population/behaviour`.
        public var behaviours: [String: LatencyHistogram] = [:]

        public init() {}

        static func behaviourKey(_ population: String, _ behaviour: Behaviour.Kind) -> String { "\(population)/\(behaviour.rawValue)" }
    }

    public var tool: String = "tether-load"
    /// 2: scenarios with populations; per-population and per-behaviour results.
    public var formatVersion: Int = 2
    public var scenario: LoadScenario
    public var startedAt: String
    public var sessions: Sessions
    public var messages: Messages
    public var steps: [Step]
    /// Stepped mode: the highest rate whose p99 stayed under the bound with nothing lost.
    public var kneeRate: Double?
    /// Every failure by `kind:condition` (logins, behaviours and the rest), plus `lost-messages`
    /// when any were lost.
    public var errors: [String: Int]
    /// The failures that belong to no population's login and no behaviour: any of them fails the run.
    public var otherErrors: [String: Int] = [:]
    public var populations: [PopulationResult] = []
    public var behaviours: [BehaviourResult] = []
    /// Absent in results written before histograms were kept (those cannot be merged).
    public var histograms: Histograms?
    /// The parts this result was merged from (`tether-load merge`), else absent.
    public var mergedFrom: Int?
    public var retransmissions: Int
    public var cpu: CPU
    public var server: Server?
    public var timeline: [Sample]

    /// Every population's login SLO and every behaviour's SLO was met (by default: no session
    /// failed, nothing was lost, every reload came back, every closed tab's session expired), and
    /// no other error was counted.
    public var passed: Bool = false

    mutating func judge() {
        self.passed = self.populations.allSatisfy(\.passed) && self.behaviours.allSatisfy(\.passed) && self.otherErrors.isEmpty
    }
}
