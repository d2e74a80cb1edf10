import Foundation

/// Adds up the results of several generators that ran parts of one load (or halves of one run)
/// into one result: counts are summed, and every latency summary is recomputed from the summed
/// HDR histograms, never averaged from the parts' percentiles. SLOs are judged again on the
/// merged figures, with the first part's scenario.
///
/// What cannot be merged exactly is left out or marked: stepped runs' steps (kept only when a
/// single part is given), server figures (one server per part), and the timeline's per-second
/// percentiles, which are the highest of the parts' (its counts and rates are sums; so for
/// each behaviour's time slices).
public enum ResultMerger {
    public struct Failure: Error, CustomStringConvertible, Sendable {
        public var description: String
    }

    /// Reads and merges result files; errors name the file.
    public static func merge(files: [String]) throws -> LoadResult {
        var results: [LoadResult] = []
        for file in files {
            let data: Data
            do {
                data = try Data(contentsOf: URL(fileURLWithPath: file))
            } catch {
                throw Failure(description: "\(file): cannot be read (\(error.localizedDescription))")
            }
            struct Version: Decodable {
                var tool: String?
                var formatVersion: Int?
            }
            if let version = try? JSONDecoder().decode(Version.self, from: data), version.tool == "tether-load", let format = version.formatVersion, format < 2 {
                throw Failure(description: "\(file): a format \(format) result (no histograms): it cannot be merged exactly")
            }
            do {
                results.append(try JSONDecoder().decode(LoadResult.self, from: data))
            } catch {
                throw Failure(description: "\(file): not a tether-load result (\(error))")
            }
            if results.last?.histograms == nil {
                throw Failure(description: "\(file): has no histograms (written by a tether-load before format 2), so it cannot be merged exactly")
            }
        }
        return try self.merge(results)
    }

    public static func merge(_ parts: [LoadResult]) throws -> LoadResult {
        guard var merged = parts.first else { throw Failure(description: "nothing to merge") }
        try self.checkParts(parts.map(\.scenario.part))
        guard parts.count > 1 else { return merged }
        guard parts.allSatisfy({ $0.histograms != nil }) else { throw Failure(description: "a part has no histograms: it cannot be merged exactly") }
        var histograms = LoadResult.Histograms()
        var errors: [String: Int] = [:]
        var otherErrors: [String: Int] = [:]
        for part in parts {
            let h = part.histograms!
            histograms.delivery.add(h.delivery)
            histograms.login.add(h.login)
            for (key, value) in h.phases { histograms.phases[key, default: LatencyHistogram()].add(value) }
            for (key, value) in h.populations { histograms.populations[key, default: LatencyHistogram()].add(value) }
            for (key, value) in h.behaviours { histograms.behaviours[key, default: LatencyHistogram()].add(value) }
            for (key, count) in part.errors { errors[key, default: 0] += count }
            for (key, count) in part.otherErrors { otherErrors[key, default: 0] += count }
        }
        merged.mergedFrom = parts.count
        merged.startedAt = parts.map(\.startedAt).min() ?? merged.startedAt
        merged.errors = errors
        merged.otherErrors = otherErrors
        merged.retransmissions = parts.reduce(0) { $0 + $1.retransmissions }
        merged.sessions = self.sessions(parts.map(\.sessions), histograms)
        merged.messages = self.messages(parts.map(\.messages), histograms.delivery)
        merged.steps = []
        merged.kneeRate = nil
        merged.server = nil
        merged.cpu = self.cpu(parts.map(\.cpu))
        merged.timeline = self.timeline(parts.map(\.timeline))
        merged.populations = self.populations(parts, histograms)
        merged.behaviours = self.behaviours(parts, histograms)
        // The scenario: the first part's, with each population's sessions summed over the parts.
        for index in merged.scenario.populations.indices {
            let name = merged.scenario.populations[index].name
            merged.scenario.populations[index].sessions = parts.reduce(0) { total, part in
                total + (part.scenario.populations.first { $0.name == name }?.sessions ?? 0)
            }
        }
        merged.scenario.part = nil
        merged.histograms = histograms
        merged.judge()
        return merged
    }

