import Logging
import NIOCore
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// When to hand freed memory back to the system: after the live-session count has fallen well
/// below its peak since the last trim.
///
/// glibc keeps what a traffic spike allocated (its arenas only shrink from the top), so without
/// this a process that served 10,000 sessions once stays at that size with 10 left. `malloc_trim`
/// returns the free pages of every arena; it costs a walk over the heap, so it runs only after
/// a real fall (half the peak, at least `minimumFall` sessions), at most once per `interval`.
///
/// A fall that is slow (sessions ending over a minute, a loaded machine) is trimmed in steps:
/// after a trim the next one comes when the live count has halved again, the fall still counted
/// from the peak that started it, until nothing is left (regression: a trim at 205 of 1,000
/// sessions was the only one, and RSS stayed near the peak with none live).
struct MemoryTrimPolicy: Sendable, Equatable {
    var minimumFall = 256
    /// The most live at once since the last trim.
    private(set) var peak = 0
    /// The peak that started the fall being trimmed, until the fall is nearly complete.
    private var fallingFrom = 0

    /// The sessions live now (and the most live at once since the last observation, when
    /// known); `true` when memory should be trimmed now.
    mutating func observe(sessions: Int, peakSince: Int = 0) -> Bool {
        self.peak = max(self.peak, sessions, peakSince)
        let from = max(self.peak, self.fallingFrom)
        guard from - sessions >= self.minimumFall, sessions <= self.peak / 2, sessions < self.peak else { return false }
        // Over once nothing of it is left (regression: "nearly" was a sixty-fourth, and the last
        // trim of a 1,000-session fall came at 14, with hundreds of upstream streams still
        // closing: what they held stayed after they ended).
        self.fallingFrom = sessions == 0 ? 0 : from
        self.peak = sessions
        return true
    }
}

/// Samples the session count every `interval` and trims off the event loops when the policy says so.
final class MemoryTrimmer: Sendable {
    private let policy = Mutex(MemoryTrimPolicy())
    private let task = Mutex<RepeatedTask?>(nil)
    private let logger: Logger

    init(logger: Logger) {
        self.logger = logger
    }

    /// `sessions`: the most live at once since the last call, and the number live now (upstream
    /// streams still closing included: each holds its memory until it is gone).
    func start(on eventLoop: any EventLoop, interval: TimeAmount = .seconds(10), sessions: @escaping @Sendable () -> (peak: Int, live: Int)) {
        let repeated = eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { [self] _ in
            let (peak, live) = sessions()
            guard self.policy.withLock({ $0.observe(sessions: live, peakSince: peak) }) else { return }
            // The walk takes milliseconds on a large heap: not on an event loop.
            Task.detached(priority: .background) {
                let released = Self.trim()
                self.logger.info("memory returned after a peak", metadata: ["sessions": "\(live)", "released": "\(released)"])
            }
        }
        self.task.withLock { $0 = repeated }
    }

    func stop() {
        self.task.withLock {
            $0?.cancel()
            $0 = nil
        }
    }

    /// Whether anything was released.
    static func trim() -> Bool {
        guard let trim = Self.mallocTrim else { return false }
        return trim(0) == 1
    }

    private typealias MallocTrim = @convention(c) (Int) -> Int32

    /// glibc's `malloc_trim` (in <malloc.h>, which the Glibc module does not export), looked up
    /// at run time; absent on other C libraries, where trimming is simply not done.
    private static let mallocTrim: MallocTrim? = {
        #if canImport(Glibc)
            // RTLD_DEFAULT: search the process's global symbols.
            guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "malloc_trim") else { return nil }
            return unsafeBitCast(symbol, to: MallocTrim.self)
        #else
            return nil
        #endif
    }()
}
