#!/usr/bin/env python3
"""Figures for benchmarks/tsung-crosscheck.sh.

  crosscheck.py table WORK_DIR REPS USERS COUNT TOLERANCE
      Reads WORK_DIR/rN-tether-load.json, WORK_DIR/rN-tsung/*/tsung-fullstats.log and tsung.log,
      WORK_DIR/rN-*.status, WORK_DIR/rN-*.cpu and, when present, WORK_DIR/rN-*.pcap (N = 1..REPS);
      prints the comparison table; exits 1 when throughput or p50 differ by more than TOLERANCE %,
      or a run lost messages or failed.

Latency, as each tool measures it:
  tether-load  the sender's monotonic clock written into the body ("tl:SEQ:NANOS") when the
               message is due, to the receiving session's parse of the stanza (same process).
  Tsung        erlang:timestamp() written into the body ("@@@node,Mega;Sec;Micro@@@",
               stamped="true") when ts_jabber builds the message, to the receiving ts_client's
               parse_bidi of the data its ts_bosh process handed over (after xmerl parsed the
               BOSH body): Tsung's xmpp_msg_latency sample.
  wire         (with a capture) the first loopback packet towards the server carrying the
               message's stamp, to the first packet from the server carrying it: the server
               and the kernel only, the same definition for both tools.
"""
import glob
import json
import os
import re
import statistics
import struct
import sys


def pct(values, q):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def median(values):
    return statistics.median(values) if values else float("nan")


# ---- pcap: wire latency ------------------------------------------------------------------------
STAMPS = re.compile(rb"tl:\d+:\d+|@@@\d+,\d+;\d+;\d+@@@")


