/// The pending timers of a pure state machine, at most one per kind. Each scheduling gets a new
/// generation (async-http-client's timer ids), so a firing that was cancelled or replaced while
/// it was already on its way is recognised and changes nothing.
public struct TimerTable<Kind: Hashable & Sendable>: Sendable {
    /// One scheduling of a timer: what the I/O side schedules and hands back when it fires.
    public struct ID: Hashable, Sendable {
        public let kind: Kind
        public let generation: UInt64

        public init(kind: Kind, generation: UInt64) {
            self.kind = kind
            self.generation = generation
        }
    }

    private var pending: [Kind: UInt64] = [:]
    private var generations: UInt64 = 0

    public init() {}

    /// A new scheduling of `kind`, replacing a pending one.
    public mutating func schedule(_ kind: Kind) -> ID {
        self.generations += 1
        self.pending[kind] = self.generations
        return ID(kind: kind, generation: self.generations)
    }

    /// `true` when one was pending.
    @discardableResult
    public mutating func cancel(_ kind: Kind) -> Bool {
        self.pending.removeValue(forKey: kind) != nil
    }

    /// Whether `id` is the pending scheduling of its kind (then it is pending no more); `false`
    /// for a stale firing.
    public mutating func fire(_ id: ID) -> Bool {
        guard self.pending[id.kind] == id.generation else { return false }
        self.pending[id.kind] = nil
        return true
    }

    public func isPending(_ kind: Kind) -> Bool {
        self.pending[kind] != nil
    }

    /// The pending scheduling of `kind`, if any.
    public func pendingID(_ kind: Kind) -> ID? {
        self.pending[kind].map { ID(kind: kind, generation: $0) }
    }
}
