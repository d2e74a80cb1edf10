import Foundation
import XMPPCore

/// A self-contained HTML report: summary tables and inline SVG charts, no scripts, no external files.
public enum HTMLReport {
    public static func render(_ result: LoadResult) -> String {
        let timeline = result.timeline.filter { $0.phase != "start" }
        func points(_ value: (LoadResult.Sample) -> Double) -> [(Double, Double)] {
            timeline.map { ($0.second, value($0)) }
        }
        var charts: [String] = []
        charts.append(
            self.lineChart(
                title: "Throughput (messages per second)", unit: "msg/s",
                series: [
                    Series(name: "sent", color: "#1f77b4", points: points(\.sentPerSecond)),
                    Series(name: "delivered", color: "#2ca02c", points: points(\.deliveredPerSecond)),
                ]
            )
        )
        charts.append(
            self.lineChart(
                title: "Delivery latency per second (ms)", unit: "ms",
                series: [
                    Series(name: "p50", color: "#2ca02c", points: points(\.p50)),
                    Series(name: "p90", color: "#1f77b4", points: points(\.p90)),
                    Series(name: "p99", color: "#ff7f0e", points: points(\.p99)),
                    Series(name: "max", color: "#d62728", points: points(\.max)),
                ]
            )
        )
        charts.append(
            self.lineChart(
                title: "Sessions up", unit: "sessions",
                series: [Series(name: "sessions", color: "#9467bd", points: points { Double($0.sessionsUp) })]
            )
        )
        var resources = [Series(name: "client CPU % (load threads)", color: "#8c564b", points: points(\.clientCPUPercent))]
        if timeline.contains(where: { $0.serverRSSKiB != nil }) {
            resources.append(Series(name: "server RSS (MiB)", color: "#17becf", points: timeline.compactMap { s in s.serverRSSKiB.map { (s.second, Double($0) / 1024) } }))
        }
        charts.append(self.lineChart(title: "Client CPU and server memory", unit: "", series: resources))

        let s = result.sessions
        let m = result.messages
        var html = """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8"><title>tether-load report</title>
            <style>
            body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1000px}
            table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}
            th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
            .pass{color:#2ca02c;font-weight:bold}.fail{color:#d62728;font-weight:bold}.warn{color:#d62728}
            svg{display:block;margin:1em 0;background:#fff;border:1px solid #ddd}
            </style></head><body>
            <h1>tether-load report</h1>
            <p>\(result.scenario.populations.map { "\(esc($0.name)): \($0.sessions) \(esc($0.transport.rawValue)) → <code>\(esc($0.endpoint.description))</code>" }.joined(separator: "; ")), domain \(esc(result.scenario.domain)), \
            started \(esc(result.startedAt)). Result: <span class="\(result.passed ? "pass" : "fail")">\(result.passed ? "PASS" : "FAIL")</span></p>

            """
        html += "<h2>Sessions</h2><table><tr><th>requested</th><th>established</th><th>failed</th><th>closed cleanly</th><th>ramp (s)</th><th>sessions/s</th></tr>"
        html +=
            "<tr><td>\(s.requested)</td><td>\(s.established)</td><td>\(s.failed)</td><td>\(s.closedCleanly)</td><td>\(f(s.rampSeconds, 2))</td><td>\(f(s.establishmentRate, 1))</td></tr></table>"
        html += "<table><tr><th>login phase (ms)</th><th>count</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th></tr>"
        for name in ["connecting", "awaitingFeatures", "authenticating", "awaitingBoundFeatures", "binding", "startingSession"] {
            if let summary = s.phases[name] { html += self.summaryRow(name, summary) }
        }
        html += self.summaryRow("whole login", s.login) + "</table>"
        if !result.behaviours.isEmpty {
            html +=
                "<h2>Behaviours</h2><table><tr><th>population / behaviour</th><th>attempts</th><th>successes</th><th>failures</th><th>latency of</th><th>p50 ms</th><th>p99 ms</th><th>max ms</th><th>SLO</th></tr>"
            for b in result.behaviours {
                html +=
                    "<tr><td>\(esc(b.population)) / \(esc(b.behaviour.rawValue))</td><td>\(b.attempts)</td><td>\(b.successes)</td><td class=\"\(b.failures > 0 ? "fail" : "")\">\(b.failures)</td>"
                html += "<td>\(esc(b.latencyOf))</td><td>\(f(b.latency.p50, 2))</td><td>\(f(b.latency.p99, 2))</td><td>\(f(b.latency.max, 2))</td>"
                html +=
                    "<td class=\"\(b.passed ? "pass" : "fail")\">\(b.passed ? "met" : "BREACHED: " + esc(b.slo.filter { !$0.met }.map(\.metric).joined(separator: ", ")))</td></tr>"
            }
            html += "</table>"
        }
        html += "<h2>Messages</h2><table><tr><th>target msg/s</th><th>achieved msg/s</th><th>sent</th><th>delivered</th><th>lost</th><th>duplicates</th></tr>"
        html += "<tr><td>\(f(m.targetRate, 1))</td><td>\(f(m.achievedRate, 1))</td><td>\(m.sent)</td><td>\(m.delivered)</td>"
        html += "<td class=\"\(m.lost > 0 ? "fail" : "")\">\(m.lost)</td><td>\(m.duplicates)</td></tr></table>"
        if m.behindSchedule > 0 {
            html += "<p class=\"warn\">The client fell behind its own schedule by \(m.behindSchedule) messages (its event loop ran more than 50 ms late).</p>"
        }
        html += "<table><tr><th>delivery latency (ms)</th><th>count</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th></tr>"
        html += self.summaryRow("end to end", m.latency) + "</table>"
        if !result.steps.isEmpty {
            html +=
                "<h2>Steps</h2><table><tr><th>target msg/s</th><th>achieved</th><th>p50</th><th>p99</th><th>max</th><th>undelivered</th><th>behind schedule</th><th>client CPU peak %</th><th>within bound</th></tr>"
            for step in result.steps {
                html += "<tr><td>\(f(step.targetRate, 0))</td><td>\(f(step.achievedRate, 1))</td><td>\(f(step.latency.p50, 2))</td><td>\(f(step.latency.p99, 2))</td>"
                html +=
                    "<td>\(f(step.latency.max, 2))</td><td>\(step.undelivered)</td><td>\(step.behindSchedule)</td><td>\(f(step.peakClientThreadCPUPercent, 0))</td><td>\(step.withinBound ? "yes" : "no")</td></tr>"
            }
            html +=
                "</table><p>Knee (p99 under \(f(result.scenario.p99BoundMilliseconds, 0)) ms, nothing lost): <b>\(result.kneeRate.map { "\(f($0, 0)) msg/s" } ?? "none")</b></p>"
        }
        let c = result.cpu
        html += "<h2>Resources</h2><p>Load-generator threads: \(f(c.clientThreadsSeconds, 2)) CPU s, busiest second \(f(c.peakClientThreadPercent, 0))% of a core"
        html += c.clientSaturated ? " <span class=\"warn\">(saturated: the figures may show the client's limit, not the server's)</span>" : ""
        html += ". Whole process \(f(c.processSeconds, 2)) CPU s over \(f(c.wallSeconds, 1)) s.</p>"
        if let server = result.server {
            html +=
                "<p>Server PID \(server.pid) RSS: start \(server.rssKiBAtStart.map(String.init) ?? "?") KiB, peak \(server.rssKiBPeak.map(String.init) ?? "?") KiB, end \(server.rssKiBAtEnd.map(String.init) ?? "?") KiB.</p>"
        }
        html += "<h2>Errors</h2>"
        if result.errors.isEmpty {
            html += "<p>None.</p>"
        } else {
            html += "<table><tr><th>kind:condition</th><th>count</th></tr>"
            for (key, count) in result.errors.sorted(by: { $0.key < $1.key }) { html += "<tr><td>\(esc(key))</td><td>\(count)</td></tr>" }
            html += "</table>"
        }
        html += "<h2>Over time</h2>" + charts.joined(separator: "\n")
        html += self.behavioursOverTime(result, timeline)
        html += "</body></html>\n"
        return html
    }

