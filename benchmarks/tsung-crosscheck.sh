#!/usr/bin/env bash
# Cross-checks tether-load against Tsung: the same steady chat load over BOSH against the same
# private Prosody, measured by both tools; compares delivered msg/s and median delivery latency.
#
#   benchmarks/tsung-crosscheck.sh [--sessions 100] [--rate 200] [--duration 30] [--drain 5]
#                                  [--ramp 100] [--reps 2] [--tolerance 20] [--wire] [--pin]
#                                  [--tether-load BIN]
#
#   --sessions N     users logged in by each tool (N/2 pairs for tether-load; default 100)
#   --rate R         messages per second, all users together (default 200)
#   --duration S     seconds of message exchange (default 30)
#   --drain S        seconds left for messages in flight after the last send (default 5)
#   --ramp R         logins per second (default 100)
#   --reps N         repetitions, tether-load and Tsung alternating; medians are compared (default 2)
#   --tolerance P    largest allowed difference, percent (default 20)
#   --wire           also capture the loopback traffic (tcpdump, installed if missing) and report
#                    the server's part of the latency, the same way for both tools
#   --pin            Prosody on CPU 0, the load tool on CPU 1 (taskset)
#   --tether-load B  the tether-load binary (default: .build/release/tether-load, else debug);
#                    nothing is built here
#
# Installs tsung (Debian's 1.7.0) if missing, and Prosody through scripts/install-deps.sh.
# One private Prosody on 127.0.0.1 (free ports; configuration and users user1..N/pass1..N from
# scripts/lib/load-prosody-config.sh) serves all runs, one after the other. Tsung runs
# benchmarks/tsung/bosh-chat.xml.in (filled in here) in its controller VM, started directly on
# loopback with a private epmd on a free port. benchmarks/tsung/crosscheck.py prints the table
# (ratios tether-load/Tsung); the exit status is 1 when throughput or p50 differ by more than
# the tolerance, or a run fails or loses messages. State and logs: .bench/tsung-crosscheck/
# (wiped at start). Every process started here is stopped by its PID on exit, on failure and
# Ctrl-C too. About 80 s per repetition.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
started_at=$(date +%s)

sessions=100
rate=200
duration=30
drain=5
ramp=100
reps=2
tolerance=20
wire=0
pin=0
load=""
while [ $# -gt 0 ]; do
    case "$1" in
        --sessions) sessions="$2"; shift ;;
        --rate) rate="$2"; shift ;;
        --duration) duration="$2"; shift ;;
        --drain) drain="$2"; shift ;;
        --ramp) ramp="$2"; shift ;;
        --reps) reps="$2"; shift ;;
        --tolerance) tolerance="$2"; shift ;;
        --wire) wire=1 ;;
        --pin) pin=1 ;;
        --tether-load) load="$2"; shift ;;
        -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
        *) echo "tsung-crosscheck: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
[ $((sessions % 2)) -eq 0 ] && [ "$sessions" -ge 2 ] || { echo "tsung-crosscheck: --sessions must be even and >= 2" >&2; exit 2; }
[ "$reps" -ge 1 ] || { echo "tsung-crosscheck: --reps must be >= 1" >&2; exit 2; }

log() { printf '[%4ds] %s\n' "$(($(date +%s) - started_at))" "$*" >&2; }

