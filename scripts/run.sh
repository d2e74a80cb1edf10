#!/usr/bin/env bash
# Sets everything up on Debian 12 (as root) and runs Tether on http://127.0.0.1:5280/http-bind.
#
#   scripts/run.sh                                  # also starts a local Prosody for "localhost"
#   scripts/run.sh --upstream example.org=xmpp.example.org:5222 [-- more tether options]
#
# Without --upstream, a private Prosody (Debian's package) is configured under .run/prosody,
# listens on 127.0.0.1:5222 for the domain "localhost" with users demo1/demo2 (password "demo"),
# and is stopped when Tether exits. The demo page (http://127.0.0.1:5280/demo/) is on.
set -euo pipefail
cd "$(dirname "$0")/.."

upstream=""
listen="127.0.0.1:5280"
extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --upstream) upstream="$2"; shift 2 ;;
        --listen) listen="$2"; shift 2 ;;
        --) shift; extra=("$@"); break ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

scripts/install-deps.sh
echo "==> building tether (release)"
swift build -c release --product tether
tether="$(swift build -c release --show-bin-path)/tether"

prosody_pid=""
cleanup() {
    if [ -n "$prosody_pid" ] && kill -0 "$prosody_pid" 2>/dev/null; then
        kill -TERM "$prosody_pid" 2>/dev/null || true
        sleep 0.5
        kill -KILL "$prosody_pid" 2>/dev/null || true
    fi
}
trap cleanup EXIT INT TERM

if [ -z "$upstream" ]; then
    dir="$PWD/.run/prosody"
    mkdir -p "$dir/data" "$dir/certs"
    cat > "$dir/prosody.cfg.lua" <<CONFIG
-- Written by scripts/run.sh: a local upstream for trying Tether out.
run_as_root = true
daemonize = false
pidfile = "$dir/prosody.pid"
data_path = "$dir/data"
log = { { levels = { min = "info" }, to = "file", filename = "$dir/prosody.log" } }
interfaces = { "127.0.0.1" }
c2s_ports = { 5222 }
c2s_direct_tls_ports = { }
legacy_ssl_ports = { }
s2s_ports = { }
http_ports = { }
https_ports = { }
modules_enabled = { "roster", "saslauth", "tls", "disco", "ping", "smacks", "carbons", "posix" }
modules_disabled = { "s2s" }
authentication = "internal_plain"
allow_registration = false
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
certificates = "$dir/certs"
VirtualHost "localhost"
CONFIG
    if (echo > /dev/tcp/127.0.0.1/5222) 2>/dev/null; then
        echo "run.sh: 127.0.0.1:5222 is already in use; stop that server or pass --upstream" >&2
        exit 1
    fi
    echo "==> starting Prosody on 127.0.0.1:5222 (log: $dir/prosody.log)"
    prosody --config "$dir/prosody.cfg.lua" -F >/dev/null 2>&1 &
    prosody_pid=$!
    for _ in $(seq 1 100); do
        (echo > /dev/tcp/127.0.0.1/5222) 2>/dev/null && break
        sleep 0.1
    done
    for user in demo1 demo2; do
        prosodyctl --config "$dir/prosody.cfg.lua" register "$user" localhost demo >/dev/null
    done
    echo "==> users demo1@localhost and demo2@localhost, password: demo"
    upstream="localhost=127.0.0.1:5222"
fi

echo "==> Tether: BOSH at http://$listen/http-bind, WebSocket at ws://$listen/xmpp-websocket, upstream $upstream"
echo "==> demo page: http://$listen/demo/"
"$tether" serve --listen "$listen" --route "$upstream" --demo "${extra[@]}" &
tether_pid=$!
trap 'kill -TERM $tether_pid 2>/dev/null; wait $tether_pid; cleanup' INT TERM
wait $tether_pid
