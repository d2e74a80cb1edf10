#!/usr/bin/env bash
# Profiles behind the targets benchmarks/compare.sh reports, Tether against the upstream stub:
#
#   benchmarks/profile.sh cpu  [bosh|websocket] [RATE=1000]  perf: Tether's hot symbols while relaying RATE msg/s
#   benchmarks/profile.sh login [bosh|websocket] [N=5000]    perf: Tether's hot symbols while N sessions log in;
#                                                             CPU per login of Tether, stub and client
#   benchmarks/profile.sh memory [bosh|websocket] [N=2000]   heaptrack: what holds Tether's memory with N idle sessions
#
# Uses the release binaries (build them first; BENCH_BIN=DIR takes them from DIR instead, such as
# a build with --scratch-path); installs perf and heaptrack when missing
# (scripts/install-deps.sh --with-profilers).
# Output under .bench/profile/; everything started here is stopped by PID on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --with-profilers
what=${1:?cpu, login or memory}
transport=${2:-websocket}
bin="${BENCH_BIN:-$(swift build -c release --show-bin-path)}"
out="$PWD/.bench/profile"
mkdir -p "$out"
stub_port=27899
tether_port=27898

pids=()
cleanup() {
    local status=$? pid
    trap - EXIT INT TERM
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }

"$bin/tether-load" stub --listen "127.0.0.1:$stub_port" > "$out/stub.log" 2>&1 &
stub_pid=$!
pids+=("$stub_pid")
wait_port "$stub_port"

tether_args=(serve --listen "127.0.0.1:$tether_port" --route "localhost=127.0.0.1:$stub_port" --upstream-tls off --log-level error
    --max-sessions 1000000 --max-sessions-per-address 1000000 --max-new-sessions-per-second 1000000 --new-session-burst 1000000)
if [ "$what" = memory ]; then
    heaptrack -o "$out/tether-$transport" "$bin/tether" "${tether_args[@]}" > "$out/tether.log" 2>&1 &
else
    "$bin/tether" "${tether_args[@]}" > "$out/tether.log" 2>&1 &
fi
pids+=("$!")
wait_port "$tether_port"
tether_pid=$(pgrep -n -f "tether serve --listen 127.0.0.1:$tether_port" || true)
[ -n "$tether_pid" ] || { echo "no tether process" >&2; exit 1; }
if [ "$transport" = bosh ]; then url="http://127.0.0.1:$tether_port/http-bind"; else url="ws://127.0.0.1:$tether_port/xmpp-websocket"; fi

case "$what" in
    cpu)
        rate=${3:-1000}
        "$bin/tether-load" run --transport "$transport" --url "$url" --sessions 500 --ramp-rate 500 --message-rate "$rate" \
            --duration 14 --server-pid "$tether_pid" --json "$out/cpu-$transport.json" > "$out/cpu-$transport.log" 2>&1 &
        load_pid=$!
        pids+=("$load_pid")
        sleep 4   # logins done, messages flowing
        perf record -F 999 -g -p "$tether_pid" -o "$out/cpu-$transport.perf" -- sleep 8 2> /dev/null
        wait "$load_pid" || true
        tail -n 12 "$out/cpu-$transport.log"
        perf report -i "$out/cpu-$transport.perf" --no-children --sort dso,sym --stdio 2> /dev/null | grep -E '^ +[0-9]' | head -n 40
        ;;
    login)
        count=${3:-5000}
        t0=$(cpu_ticks "$tether_pid"); s0=$(cpu_ticks "$stub_pid")
        "$bin/tether-load" run --transport "$transport" --url "$url" --sessions "$count" --idle-sessions "$count" --ramp-rate 20000 \
            --duration 1 --drain 1 --no-logout --login-timeout 60 --server-pid "$tether_pid" --json "$out/login-$transport.json" \
            > "$out/login-$transport.log" 2>&1 &
        load_pid=$!
        pids+=("$load_pid")
        perf record -F 999 -g -p "$tether_pid" -o "$out/login-$transport.perf" -- sleep 3 2> /dev/null
        wait "$load_pid" || true
        t1=$(cpu_ticks "$tether_pid"); s1=$(cpu_ticks "$stub_pid")
        hz=$(getconf CLK_TCK)
        head -n 3 "$out/login-$transport.log"
        python3 - "$out/login-$transport.json" "$count" "$(( t1 - t0 ))" "$(( s1 - s0 ))" "$hz" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); n = int(sys.argv[2]); hz = float(sys.argv[5])
tether, stub = int(sys.argv[3]) / hz, int(sys.argv[4]) / hz
client = r["cpu"]["clientThreadsSeconds"]
print("CPU per established session: Tether %.3f ms, stub %.3f ms, client %.3f ms (whole run, %d sessions, %.0f/s)"
      % (tether / n * 1000, stub / n * 1000, client / n * 1000, r["sessions"]["established"], r["sessions"]["establishmentRate"]))
PY
        perf report -i "$out/login-$transport.perf" --no-children --sort dso,sym --stdio 2> /dev/null | grep -E '^ +[0-9]' | head -n 40
        ;;
    memory)
        count=${3:-2000}
        "$bin/tether-load" run --transport "$transport" --url "$url" --sessions "$count" --idle-sessions "$count" --ramp-rate 2000 \
            --duration 3 --drain 1 --no-logout --login-timeout 120 --server-pid "$tether_pid" > "$out/memory-$transport.log" 2>&1 || true
        tail -n 4 "$out/memory-$transport.log"
        kill -TERM "$tether_pid"
        for _ in $(seq 100); do kill -0 "$tether_pid" 2>/dev/null || break; sleep 0.1; done
        sleep 1
        file=$(ls -t "$out"/tether-"$transport"*.zst "$out"/tether-"$transport"*.gz 2>/dev/null | head -n 1 || true)
        heaptrack_print -f "$file" --print-peaks 1 --print-allocators 0 --print-temporary 0 --print-leaks 0 --peak-limit 25 \
            --sub-peak-limit 3 > "$out/memory-$transport.txt" 2>&1 || true
        grep -E "^PEAK MEMORY|^[0-9.]+[KMG]?B? peak memory consumed|peak memory consumed|^total runtime|^peak heap|^peak RSS" "$out/memory-$transport.txt" | head -n 40
        echo "(full report: $out/memory-$transport.txt)"
        ;;
    *) echo "profile.sh: cpu, login or memory" >&2; exit 2 ;;
esac
