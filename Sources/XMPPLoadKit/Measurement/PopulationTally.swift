/// One population's logins on one worker (or in the whole run).
struct PopulationTally: Sendable {
    var started = 0
    var established = 0
    var failed = 0
    var login = LatencyHistogram()
    var errors: [String: Int] = [:]

    mutating func add(_ other: PopulationTally) {
        self.started += other.started
        self.established += other.established
        self.failed += other.failed
        self.login.add(other.login)
        for (key, count) in other.errors { self.errors[key, default: 0] += count }
    }
}
