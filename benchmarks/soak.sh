#!/usr/bin/env bash
# Soak test (not part of scripts/test.sh): creates and ends --sessions sessions (default 100000)
# in churn through a release Tether in front of tether-load's upstream stub, alternating BOSH and
# WebSocket rounds of --round sessions each (log in, then log out cleanly), sampling Tether's RSS
# after every round. Passes when, with every session gone, Tether's RSS is within 10% of its
# plateau (the RSS after the warm-up rounds): churn leaks nothing.
#
#   benchmarks/soak.sh [--sessions 100000] [--round 2000] [--warmup 3]
#
# Everything runs on 127.0.0.1 with free ports under .bench/soak; every process it starts is
# stopped by PID when it ends. Takes about 3-6 minutes on 2 cores after the release build.
set -euo pipefail
cd "$(dirname "$0")/.."

sessions=100000
round=2000
warmup=3
while [ $# -gt 0 ]; do
    case "$1" in
        --sessions) sessions="$2"; shift 2 ;;
        --round) round="$2"; shift 2 ;;
        --warmup) warmup="$2"; shift 2 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "soak: unknown option $1" >&2; exit 2 ;;
    esac
done
rounds=$(( (sessions + round - 1) / round ))
[ "$rounds" -gt "$warmup" ] || { echo "soak: need more rounds than --warmup" >&2; exit 2; }

scripts/install-deps.sh
echo "==> building tether and tether-load (release)"
swift build -c release --product tether
swift build -c release --product tether-load
bin="$(swift build -c release --show-bin-path)"

dir=.bench/soak
rm -rf "$dir" && mkdir -p "$dir"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
stub_port=$(free_port)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

"$bin/tether-load" stub --listen "127.0.0.1:$stub_port" >"$dir/stub.log" 2>&1 &
pids+=($!)
"$bin/tether" serve --listen 127.0.0.1:0 --route "localhost=127.0.0.1:$stub_port" --upstream-tls off \
    --max-sessions 200000 --max-sessions-per-address 200000 --max-new-sessions-per-second 200000 --new-session-burst 200000 \
    --log-level warning >"$dir/tether.out" 2>"$dir/tether.err" &
tether_pid=$!
pids+=("$tether_pid")
for _ in $(seq 100); do grep -q "tether listening on" "$dir/tether.out" && break; sleep 0.1; done
port=$(sed -n 's/^tether listening on 127.0.0.1:\([0-9]*\)$/\1/p' "$dir/tether.out" | head -n 1)
[ -n "$port" ] || { echo "soak: tether did not start" >&2; cat "$dir/tether.err" >&2; exit 1; }

rss() { awk '/^VmRSS:/ {print $2}' "/proc/$tether_pid/status"; }
live() { curl -s "http://127.0.0.1:$port/metrics" | awk '/^tether_sessions\{/ {sum += $2} END {print sum + 0}'; }

echo "==> Tether PID $tether_pid on 127.0.0.1:$port, stub on 127.0.0.1:$stub_port; $rounds rounds of $round sessions"
printf '%6s %10s %10s %9s\n' round transport sessions "RSS KiB" | tee "$dir/rss.txt"
printf '%6s %10s %10s %9s\n' 0 - 0 "$(rss)" | tee -a "$dir/rss.txt"
started=$(date +%s)
created=0
plateau=0
peak=0
for r in $(seq 1 "$rounds"); do
    if [ $((r % 2)) -eq 1 ]; then transport=bosh; url="http://127.0.0.1:$port/http-bind"; else transport=websocket; url="ws://127.0.0.1:$port/xmpp-websocket"; fi
    if ! "$bin/tether-load" run --transport "$transport" --url "$url" --domain localhost \
        --users 'soak%d' --password x --first-user $(( (r - 1) * round + 1 )) \
        --sessions "$round" --ramp-rate 4000 --message-rate 0 --duration 1 --drain 1 --threads 1 \
        >"$dir/round-$r.log" 2>&1; then
        echo "soak: round $r ($transport) failed:" >&2; tail -n 20 "$dir/round-$r.log" >&2; exit 1
    fi
    created=$((created + round))
    current=$(rss)
    [ "$current" -gt "$peak" ] && peak=$current
    [ "$r" -eq "$warmup" ] && plateau=$current
    printf '%6s %10s %10s %9s\n' "$r" "$transport" "$created" "$current" | tee -a "$dir/rss.txt"
done

# Every session has ended (clean logouts); give the last ones a moment to be torn down.
for _ in $(seq 50); do [ "$(live)" = "0" ] && break; sleep 0.2; done
remaining=$(live)
final=$(rss)
elapsed=$(( $(date +%s) - started ))
limit=$(( plateau * 110 / 100 ))
echo
echo "sessions created and ended: $created in ${elapsed}s ($(( created / (elapsed > 0 ? elapsed : 1) ))/s), live at the end: $remaining"
echo "RSS: plateau after round $warmup ${plateau} KiB, peak ${peak} KiB, final ${final} KiB (limit ${limit} KiB = plateau + 10%)"
if [ "$remaining" != "0" ]; then
    echo "soak: FAILED: $remaining sessions still live" >&2
    exit 1
fi
if [ "$final" -gt "$limit" ]; then
    echo "soak: FAILED: final RSS ${final} KiB is more than 10% above the plateau" >&2
    exit 1
fi
echo "soak: PASSED"
