import NIOCore

/// A deadline moved far more often than it passes: a kept-alive connection's time to send its
/// next request, a BOSH session's inactivity after each answer, its held requests' `wait`.
///
/// NIO keeps its timers in a heap: cancelling one searches it (linear in the loop's timers,
/// thousands with as many sessions) and scheduling one allocates; per BOSH request that was
/// about a tenth of Tether's CPU (benchmarks/RESULTS.md). Here moving the deadline later only
/// stores it: the task already scheduled, when it fires early, schedules itself for what is left.
/// Moving it earlier (rare) replaces the task. Confined to its event loop.
final class DeadlineTimer {
    private let eventLoop: any EventLoop
    private let expired: () -> Void
    private var deadline: NIODeadline?
    private var task: (fireAt: NIODeadline, scheduled: Scheduled<Void>, id: UInt64)?
    /// Tasks scheduled so far (each moved deadline that did not need one is a saving).
    private(set) var scheduledTasks: UInt64 = 0

    /// - Parameter expired: runs on the loop once the deadline has passed (and the timer is
    ///   disarmed); it must not hold the timer's owner strongly.
    init(on eventLoop: any EventLoop, expired: @escaping () -> Void) {
        self.eventLoop = eventLoop
        self.expired = expired
    }

    /// When `expired` will run, if armed.
    var armedUntil: NIODeadline? { self.deadline }

    func arm(in amount: TimeAmount) {
        self.arm(at: self.eventLoop.now + amount)
    }

    /// `expired` runs at `deadline` instead of any earlier one.
    func arm(at deadline: NIODeadline) {
        self.deadline = deadline
        if let task = self.task {
            guard task.fireAt > deadline else { return }
            task.scheduled.cancel()
            self.task = nil
        }
        self.schedule(at: deadline)
    }

    /// Nothing runs at the deadline; a task already scheduled ends when it fires.
    func disarm() {
        self.deadline = nil
    }

    /// Disarms and drops the scheduled task: the owner is going away.
    func cancel() {
        self.deadline = nil
        self.task?.scheduled.cancel()
        self.task = nil
    }

    private func schedule(at deadline: NIODeadline) {
        self.scheduledTasks += 1
        let id = self.scheduledTasks
        let scheduled = self.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [weak self] () -> Void in
            self?.fire(id)
        }
        self.task = (deadline, scheduled, id)
    }

    private func fire(_ id: UInt64) {
        // A task replaced by an earlier one can still run when both were due in one tick.
        guard self.task?.id == id else { return }
        self.task = nil
        guard let deadline = self.deadline else { return }
        guard deadline <= self.eventLoop.now else {
            self.schedule(at: deadline)
            return
        }
        self.deadline = nil
        self.expired()
    }
}
