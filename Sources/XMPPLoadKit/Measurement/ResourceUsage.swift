import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// CPU time (user + system) and the RSS of another process, read from the kernel.
public enum ResourceUsage {
    /// CPU seconds used by this whole process.
    public static func processCPUSeconds() -> Double {
        #if os(Linux)
            return self.cpuSeconds(Int32(RUSAGE_SELF.rawValue))
        #else
            return self.cpuSeconds(RUSAGE_SELF)
        #endif
    }

    /// CPU seconds used by the calling thread (Linux); the process's elsewhere.
    public static func threadCPUSeconds() -> Double {
        #if os(Linux)
            // RUSAGE_THREAD (Linux ≥ 2.6.26) is 1; Glibc hides the constant behind _GNU_SOURCE.
            return self.cpuSeconds(1)
        #else
            return self.cpuSeconds(RUSAGE_SELF)
        #endif
    }

    private static func cpuSeconds(_ who: Int32) -> Double {
        var usage = rusage()
        #if os(Linux)
            guard getrusage(__rusage_who_t(who), &usage) == 0 else { return 0 }
        #else
            guard getrusage(who, &usage) == 0 else { return 0 }
        #endif
        let user = Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6
        let system = Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
        return user + system
    }

    /// The resident set size of process `pid` in KiB, from `/proc/<pid>/status` (`VmRSS`), or nil.
    public static func residentKiB(pid: Int32) -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        return self.parseVmRSS(status)
    }

    /// CPU seconds (user + system) used so far by process `pid`, all its threads, from
    /// `/proc/<pid>/stat`; nil when the process is gone or not readable.
    public static func processCPUSeconds(pid: Int32) -> Double? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let ticks = self.parseStatCPUTicks(stat)
        else { return nil }
        let perSecond = sysconf(Int32(_SC_CLK_TCK))
        return Double(ticks) / Double(perSecond > 0 ? perSecond : 100)
    }

    /// utime + stime (fields 14 and 15, clock ticks) of a `/proc/<pid>/stat` line. The command
    /// name (field 2) is in parentheses and may hold spaces and parentheses itself, so fields are
    /// counted from the last `)`.
    static func parseStatCPUTicks(_ stat: String) -> UInt64? {
        guard let close = stat.lastIndex(of: ")") else { return nil }
        // After ")": field 3 (state) is the first, so utime (14) and stime (15) are the 12th and 13th.
        let fields = stat[stat.index(after: close)...].split(separator: " ", omittingEmptySubsequences: true)
        guard fields.count >= 13, let user = UInt64(fields[11]), let system = UInt64(fields[12]) else { return nil }
        return user + system
    }

    /// Busy and total CPU time of the whole machine (all CPUs), clock ticks, from the `cpu` line of
    /// `/proc/stat`; busy is everything but idle and iowait.
    public static func machineCPUTicks() -> (busy: UInt64, total: UInt64)? {
        guard let stat = try? String(contentsOfFile: "/proc/stat", encoding: .utf8) else { return nil }
        return self.parseMachineCPU(stat)
    }

    static func parseMachineCPU(_ stat: String) -> (busy: UInt64, total: UInt64)? {
        guard let line = stat.split(separator: "\n").first(where: { $0.hasPrefix("cpu ") }) else { return nil }
        // user nice system idle iowait irq softirq steal (guest time is already in user and nice).
        let fields = line.split(separator: " ").dropFirst().prefix(8).compactMap { UInt64($0) }
        guard fields.count >= 5 else { return nil }
        let total = fields.reduce(0, +)
        return (total - fields[3] - fields[4], total)
    }

    static func parseVmRSS(_ status: String) -> Int? {
        for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            let digits = line.dropFirst(6).filter { $0.isNumber }
            return Int(digits)
        }
        return nil
    }
}
