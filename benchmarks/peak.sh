#!/usr/bin/env bash
# Memory after a peak (not part of scripts/test.sh): a release Tether in front of tether-load's
# upstream stub is warmed up with a few sessions, its RSS taken as "before", then --sessions
# idle sessions (default 10000) log in, stay --hold seconds and log out; Tether's RSS is sampled
# every second for --after seconds (default 40) after the last one ended. Passes when RSS 30 s
# after the peak is within 20% of before (issue: memory comes back after a peak; Tether trims
# glibc's arenas when the live-session count falls well below its peak, MemoryTrimmer).
#
#   benchmarks/peak.sh [--sessions 10000] [--transport websocket|bosh|both] [--hold 5] [--after 40]
#
# Everything runs on 127.0.0.1 with free ports under .bench/peak; every process it starts is
# stopped by PID when it ends. Takes about 2 minutes per transport on 2 cores after the builds.
set -euo pipefail
cd "$(dirname "$0")/.."

sessions=10000
transports="both"
hold=5
after=40
while [ $# -gt 0 ]; do
    case "$1" in
        --sessions) sessions="$2"; shift 2 ;;
        --transport) transports="$2"; shift 2 ;;
        --hold) hold="$2"; shift 2 ;;
        --after) after="$2"; shift 2 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "peak: unknown option $1" >&2; exit 2 ;;
    esac
done
[ "$transports" = "both" ] && transports="websocket bosh"
[ "$after" -ge 30 ] || { echo "peak: --after must be at least 30" >&2; exit 2; }

scripts/install-deps.sh
echo "==> building tether and tether-load (release)"
swift build -c release --product tether
swift build -c release --product tether-load
bin="$(swift build -c release --show-bin-path)"

dir=.bench/peak
rm -rf "$dir" && mkdir -p "$dir"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
# Tether takes two descriptors per session: where the open-files limit is lower than that
# needs (containers), measure the largest peak it allows and say so.
fits=$(( ($(ulimit -n) - 400) / 2 ))
if [ "$sessions" -gt "$fits" ]; then
    echo "peak: the open-files limit ($(ulimit -n)) allows $fits sessions, not $sessions: measuring $fits" >&2
    sessions=$fits
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

stub_port=$(free_port)
"$bin/tether-load" stub --listen "127.0.0.1:$stub_port" >"$dir/stub.log" 2>&1 &
pids+=($!)

report="$dir/report.txt"
: >"$report"
failed=0
for transport in $transports; do
    out="$dir/$transport"
    mkdir -p "$out"
    "$bin/tether" serve --listen 127.0.0.1:0 --route "localhost=127.0.0.1:$stub_port" --upstream-tls off \
        --max-sessions-per-address 200000 --new-session-burst 200000 --max-new-sessions-per-second 200000 \
        --log-level notice >"$out/tether.out" 2>"$out/tether.err" &
    tether_pid=$!
    pids+=("$tether_pid")
    for _ in $(seq 100); do grep -q "tether listening on" "$out/tether.out" && break; sleep 0.1; done
    port=$(sed -n 's/^tether listening on 127.0.0.1:\([0-9]*\)$/\1/p' "$out/tether.out" | head -n 1)
    [ -n "$port" ] || { echo "peak: tether did not start" >&2; cat "$out/tether.err" >&2; exit 1; }
    if [ "$transport" = bosh ]; then url="http://127.0.0.1:$port/http-bind"; else url="ws://127.0.0.1:$port/xmpp-websocket"; fi
    rss() { awk '/^VmRSS:/ {print $2}' "/proc/$tether_pid/status"; }
    live() { curl -s "http://127.0.0.1:$port/metrics" | awk '/^tether_sessions\{/ {sum += $2} END {print sum + 0}'; }
    load() { # sessions first-user hold
        "$bin/tether-load" run --transport "$transport" --url "$url" --domain localhost \
            --users 'peak%d' --password x --first-user "$2" --sessions "$1" --ramp-rate 2000 \
            --message-rate 0 --duration "$3" --drain 1 --threads 1
    }

    echo "==> $transport: Tether PID $tether_pid on 127.0.0.1:$port"
    # Warm-up: what any served session allocates once (pools, caches) belongs to "before".
    load 200 1 1 >"$out/warmup.log" 2>&1 || { echo "peak: warm-up failed" >&2; tail -n 20 "$out/warmup.log" >&2; exit 1; }
    for _ in $(seq 50); do [ "$(live)" = "0" ] && break; sleep 0.2; done
    sleep 2
    before=$(rss)
    load "$sessions" 1001 "$hold" >"$out/peak.log" 2>&1 || { echo "peak: the peak run failed" >&2; tail -n 20 "$out/peak.log" >&2; exit 1; }
    # Sessions the load generator could not log out cleanly end by inactivity: the peak is over
    # when none is live (up to 3 minutes).
    for _ in $(seq 900); do [ "$(live)" = "0" ] && break; sleep 0.2; done
    remaining=$(live)
    peak=$(awk '/^VmHWM:/ {print $2}' "/proc/$tether_pid/status")
    printf '%8s %9s\n' seconds "RSS KiB" >"$out/rss.txt"
    at30=0
    for second in $(seq 0 "$after"); do
        current=$(rss)
        printf '%8s %9s\n' "$second" "$current" >>"$out/rss.txt"
        [ "$second" -eq 30 ] && at30=$current
        [ "$second" -lt "$after" ] && sleep 1
    done
    final=$(rss)
    limit=$(( before * 120 / 100 ))
    verdict=PASSED
    if [ "$remaining" != "0" ] || [ "$at30" -gt "$limit" ]; then verdict=FAILED; failed=1; fi
    line="$transport: $sessions sessions; RSS before ${before} KiB, peak (VmHWM) ${peak} KiB, 30 s after ${at30} KiB ($(( at30 * 100 / before ))% of before, limit 120%), ${after} s after ${final} KiB; live at the end ${remaining}: $verdict"
    echo "$line" | tee -a "$report"
    kill -TERM "$tether_pid" 2>/dev/null || true
    wait "$tether_pid" 2>/dev/null || true
done
echo "==> report in $report"
exit "$failed"
