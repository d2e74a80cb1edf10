#if canImport(Glibc)
    import Glibc

    private let openFiles = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
#elseif canImport(Darwin)
    import Darwin

    private let openFiles = RLIMIT_NOFILE
#endif

/// How many sessions the process's open-files limit allows, the default `--max-sessions`.
///
/// A session holds two descriptors, the client's connection and the server's (a BOSH client may
/// briefly hold a second HTTP connection; browsers share theirs between requests). A reserve stays
/// for the listeners, logs, DNS, the configuration files and the peer relay. Beyond the limit
/// `accept` and `connect` fail with EMFILE for everyone; a session limit below it refuses only
/// the newcomers, with `policy-violation`.
public struct DescriptorBudget: Sendable, Equatable {
    /// The soft open-files limit the process runs with.
    public var descriptors: Int

    public static let reserve = 128
    public static let descriptorsPerSession = 2

    public init(descriptors: Int) {
        self.descriptors = descriptors
    }

    public var sessions: Int {
        max(1, (self.descriptors - Self.reserve) / Self.descriptorsPerSession)
    }

    /// The limit in effect now (after `raiseToHardLimit()`, if called).
    public static var current: DescriptorBudget {
        var limit = rlimit()
        guard getrlimit(openFiles, &limit) == 0 else { return DescriptorBudget(descriptors: 1024) }
        return DescriptorBudget(descriptors: Int(clamping: min(limit.rlim_cur, rlim_t(Int32.max))))
    }

    /// Raises the soft limit to the hard one, as servers that hold many connections do (the
    /// soft 1024 of many shells is a leftover of `select()`, which NIO does not use).
    @discardableResult
    public static func raiseToHardLimit() -> DescriptorBudget {
        var limit = rlimit()
        if getrlimit(openFiles, &limit) == 0, limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max
            _ = setrlimit(openFiles, &limit)
        }
        return Self.current
    }
}
