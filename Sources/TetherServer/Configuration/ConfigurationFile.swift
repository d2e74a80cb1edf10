/// Reads a configuration file whose keys are the long flag names of `tether serve`.
///
/// One setting per line, `name = value` (or `name value`); `#` starts a comment; a repeatable
/// flag is written once per value; a boolean flag is `name = true`. The file becomes arguments
/// placed before the command line's, so the command line wins for single-valued options and adds
/// to repeatable ones. One parser, one set of names, one validation for both.
public enum ConfigurationFile {
    public struct ParseError: Error, CustomStringConvertible {
        public var line: Int
        public var message: String
        public var description: String { "line \(self.line): \(self.message)" }
    }

    public static func arguments(from text: String) throws -> [String] {
        var arguments: [String] = []
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            var line = Substring(rawLine)
            if let hash = line.firstIndex(of: "#") { line = line[..<hash] }
            let trimmed = Self.trim(line)
            if trimmed.isEmpty { continue }
            let name: Substring
            var value: Substring
            if let equals = trimmed.firstIndex(of: "=") {
                name = trimmed[..<equals]
                value = trimmed[trimmed.index(after: equals)...]
            } else if let space = trimmed.firstIndex(of: " ") {
                name = trimmed[..<space]
                value = trimmed[trimmed.index(after: space)...]
            } else {
                name = trimmed[...]
                value = "true"
            }
            let key = Self.trim(name)
            value = Substring(Self.trim(value))
            if value.count >= 2, let first = value.first, first == "\"" || first == "'", value.last == first {
                value = value.dropFirst().dropLast()
            }
            guard !key.isEmpty, key.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" }) else {
                throw ParseError(line: index + 1, message: "'\(key)' is not a setting name")
            }
            switch value.lowercased() {
            case "true", "yes", "on":
                arguments.append("--\(key)")
            case "false", "no",
                "off" where !Self.valuedKeys.contains(String(key)):
                continue
            default:
                arguments += ["--\(key)", String(value)]
            }
        }
        return arguments
    }

    private static func trim(_ text: Substring) -> Substring {
        var text = text
        while let first = text.first, first.isWhitespace { text = text.dropFirst() }
        while let last = text.last, last.isWhitespace { text = text.dropLast() }
        return text
    }

    /// Settings whose values may legitimately be the words `off`/`no`/`false`.
    static let valuedKeys: Set<String> = ["upstream-tls", "log-level"]
}
