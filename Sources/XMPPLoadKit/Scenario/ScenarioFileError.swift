/// A scenario file that cannot be used: where (file, line, key) and why.
public struct ScenarioFileError: Error, Hashable, Sendable, CustomStringConvertible {
    public var file: String
    /// 1-based, when the YAML parser knows it.
    public var line: Int?
    /// The key's path, `populations[0].arrival.rate`; empty for the file as a whole.
    public var key: String
    public var message: String

    public init(file: String, line: Int? = nil, key: String, message: String) {
        self.file = file
        self.line = line
        self.key = key
        self.message = message
    }

    /// `scenario.yaml:12: populations[0].arrival.rat: unknown key (expected one of …)`.
    public var description: String {
        let location = self.line.map { "\(self.file):\($0)" } ?? self.file
        return self.key.isEmpty ? "\(location): \(self.message)" : "\(location): \(self.key): \(self.message)"
    }
}