    struct Series {
        var name: String
        var color: String
        var points: [(Double, Double)]
        /// Drawn as red rings, not joined: the seconds that broke an SLO.
        var marksOnly = false
    }

    /// Each behaviour second by second: what succeeded and failed in each second, and the p50
    /// and p99 of what completed, with its SLO's p99 bound and the seconds above it marked.
    static func behavioursOverTime(_ result: LoadResult, _ timeline: [LoadResult.Sample]) -> String {
        guard timeline.contains(where: { $0.behaviours != nil }) else { return "" }
        var html = "<h2>Behaviours over time</h2>"
        for behaviour in result.behaviours {
            let key = "\(behaviour.population)/\(behaviour.behaviour.rawValue)"
            var successes: [(Double, Double)] = []
            var failures: [(Double, Double)] = []
            var p50: [(Double, Double)] = []
            var p99: [(Double, Double)] = []
            var previous: LoadResult.BehaviourSlice?
            for sample in timeline {
                guard let slice = sample.behaviours?[key] else { continue }
                successes.append((sample.second, Double(slice.successes - min(slice.successes, previous?.successes ?? 0))))
                failures.append((sample.second, Double(slice.failures - min(slice.failures, previous?.failures ?? 0))))
                if slice.count > 0 {
                    p50.append((sample.second, slice.p50))
                    p99.append((sample.second, slice.p99))
                }
                previous = slice
            }
            guard !successes.isEmpty else { continue }
            let verdict = behaviour.passed ? "<span class=\"pass\">SLO met</span>" : "<span class=\"fail\">SLO breached</span>"
            html += "<h3>\(esc(key)) (\(verdict))</h3>"
            html += self.lineChart(
                title: "\(key): successes and failures per second", unit: "per s",
                series: [
                    Series(name: "successes", color: "#2ca02c", points: successes),
                    Series(name: "failures", color: "#d62728", points: failures),
                ]
            )
            guard !p99.isEmpty else { continue }
            var series = [
                Series(name: "p50", color: "#2ca02c", points: p50),
                Series(name: "p99", color: "#ff7f0e", points: p99),
            ]
            if let bound = result.scenario.populations.first(where: { $0.name == behaviour.population })?.behaviours
                .first(where: { $0.kind == behaviour.behaviour })?.slo.p99Milliseconds
            {
                let first = timeline.first?.second ?? 0
                let last = timeline.last?.second ?? 0
                series.append(Series(name: "p99 SLO", color: "#7f7f7f", points: [(first, bound), (last, bound)]))
                let above = p99.filter { $0.1 > bound }
                if !above.isEmpty { series.append(Series(name: "p99 over SLO", color: "#d62728", points: above, marksOnly: true)) }
            }
            html += self.lineChart(title: "\(key): \(behaviour.latencyOf) latency per second (ms)", unit: "ms", series: series)
        }
        return html
    }

