#!/usr/bin/env python3
"""The ratio table of benchmarks/compare.sh, from the tether-load JSON results it wrote.

    benchmarks/report.py RESULTS_DIR      the full table (Markdown), as compare.sh prints it
    benchmarks/report.py --one FILE.json  one line about one run (compare.sh's progress log)

Files: NAME.rREP.json (one tether-load run), stub-ws-idle-100k.json (the 100k hold, written by
compare.sh itself), facts.env (machine facts and settings).
"""
import glob
import json
import os
import re
import statistics
import sys

MS = 1000.0


def load(path):
    with open(path) as handle:
        return json.load(handle)


def plan_steps(result):
    return [s for s in result.get("steps", []) if not s.get("reference")]


def step_at(result, rate):
    """The step at `rate`: the reference step (run first, whatever the knee) if it has that rate."""
    steps = sorted(result.get("steps", []), key=lambda s: not s.get("reference"))
    for step in steps:
        if abs(step["targetRate"] - rate) < 1e-6:
            return step
    return None


def knee_step(result):
    knee = result.get("kneeRate")
    for step in plan_steps(result):
        if knee is not None and abs(step["targetRate"] - knee) < 1e-6:
            return step
    return None


def cpu_ms_per_message(step):
    if not step or step.get("serverCPUSeconds") is None or not step.get("delivered"):
        return None
    return step["serverCPUSeconds"] / step["delivered"] * MS


def figures(result):
    """What the table needs from one run."""
    f = {}
    steps = plan_steps(result)
    if steps:
        f["knee"] = result.get("kneeRate") or 0.0
        f["plan_max"] = steps[-1]["targetRate"] if all(s["withinBound"] for s in steps) else None
        at = step_at(result, 1000)
        if at:
            f["p50_1000"] = at["latency"]["p50"]
            f["p99_1000"] = at["latency"]["p99"]
            f["cpu_1000"] = cpu_ms_per_message(at)
            f["ok_1000"] = at["withinBound"]
            if at.get("upstreamCPUSeconds") is not None and at.get("delivered"):
                f["upstream_cpu_1000"] = at["upstreamCPUSeconds"] / at["delivered"] * MS
            f["delivered_1000"] = at.get("delivered")
            f["achieved_1000"] = at.get("achievedRate")
            # nginx → Tether runs: nginx's worker is the server, Tether the upstream, in one step.
            if f["cpu_1000"] and f.get("upstream_cpu_1000") is not None:
                f["upstream_over_server_1000"] = f["upstream_cpu_1000"] / f["cpu_1000"]
        k = knee_step(result)
        if k:
            f["cpu_knee"] = cpu_ms_per_message(k)
            if k.get("upstreamCPUSeconds") is not None and k.get("delivered"):
                f["upstream_cpu_knee"] = k["upstreamCPUSeconds"] / k["delivered"] * MS
            f["machine_busy_knee"] = k.get("machineBusyPercent")
            f["client_peak_knee"] = k["peakClientThreadCPUPercent"]
            if k.get("clientThreadCPUSeconds"):
                f["client_msgs_per_core_second"] = k["delivered"] / k["clientThreadCPUSeconds"]
        # The first step over the bound: was the client's thread the limit there?
        over = [s for s in steps if not s["withinBound"]]
        if over:
            f["client_peak_over"] = over[0]["peakClientThreadCPUPercent"]
            f["machine_busy_over"] = over[0].get("machineBusyPercent")
    server = result.get("server") or {}
    if server.get("rssKiBLoaded") and server.get("rssKiBAtStart") and server.get("sessionsUpWhenLoaded"):
        f["kib_per_session"] = (server["rssKiBLoaded"] - server["rssKiBAtStart"]) / server["sessionsUpWhenLoaded"]
        f["sessions_up"] = server["sessionsUpWhenLoaded"]
    if server.get("cpuSecondsDuringIdleHold") is not None and server.get("idleHoldSeconds"):
        f["idle_core_percent"] = server["cpuSecondsDuringIdleHold"] / server["idleHoldSeconds"] * 100
    sessions = result.get("sessions", {})
    if sessions.get("serverCPUSecondsDuringLogin") is not None and sessions.get("established"):
        f["login_cpu_ms"] = sessions["serverCPUSecondsDuringLogin"] / sessions["established"] * MS
    if sessions.get("upstreamCPUSecondsDuringLogin") is not None and sessions.get("established"):
        f["login_upstream_cpu_ms"] = sessions["upstreamCPUSecondsDuringLogin"] / sessions["established"] * MS
    f["established"] = sessions.get("established", 0)
    f["failed"] = sessions.get("failed", 0)
    f["establishment_rate"] = sessions.get("establishmentRate")
    f["passed"] = result.get("passed", False)
    f["errors"] = result.get("errors", {})
    return f


