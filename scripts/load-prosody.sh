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
cat > "$dir/prosody.cfg.lua" <<CFG
run_as_root = true
daemonize = false
pidfile = "$dir/prosody.pid"
data_path = "$dir/data"
certificates = "$dir/certs"
log = { { levels = { min = "warn" }, to = "file", filename = "$dir/prosody.log" } }
interfaces = { "127.0.0.1" }
local_interfaces = { "127.0.0.1" }
c2s_ports = { $c2s }
c2s_direct_tls_ports = { }
legacy_ssl_ports = { }
s2s_ports = { }
component_ports = { }
http_ports = { $http }
http_interfaces = { "127.0.0.1" }
https_ports = { }
http_default_host = "localhost"
modules_enabled = { "roster", "saslauth", "disco", "ping", "posix", "bosh", "websocket" }
modules_disabled = { "s2s", "tls" }
authentication = "internal_plain"
storage = "internal"
allow_registration = false
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
consider_bosh_secure = true
consider_websocket_secure = true
cross_domain_websocket = true
c2s_stanza_size_limit = 1048576
VirtualHost "localhost"
CFG
# Accounts as mod_auth_internal_plain stores them: data/localhost/accounts/<user>.dat
for i in $(seq 1 "$count"); do
    printf 'return {\n\t["password"] = "pass%d";\n};\n' "$i" > "$dir/data/localhost/accounts/user$i.dat"
done
setsid /usr/bin/prosody --config "$dir/prosody.cfg.lua" -F > "$dir/stdout.log" 2>&1 < /dev/null &
for _ in $(seq 1 50); do
    [ -s "$dir/prosody.pid" ] && break
    sleep 0.1
done
pid="$(cat "$dir/prosody.pid" 2>/dev/null || echo $!)"
echo "prosody PID $pid: tcp://127.0.0.1:$c2s  http://127.0.0.1:$http/http-bind  ws://127.0.0.1:$http/xmpp-websocket  ($count users)"
echo "stop with: kill $pid"
