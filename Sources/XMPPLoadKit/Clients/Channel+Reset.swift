import NIOCore

#if canImport(Glibc)
    import Glibc
#endif

extension Channel {
    /// Closes with a TCP reset (SO_LINGER 0), as a network cut looks to the server: no FIN, and
    /// what was in flight is gone.
    func resetConnection() {
        guard let provider = self as? any SocketOptionProvider else {
            self.close(promise: nil)
            return
        }
        provider.setSoLinger(linger(l_onoff: 1, l_linger: 0)).whenComplete { _ in
            self.close(promise: nil)
        }
    }
}