def one_line(path):
    f = figures(load(path))
    parts = []
    if "knee" in f:
        parts.append("knee %d msg/s" % f["knee"])
        if "p99_1000" in f:
            parts.append("p50/p99 @1000 %.2f/%.2f ms" % (f["p50_1000"], f["p99_1000"]))
        if f.get("cpu_1000") is not None:
            parts.append("server cpu @1000 %.4f ms/msg" % f["cpu_1000"])
        if f.get("upstream_cpu_1000") is not None:
            parts.append("upstream cpu @1000 %.4f ms/msg" % f["upstream_cpu_1000"])
        if "client_peak_knee" in f:
            parts.append("client thread @knee %.0f%%" % f["client_peak_knee"])
    elif "kib_per_session" in f:
        parts.append("%.2f KiB/session with %d up" % (f["kib_per_session"], f["sessions_up"]))
        parts.append("%.0f sessions/s" % (f["establishment_rate"] or 0))
        if "idle_core_percent" in f:
            parts.append("%.2f %% of one core while idle" % f["idle_core_percent"])
    if f.get("login_cpu_ms") is not None:
        parts.append("login cpu %.3f ms%s" % (f["login_cpu_ms"], "" if f.get("login_upstream_cpu_ms") is None else " (upstream %.3f ms)" % f["login_upstream_cpu_ms"]))
    if f["failed"]:
        parts.append("%d sessions failed" % f["failed"])
    if f["errors"]:
        parts.append("errors " + ", ".join("%s×%d" % kv for kv in sorted(f["errors"].items())))
    return "; ".join(parts)


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def spread(values, fmt):
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    text = fmt % statistics.median(values)
    if len(values) > 1:
        text += " (" + fmt % min(values) + "–" + fmt % max(values) + ")"
    return text


TARGETS = [
    ("prosody-bosh", "Prosody mod_bosh"),
    ("tether-bosh-prosody", "Tether BOSH → Prosody c2s"),
    ("prosody-ws", "Prosody mod_websocket"),
    ("tether-ws-prosody", "Tether WebSocket → Prosody c2s"),
    ("prosody-tcp", "Prosody c2s (TCP, reference)"),
    ("nginx-bosh-tether", "nginx → Tether BOSH → Prosody c2s (server = nginx worker, upstream = Tether)"),
    ("nginx-ws-tether", "nginx → Tether WebSocket → Prosody c2s (server = nginx worker, upstream = Tether)"),
    ("tether-bosh-fixed", "Tether BOSH → Prosody c2s, the nginx step without nginx"),
    ("tether-ws-fixed", "Tether WebSocket → Prosody c2s, the nginx step without nginx"),
    ("ejabberd-bosh", "ejabberd mod_bosh"),
    ("tether-bosh-ejabberd", "Tether BOSH → ejabberd c2s"),
    ("ejabberd-ws", "ejabberd WebSocket"),
    ("tether-ws-ejabberd", "Tether WebSocket → ejabberd c2s"),
    ("ejabberd-tcp", "ejabberd c2s (TCP, reference)"),
    ("stub-bosh-knee", "Tether BOSH → stub"),
    ("stub-ws-knee", "Tether WebSocket → stub"),
]