    /// A line chart as inline SVG: axes with a few ticks, one polyline per series, a legend.
    static func lineChart(title: String, unit: String, series: [Series]) -> String {
        let width = 900.0
        let height = 260.0
        let left = 60.0
        let right = 20.0
        let top = 30.0
        let bottom = 30.0
        let all = series.flatMap(\.points)
        let maxX = max(all.map(\.0).max() ?? 1, 1)
        let maxY = self.niceCeiling(max(all.map(\.1).max() ?? 1, 1e-9))
        func x(_ value: Double) -> Double { left + value / maxX * (width - left - right) }
        func y(_ value: Double) -> Double { height - bottom - value / maxY * (height - top - bottom) }
        var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" font-size=\"11\">"
        svg += "<text x=\"\(left)\" y=\"18\" font-size=\"13\" font-weight=\"bold\">\(esc(title))</text>"
        for tick in 0...4 {
            let value = maxY * Double(tick) / 4
            svg += "<line x1=\"\(left)\" x2=\"\(width - right)\" y1=\"\(f(y(value), 1))\" y2=\"\(f(y(value), 1))\" stroke=\"#eee\"/>"
            svg += "<text x=\"\(left - 4)\" y=\"\(f(y(value) + 4, 1))\" text-anchor=\"end\">\(self.compact(value))</text>"
        }
        for tick in 0...5 {
            let value = maxX * Double(tick) / 5
            svg += "<text x=\"\(f(x(value), 1))\" y=\"\(height - bottom + 14)\" text-anchor=\"middle\">\(f(value, 0)) s</text>"
        }
        svg += "<line x1=\"\(left)\" x2=\"\(left)\" y1=\"\(top)\" y2=\"\(height - bottom)\" stroke=\"#999\"/>"
        svg += "<line x1=\"\(left)\" x2=\"\(width - right)\" y1=\"\(height - bottom)\" y2=\"\(height - bottom)\" stroke=\"#999\"/>"
        var legendX = width - right - 10
        for item in series.reversed() {
            legendX -= Double(item.name.count) * 6.5 + 24
            svg += "<rect x=\"\(f(legendX, 1))\" y=\"9\" width=\"10\" height=\"10\" fill=\"\(item.color)\"/>"
            svg += "<text x=\"\(f(legendX + 14, 1))\" y=\"18\">\(esc(item.name))</text>"
        }
        for item in series where item.marksOnly {
            for point in item.points {
                svg +=
                    "<circle cx=\"\(f(x(point.0), 1))\" cy=\"\(f(y(point.1), 1))\" r=\"4\" fill=\"none\" stroke=\"\(item.color)\" stroke-width=\"2\"><title>\(esc(item.name))</title></circle>"
            }
        }
        for item in series where !item.points.isEmpty && !item.marksOnly {
            let path = item.points.map { "\(f(x($0.0), 1)),\(f(y($0.1), 1))" }.joined(separator: " ")
            svg += "<polyline fill=\"none\" stroke=\"\(item.color)\" stroke-width=\"1.5\" points=\"\(path)\"><title>\(esc(item.name)) \(esc(unit))</title></polyline>"
        }
        svg += "</svg>"
        return svg
    }

