import Foundation
import Logging
import Synchronization

/// One JSON object per line on standard error (`--log-format json`), for log shippers:
/// `{"time":"…","level":"info","label":"tether","message":"…","sid":"…","client":"…",…}`.
/// Metadata keys become top-level fields; the fixed fields win over metadata of the same name.
public struct JSONLogHandler: LogHandler {
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

    public func log(
        level: Logger.Level,
        message: Logger.Message,
        metadata: Logger.Metadata?,
        source: String,
        file: String,
        function: String,
        line: UInt
    ) {
        var fields = self.metadata
        if let metadata { fields.merge(metadata) { _, new in new } }
        var text = "{\"time\":\"\(Self.timestamp())\",\"level\":\"\(level.rawValue)\",\"label\":\(JSONText.quoted(self.label)),\"message\":\(JSONText.quoted(message.description))"
        for key in fields.keys.sorted() where !["time", "level", "label", "message"].contains(key) {
            text += ",\(JSONText.quoted(key)):\(JSONText.quoted(fields[key]!.description))"
        }
        self.write(text + "}\n")
    }

    public static let standardError: @Sendable (String) -> Void = { line in
        FileHandle.standardError.write(Data(line.utf8))
    }

    private static func timestamp() -> String {
        Date.ISO8601FormatStyle(includingFractionalSeconds: true).format(Date())
    }
}
