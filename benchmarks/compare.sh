#!/usr/bin/env bash
# Tether against the servers' own BOSH/WebSocket and their plain c2s, on this machine, in one run.
#
#   benchmarks/compare.sh [--quick] [--reps N] [--skip-ejabberd] [--skip-nginx] [--only-nginx] [--skip-stub]
#                         [--skip-100k] [--skip-idle-cost] [--no-build] [--bin DIR] [--budget S] [--tether BIN]
#
#   --quick          1 repetition (default 3; medians are taken over the repetitions)
#   --reps N         N repetitions
#   --skip-ejabberd  only Prosody as the real server
#   --skip-nginx     no nginx → Tether → Prosody targets
#   --only-nginx     only those and the same step straight to Tether (Prosody, one Tether, nginx;
#                    about 1 minute per repetition)
#   --skip-stub      no Tether-alone section (idle RSS, establishment rate, knee against the stub;
#                    no idle-cost section either)
#   --skip-100k      no 100,000-session hold
#   --skip-idle-cost no idle-cost section (10k idle sessions held 60 s through Tether and on
#                    Prosody's own endpoints: their CPU as a share of one core; about 9 minutes)
#   --no-build       use the release binaries already built
#   --bin DIR        use the release binaries in DIR (a build with --scratch-path); implies --no-build
#   --budget S       start no further repetition that would end after S seconds (default 1080)
#   --tether BIN     measure this tether binary (e.g. a release build of an earlier commit, for a
#                    before/after comparison on one machine); tether-load is still this tree's
#
# Every target is measured with tether-load (Sources/tether-load) from one event-loop thread:
#   Prosody 0.12 (Debian) mod_bosh, mod_websocket, c2s            ← direct
#   Tether BOSH → Prosody c2s, Tether WebSocket → Prosody c2s      ← through Tether
#   nginx → Tether BOSH/WebSocket → Prosody c2s, at 1000 msg/s       ← nginx's CPU beside Tether's
#     (nginx/tether.conf without TLS, one worker, in front of that same Tether), and the same
#     one step straight to that Tether (its CPU without nginx, same rate and duration)
#   the same five with ejabberd (Debian), a private instance
#   Tether alone against the upstream stub: RSS per idle session (1k, 10k; 100k WebSocket),
#   session establishment rate, knee throughput, tether-load's own BOSH capacity per core.
# Within a repetition the targets run one after the other (A, B, C, …), and the repetitions
# repeat that order, so machine drift touches every target alike; the table shows medians.
#
# Everything listens on 127.0.0.1 on private ports; all state is under .bench/ (wiped at start);
# every process the script starts is stopped by its PID on exit, on failure too. Prints the
# ratio table (benchmarks/report.py) and the elapsed time; the raw JSON stays in .bench/results.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
started_at=$(date +%s)

reps=3
tether_override=""
bin_override=""
with_ejabberd=1
with_nginx=1
only_nginx=0
with_stub=1
with_100k=1
with_idle_cost=1
build=1
budget=1080
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) reps=1 ;;
        --reps) reps="$2"; shift ;;
        --skip-ejabberd) with_ejabberd=0 ;;
        --skip-nginx) with_nginx=0 ;;
        --only-nginx) only_nginx=1 ;;
        --skip-stub) with_stub=0 ;;
        --skip-100k) with_100k=0 ;;
        --skip-idle-cost) with_idle_cost=0 ;;
        --no-build) build=0 ;;
        --bin) bin_override="$2"; build=0; shift ;;
        --budget) budget="$2"; shift ;;
        --tether) tether_override="$2"; shift ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "compare.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
if [ "$only_nginx" -eq 1 ]; then with_nginx=1; with_ejabberd=0; with_stub=0; with_100k=0; with_idle_cost=0; fi
[ "$with_stub" -eq 1 ] || with_idle_cost=0   # the idle-cost Tethers are in front of the stub

# ---- tunables (the default run fits in about 18 minutes on 2 cores) -------------------------
sessions=500          # sessions per comparison target (the earlier anchors used 500)
ramp=500              # logins per second
step_seconds=2        # seconds per step of a stepped (knee) run
p99_bound=100         # ms: the knee is the highest step whose p99 stays under it, nothing lost
idle_sizes=(1000 10000)
idle_hold=3           # seconds the idle sessions are held before RSS is read
idle_cost_hold=60     # seconds the idle-cost sessions are held (past one BOSH wait of 50 s)
big_sessions=100000   # the 100k hold: WebSocket, over 4 listeners, 4 stubs, 4 load processes
big_parts=4
run_timeout=150       # seconds any one tether-load run may take
fixed_rate=1000       # msg/s of the nginx → Tether targets (the rate of the Tether CPU targets)
fixed_seconds=10      # seconds of that one step (CPU is read in clock ticks: longer is finer)