    static func summaryRow(_ name: String, _ summary: LatencySummary) -> String {
        "<tr><td>\(esc(name))</td><td>\(summary.count)</td><td>\(f(summary.p50, 2))</td><td>\(f(summary.p90, 2))</td><td>\(f(summary.p99, 2))</td><td>\(f(summary.p999, 2))</td><td>\(f(summary.max, 2))</td></tr>"
    }

    /// 1, 2 or 5 times a power of ten, at least `value`.
    static func niceCeiling(_ value: Double) -> Double {
        let exponent = (log10(value)).rounded(.down)
        let base = pow(10, exponent)
        for factor in [1.0, 2.0, 5.0, 10.0] where factor * base >= value { return factor * base }
        return 10 * base
    }

    static func compact(_ value: Double) -> String {
        if value == 0 { return "0" }
        if value >= 1_000_000 { return f(value / 1_000_000, 1) + "M" }
        if value >= 10_000 { return f(value / 1000, 0) + "k" }
        if value >= 100 { return f(value, 0) }
        if value >= 1 { return f(value, 1) }
        return f(value, 2)
    }
}

private func f(_ value: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", value) }
private func esc(_ text: String) -> String { XMLEscaping.escapeText(text).replacingOccurrences(of: "\"", with: "&quot;") }
