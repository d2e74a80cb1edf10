import NIOCore
import Synchronization

/// The HTTP/2 connections open at the edge, so that shutdown can send each one `GOAWAY`
/// (RFC 9113 §6.8) before the listeners close: a browser then opens no new stream on it and
/// learns which of its requests were not taken, instead of seeing the connection drop.
final class HTTP2Connections: Sendable {
    private let open = Mutex<[ObjectIdentifier: any Channel]>([:])

    var count: Int { self.open.withLock { $0.count } }

    /// Tracks `channel` until it closes.
    func add(_ channel: any Channel) {
        let key = ObjectIdentifier(channel)
        self.open.withLock { $0[key] = channel }
        channel.closeFuture.whenComplete { [weak self] _ in
            _ = self?.open.withLock { $0.removeValue(forKey: key) }
        }
    }

    /// Asks every connection to wind down: `NIOHTTP2ServerConnectionManagementHandler` answers
    /// `ChannelShouldQuiesceEvent` with the two-step `GOAWAY` and closes once its streams are done.
    func quiesceAll() {
        let channels = self.open.withLock { Array($0.values) }
        for channel in channels {
            channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        }
    }
}
