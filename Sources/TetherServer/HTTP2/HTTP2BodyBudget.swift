import NIOCore

/// The request bytes one HTTP/2 connection may hold at once, across all its streams.
///
/// Each stream's body is bounded by `--max-body-bytes`, as over HTTP/1.1, but an HTTP/1.1
/// connection holds one request at a time and an HTTP/2 one holds up to
/// `HTTP2EdgeSettings.maxConcurrentStreams`: 100 streams each sending a body just under the limit
/// would make one connection cost 100 bodies of memory (the flow-control windows pace a sender,
/// and are reopened as the bodies are read, so they do not bound it). Every stream's
/// `HTTPEdgeHandler` takes its body's bytes from here as they arrive and gives them back when the
/// body has been handed on or the stream is gone; a stream that would overdraw it is refused
/// with 413 and reset, and the other streams go on.
///
/// Touched only on the connection's event loop, which its streams share.
final class HTTP2BodyBudget {
    let limit: Int
    private(set) var held = 0

    init(limit: Int) {
        self.limit = limit
    }

    /// What a connection may hold: room for a few requests of the largest size, far more than
    /// browsers' BOSH bodies of a few KiB for every tab at once.
    static func limit(maxRequestBodyBytes: Int) -> Int {
        max(1 << 20, maxRequestBodyBytes * 2)
    }

    /// Takes `bytes`; `false` (and nothing taken) when that would exceed the limit.
    func take(_ bytes: Int) -> Bool {
        guard bytes <= self.limit - self.held else { return false }
        self.held += bytes
        return true
    }

    func giveBack(_ bytes: Int) {
        self.held -= bytes
        assert(self.held >= 0, "more given back than taken")
    }
}
