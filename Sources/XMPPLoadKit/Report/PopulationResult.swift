/// One population's logins over the run, and its login SLO.
public struct PopulationResult: Sendable, Codable, Hashable {
    public var name: String
    public var transport: LoadScenario.Transport
    public var endpoint: String
    public var requested: Int
    public var started: Int
    public var established: Int
    public var failed: Int
    public var login: LatencySummary
    /// Login failures by `kind:condition`.
    public var errors: [String: Int]
    public var slo: [SLOVerdict]
    public var passed: Bool
}