def main(directory):
    facts = {}
    facts_path = os.path.join(directory, "facts.env")
    if os.path.exists(facts_path):
        for line in open(facts_path):
            if "=" in line:
                key, value = line.rstrip("\n").split("=", 1)
                facts[key] = value
    runs = {}
    for path in sorted(glob.glob(os.path.join(directory, "*.r*.json"))):
        match = re.match(r"(.+)\.r(\d+)\.json$", os.path.basename(path))
        if match:
            runs.setdefault(match.group(1), []).append(figures(load(path)))

    def values(name, key):
        return [f.get(key) for f in runs.get(name, [])]

    def med(name, key):
        return median(values(name, key))

    out = []
    out.append("## Tether benchmark — %s" % facts.get("date", "?"))
    out.append("")
    out.append(
        "Machine: %s CPUs (%s), %s, kernel %s; load average %s at the start, %s at the end; other processes over 20%% "
        "of a core just before the start: %s; at the end: %s. Prosody %s, ejabberd %s, nginx %s, Tether %s (%s)."
        % (facts.get("nproc", "?"), facts.get("cpu", "?"), facts.get("mem", "?"), facts.get("kernel", "?"),
           facts.get("loadavg_start", "?"), facts.get("loadavg", "?"), facts.get("others_start") or "none", facts.get("others") or "none",
           facts.get("prosody", "?"), facts.get("ejabberd", "?"), facts.get("nginx", "not run"), facts.get("tether", "?"), facts.get("swift", "?"))
    )
    out.append(
        "%s repetition(s), interleaved; medians, (min–max) over the repetitions. %s sessions per target, knee = highest "
        "step of %s s with p99 ≤ %s ms and nothing undelivered; one tether-load thread. Run took %s s."
        % (facts.get("reps", "?"), facts.get("sessions", "?"), facts.get("step_seconds", "?"), facts.get("p99_bound", "?"), facts.get("elapsed", "?"))
    )
    out.append("")

    # ---- targets ----
    rows = []

    def verdict(ok):
        return "n/a" if ok is None else ("MET" if ok else "MISSED")

    def ratio_row(label, num, den, key, goal_text, test, unit_fmt="%.0f", higher_is_capped=None):
        a, b = med(num, key), med(den, key)
        if a is None or b is None or b == 0:
            rows.append((label, "n/a", goal_text, "n/a"))
            return
        r = a / b
        capped = ""
        if higher_is_capped and all(f.get("plan_max") for f in runs.get(num, [])):
            capped = " (Tether hit the top of its step plan: at least this)"
        rows.append((label, ("%.2f× (" + unit_fmt + " / " + unit_fmt + ")%s") % (r, a, b, capped), goal_text, verdict(test(r))))

    for transport, name, goal in (("BOSH", "tether-bosh-prosody", 0.1), ("WebSocket", "tether-ws-prosody", 0.05)):
        v = med(name, "cpu_1000")
        extra = name.replace("prosody", "ejabberd")
        e = med(extra, "cpu_1000")
        rows.append((
            "Tether CPU per delivered message at 1000 msg/s, %s (→ Prosody; → ejabberd alongside)" % transport,
            "n/a" if v is None else "%.4f ms%s" % (v, "" if e is None else " (→ ejabberd %.4f ms)" % e),
            "≤ %s ms" % goal, verdict(None if v is None else v <= goal),
        ))
    # nginx in front of Tether, one run: Tether's CPU per relayed message over nginx's worker's.
    for transport, name in (("BOSH", "nginx-bosh-tether"), ("WebSocket", "nginx-ws-tether")):
        label = "Tether CPU / nginx CPU per message at %s msg/s, %s (nginx → Tether → Prosody, same run)" % (facts.get("fixed_rate", "1000"), transport)
        r = med(name, "upstream_over_server_1000")
        if r is None:
            rows.append((label, "n/a" if name in runs else "not run", "≤ 1.5×", "n/a"))
        else:
            rows.append((
                label,
                "%s (%.4f / %.4f ms)" % (spread(values(name, "upstream_over_server_1000"), "%.2f×"), med(name, "upstream_cpu_1000"), med(name, "cpu_1000")),
                "≤ 1.5×", verdict(r <= 1.5),
            ))
    ratio_row("knee: Tether BOSH → Prosody / Prosody mod_bosh", "tether-bosh-prosody", "prosody-bosh", "knee", "≥ 3×", lambda r: r >= 3, higher_is_capped=True)
    ratio_row("p99 at 1000 msg/s: Tether BOSH → ejabberd / ejabberd mod_bosh", "tether-bosh-ejabberd", "ejabberd-bosh", "p99_1000", "≤ 1×", lambda r: r <= 1.0, unit_fmt="%.2f ms")
    ratio_row("knee: Tether WebSocket → Prosody / Prosody c2s", "tether-ws-prosody", "prosody-tcp", "knee", "≥ 0.9×", lambda r: r >= 0.9, higher_is_capped=True)
    ratio_row("knee: Tether WebSocket → ejabberd / ejabberd c2s", "tether-ws-ejabberd", "ejabberd-tcp", "knee", "≥ 0.9×", lambda r: r >= 0.9, higher_is_capped=True)
    for server in ("prosody", "ejabberd"):
        a, b = med("tether-ws-%s" % server, "p50_1000"), med("%s-tcp" % server, "p50_1000")
        if a is None or b is None:
            rows.append(("added p50 at 1000 msg/s: Tether WebSocket → %s − %s c2s" % (server, server), "n/a", "< 0.5 ms", "n/a"))
        else:
            rows.append((
                "added p50 at 1000 msg/s: Tether WebSocket → %s − %s c2s" % (server, server),
                "%+.3f ms (%.3f − %.3f)" % (a - b, a, b), "< 0.5 ms", verdict(a - b < 0.5),
            ))
    # Login: what establishing a session costs Tether beside what the same c2s login costs
    # Prosody behind it, both read over the ramp of one run (the knee runs, or the nginx
    # column's steps straight to Tether); Prosody's cost for a direct c2s login alongside.
    for k in list(runs):
        for f in runs[k]:
            if f.get("login_cpu_ms") is not None and f.get("login_upstream_cpu_ms"):
                f["login_over_upstream"] = f["login_cpu_ms"] / f["login_upstream_cpu_ms"]
    for transport, names in (("BOSH", ("tether-bosh-prosody", "tether-bosh-fixed")), ("WebSocket", ("tether-ws-prosody", "tether-ws-fixed"))):
        label = "Tether CPU per login / Prosody CPU for that c2s login, %s (%s logins at %s/s, same run)" % (transport, facts.get("sessions", "?"), facts.get("ramp", "?"))
        name = next((n for n in names if med(n, "login_over_upstream") is not None), None)
        if name is None:
            rows.append((label, "n/a", "≤ 0.2×", "n/a"))
            continue
        direct = med("prosody-tcp", "login_cpu_ms")
        rows.append((
            label,
            "%s (%.3f / %.3f ms; direct c2s login: %s)" % (
                spread(values(name, "login_over_upstream"), "%.2f×"), med(name, "login_cpu_ms"), med(name, "login_upstream_cpu_ms"),
                "not run" if direct is None else "%.3f ms" % direct),
            "≤ 0.2×", verdict(med(name, "login_over_upstream") <= 0.2),
        ))
    for transport, key, goal in (("BOSH", "bosh", 10), ("WebSocket", "ws", 8)):
        v = med("stub-%s-idle-10k" % key, "kib_per_session")
        one = med("stub-%s-idle-1k" % key, "kib_per_session")
        up = values("stub-%s-idle-10k" % key, "sessions_up")
        rows.append((
            "Tether RSS per idle session at 10k sessions (%s held), %s (1k alongside)" % (facts.get("idle_sizes", "?").split()[-1], transport),
            "n/a" if v is None else "%.2f KiB (1k: %s KiB; %s up)" % (v, "n/a" if one is None else "%.2f" % one, "/".join(str(u) for u in up)),
            "≤ %d KiB" % goal, verdict(None if v is None else v <= goal),
        ))
    # Idle cost: the share of one core the idle sessions cost Tether, the same sessions on
    # Prosody's own endpoints beside it.
    for transport, key, how in (("BOSH", "bosh", "wait 50 s"), ("WebSocket", "ws", "Tether pings every 25 s")):
        label = "Tether CPU for %s idle %s sessions (%s), %% of one core (Prosody's own %s alongside)" % (
            facts.get("idle_sizes", "?").split()[-1], transport, how, transport)
        t, p = med("idle-cost-tether-%s" % key, "idle_core_percent"), med("idle-cost-prosody-%s" % key, "idle_core_percent")
        if t is None:
            rows.append((label, "n/a" if "idle-cost-tether-%s" % key in runs else "not run", "≤ 2 %", "n/a"))
        else:
            up = values("idle-cost-tether-%s" % key, "sessions_up")
            rows.append((
                label,
                "%.2f %% (Prosody %s; %s up, held %s s)" % (t, "n/a" if p is None else "%.2f %%" % p, "/".join(str(u) for u in up), facts.get("idle_cost_hold", "?")),
                "≤ 2 %", verdict(t <= 2),
            ))
    big_path = os.path.join(directory, "stub-ws-idle-100k.json")
    if os.path.exists(big_path):
        big = load(big_path)
    if os.path.exists(big_path) and big.get("skipped"):
        rows.append(("concurrent idle sessions through one Tether (WebSocket, stub)", "not run: " + big["skipped"], "100,000", "NOT MEASURED"))
    elif os.path.exists(big_path):
        parts = [figures(load(p)) for p in sorted(glob.glob(os.path.join(directory, "stub-ws-idle-100k.part*.json")))]
        established = sum(p["established"] for p in parts)
        failed = sum(p["failed"] for p in parts)
        up = big["tetherFDsAtPeak"] // 2
        per = (big["rssKiBAllUp"] - big["rssKiBAtStart"]) / max(up, 1)
        rows.append((
            "concurrent idle sessions through one Tether (WebSocket, stub)",
            "%d established, %d failed; %d held at once (Tether descriptors %d), %.2f KiB each, all up after %s s%s"
            % (established, failed, up, big["tetherFDsAtPeak"], per, big["secondsToAllUp"], "" if big["tetherAliveAfter"] else "; Tether DIED"),
            "100,000", verdict(up >= big["sessions"] and failed == 0),
        ))
    else:
        rows.append(("concurrent idle sessions through one Tether (WebSocket, stub)", "not run", "100,000", "n/a"))
    rates = {t: med("stub-%s-idle-10k" % k, "establishment_rate") for t, k in (("BOSH", "bosh"), ("WebSocket", "ws"))}
    if all(v is not None for v in rates.values()):
        rows.append((
            "sessions established per second through Tether (10k, stub)",
            "BOSH %.0f/s, WebSocket %.0f/s" % (rates["BOSH"], rates["WebSocket"]), "≥ 2000/s", verdict(min(rates.values()) >= 2000),
        ))
    else:
        rows.append(("sessions established per second through Tether (10k, stub)", "n/a", "≥ 2000/s", "n/a"))
    v = med("stub-bosh-knee", "client_msgs_per_core_second")
    rows.append((
        "tether-load BOSH messages per second of one client core (at the stub BOSH knee)",
        "n/a" if v is None else "%.0f msg/s per core (knee %s msg/s, client thread %s%%)"
        % (v, spread(values("stub-bosh-knee", "knee"), "%.0f"), spread(values("stub-bosh-knee", "client_peak_knee"), "%.0f")),
        "≥ 10,000", verdict(None if v is None else v >= 10000),
    ))

    out.append("### Targets")
    out.append("")
    out.append("| target | measured | goal | |")
    out.append("|---|---|---|---|")
    for row in rows:
        out.append("| %s | %s | %s | %s |" % row)
    out.append("")

    # ---- absolute figures ----
    out.append("### Per target")
    out.append("")
    out.append(
        "| target | knee msg/s | p50 @1000 ms | p99 @1000 ms | server CPU ms/msg @1000 | server CPU ms/msg @knee "
        "| upstream server CPU ms/msg @knee | client thread @knee | client thread, first step over | machine busy @knee "
        "| machine busy, first step over | runs passed |"
    )
    out.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, label in TARGETS:
        if name not in runs:
            continue
        rs = runs[name]
        passed = "%d/%d" % (sum(1 for f in rs if f["passed"]), len(rs))
        out.append(
            "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |"
            % (label, spread(values(name, "knee"), "%.0f") + (" (top of plan)" if all(f.get("plan_max") for f in rs) else ""),
               spread(values(name, "p50_1000"), "%.2f"), spread(values(name, "p99_1000"), "%.2f"),
               spread(values(name, "cpu_1000"), "%.4f"), spread(values(name, "cpu_knee"), "%.4f"),
               spread(values(name, "upstream_cpu_knee"), "%.4f") if name.startswith(("tether", "stub", "nginx")) else "–",
               spread(values(name, "client_peak_knee"), "%.0f%%"), spread(values(name, "client_peak_over"), "%.0f%%"),
               spread(values(name, "machine_busy_knee"), "%.0f%%"), spread(values(name, "machine_busy_over"), "%.0f%%"), passed)
        )
    nginx_rows = [(t, n, d) for t, n, d in (("BOSH", "nginx-bosh-tether", "tether-bosh-fixed"), ("WebSocket", "nginx-ws-tether", "tether-ws-fixed")) if n in runs]
    if nginx_rows:
        out.append("")
        out.append(
            "nginx (nginx/tether.conf without TLS, 1 worker, no access log) in front of the same Tether, one step at %s msg/s "
            "for %s s (+ 2 s drain); CPU per delivered message from /proc/PID/stat over that step, nginx's worker and Tether in the "
            "same run. *Tether without nginx*: the same step straight to that Tether, right after."
            % (facts.get("fixed_rate", "1000"), facts.get("fixed_seconds", "?"))
        )
        out.append("")
        out.append("| transport | nginx worker CPU ms/msg | Tether CPU ms/msg (behind nginx) | Tether / nginx | Tether CPU ms/msg without nginx "
                   "| p50 / p99 ms | delivered | runs passed |")
        out.append("|---|---|---|---|---|---|---|---|")
        for transport, name, direct in nginx_rows:
            rs = runs[name]
            out.append(
                "| %s | %s | %s | %s | %s | %s / %s | %s | %d/%d |"
                % (transport, spread(values(name, "cpu_1000"), "%.4f"), spread(values(name, "upstream_cpu_1000"), "%.4f"),
                   spread(values(name, "upstream_over_server_1000"), "%.2f×"), spread(values(direct, "cpu_1000"), "%.4f"),
                   spread(values(name, "p50_1000"), "%.2f"), spread(values(name, "p99_1000"), "%.2f"),
                   "/".join(str(f.get("delivered_1000", "?")) for f in rs), sum(1 for f in rs if f["passed"]), len(rs))
            )
    idle = [n for n in sorted(runs) if "-idle-" in n]
    if idle:
        out.append("")
        out.append("| Tether alone, idle sessions (stub) | KiB per session | sessions up | established/s | runs passed |")
        out.append("|---|---|---|---|---|")
        for name in idle:
            rs = runs[name]
            out.append(
                "| %s | %s | %s | %s | %d/%d |"
                % (name, spread(values(name, "kib_per_session"), "%.2f"), "/".join(str(f.get("sessions_up", "?")) for f in rs),
                   spread(values(name, "establishment_rate"), "%.0f"), sum(1 for f in rs if f["passed"]), len(rs))
            )
    problems = []
    for name in sorted(runs):
        for index, f in enumerate(runs[name], 1):
            if f["failed"] or f["errors"]:
                problems.append(
                    "%s rep %d: %d sessions failed; %s" % (name, index, f["failed"], ", ".join("%s×%d" % kv for kv in sorted(f["errors"].items())) or "no errors")
                )
    if problems:
        out.append("")
        out.append("Errors (a stepped run past its knee usually ends with undelivered messages, counted lost):")
        out.append("")
        for p in problems:
            out.append("- " + p)
    print("\n".join(out))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        print(one_line(sys.argv[2]))
    elif len(sys.argv) == 2:
        main(sys.argv[1])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
