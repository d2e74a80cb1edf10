import Foundation
import NIOConcurrencyHelpers

/// The live status line on stderr: rewritten in place once a second, and only on a terminal.
public final class ProgressLine: Sendable {
    private let enabled: Bool
    private let shown = NIOLockedValueBox(false)

    /// - Parameter enabled: pass `isatty(STDERR_FILENO) == 1`; when false nothing is ever written.
    public init(enabled: Bool) {
        self.enabled = enabled
    }

    public func show(_ progress: LoadProgress) {
        guard self.enabled else { return }
        self.shown.withLockedValue { $0 = true }
        FileHandle.standardError.write(Data("\r\u{1B}[K\(progress.line)".utf8))
    }

    /// Ends the line so later output starts on a fresh one.
    public func finish() {
        guard self.enabled, self.shown.withLockedValue({ $0 }) else { return }
        FileHandle.standardError.write(Data("\n".utf8))
    }
}
