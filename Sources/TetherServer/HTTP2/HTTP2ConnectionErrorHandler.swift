import Logging
import NIOCore
import NIOHTTP2

/// Last on an HTTP/2 connection's pipeline, where the HTTP/2 handler reports both kinds of
/// error (RFC 9113 §5.4): a stream error has reset its stream only, and the connection goes
/// on serving the other tabs; a connection error (a flood of resets, control, empty or
/// CONTINUATION frames, too many errors, bytes that are not HTTP/2) has been answered with
/// `GOAWAY`, and the connection is closed here. Any other connection-level violation has also
/// had its `GOAWAY`; the client closes, or the idle timer and `HTTP2GoAwayDeadline` do.
///
/// A connection told `GOAWAY` while it had no open stream is, to the HTTP/2 handler, finished
/// ("fully quiesced"): a frame the client sent before it read the `GOAWAY` (the `SETTINGS` ACK of
/// a new connection, a connection `WINDOW_UPDATE`, `DATA` of a request it refused with
/// `REFUSED_STREAM`) is answered with `GOAWAY PROTOCOL_ERROR` (`IOOnClosedConnection`). No stream
/// is lost to it (there is none, and a new request was refused, so the browser retries it); the
/// connection is closed here at once instead of waiting for its deadline.
final class HTTP2ConnectionErrorHandler: ChannelInboundHandler {
    typealias InboundIn = Any

    private let logger: Logger

    init(logger: Logger) {
        self.logger = logger
    }

    static func closesConnection(_ error: any Error) -> Bool {
        switch error {
        case is NIOHTTP2Errors.ExcessiveRSTFrames, is NIOHTTP2Errors.ExcessiveControlFrames, is NIOHTTP2Errors.ExcessiveEmptyDataFrames,
            is NIOHTTP2Errors.ExcessiveContinuationFrames, is NIOHTTP2Errors.ExcessiveStreamErrors, is NIOHTTP2Errors.ExcessiveNumberOfGlitches,
            is NIOHTTP2Errors.ExcessiveOutboundFrameBuffering, is NIOHTTP2Errors.ExcessivelyLargeHeaderBlock, is NIOHTTP2Errors.BadClientMagic,
            is NIOHTTP2Errors.UnableToParseFrame, is NIOHTTP2Errors.IOOnClosedConnection:
            return true
        default:
            return false
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let client = context.channel.remoteAddress?.ipAddress ?? "?"
        let text = String(describing: error).prefix(300)
        guard Self.closesConnection(error) else {
            self.logger.debug("HTTP/2 stream error", metadata: ["client": "\(client)", "error": "\(text)"])
            return
        }
        self.logger.info("HTTP/2 connection closed after a connection error", metadata: ["client": "\(client)", "error": "\(text)"])
        context.close(promise: nil)
    }
}
