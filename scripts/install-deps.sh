#!/usr/bin/env bash
# Installs what Tether builds and tests with, from Debian 12's packages. Idempotent: installs
# only what is missing, runs `apt-get update` at most once and only when it has to. Run as root.
#   --with-browser  also Chromium and its WebDriver (browser tests)
#   --with-nginx    also nginx (deployment tests)
#   --with-profilers also perf and heaptrack (benchmarks/profile.sh)
#   --with-stress   also stress-ng (scripts/test.sh --under-load)
#   --with-ejabberd also ejabberd (benchmarks/compare.sh runs a private instance; the packaged
#                   service is kept from starting and disabled like the others)
# Strophe.js (libjs-strophe) is always installed: the demo page and the browser tests load it.
#
# The tests start their own Prosody, dnsmasq and nginx on free loopback ports (see
# Tests/TetherIntegrationTests/Support), so the packaged daemons must not run: services are
# kept from starting during the install (policy-rc.d), disabled at boot, and a packaged
# daemon found running is stopped through its own pidfile only.
#
# Notes: dnsmasq-base is the dnsmasq binary without the system service (which would hold
# port 53). lua-unbound is only a Recommends of prosody: without it Prosody prints a notice
# and uses its built-in resolver, which only s2s needs; the tests use no s2s.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

packages=(libexpat1-dev zlib1g-dev libssl-dev pkg-config prosody openssl curl dnsmasq-base ca-certificates procps libjs-strophe)
daemons=(prosody)
for argument in "$@"; do
    case "$argument" in
        --with-browser) packages+=(chromium chromium-driver) ;;
        --with-nginx) packages+=(nginx); daemons+=(nginx) ;;
        --with-profilers) packages+=(linux-perf heaptrack) ;;
        --with-stress) packages+=(stress-ng) ;;
        --with-ejabberd) packages+=(ejabberd); daemons+=(ejabberd) ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "install-deps: unknown option $argument" >&2; exit 2 ;;
    esac
done

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

missing=()
for package in "${packages[@]}"; do
    installed "$package" || missing+=("$package")
done

# A daemon's packaged pidfile, and whether the PID in it is really that daemon (not a reused PID).
pidfile_of() {
    case "$1" in
        prosody) echo /run/prosody/prosody.pid ;;
        nginx) echo /run/nginx.pid ;;
        ejabberd) echo /run/ejabberd/ejabberd.pid ;;
    esac
}
running_pid() {
    local pidfile pid
    pidfile=$(pidfile_of "$1")
    [ -s "$pidfile" ] || return 1
    pid=$(tr -dc '0-9' < "$pidfile")
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q "$1" || return 1
    echo "$pid"
}

# Stops a packaged daemon by its pidfile (never by name) and disables it at boot.
stop_and_disable() {
    local daemon=$1 pid
    if pid=$(running_pid "$daemon"); then
        echo "==> stopping the system $daemon (PID $pid from $(pidfile_of "$daemon"))"
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
    fi
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
        systemctl stop "$daemon" >/dev/null 2>&1 || true
    fi
    # Disable at boot; harmless where neither init system runs.
    if command -v systemctl >/dev/null; then systemctl disable "$daemon" >/dev/null 2>&1 || true; fi
    if [ -e "/etc/init.d/$daemon" ] && command -v update-rc.d >/dev/null; then
        update-rc.d "$daemon" disable >/dev/null 2>&1 || true
    fi
}

if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "install-deps: need root to install: ${missing[*]}" >&2
        exit 1
    fi
    echo "==> installing ${missing[*]}"
    # Packaged daemons must not start on install: policy-rc.d answering 101 makes invoke-rc.d
    # (which every maintainer script uses) skip starting them. Ours is removed afterwards,
    # whatever happens; an existing one (e.g. a container's) is left as it is.
    policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\n# Written by Tether scripts/install-deps.sh for the duration of an install.\nexit 101\n' > "$policy"
        chmod +x "$policy"
        trap 'rm -f "$policy"' EXIT
    fi
    # Update the package lists once, unless they are fresh (under a day old) and know every
    # missing package; if an install still fails on stale lists, update once more and retry.
    updated=0
    lists_fresh=0
    if [ -n "$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -mmin -1440 2>/dev/null | head -n 1)" ]; then
        lists_fresh=1
        for package in "${missing[@]}"; do
            apt-cache show "$package" >/dev/null 2>&1 || { lists_fresh=0; break; }
        done
    fi
    if [ "$lists_fresh" -eq 0 ]; then
        apt-get update -qq
        updated=1
    fi
    apt_install() { apt-get install -y -qq --no-install-recommends -o Dpkg::Options::=--force-confold "${missing[@]}"; }
    if ! apt_install; then
        [ "$updated" -eq 0 ] || exit 1
        apt-get update -qq
        apt_install
    fi
    for daemon in "${daemons[@]}"; do
        for package in "${missing[@]}"; do
            if [ "$package" = "$daemon" ]; then stop_and_disable "$daemon"; fi
        done
    done
fi

# A system daemon started before (an earlier install without policy-rc.d, a boot) would hold
# 5222/5269/5280 or 80: stop it, by its own pidfile only.
for daemon in "${daemons[@]}"; do
    if running_pid "$daemon" >/dev/null; then stop_and_disable "$daemon"; fi
done

for tool in /usr/bin/prosody /usr/bin/prosodyctl /usr/bin/openssl /usr/sbin/dnsmasq; do
    [ -x "$tool" ] || { echo "install-deps: $tool missing after install" >&2; exit 1; }
done
