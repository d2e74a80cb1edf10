extension BOSHSessionStateMachine {
    /// The §10 inactivity timer's bookkeeping, edited only here: the generation that tells the
    /// current timer from stale ones, whether a count is running, and a pause that replaces
    /// `inactivity` for the next count.
    ///
    /// A count starts when nothing is outstanding (`startIfIdle`) and stops when a request
    /// arrives. Every start and stop moves the generation, so a firing of an older timer is stale.
    struct InactivityClock {
        private(set) var generation: UInt64 = 0
        /// A timer is counting: nothing has been outstanding since it started.
        private(set) var isCounting = false
        /// Seconds the client asked to pause for (§10), until its next processed request.
        private(set) var pausedFor: Int?

        /// A request is outstanding again (a retransmission held anew): the running count is void.
        mutating func requestArrived() {
            self.generation &+= 1
            self.isCounting = false
        }

        /// A request was processed in order: the count stops and any pause is over.
        mutating func requestProcessed() {
            self.requestArrived()
            self.pausedFor = nil
        }

        /// §10 `pause`: the next count lasts `seconds` instead of `inactivity`.
        mutating func pause(for seconds: Int) {
            self.pausedFor = seconds
        }

        /// Starts a count when `idle` (nothing outstanding) and none is running yet.
        mutating func startIfIdle(_ idle: Bool, inactivity: Int) -> Action? {
            guard idle, !self.isCounting else { return nil }
            self.generation &+= 1
            self.isCounting = true
            return .startInactivityTimer(generation: self.generation, seconds: self.pausedFor ?? inactivity)
        }

        /// The timer that ends a kept verdict: always `inactivity`, whatever a pause asked for.
        mutating func startTombstoneTimer(inactivity: Int) -> Action {
            self.generation &+= 1
            self.isCounting = true
            return .startInactivityTimer(generation: self.generation, seconds: inactivity)
        }

        /// Whether a firing with `generation` is the latest timer's, not a stale one.
        func isCurrent(_ generation: UInt64) -> Bool {
            generation == self.generation
        }
    }
}
