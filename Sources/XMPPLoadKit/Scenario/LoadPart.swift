/// One of `count` generators that run one scenario together (`--part K/N`), each on its own
/// machine: part `index` takes every `count`-th chat pair and every `count`-th single session of
/// each population, from the `index`-th on. Arrival times are those of the whole scenario, so
/// the parts together arrive exactly as one generator would; each part sends its pairs' share
/// of the chat rate. The users are disjoint, and `tether-load merge` adds the parts up.
public struct LoadPart: Sendable, Codable, Hashable, CustomStringConvertible {
    /// 1-based.
    public var index: Int
    public var count: Int

    public init(index: Int, count: Int) {
        self.index = index
        self.count = count
    }

    /// Parses `K/N`.
    public init?(_ text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let index = Int(parts[0]), let count = Int(parts[1]) else { return nil }
        self.init(index: index, count: count)
    }

    public var description: String { "\(self.index)/\(self.count)" }

    /// Whether unit `number` (a chat pair, or a single session, counted from 0 within its
    /// population) belongs to this part.
    public func owns(_ number: Int) -> Bool {
        number % self.count == self.index - 1
    }

    /// How many of `total` units belong to this part.
    public func share(of total: Int) -> Int {
        guard total > self.index - 1 else { return 0 }
        return (total - self.index) / self.count + 1
    }

    var problems: [String] {
        guard self.count >= 1, (1...self.count).contains(self.index) else {
            return ["part: must be K/N with N ≥ 1 and K between 1 and N, not \(self)"]
        }
        return []
    }
}
