# Sourced by scripts/load-prosody.sh and benchmarks/compare.sh: writes the configuration of a
# private Prosody for load runs (c2s, its own BOSH and WebSocket, plain auth over loopback) and
# its users user1..N with passwords pass1..N, as mod_auth_internal_plain stores them.
#   write_load_prosody_config DIR C2S_PORT HTTP_PORT USERS
write_load_prosody_config() {
    local dir=$1 c2s=$2 http=$3 users=$4 i
    mkdir -p "$dir/data/localhost/accounts" "$dir/certs"
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
    for i in $(seq 1 "$users"); do
        printf 'return {\n\t["password"] = "pass%d";\n};\n' "$i" > "$dir/data/localhost/accounts/user$i.dat"
    done
}
