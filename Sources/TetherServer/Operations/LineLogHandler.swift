import Foundation
import Logging

/// One line per event on standard error, for people (`--log-format text`, swift-log's
/// `StreamLogHandler` layout: `TIME LEVEL LABEL : key=value … [SOURCE] MESSAGE`) or for log
/// shippers (`--log-format json`: `{"time":"…","level":"info","label":"tether","message":"…",
/// "sid":"…",…}`, metadata keys as top-level fields; the fixed fields win over metadata of the
/// same name).
///
/// Unlike `StreamLogHandler`, every control character in the message and in metadata is
/// escaped in both formats: `to`, `route`, prebind `jid` and other values come from anonymous
/// clients, and a raw CR/LF in one of them would let a client forge whole log lines.
public struct LineLogHandler: LogHandler {
    public enum Format: String, Sendable {
        case text
        case json
    }

    public var logLevel: Logger.Level = .info
    /// Every session's logger carries its own metadata (`sid`, `client`, …): kept as a short
    /// array sorted by key rather than a dictionary, and the rest of the handler in one shared
    /// object, so the handler fits in `Logger`'s inline storage and a session's logger costs
    /// about 150 bytes instead of about 500.
    private var fields: [(key: String, value: Logger.MetadataValue)] = []
    private let sink: Sink

    private final class Sink: Sendable {
        let label: String
        let format: Format
        let write: @Sendable (String) -> Void

        init(label: String, format: Format, write: @escaping @Sendable (String) -> Void) {
            self.label = label
            self.format = format
            self.write = write
        }
    }

    public init(label: String, format: Format, write: @escaping @Sendable (String) -> Void = LineLogHandler.standardError) {
        self.sink = Sink(label: label, format: format, write: write)
    }

    public var metadata: Logger.Metadata {
        get { Dictionary(self.fields, uniquingKeysWith: { _, last in last }) }
        set { self.fields = Self.sorted(newValue) }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.fields.first { $0.key == key }?.value }
        set {
            let index = self.fields.firstIndex { $0.key >= key } ?? self.fields.endIndex
            let present = index < self.fields.endIndex && self.fields[index].key == key
            switch (newValue, present) {
            case (let value?, true): self.fields[index].value = value
            case (let value?, false): self.fields.insert((key: key, value: value), at: index)
            case (nil, true): self.fields.remove(at: index)
            case (nil, false): break
            }
        }
    }

    private static func sorted(_ metadata: Logger.Metadata) -> [(key: String, value: Logger.MetadataValue)] {
        metadata.sorted { $0.key < $1.key }.map { (key: $0.key, value: $0.value) }
    }

    public func log(event: LogEvent) {
        var fields = self.fields
        if let extra = event.metadata, !extra.isEmpty {
            var merged = self.metadata
            merged.merge(extra) { _, new in new }
            fields = Self.sorted(merged)
        }
        let time = Date.ISO8601FormatStyle(includingFractionalSeconds: true).format(Date())
        switch self.sink.format {
        case .text:
            var text = "\(time) \(event.level) \(LogText.escaped(self.sink.label)) :"
            for field in fields {
                text += " \(LogText.field(field.key))=\(LogText.field(field.value.description))"
            }
            self.sink.write(text + " [\(LogText.escaped(event.source))] \(LogText.escaped(event.message.description))\n")
        case .json:
            var text =
                "{\"time\":\"\(time)\",\"level\":\"\(event.level.rawValue)\",\"label\":\(JSONText.quoted(self.sink.label)),\"message\":\(JSONText.quoted(event.message.description))"
            for field in fields where !["time", "level", "label", "message"].contains(field.key) {
                text += ",\(JSONText.quoted(field.key)):\(JSONText.quoted(field.value.description))"
            }
            self.sink.write(text + "}\n")
        }
    }

    public static let standardError: @Sendable (String) -> Void = { line in
        FileHandle.standardError.write(Data(line.utf8))
    }
}

/// Escaping for values that reach a log line.
enum LogText {
    /// `text` with every character that could end, rewrite or hide a line escaped: C0 and C1
    /// controls, DEL, and the Unicode line and paragraph separators; a backslash is doubled so an
    /// escape cannot be forged either.
    static func escaped(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: Self.needsEscaping) else { return text }
        var result = ""
        result.unicodeScalars.reserveCapacity(text.unicodeScalars.count + 8)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\\": result += "\\\\"
            case "\n": result += "\\n"
            case "\r": result += "\\r"
            case "\t": result += "\\t"
            case _ where Self.needsEscaping(scalar):
                let hex = String(scalar.value, radix: 16)
                result += "\\u" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
            default:
                result.unicodeScalars.append(scalar)
            }
        }
        return result
    }

    /// A `key=value` field of a text line: escaped, and quoted (logfmt style, `"` as `\"`) when it
    /// is empty or holds a space, `=` or `"`, so a client's `to='a b=c'` stays one field instead of
    /// forging a second one.
    static func field(_ text: String) -> String {
        let escaped = Self.escaped(text)
        guard escaped.isEmpty || escaped.unicodeScalars.contains(where: { $0 == " " || $0 == "=" || $0 == "\"" }) else { return escaped }
        return "\"" + escaped.replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }

    static func needsEscaping(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        // C0, DEL, C1, the backslash; the line and paragraph separators; bidirectional
        // formatting (which can make a line read in another order than it was written) and
        // other invisible format characters.
        case 0x00..<0x20, 0x7F..<0xA0, 0x5C, 0x2028, 0x2029: return true
        case 0x061C, 0x200B...0x200F, 0x202A...0x202E, 0x2060...0x2069, 0xFEFF: return true
        default: return false
        }
    }
}