    /// Parts of a distributed run (`--part`) must be distinct parts of the same split, and all
    /// of them: a part given twice would count its sessions twice, a missing one would leave
    /// a hole the merged figures cannot show.
    static func checkParts(_ parts: [LoadPart?]) throws {
        let given = parts.compactMap { $0 }
        guard !given.isEmpty else { return }
        if let bad = given.first(where: { !$0.problems.isEmpty }) { throw Failure(description: "part \(bad): not K/N with 1 ≤ K ≤ N") }
        guard given.count == parts.count else { throw Failure(description: "some results are parts (--part) and some are not: they are not one load") }
        let counts = Set(given.map(\.count))
        guard counts.count == 1, let count = counts.first else {
            throw Failure(description: "the parts are of different splits (\(given.map(\.description).joined(separator: ", ")))")
        }
        let indexes = given.map(\.index)
        if let twice = Set(indexes).first(where: { index in indexes.count { $0 == index } > 1 }) {
            throw Failure(description: "part \(twice)/\(count) is given twice")
        }
        let missing = (1...count).filter { !indexes.contains($0) }
        guard missing.isEmpty else {
            throw Failure(description: "part\(missing.count > 1 ? "s" : "") \(missing.map { "\($0)/\(count)" }.joined(separator: ", ")) missing")
        }
    }

    private static func sessions(_ parts: [LoadResult.Sessions], _ histograms: LoadResult.Histograms) -> LoadResult.Sessions {
        var merged = parts[0]
        merged.requested = parts.reduce(0) { $0 + $1.requested }
        merged.started = parts.reduce(0) { $0 + $1.started }
        merged.established = parts.reduce(0) { $0 + $1.established }
        merged.failed = parts.reduce(0) { $0 + $1.failed }
        merged.closedCleanly = parts.reduce(0) { $0 + $1.closedCleanly }
        merged.rampSeconds = parts.map(\.rampSeconds).max() ?? 0
        // Parts run side by side: their rates add up.
        merged.establishmentRate = parts.reduce(0) { $0 + $1.establishmentRate }
        merged.login = histograms.login.summary
        merged.phases = histograms.phases.mapValues(\.summary)
        // Parts on other machines may each have measured the same server: not a sum.
        merged.serverCPUSecondsDuringLogin = nil
        merged.upstreamCPUSecondsDuringLogin = nil
        return merged
    }

    private static func messages(_ parts: [LoadResult.Messages], _ delivery: LatencyHistogram) -> LoadResult.Messages {
        var merged = parts[0]
        merged.targetRate = parts.reduce(0) { $0 + $1.targetRate }
        merged.achievedRate = parts.reduce(0) { $0 + $1.achievedRate }
        merged.sent = parts.reduce(0) { $0 + $1.sent }
        merged.delivered = parts.reduce(0) { $0 + $1.delivered }
        merged.lost = parts.reduce(0) { $0 + $1.lost }
        merged.duplicates = parts.reduce(0) { $0 + $1.duplicates }
        merged.unknown = parts.reduce(0) { $0 + $1.unknown }
        merged.behindSchedule = parts.reduce(0) { $0 + $1.behindSchedule }
        merged.messagingSeconds = parts.map(\.messagingSeconds).max() ?? 0
        merged.latency = delivery.summary
        merged.serverCPUSeconds = nil
        return merged
    }

    private static func cpu(_ parts: [LoadResult.CPU]) -> LoadResult.CPU {
        var merged = parts[0]
        merged.wallSeconds = parts.map(\.wallSeconds).max() ?? 0
        merged.processSeconds = parts.reduce(0) { $0 + $1.processSeconds }
        merged.processPercent = parts.reduce(0) { $0 + $1.processPercent }
        merged.clientThreadsSeconds = parts.reduce(0) { $0 + $1.clientThreadsSeconds }
        merged.peakClientThreadPercent = parts.map(\.peakClientThreadPercent).max() ?? 0
        merged.clientSaturated = parts.contains { $0.clientSaturated }
        return merged
    }

