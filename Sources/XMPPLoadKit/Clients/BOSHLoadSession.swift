import NIOCore

final class BOSHLoadSession: LoadSession {
    override func connect() { self.transportFailed(LoadFailure(.protocolViolation, "unimplemented")) }
    override func openStream() {}
    override func restartStream() {}
    override func send(_ element: ByteBuffer) {}
    override func closeStream() {}
    override func abort() {}
}