def wire_latencies(path, port):
    """Milliseconds from a stamp's first packet to the server to its first packet from it."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        return []
    magic = struct.unpack("<I", data[:4])[0]
    if magic in (0xA1B2C3D4, 0xA1B23C4D):
        endian = "<"
    else:
        endian = ">"
        magic = struct.unpack(">I", data[:4])[0]
    scale = 1e-9 if magic == 0xA1B23C4D else 1e-6
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    link_len = {1: 14, 113: 16, 276: 20, 0: 4}.get(linktype)
    if link_len is None:
        raise SystemExit("unknown pcap link type %d" % linktype)
    inbound, outbound = {}, {}
    offset = 24
    while offset + 16 <= len(data):
        sec, frac, caplen, _ = struct.unpack(endian + "IIII", data[offset:offset + 16])
        packet = data[offset + 16:offset + 16 + caplen]
        offset += 16 + caplen
        ip = packet[link_len:]
        if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 6:
            continue
        tcp = ip[(ip[0] & 0x0F) * 4:]
        if len(tcp) < 20:
            continue
        sport, dport = struct.unpack(">HH", tcp[:4])
        payload = tcp[(tcp[12] >> 4) * 4:]
        if not payload:
            continue
        when = sec + frac * scale
        table = inbound if dport == port else outbound if sport == port else None
        if table is None:
            continue
        for stamp in STAMPS.findall(payload):
            table.setdefault(stamp, when)
    return [(outbound[s] - t) * 1000 for s, t in inbound.items() if s in outbound and outbound[s] >= t]


# ---- the runs ----------------------------------------------------------------------------------
def read_text(path, default=""):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def tether_load_run(work, rep, port):
    r = json.load(open(os.path.join(work, "r%d-tether-load.json" % rep)))
    m = r["messages"]
    run = {"sent": m["sent"], "delivered": m["delivered"], "lost": m["lost"],
           "window": m["messagingSeconds"], "rate": m["delivered"] / m["messagingSeconds"],
           "p50": m["latency"]["p50"], "p90": m["latency"]["p90"], "p99": m["latency"]["p99"]}
    return finish(work, rep, "tether-load", port, run)


def tsung_run(work, rep, users, count, port):
    dirs = sorted(glob.glob(os.path.join(work, "r%d-tsung" % rep, "*", "tsung-fullstats.log")))
    if not dirs:
        raise SystemExit("no Tsung statistics for repetition %d" % rep)
    raw = re.sub(r"\s+", "", open(dirs[0]).read())

    def samples(name):
        return [float(v) for v in re.findall(r"\{sample,%s,([-0-9.eE+]+)\}" % re.escape(name), raw)]

    errors = {}
    for line in open(os.path.join(os.path.dirname(dirs[0]), "tsung.log")):
        f = line.split()
        if len(f) == 4 and f[0] == "stats:" and f[1].startswith("error_"):
            errors[f[1]] = int(float(f[3]))
    latency = samples("xmpp_msg_latency")  # ms, Tsung's own samples, one per delivered message
    chat = samples("tr_chat")              # ms, each user's messaging loop: COUNT sends x interval
    window = statistics.mean(chat) / 1000 if chat else float("nan")
    run = {"sent": users * count, "delivered": len(latency), "lost": users * count - len(latency),
           "window": window, "rate": len(latency) / window if chat else 0.0,
           "p50": median(latency), "p90": pct(latency, 0.90), "p99": pct(latency, 0.99),
           "errors": {k: v for k, v in errors.items() if v}}
    return finish(work, rep, "tsung", port, run)


def finish(work, rep, tool, port, run):
    run["status"] = read_text(os.path.join(work, "r%d-%s.status" % (rep, tool)), "?")
    cpu = read_text(os.path.join(work, "r%d-%s.cpu" % (rep, tool)), "").split()
    if len(cpu) == 2:
        run["tool_cpu"], run["server_cpu"] = float(cpu[0]), float(cpu[1])
    pcap = os.path.join(work, "r%d-%s.pcap" % (rep, tool))
    if os.path.exists(pcap):
        wire = wire_latencies(pcap, port)
        run["wire_n"], run["wire_p50"], run["wire_p90"] = len(wire), median(wire), pct(wire, 0.90)
    return run


def table(work, reps, users, count, tolerance):
    port = int(read_text(os.path.join(work, "http-port")))
    tl = [tether_load_run(work, i, port) for i in range(1, reps + 1)]
    ts = [tsung_run(work, i, users, count, port) for i in range(1, reps + 1)]
    fail = []

    def agg(runs, key):
        values = [r[key] for r in runs if key in r]
        return median(values) if values else None

    rows = [("messages sent", "sent", "%.0f", False),
            ("messages delivered", "delivered", "%.0f", False),
            ("messaging window (s)", "window", "%.2f", False),
            ("delivered msg/s", "rate", "%.1f", True),
            ("latency p50 (ms), tool's own", "p50", "%.3f", True),
            ("latency p90 (ms), tool's own", "p90", "%.3f", False),
            ("latency p99 (ms), tool's own", "p99", "%.3f", False),
            ("wire latency p50 (ms), server", "wire_p50", "%.3f", "info"),
            ("wire latency p90 (ms), server", "wire_p90", "%.3f", False),
            ("tool CPU per run (s)", "tool_cpu", "%.2f", False),
            ("Prosody CPU per run (s)", "server_cpu", "%.2f", False)]
    note = "median of %d repetitions" % reps if reps > 1 else "1 repetition"
    print("%-32s %12s %12s %8s   (%s)" % ("", "tether-load", "Tsung", "ratio", note))
    for label, key, fmt, compare in rows:
        a, b = agg(tl, key), agg(ts, key)
        if a is None or b is None:
            continue
        ratio = a / b if b else float("inf")
        flag = ""
        if compare:
            ok = abs(ratio - 1) * 100 <= tolerance
            flag = "  ok" if ok else "  DIFFERS by more than %g %%" % tolerance
            if compare == "info":
                flag += " (not part of the verdict)"
            elif not ok:
                fail.append(label)
        print("%-32s %12s %12s %8.3f%s" % (label, fmt % a, fmt % b, ratio, flag))
    if "wire_p50" in tl[0] and "wire_p50" in ts[0]:
        a = agg(tl, "p50") - agg(tl, "wire_p50")
        b = agg(ts, "p50") - agg(ts, "wire_p50")
        print("%-32s %12.3f %12.3f   (tool p50 - wire p50: the client's own part)" % ("client side of p50 (ms)", a, b))
    for i in range(reps):
        print("  repetition %d: tether-load %.1f msg/s p50 %.3f ms%s | Tsung %.1f msg/s p50 %.3f ms%s"
              % (i + 1, tl[i]["rate"], tl[i]["p50"],
                 " (wire %.3f)" % tl[i]["wire_p50"] if "wire_p50" in tl[i] else "",
                 ts[i]["rate"], ts[i]["p50"],
                 " (wire %.3f)" % ts[i]["wire_p50"] if "wire_p50" in ts[i] else ""))
    errors = {}
    for r in ts:
        for k, v in r["errors"].items():
            errors[k] = errors.get(k, 0) + v
    print("(Tsung's 'sent' is its schedule, users x messages each; 'delivered' counts its latency samples.)")
    print("Tsung errors: %s" % (", ".join("%s %d" % kv for kv in sorted(errors.items())) if errors else "none"))
    lost_tl, lost_ts = sum(r["lost"] for r in tl), sum(r["lost"] for r in ts)
    if lost_tl or lost_ts:
        fail.append("lost messages (tether-load %d, Tsung %d)" % (lost_tl, lost_ts))
    for name, runs in (("tether-load", tl), ("tsung", ts)):
        bad = [r["status"] for r in runs if r["status"] != "0"]
        if bad:
            fail.append("%s exit status %s" % (name, ",".join(bad)))
    print("RESULT: " + ("AGREE within %g %%" % tolerance if not fail else "FAILED: " + "; ".join(fail)))
    return 1 if fail else 0


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == "table":
        sys.exit(table(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])))
    if len(sys.argv) == 4 and sys.argv[1] == "wire":
        w = wire_latencies(sys.argv[2], int(sys.argv[3]))
        print("n=%d p50=%.3f p90=%.3f ms" % (len(w), median(w), pct(w, 0.9)))
        sys.exit(0)
    sys.exit(__doc__)
