/// One bound of a service-level objective and whether the run kept it.
public struct SLOVerdict: Sendable, Codable, Hashable {
    public var metric: String
    public var limit: Double
    public var actual: Double
    public var met: Bool
}
