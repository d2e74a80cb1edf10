import Foundation
import Logging

/// Plain-text log lines on standard error (`--log-format text`), in swift-log's
/// `StreamLogHandler` layout: `TIME LEVEL LABEL : key=value … [SOURCE] MESSAGE`.
///
/// Unlike `StreamLogHandler`, every control character in the message and in metadata is
/// escaped: `to`, `route`, prebind `jid` and other values come from anonymous clients, and a raw
/// CR/LF in one of them would let a client forge whole log lines.
public struct TextLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    private let label: String
    private let write: @Sendable (String) -> Void

    public init(label: String, write: @escaping @Sendable (String) -> Void = JSONLogHandler.standardError) {
        self.label = label
        self.write = write
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.metadata[key] }
        set { self.metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var fields = self.metadata
        if let metadata = event.metadata { fields.merge(metadata) { _, new in new } }
        var text = "\(Self.timestamp()) \(event.level) \(LogText.escaped(self.label)) :"
        for key in fields.keys.sorted() {
            text += " \(LogText.escaped(key))=\(LogText.escaped(fields[key]!.description))"
        }
        text += " [\(LogText.escaped(event.source))] \(LogText.escaped(event.message.description))\n"
        self.write(text)
    }

    private static func timestamp() -> String {
        Date.ISO8601FormatStyle(includingFractionalSeconds: true).format(Date())
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

    static func needsEscaping(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x00..<0x20, 0x7F..<0xA0, 0x2028, 0x2029, 0x5C: return true
        default: return false
        }
    }
}
