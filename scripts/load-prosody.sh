#!/usr/bin/env bash
# Starts a private Prosody (Debian's package) for tether-load runs: c2s on 127.0.0.1:C2S_PORT,
# its own BOSH (/http-bind) and WebSocket (/xmpp-websocket) on 127.0.0.1:HTTP_PORT, domain
# "localhost", accounts user1..userN with passwords pass1..passN (tether-load's defaults).
#
#   scripts/load-prosody.sh [N=200] [C2S_PORT=15222] [HTTP_PORT=15280]
#
# Runs in the background under .run/load-prosody; prints its PID (for --server-pid) and how to
# stop it. Nothing of the system Prosody (/etc/prosody, /var/lib/prosody, its ports) is touched.
set -euo pipefail
cd "$(dirname "$0")/.."
count="${1:-200}"
c2s="${2:-15222}"
http="${3:-15280}"
dir="$PWD/.run/load-prosody"
mkdir -p "$dir/data/localhost/accounts" "$dir/certs"
if [ -f "$dir/prosody.pid" ] && kill -0 "$(cat "$dir/prosody.pid")" 2>/dev/null; then
    echo "already running: PID $(cat "$dir/prosody.pid")" >&2
    exit 1
fi
# shellcheck source=lib/load-prosody-config.sh
. scripts/lib/load-prosody-config.sh
write_load_prosody_config "$dir" "$c2s" "$http" "$count"
setsid /usr/bin/prosody --config "$dir/prosody.cfg.lua" -F > "$dir/stdout.log" 2>&1 < /dev/null &
for _ in $(seq 1 50); do
    [ -s "$dir/prosody.pid" ] && break
    sleep 0.1
done
pid="$(cat "$dir/prosody.pid" 2>/dev/null || echo $!)"
echo "prosody PID $pid: tcp://127.0.0.1:$c2s  http://127.0.0.1:$http/http-bind  ws://127.0.0.1:$http/xmpp-websocket  ($count users)"
echo "stop with: kill $pid"