# Ports: one private block.
base=27000
prosody_c2s=$((base + 222)); prosody_http=$((base + 280))
ejabberd_c2s=$((base + 322)); ejabberd_http=$((base + 380))
tether_prosody=$((base + 480)); tether_ejabberd=$((base + 580))
nginx_port=$((base + 490))                             # nginx (plain HTTP) in front of tether_prosody
stub_port=$((base + 699)); next_port=$((base + 700))   # fresh Tethers and the 100k stubs count up from here

work="$root/.bench"
results="$work/results"
logs="$work/logs"

# ---- process bookkeeping: everything started here is stopped by PID ---------------------------
# shellcheck source=../scripts/lib/processes.sh
. "$root/scripts/lib/processes.sh"
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do stop_pid "${pids[$i]}"; done
    stop_nginx_worker
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '[%4ds] %s\n' "$(($(date +%s) - started_at))" "$*" >&2; }

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {
    local port=$1 pid=$2 what=$3
    for _ in $(seq 300); do
        if ! port_free "$port"; then return 0; fi
        kill -0 "$pid" 2>/dev/null || { echo "compare.sh: $what exited; see $logs" >&2; return 1; }
        sleep 0.1
    done
    echo "compare.sh: $what is not listening on $port after 30 s" >&2
    return 1
}

# ---- preparation -----------------------------------------------------------------------------
# Tether holds 2 descriptors per idle session (client and upstream connection), BOSH and
# WebSocket alike: 100k sessions need 200k. Raising the hard limit needs CAP_SYS_RESOURCE; where it
# cannot be raised, the idle holds shrink to what fits and the 100k hold is reported as not run.
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"
fd_limit=$(ulimit -n)
fits=$(((fd_limit - 200) / 2 / 100 * 100))
for i in "${!idle_sizes[@]}"; do
    if [ "${idle_sizes[$i]}" -gt "$fits" ]; then
        log "open-files limit $fd_limit: the ${idle_sizes[$i]}-session idle hold runs with $fits sessions"
        idle_sizes[$i]=$fits
    fi
done
big_skip=""
if [ "$with_100k" -eq 1 ] && [ "$fd_limit" -lt $((2 * big_sessions + 200)) ]; then
    big_skip="open-files limit is $fd_limit and cannot be raised here (hard limit $(ulimit -Hn); raising it needs CAP_SYS_RESOURCE); $big_sessions sessions need $((2 * big_sessions + 200)) descriptors in Tether"
    log "the $big_sessions-session hold will not run: $big_skip"
fi

need_install=0
command -v prosody >/dev/null || need_install=1
[ "$with_ejabberd" -eq 0 ] || [ -x /usr/sbin/ejabberdctl ] || need_install=1
[ "$with_nginx" -eq 0 ] || [ -x /usr/sbin/nginx ] || need_install=1
command -v python3 >/dev/null || { echo "compare.sh: python3 is needed for the report" >&2; exit 1; }
if [ "$need_install" -eq 1 ]; then
    install_flags=()
    [ "$with_ejabberd" -eq 0 ] || install_flags+=(--with-ejabberd)
    [ "$with_nginx" -eq 0 ] || install_flags+=(--with-nginx)
    scripts/install-deps.sh "${install_flags[@]}"
fi

if [ "$build" -eq 1 ]; then
    log "building release tether and tether-load"
    swift build -c release --product tether >&2
    swift build -c release --product tether-load >&2
fi
if [ -n "$bin_override" ]; then
    bin="$bin_override"
elif [ "$build" -eq 0 ] && [ -x "$root/.build/release/tether-load" ]; then
    bin="$root/.build/release"   # --no-build: no swift invocation at all
else
    bin="$(swift build -c release --show-bin-path)"
fi
tether="${tether_override:-$bin/tether}"
load="$bin/tether-load"
[ -x "$tether" ] && [ -x "$load" ] || { echo "compare.sh: no release binaries in $bin (drop --no-build)" >&2; exit 1; }

for port in $prosody_c2s $prosody_http $ejabberd_c2s $ejabberd_http $tether_prosody $tether_ejabberd $nginx_port $stub_port; do
    port_free "$port" || { echo "compare.sh: port $port is in use" >&2; exit 1; }
done
# Only this script's own state is wiped (profile.sh keeps its output in .bench/profile).
rm -rf "$results" "$logs" "$work/prosody" "$work/ejabberd" "$work/nginx"
mkdir -p "$results" "$logs"

