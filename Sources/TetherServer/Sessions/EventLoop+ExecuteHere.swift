import NIOCore

extension EventLoop {
    /// Runs `task` at once when called on this loop, otherwise queues it there. A BOSH request
    /// and its session, or an answer and its connection, usually share a loop: a task queued on
    /// one's own loop costs an allocation, a lock and a trip through the loop for nothing.
    ///
    /// Only where running `task` inline is safe: the caller has no state half-updated that
    /// `task` could reach.
    func executeHere(_ task: @escaping @Sendable () -> Void) {
        if self.inEventLoop {
            task()
        } else {
            self.execute(task)
        }
    }
}