# ---- process bookkeeping: everything started here is stopped by PID ---------------------------
# shellcheck source=../scripts/lib/processes.sh
. "$root/scripts/lib/processes.sh"
cleanup() {
    local status=$? i
    trap - EXIT INT TERM
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do stop_pid "${pids[$i]}"; done
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_port() {
    local port=$1 pid=$2 what=$3
    for _ in $(seq 100); do
        port_free "$port" || return 0
        kill -0 "$pid" 2>/dev/null || { echo "tsung-crosscheck: $what exited; see $work" >&2; return 1; }
        sleep 0.1
    done
    echo "tsung-crosscheck: $what is not listening on $port after 10 s" >&2
    return 1
}
# CPU seconds (user + system): of a live process, and of this shell's waited-for children.
cpu_of() { awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f\n", ($12 + $13) / hz }' "/proc/$1/stat"; }
children_cpu() { awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f\n", ($14 + $15) / hz }' "/proc/$$/stat"; }

# ---- preparation -----------------------------------------------------------------------------
command -v python3 >/dev/null || { echo "tsung-crosscheck: python3 is needed" >&2; exit 1; }
command -v prosody >/dev/null || scripts/install-deps.sh
apt_updated=0
apt_install() {
    [ "$apt_updated" -eq 1 ] || { DEBIAN_FRONTEND=noninteractive apt-get update >&2; apt_updated=1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >&2
}
if [ ! -x /usr/bin/tsung ]; then log "installing tsung"; apt_install tsung; fi
if [ "$wire" -eq 1 ] && ! command -v tcpdump >/dev/null; then log "installing tcpdump"; apt_install tcpdump; fi
tsung_lib=$(dirname "$(ls -d /usr/lib/*/tsung/tsung-[0-9]* /usr/lib/tsung/tsung-[0-9]* 2>/dev/null | head -n 1)")
tsung_version=$(basename "$(ls -d "$tsung_lib"/tsung-[0-9]* | head -n 1)"); tsung_version=${tsung_version#tsung-}
[ -d "$tsung_lib/tsung_controller-$tsung_version/ebin" ] || { echo "tsung-crosscheck: no Tsung under $tsung_lib" >&2; exit 1; }
epmd_bin=$(command -v epmd || ls /usr/lib/erlang/erts-*/bin/epmd | head -n 1)

if [ -z "$load" ]; then
    for candidate in .build/release/tether-load .build/debug/tether-load; do
        [ -x "$candidate" ] && { load="$root/$candidate"; break; }
    done
fi
[ -n "$load" ] && [ -x "$load" ] || { echo "tsung-crosscheck: no tether-load binary (build it, or pass --tether-load)" >&2; exit 1; }

tool_cpu=()   # the prefix that runs a load tool (CPU 1 with --pin)
if [ "$pin" -eq 1 ]; then
    [ "$(nproc)" -ge 2 ] || { echo "tsung-crosscheck: --pin needs 2 CPUs" >&2; exit 2; }
    tool_cpu=(taskset -c 1)
fi

# Tsung's per-user schedule: one message every sessions/rate seconds, duration*rate/sessions of them.
read -r interval count < <(python3 -c "
s, r, d = $sessions, $rate, $duration
print('%.6g' % (s / r), round(d * r / s))")
[ "$count" -ge 1 ] || { echo "tsung-crosscheck: --rate x --duration must give every user a message" >&2; exit 2; }
run_timeout=$((duration + drain + sessions / ramp + 60))

work="$root/.bench/tsung-crosscheck"
rm -rf "$work"
mkdir -p "$work"
c2s_port=$(free_port); http_port=$(free_port); epmd_port=$(free_port); dist_port=$(free_port)
echo "$http_port" > "$work/http-port"
url="http://127.0.0.1:$http_port/http-bind"

# ---- Prosody: the private instance of scripts/load-prosody.sh and compare.sh ------------------
# shellcheck source=../scripts/lib/load-prosody-config.sh
. scripts/lib/load-prosody-config.sh
write_load_prosody_config "$work/prosody" "$c2s_port" "$http_port" "$sessions"
/usr/bin/prosody --config "$work/prosody/prosody.cfg.lua" -F > "$work/prosody.out" 2>&1 < /dev/null &
prosody_pid=$!
pids+=("$prosody_pid")
wait_port "$http_port" "$prosody_pid" prosody
[ "$pin" -eq 0 ] || taskset -pc 0 "$prosody_pid" > /dev/null
log "prosody PID $prosody_pid: $url ($sessions users); load: $sessions sessions, $rate msg/s, $duration s, $reps repetition(s)"

# ---- Tsung's scenario and its private epmd ------------------------------------------------------
sed -e "s/@USERS@/$sessions/g; s/@USER_PREFIX@/user/g; s/@PASSWORD_PREFIX@/pass/g" \
    -e "s/@PORT@/$http_port/g; s#@BOSH_PATH@#/http-bind#g; s/@DOMAIN@/localhost/g" \
    -e "s/@INTERVAL@/$interval/g; s/@COUNT@/$count/g; s/@RATE@/$rate/g; s/@DURATION@/$duration/g" \
    -e "s/@DRAIN@/$drain/g; s/@SIZE@/0/g; s/@ARRIVAL_RATE@/$ramp/g" \
    -e "s/@ARRIVAL_SECONDS@/$(( sessions / ramp * 3 + 5 ))/g" \
    benchmarks/tsung/bosh-chat.xml.in > "$work/bosh-chat.xml"
if grep -q '@[A-Z_]*@' "$work/bosh-chat.xml"; then
    echo "tsung-crosscheck: placeholders left in $work/bosh-chat.xml" >&2; exit 1
fi
# A VM would otherwise start a shared epmd on every interface, detached from this script.
"$epmd_bin" -address 127.0.0.1 -port "$epmd_port" > "$work/epmd.log" 2>&1 < /dev/null &
epmd_pid=$!
pids+=("$epmd_pid")
wait_port "$epmd_port" "$epmd_pid" epmd
export ERL_EPMD_PORT=$epmd_port
ebin_t="$tsung_lib/tsung-$tsung_version/ebin"; ebin_c="$tsung_lib/tsung_controller-$tsung_version/ebin"

# ---- one measured run: capture (--wire), the tool, its status and CPU --------------------------
# measure REP TOOL command…  → $work/rREP-TOOL.{log,status,cpu[,pcap]}
measure() {
    local rep=$1 tool=$2 capture_pid="" run_pid status=0 c0 s0
    shift 2
    if [ "$wire" -eq 1 ]; then
        tcpdump -i lo -s 0 -B 16384 --time-stamp-precision=nano -w "$work/r$rep-$tool.pcap" \
            "tcp port $http_port" > "$work/r$rep-$tool.tcpdump.log" 2>&1 < /dev/null &
        capture_pid=$!
        pids+=("$capture_pid")
        for _ in $(seq 50); do grep -q "listening on" "$work/r$rep-$tool.tcpdump.log" && break; sleep 0.1; done
    fi
    c0=$(children_cpu); s0=$(cpu_of "$prosody_pid")
    timeout "$run_timeout" "${tool_cpu[@]}" "$@" > "$work/r$rep-$tool.log" 2>&1 < /dev/null &
    run_pid=$!
    pids+=("$run_pid")
    wait "$run_pid" || status=$?
    stop_started "$run_pid"
    echo "$(python3 -c "print('%.2f %.2f' % ($(children_cpu) - $c0, $(cpu_of "$prosody_pid") - $s0))")" > "$work/r$rep-$tool.cpu"
    echo "$status" > "$work/r$rep-$tool.status"
    [ -z "$capture_pid" ] || stop_started "$capture_pid"
    [ "$status" -eq 0 ] || log "$tool exited with status $status (see $work/r$rep-$tool.log)"
}

for rep in $(seq 1 "$reps"); do
    log "repetition $rep: tether-load ($load)"
    measure "$rep" tether-load "$load" run --transport bosh --url "$url" --domain localhost \
        --users 'user%d' --password 'pass%d' --sessions "$sessions" --ramp-rate "$ramp" \
        --message-rate "$rate" --duration "$duration" --drain "$drain" --threads 1 \
        --json "$work/r$rep-tether-load.json"
    sed -n '/^messages/,/^latency/p' "$work/r$rep-tether-load.log" >&2

    # The Tsung controller VM as `tsung -n start` would run it, but loopback only: distribution
    # on one free loopback port and the private epmd, a per-run cookie, no web GUI, 1 s stats.
    log "repetition $rep: tsung $tsung_version ($sessions users, one message every $interval s each, $count each)"
    mkdir -p "$work/r$rep-tsung"
    measure "$rep" tsung erl -noshell -sname tsung_controller@localhost \
        -setcookie "crosscheck$$$RANDOM" +P 250000 +A 8 +K true \
        -kernel inet_dist_use_interface '{127,0,0,1}' \
        -kernel inet_dist_listen_min "$dist_port" -kernel inet_dist_listen_max "$dist_port" \
        -pa "$ebin_t" -pa "$ebin_c" -sasl sasl_error_logger false \
        -tsung_controller web_gui false -tsung_controller keep_web_gui false \
        -tsung_controller smp_disable true -tsung_controller debug_level 5 -tsung_controller warm_time 1 \
        -tsung_controller exclude_tag '""' -tsung_controller dumpstats_interval 1000 \
        -tsung_controller config_file "\"$work/bosh-chat.xml\"" \
        -tsung_controller log_dir "\"$work/r$rep-tsung/\"" -tsung_controller mon_file '"tsung.log"' \
        -s tsung_controller
done
stop_started "$epmd_pid"

# ---- comparison ------------------------------------------------------------------------------
compare_status=0
python3 benchmarks/tsung/crosscheck.py table "$work" "$reps" "$sessions" "$count" "$tolerance" \
    > "$work/table.txt" || compare_status=$?
cat "$work/table.txt"
log "done; logs and raw data in $work"
exit "$compare_status"