# ---- Prosody: a private instance (the configuration of scripts/load-prosody.sh, under .bench) --
# shellcheck source=../scripts/lib/load-prosody-config.sh
. scripts/lib/load-prosody-config.sh
start_prosody() {
    local dir="$work/prosody"
    write_load_prosody_config "$dir" "$prosody_c2s" "$prosody_http" "$sessions"
    /usr/bin/prosody --config "$dir/prosody.cfg.lua" -F > "$logs/prosody.out" 2>&1 < /dev/null &
    prosody_pid=$!
    pids+=("$prosody_pid")
    wait_port "$prosody_c2s" "$prosody_pid" prosody
    wait_port "$prosody_http" "$prosody_pid" prosody
}

# ---- ejabberd: a private instance, not the packaged service ----------------------------------
# Started as the Erlang VM directly (what `ejabberdctl foreground` runs, minus `su ejabberd`, which
# would drop the open-files limit to 1024, and minus distribution: no node name, so no epmd).
# The accounts are registered in the same VM right after start, in one go (ejabberdctl register
# costs about 0.3 s per user).
start_ejabberd() {
    local dir="$work/ejabberd"
    mkdir -p "$dir/spool" "$dir/logs"
    cat > "$dir/ejabberd.yml" <<CFG
hosts:
  - localhost
loglevel: warning
log_rotate_count: 0
certfiles: []
acme:
  auto: false
listen:
  -
    port: $ejabberd_c2s
    ip: "127.0.0.1"
    module: ejabberd_c2s
    backlog: 4096
    max_stanza_size: 1048576
    shaper: none
    starttls: false
  -
    port: $ejabberd_http
    ip: "127.0.0.1"
    module: ejabberd_http
    backlog: 4096
    request_handlers:
      /http-bind: mod_bosh
      /xmpp-websocket: ejabberd_http_ws
auth_method: internal
auth_password_format: plain
acl:
  local:
    user_regexp: ""
access_rules:
  local:
    allow: local
  c2s:
    allow: all
modules:
  mod_bosh: {}
  mod_disco: {}
  mod_roster: {}
  mod_ping: {}
CFG
    EJABBERD_CONFIG_PATH="$dir/ejabberd.yml" EJABBERD_LOG_PATH="$dir/logs/ejabberd.log" ERL_LIBS=/usr/lib/x86_64-linux-gnu \
        ERL_CRASH_DUMP="$dir/logs/erl_crash.dump" ERL_MAX_PORTS=262144 ERL_EPMD_PORT=$((base + 369)) \
        CONTRIB_MODULES_PATH="$dir/contrib" EJABBERD_PID_PATH="$dir/ejabberd.pid" HOME="$dir" \
        /usr/bin/erl -noinput -noshell +K true +P 1000000 +Q 262144 -env ERL_CRASH_DUMP_BYTES 0 \
        -mnesia dir "\"$dir/spool\"" -s ejabberd -eval "
            [ejabberd_auth:try_register(iolist_to_binary([\"user\", integer_to_list(I)]), <<\"localhost\">>,
                                        iolist_to_binary([\"pass\", integer_to_list(I)])) || I <- lists:seq(1, $sessions)],
            file:write_file(\"$dir/registered\", <<\"ok\">>)." > "$logs/ejabberd.out" 2>&1 < /dev/null &
    ejabberd_pid=$!
    pids+=("$ejabberd_pid")
    for _ in $(seq 600); do
        [ -f "$dir/registered" ] && break
        kill -0 "$ejabberd_pid" 2>/dev/null || { echo "compare.sh: ejabberd exited; see $logs/ejabberd.out" >&2; exit 1; }
        sleep 0.1
    done
    [ -f "$dir/registered" ] || { echo "compare.sh: ejabberd did not register its users in 60 s" >&2; exit 1; }
    wait_port "$ejabberd_c2s" "$ejabberd_pid" ejabberd
    wait_port "$ejabberd_http" "$ejabberd_pid" ejabberd
}

# ---- Tether --------------------------------------------------------------------------------------
# start_tether NAME ARGS… : sets tether_pid; generous limits so only capacity limits anything
# (the per-address burst too: a loop that lagged and then admitted a few hundred WebSocket
# upgrades at once met the default burst of 200, and one session got policy-violation).
start_tether() {
    local name=$1; shift
    "$tether" serve --upstream-tls off --log-level error \
        --max-sessions 1000000 --max-sessions-per-address 1000000 --max-new-sessions-per-second 1000000 --new-session-burst 1000000 \
        "$@" > "$logs/$name.log" 2>&1 < /dev/null &
    tether_pid=$!
    pids+=("$tether_pid")
}

# ---- nginx: the shipped nginx/tether.conf, TLS removed, one worker, in front of one Tether ----
# The config is the shipped server block with what the integration tests change for plain HTTP
# (Tests/TetherIntegrationTests/Support/Nginx.swift): Tether's port for 5280, a loopback listen
# without `ssl http2`, no IPv6 listen, server_name localhost; the ssl_* lines are dropped. Around
# it: one worker, daemon off, pid/temp/error log under .bench/nginx; no access log (Tether runs
# with --log-level error, so neither writes a line per request).
nginx_pid=""
nginx_worker=""
write_nginx_config() {  # write_nginx_config DIR LISTEN_PORT TETHER_PORT
    local dir=$1 listen=$2 upstream=$3
    mkdir -p "$dir/tmp"
    sed -e "s/127\.0\.0\.1:5280;/127.0.0.1:$upstream;/" \
        -e "s/listen 443 ssl http2;/listen 127.0.0.1:$listen;/" \
        -e '/listen \[::\]:443 ssl http2;/d' \
        -e '/^[[:space:]]*ssl_/d' \
        -e 's/server_name chat\.example\.org;/server_name localhost;/' \
        "$root/nginx/tether.conf" > "$dir/tether.conf"
    # The shipped file must still have the shape this relies on.
    if sed 's/#.*//' "$dir/tether.conf" | grep -qE '(^|[^_])ssl|:5280;|:443' || [ "$(grep -c "127.0.0.1:$upstream;" "$dir/tether.conf")" -ne 2 ] \
        || ! grep -q "listen 127.0.0.1:$listen;" "$dir/tether.conf"; then
        echo "compare.sh: nginx/tether.conf changed shape; cannot derive the plain-HTTP config (see $dir/tether.conf)" >&2
        return 1
    fi
    cp "$root/nginx/tether-bosh-proxy.conf" "$dir/" 2>/dev/null || true
    {
        [ "$(id -u)" -ne 0 ] || echo "user root;"
        cat <<CFG
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $logs/nginx-error.log error;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    include $dir/tether.conf;
}
CFG
    } > "$dir/nginx.conf"
}
# start_nginx TETHER_PORT : sets nginx_pid (the master) and nginx_worker (its one worker).
start_nginx() {
    local dir="$work/nginx" upstream=$1
    write_nginx_config "$dir" "$nginx_port" "$upstream"
    /usr/sbin/nginx -t -q -p "$dir" -e "$logs/nginx-error.log" -c "$dir/nginx.conf" > "$logs/nginx-check.out" 2>&1 \
        || { echo "compare.sh: nginx -t rejects $dir/nginx.conf:" >&2; cat "$logs/nginx-check.out" >&2; return 1; }
    /usr/sbin/nginx -p "$dir" -e "$logs/nginx-error.log" -c "$dir/nginx.conf" > "$logs/nginx.out" 2>&1 < /dev/null &
    nginx_pid=$!
    pids+=("$nginx_pid")
    wait_port "$nginx_port" "$nginx_pid" nginx
    local children=""
    for _ in $(seq 50); do
        children=$(ps -o pid= --ppid "$nginx_pid" | tr -d ' ')
        [ -z "$children" ] || break
        sleep 0.1
    done
    if [ -z "$children" ] || [ "$(echo "$children" | wc -l)" -ne 1 ]; then
        echo "compare.sh: expected one nginx worker under master $nginx_pid, found: ${children:-none}" >&2
        return 1
    fi
    nginx_worker=$children
    log "nginx master $nginx_pid, worker $nginx_worker, on 127.0.0.1:$nginx_port → Tether 127.0.0.1:$upstream"
}
# The master takes its worker along on TERM; a worker left behind (master killed) is stopped by
# its own PID, if that PID is still an nginx worker.
stop_nginx_worker() {
    [ -n "$nginx_worker" ] || return 0
    if [ -r "/proc/$nginx_worker/cmdline" ] && tr '\0' ' ' < "/proc/$nginx_worker/cmdline" | grep -q '^nginx: worker'; then
        stop_pid "$nginx_worker"
    fi
    nginx_worker=""
}

# ---- one measurement -------------------------------------------------------------------------
# measure NAME REP SERVER_PID tether-load-run-arguments…  → $results/NAME.rREP.json
measure() {
    local name=$1 rep=$2 pid=$3; shift 3
    local out="$results/$name.r$rep.json"
    local status=0
    timeout "$run_timeout" "$load" run --json "$out" --server-pid "$pid" "$@" > "$logs/$name.r$rep.log" 2>&1 < /dev/null || status=$?
    if [ -s "$out" ]; then
        log "$name rep $rep: $(python3 "$root/benchmarks/report.py" --one "$out" || true)$([ "$status" -eq 0 ] || echo " (exit $status)")"
    else
        log "$name rep $rep: no result (exit $status); see $logs/$name.r$rep.log"
    fi
}

# stepped NAME REP PID TRANSPORT URL START:STEP:MAX [REFERENCE_RATE] [UPSTREAM_PID]
# With a reference rate, a first step at that rate is measured whatever the knee (CPU per
# message and latency at 1000 msg/s), then the knee search runs. With an upstream PID (the
# server behind Tether), its CPU per step is recorded too.
stepped() {
    local extra=()
    [ -z "${7:-}" ] || extra+=(--reference-rate "$7")
    [ -z "${8:-}" ] || extra+=(--upstream-pid "$8")
    measure "$1" "$2" "$3" --transport "$4" --url "$5" --sessions "$sessions" --ramp-rate "$ramp" \
        --stepped "$6" "${extra[@]}" --duration "$step_seconds" --p99-bound-ms "$p99_bound" --drain 3
}

# fixed NAME REP PID TRANSPORT URL UPSTREAM_PID: one step at $fixed_rate msg/s for $fixed_seconds s
# (a stepped run of one step, so both the server's and the upstream's CPU are read per step).
fixed() {
    measure "$1" "$2" "$3" --transport "$4" --url "$5" --sessions "$sessions" --ramp-rate "$ramp" \
        --stepped "$fixed_rate:$fixed_rate:$fixed_rate" --upstream-pid "$6" --duration "$fixed_seconds" \
        --p99-bound-ms "$p99_bound" --drain 3
}

# Fresh Tether against the stub, N idle sessions held, RSS read with all of them up.
idle_run() {  # idle_run NAME REP TRANSPORT N
    local name=$1 rep=$2 transport=$3 count=$4
    local port=$next_port; next_port=$((next_port + 1))
    start_tether "tether-$name.r$rep" --listen "127.0.0.1:$port" --route "localhost=127.0.0.1:$stub_port"
    local pid=$tether_pid
    wait_port "$port" "$pid" tether
    local url
    if [ "$transport" = bosh ]; then url="http://127.0.0.1:$port/http-bind"; else url="ws://127.0.0.1:$port/xmpp-websocket"; fi
    sleep 0.3   # RSS at start: after the listener is up
    measure "$name" "$rep" "$pid" --transport "$transport" --url "$url" --sessions "$count" --idle-sessions "$count" \
        --ramp-rate 20000 --duration "$idle_hold" --drain 1 --login-timeout 60 --no-logout
    stop_started "$pid"
}

# Idle cost: N sessions logged in and held idle for $idle_cost_hold s (BOSH with wait 50 s, so
# each session's long-poll is answered and renewed once; WebSocket with Tether's pings every
# 25 s), the CPU the server used over the hold read by tether-load. Through a fresh Tether in front
# of the stub, then the same sessions on Prosody's own BOSH and WebSocket. Logged out after.
# Prosody, one thread, logs in about 150–200 sessions a second while it holds thousands (at
# 1,000/s its accept queue overflowed and a quarter of the connections timed out; at 300/s
# still 2–10 %): its runs arrive at 150/s.
idle_cost_run() {  # idle_cost_run NAME PID TRANSPORT URL N RAMP
    # Logins (up to 70 s at 150/s), the hold, logout: more than one comparison run may take.
    local run_timeout=$((idle_cost_hold + 180))
    measure "$1" 1 "$2" --transport "$3" --url "$4" --sessions "$5" --idle-sessions "$5" --bosh-wait 50 \
        --ramp-rate "$6" --duration "$idle_cost_hold" --drain 1 --login-timeout 90
}

idle_cost() {
    local n=${idle_sizes[-1]} i transport port pid
    # Prosody has the comparison's users; the idle sessions need n.
    for i in $(seq $((sessions + 1)) "$n"); do
        printf 'return {\n\t["password"] = "pass%d";\n};\n' "$i" > "$work/prosody/data/localhost/accounts/user$i.dat"
    done
    for transport in bosh websocket; do
        port=$next_port; next_port=$((next_port + 1))
        start_tether "tether-idle-cost-$transport" --listen "127.0.0.1:$port" --route "localhost=127.0.0.1:$stub_port"
        pid=$tether_pid
        wait_port "$port" "$pid" tether
        if [ "$transport" = bosh ]; then
            idle_cost_run "idle-cost-tether-bosh" "$pid" bosh "http://127.0.0.1:$port/http-bind" "$n" 1000
            idle_cost_run "idle-cost-prosody-bosh" "$prosody_pid" bosh "$P_BOSH" "$n" 150
        else
            idle_cost_run "idle-cost-tether-ws" "$pid" websocket "ws://127.0.0.1:$port/xmpp-websocket" "$n" 1000
            idle_cost_run "idle-cost-prosody-ws" "$prosody_pid" websocket "$P_WS" "$n" 150
        fi
        stop_started "$pid"
    done
}

knee_stub() {  # knee_stub NAME REP TRANSPORT STEPS
    local name=$1 rep=$2 transport=$3 steps=$4
    local url
    if [ "$transport" = bosh ]; then url="http://127.0.0.1:$tether_stub_port/http-bind"; else url="ws://127.0.0.1:$tether_stub_port/xmpp-websocket"; fi
    stepped "$name" "$rep" "$tether_stub_pid" "$transport" "$url" "$steps" "" "$stub_pid"
}

# The 100k hold: one Tether with $big_parts listeners and routes (one stub each), one load process
# per listener, so no (address, port) pair needs more than the kernel's ephemeral ports.
big_run() {
    local per=$((big_sessions / big_parts))
    local listens=() stubs=() k
    for k in $(seq 1 "$big_parts"); do
        local sp=$next_port; next_port=$((next_port + 1))
        "$load" stub --listen "127.0.0.1:$sp" > "$logs/big-stub$k.log" 2>&1 < /dev/null &
        pids+=("$!"); stubs+=("$!")
        wait_port "$sp" "$!" stub
        local lp=$next_port; next_port=$((next_port + 1))
        listens+=(--listen "127.0.0.1:$lp" --route "b$k.localhost=127.0.0.1:$sp")
        eval "big_port_$k=$lp"
    done
    start_tether big "${listens[@]}"
    local pid=$tether_pid
    local first_port_var=big_port_1
    wait_port "${!first_port_var}" "$pid" tether
    sleep 0.3
    local rss0
    rss0=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
    local loads=()
    for k in $(seq 1 "$big_parts"); do
        local pv="big_port_$k"
        timeout 300 "$load" run --transport websocket --url "ws://127.0.0.1:${!pv}/xmpp-websocket" --domain "b$k.localhost" \
            --sessions "$per" --idle-sessions "$per" --ramp-rate $((20000 / big_parts)) --duration 20 --drain 1 --login-timeout 120 \
            --server-pid "$pid" --json "$results/stub-ws-idle-100k.part$k.json" > "$logs/big-load$k.log" 2>&1 < /dev/null &
        pids+=("$!"); loads+=("$!")
    done
    # All up when Tether holds 2 descriptors per session (client and upstream); read the RSS then.
    local want=$((2 * big_sessions)) fds=0 best_fds=0 rss=0 t0 up_seconds=""
    t0=$(date +%s.%N)
    for _ in $(seq 240); do
        fds=$(ls "/proc/$pid/fd" 2>/dev/null | wc -l)
        if [ "$fds" -ge "$want" ]; then
            up_seconds=$(awk "BEGIN { printf \"%.1f\", $(date +%s.%N) - $t0 }")
            sleep 1
            fds=$(ls "/proc/$pid/fd" | wc -l)
            rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
            best_fds=$fds
            break
        fi
        [ "$fds" -gt "$best_fds" ] && best_fds=$fds && rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
        local alive=0
        for l in "${loads[@]}"; do kill -0 "$l" 2>/dev/null && alive=1; done
        [ "$alive" -eq 1 ] || break
        sleep 0.5
    done
    for l in "${loads[@]}"; do wait "$l" 2>/dev/null || true; stop_started "$l"; done
    local alive=0
    kill -0 "$pid" 2>/dev/null && alive=1
    printf '{"sessions": %d, "tetherFDsAtPeak": %d, "rssKiBAtStart": %d, "rssKiBAllUp": %d, "secondsToAllUp": %s, "tetherAliveAfter": %s}\n' \
        "$big_sessions" "$best_fds" "$rss0" "$rss" "${up_seconds:-null}" "$([ $alive -eq 1 ] && echo true || echo false)" \
        > "$results/stub-ws-idle-100k.json"
    log "stub-ws-idle-100k: Tether descriptors at peak $best_fds (want $want), RSS $rss0 → $rss KiB, all up after ${up_seconds:-never} s"
    stop_started "$pid"
    for s in "${stubs[@]}"; do stop_started "$s"; done
}

# ---- run -------------------------------------------------------------------------------------
loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)
others_start=$(top -b -n 2 -d 1 -w 200 | awk '/^top -/ {n++} n == 2 && $1 ~ /^[0-9]+$/ && $9 + 0 >= 20 {printf "%s%s %s%%", sep, $12, $9; sep = ", "}')
log "servers: Prosody$([ "$with_ejabberd" -eq 1 ] && echo ", ejabberd"), Tethers$([ "$with_nginx" -eq 1 ] && echo ", nginx"); $reps repetition(s)"
start_prosody
start_tether tether-prosody --listen "127.0.0.1:$tether_prosody" --route "localhost=127.0.0.1:$prosody_c2s"
tp_pid=$tether_pid
wait_port "$tether_prosody" "$tp_pid" tether
if [ "$with_nginx" -eq 1 ]; then start_nginx "$tether_prosody"; fi
if [ "$with_ejabberd" -eq 1 ]; then
    start_ejabberd
    start_tether tether-ejabberd --listen "127.0.0.1:$tether_ejabberd" --route "localhost=127.0.0.1:$ejabberd_c2s"
    te_pid=$tether_pid
    wait_port "$tether_ejabberd" "$te_pid" tether
fi
if [ "$with_stub" -eq 1 ]; then
    "$load" stub --listen "127.0.0.1:$stub_port" > "$logs/stub.log" 2>&1 < /dev/null &
    stub_pid=$!
    pids+=("$stub_pid")
    wait_port "$stub_port" "$stub_pid" stub
    tether_stub_port=$next_port; next_port=$((next_port + 1))
    start_tether tether-stub --listen "127.0.0.1:$tether_stub_port" --route "localhost=127.0.0.1:$stub_port"
    tether_stub_pid=$tether_pid
    wait_port "$tether_stub_port" "$tether_stub_pid" tether
fi

P_BOSH="http://127.0.0.1:$prosody_http/http-bind"; P_WS="ws://127.0.0.1:$prosody_http/xmpp-websocket"; P_TCP="tcp://127.0.0.1:$prosody_c2s"
E_BOSH="http://127.0.0.1:$ejabberd_http/http-bind"; E_WS="ws://127.0.0.1:$ejabberd_http/xmpp-websocket"; E_TCP="tcp://127.0.0.1:$ejabberd_c2s"
TP_BOSH="http://127.0.0.1:$tether_prosody/http-bind"; TP_WS="ws://127.0.0.1:$tether_prosody/xmpp-websocket"
TE_BOSH="http://127.0.0.1:$tether_ejabberd/http-bind"; TE_WS="ws://127.0.0.1:$tether_ejabberd/xmpp-websocket"
N_BOSH="http://127.0.0.1:$nginx_port/http-bind"; N_WS="ws://127.0.0.1:$nginx_port/xmpp-websocket"

# Step plans. The figures at 1000 msg/s (CPU per message, p50, p99) come from a reference step
# where the plan would not reach 1000 below the knee; ejabberd's plans start at 1000.
prosody_steps=500:1000:10500
prosody_bosh_steps=250:250:3000
ejabberd_steps=1000:2000:17000
stub_steps=2000:5000:37000

reps_done=0
rep_seconds=0
# The 100k hold, when it runs, comes after the repetitions: keep about 150 s for it.
if [ "$with_stub" -eq 1 ] && [ "$with_100k" -eq 1 ] && [ -z "$big_skip" ]; then budget=$((budget - 150)); fi
for rep in $(seq 1 "$reps"); do
    # Time budget: a repetition that would end past it is not started (on a quiet machine the
    # knees are higher, so the steps are more).
    now=$(($(date +%s) - started_at))
    if [ "$rep" -gt 1 ] && [ $((now + rep_seconds)) -gt "$budget" ]; then
        log "time budget: repetition $rep would end near $((now + rep_seconds)) s, past $budget s; stopping at $reps_done"
        break
    fi
    rep_started=$(date +%s)
    log "=== repetition $rep of $reps"
    if [ "$only_nginx" -eq 0 ]; then
        stepped prosody-bosh "$rep" "$prosody_pid" bosh "$P_BOSH" "$prosody_bosh_steps"
        stepped tether-bosh-prosody "$rep" "$tp_pid" bosh "$TP_BOSH" "$prosody_steps" 1000 "$prosody_pid"
    fi
    # nginx's worker is the measured server, Tether (behind it) the upstream: both CPUs, one run;
    # then the same step straight to that Tether (Prosody as upstream), for Tether without nginx.
    if [ "$with_nginx" -eq 1 ]; then
        fixed nginx-bosh-tether "$rep" "$nginx_worker" bosh "$N_BOSH" "$tp_pid"
        fixed tether-bosh-fixed "$rep" "$tp_pid" bosh "$TP_BOSH" "$prosody_pid"
    fi
    if [ "$only_nginx" -eq 0 ]; then
        stepped prosody-ws "$rep" "$prosody_pid" websocket "$P_WS" "$prosody_steps"
        stepped tether-ws-prosody "$rep" "$tp_pid" websocket "$TP_WS" "$prosody_steps" 1000 "$prosody_pid"
    fi
    if [ "$with_nginx" -eq 1 ]; then
        fixed nginx-ws-tether "$rep" "$nginx_worker" websocket "$N_WS" "$tp_pid"
        fixed tether-ws-fixed "$rep" "$tp_pid" websocket "$TP_WS" "$prosody_pid"
    fi
    [ "$only_nginx" -eq 1 ] || stepped prosody-tcp "$rep" "$prosody_pid" tcp "$P_TCP" "$prosody_steps" 1000
    if [ "$with_ejabberd" -eq 1 ]; then
        stepped ejabberd-bosh "$rep" "$ejabberd_pid" bosh "$E_BOSH" "$ejabberd_steps"
        stepped tether-bosh-ejabberd "$rep" "$te_pid" bosh "$TE_BOSH" "$ejabberd_steps" "" "$ejabberd_pid"
        stepped ejabberd-ws "$rep" "$ejabberd_pid" websocket "$E_WS" "$ejabberd_steps"
        stepped tether-ws-ejabberd "$rep" "$te_pid" websocket "$TE_WS" "$ejabberd_steps" "" "$ejabberd_pid"
        stepped ejabberd-tcp "$rep" "$ejabberd_pid" tcp "$E_TCP" "$ejabberd_steps"
    fi
    if [ "$with_stub" -eq 1 ]; then
        knee_stub stub-bosh-knee "$rep" bosh "$stub_steps"
        knee_stub stub-ws-knee "$rep" websocket "$stub_steps"
        for n in "${idle_sizes[@]}"; do
            label=$([ "$n" -ge 5000 ] && echo 10k || echo 1k)
            idle_run "stub-bosh-idle-$label" "$rep" bosh "$n"
            idle_run "stub-ws-idle-$label" "$rep" websocket "$n"
        done
    fi
    reps_done=$rep
    rep_seconds=$(($(date +%s) - rep_started))
done
if [ "$with_stub" -eq 1 ] && [ "$with_100k" -eq 1 ]; then
    if [ -z "$big_skip" ]; then
        log "=== $big_sessions idle WebSocket sessions through one Tether"
        big_run
    else
        printf '{"sessions": %d, "skipped": "%s"}\n' "$big_sessions" "$big_skip" > "$results/stub-ws-idle-100k.json"
    fi
fi

if [ "$with_idle_cost" -eq 1 ]; then
    log "=== idle cost: ${idle_sizes[-1]} idle sessions held $idle_cost_hold s, through Tether and on Prosody"
    idle_cost
fi

# Versions and machine facts for the report.
{
    echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "nproc=$(nproc)"
    echo "loadavg_start=$loadavg_start"
    echo "others_start=$others_start"
    echo "loadavg=$(cut -d' ' -f1-3 /proc/loadavg)"
    echo "others=$(top -b -n 2 -d 1 -w 200 | awk '/^top -/ {n++} n == 2 && $1 ~ /^[0-9]+$/ && $9 + 0 >= 20 {printf "%s%s %s%%", sep, $12, $9; sep = ", "}')"
    echo "cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
    echo "mem=$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
    echo "kernel=$(uname -r)"
    echo "prosody=$(dpkg-query -W -f='${Version}' prosody 2>/dev/null || echo '?')"
    echo "ejabberd=$([ "$with_ejabberd" -eq 1 ] && dpkg-query -W -f='${Version}' ejabberd 2>/dev/null || echo 'not run')"
    echo "nginx=$([ "$with_nginx" -eq 1 ] && dpkg-query -W -f='${Version}' nginx 2>/dev/null || echo 'not run')"
    if [ -n "$tether_override" ]; then
        # Another binary is measured: say which, so a before/after table is not misread.
        echo "tether=$tether_override (--tether; tether-load from $(git rev-parse --short HEAD 2>/dev/null || echo '?'))"
    else
        echo "tether=$(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD 2>/dev/null || echo '+changes')"
    fi
    echo "swift=$(swift --version 2>/dev/null | head -n 1)"
    echo "reps=$reps_done$([ "$reps_done" -eq "$reps" ] || echo " of $reps asked (time budget $budget s)")"
    echo "sessions=$sessions"
    echo "ramp=$ramp"
    echo "step_seconds=$step_seconds"
    echo "fixed_rate=$fixed_rate"
    echo "fixed_seconds=$fixed_seconds"
    echo "p99_bound=$p99_bound"
    echo "fd_limit=$fd_limit"
    echo "idle_sizes=${idle_sizes[*]}"
    echo "idle_cost_hold=$idle_cost_hold"
    echo "elapsed=$(($(date +%s) - started_at))"
} > "$results/facts.env"
python3 "$root/benchmarks/report.py" "$results"
echo
echo "elapsed: $(($(date +%s) - started_at)) s (raw results in .bench/results, logs in .bench/logs)"