    /// Second by second (by the parts' own clocks, rounded): counts summed, percentiles the worst part's.
    private static func timeline(_ parts: [[LoadResult.Sample]]) -> [LoadResult.Sample] {
        var bySecond: [Int: LoadResult.Sample] = [:]
        for part in parts {
            for sample in part {
                let second = Int(sample.second.rounded())
                guard var merged = bySecond[second] else {
                    bySecond[second] = sample
                    continue
                }
                merged.sessionsUp += sample.sessionsUp
                merged.sentPerSecond += sample.sentPerSecond
                merged.deliveredPerSecond += sample.deliveredPerSecond
                merged.errors += sample.errors
                merged.clientCPUPercent += sample.clientCPUPercent
                merged.p50 = max(merged.p50, sample.p50)
                merged.p90 = max(merged.p90, sample.p90)
                merged.p99 = max(merged.p99, sample.p99)
                merged.max = max(merged.max, sample.max)
                merged.serverRSSKiB = nil
                if let slices = sample.behaviours {
                    var behaviours = merged.behaviours ?? [:]
                    for (key, slice) in slices {
                        guard var sum = behaviours[key] else {
                            behaviours[key] = slice
                            continue
                        }
                        sum.attempts += slice.attempts
                        sum.successes += slice.successes
                        sum.failures += slice.failures
                        sum.count += slice.count
                        sum.p50 = max(sum.p50, slice.p50)
                        sum.p99 = max(sum.p99, slice.p99)
                        behaviours[key] = sum
                    }
                    merged.behaviours = behaviours
                }
                bySecond[second] = merged
            }
        }
        return bySecond.keys.sorted().map { bySecond[$0]! }
    }

    private static func populations(_ parts: [LoadResult], _ histograms: LoadResult.Histograms) -> [PopulationResult] {
        var order: [String] = []
        var merged: [String: PopulationResult] = [:]
        for part in parts {
            for population in part.populations {
                guard var existing = merged[population.name] else {
                    order.append(population.name)
                    merged[population.name] = population
                    continue
                }
                existing.requested += population.requested
                existing.started += population.started
                existing.established += population.established
                existing.failed += population.failed
                for (key, count) in population.errors { existing.errors[key, default: 0] += count }
                merged[population.name] = existing
            }
        }
        return order.map { name in
            var population = merged[name]!
            let histogram = histograms.populations[name] ?? LatencyHistogram()
            population.login = histogram.summary
            let slo = parts[0].scenario.populations.first { $0.name == name }?.slo ?? .init()
            population.slo = slo.verdicts(
                attempts: UInt64(population.requested), successes: UInt64(population.established),
                failures: UInt64(max(0, population.requested - population.established)), latency: population.login
            )
            population.passed = population.slo.allSatisfy(\.met)
            return population
        }
    }

    private static func behaviours(_ parts: [LoadResult], _ histograms: LoadResult.Histograms) -> [BehaviourResult] {
        var order: [String] = []
        var merged: [String: BehaviourResult] = [:]
        for part in parts {
            for behaviour in part.behaviours {
                let key = LoadResult.Histograms.behaviourKey(behaviour.population, behaviour.behaviour)
                guard var existing = merged[key] else {
                    order.append(key)
                    merged[key] = behaviour
                    continue
                }
                existing.attempts += behaviour.attempts
                existing.successes += behaviour.successes
                existing.failures += behaviour.failures
                for (name, count) in behaviour.errors { existing.errors[name, default: 0] += count }
                if let away = behaviour.messagesWhileAway { existing.messagesWhileAway = (existing.messagesWhileAway ?? 0) + away }
                if let delivered = behaviour.messagesWhileAwayDelivered {
                    existing.messagesWhileAwayDelivered = (existing.messagesWhileAwayDelivered ?? 0) + delivered
                }
                if let replayed = behaviour.replayedAnswers { existing.replayedAnswers = (existing.replayedAnswers ?? 0) + replayed }
                if let sent = behaviour.stanzasSent { existing.stanzasSent = (existing.stanzasSent ?? 0) + sent }
                merged[key] = existing
            }
        }
        return order.map { key in
            var behaviour = merged[key]!
            behaviour.latency = (histograms.behaviours[key] ?? LatencyHistogram()).summary
            let spec = parts[0].scenario.populations.first { $0.name == behaviour.population }?.behaviours.first { $0.kind == behaviour.behaviour }
            behaviour.slo = (spec?.slo ?? .init()).verdicts(
                attempts: behaviour.attempts, successes: behaviour.successes, failures: behaviour.failures, latency: behaviour.latency
            )
            behaviour.passed = behaviour.slo.allSatisfy(\.met)
            return behaviour
        }
    }
}
