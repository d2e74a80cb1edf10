# Process bookkeeping for scripts that start servers: every PID started goes into `pids`, and
# each is stopped by that PID (TERM, then KILL after 5 s), never by name.
pids=()
stop_pid() {
    local pid=$1
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
    fi
    wait "$pid" 2>/dev/null || true
}
# Stops a process started here and forgets it (its PID may be reused later).
stop_started() {
    local pid=$1 kept=() p
    stop_pid "$pid"
    for p in "${pids[@]}"; do [ "$p" = "$pid" ] || kept+=("$p"); done
    pids=("${kept[@]}")
}
