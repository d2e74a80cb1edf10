import NIOCore
import NIOHTTP2

/// What an HTTP/2 connection at Tether's TLS edge allows, chosen for BOSH: many tabs of one
/// browser share one connection (RFC 9113 multiplexing), each holding one long-poll and sending
/// on a second stream, so the limits are about streams, not bytes.
///
/// Every figure here is deliberate; the README's HTTP/2 section states them.
enum HTTP2EdgeSettings {
    /// `SETTINGS_MAX_CONCURRENT_STREAMS` (RFC 9113 §6.5.2): a BOSH tab needs two streams at most
    /// (XEP-0124 §11, `requests` = `hold` + 1), so 100 serves 50 tabs of one browser. More is
    /// refused by the HTTP/2 layer with `RST_STREAM REFUSED_STREAM` before Tether sees it.
    static let maxConcurrentStreams = 100
    /// `SETTINGS_INITIAL_WINDOW_SIZE` and the per-stream target. Browsers' BOSH bodies are a few
    /// KiB, so one window takes a whole ordinary request; a larger one (up to `--max-body-bytes`)
    /// waits for WINDOW_UPDATE. The windows pace a sender, they do not bound what is buffered:
    /// each stream's body is held until complete, up to `--max-body-bytes`.
    static let streamWindowBytes = 65_535
    /// The connection-level window: room for a few requests of full size at once, not for
    /// every stream's; the client waits for WINDOW_UPDATE beyond it.
    static let connectionWindowBytes = 256 * 1024
    /// `SETTINGS_MAX_FRAME_SIZE`: the protocol's minimum (RFC 9113 §6.5.2), so no frame costs more
    /// than 16 KiB of buffer.
    static let maxFrameBytes = 1 << 14
    /// Streams a client may reset (a browser cancels a held request on each reload or tab close)
    /// within `resetWindow` before the connection is closed with `GOAWAY ENHANCE_YOUR_CALM`:
    /// the rapid-reset attack (CVE-2023-44487) opens and cancels streams as fast as it can.
    static let maxResetsPerWindow = 200
    static let resetWindow: TimeAmount = .seconds(30)

    /// The settings Tether sends at connection start, and the HTTP/2 layer's own limits.
    /// - Parameter maxHeaderBytes: `--max-header-bytes`, as `SETTINGS_MAX_HEADER_LIST_SIZE`.
    static func handlerConfiguration(maxHeaderBytes: Int) -> NIOHTTP2Handler.Configuration {
        var connection = NIOHTTP2Handler.ConnectionConfiguration()
        connection.initialSettings = [
            HTTP2Setting(parameter: .maxConcurrentStreams, value: Self.maxConcurrentStreams),
            HTTP2Setting(parameter: .initialWindowSize, value: Self.streamWindowBytes),
            HTTP2Setting(parameter: .maxFrameSize, value: Self.maxFrameBytes),
            HTTP2Setting(parameter: .maxHeaderListSize, value: maxHeaderBytes),
            // RFC 8441 §3: WebSockets may be opened on streams of this connection (extended
            // CONNECT), beside the tab's BOSH requests (HTTP2StreamRouter).
            HTTP2Setting(parameter: .enableConnectProtocol, value: 1),
        ]
        connection.targetWindowSize = Self.connectionWindowBytes
        var stream = NIOHTTP2Handler.StreamConfiguration()
        stream.targetWindowSize = Self.streamWindowBytes
        stream.streamResetFrameRateLimit.maximumCount = Self.maxResetsPerWindow
        stream.streamResetFrameRateLimit.windowLength = Self.resetWindow
        return NIOHTTP2Handler.Configuration(connection: connection, stream: stream)
    }
}
