import NIOCore

/// XMPP-over-WebSocket endpoint settings.
public struct WebSocketSettings: Sendable {
    /// Seconds between WebSocket pings; a peer that has not answered the previous ping is closed.
    /// Well below nginx's 60 s `proxy_read_timeout`.
    public var pingInterval: TimeAmount = .seconds(25)
    /// How long the closing handshake (RFC 7395 §3.6) may take before the connection is dropped.
    public var closeTimeout: TimeAmount = .seconds(5)
    /// Accept upgrades that carry no `Origin` (non-browser clients).
    public var allowMissingOrigin = true
    /// Offer permessage-deflate (RFC 7692) to clients that ask for it.
    public var perMessageDeflate = true
    /// Messages shorter than this are sent uncompressed even when compression is on.
    public var compressionThreshold = 64
    /// Bytes queued for the client above which it counts as not keeping up: the server's side
    /// stops being read (the server holds its stanzas), and a client that has still not caught up
    /// after `slowReaderTimeout` is cut off with `policy-violation`.
    public var maxQueuedBytes = 1 << 20
    public var slowReaderTimeout: TimeAmount = .seconds(10)

    public init() {}
}
