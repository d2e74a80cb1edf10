#!/usr/bin/env bash
# Installs what Tether builds and tests with, from Debian 12's packages. Idempotent; run as root.
#   --with-browser  also Chromium, its driver and Strophe.js (browser tests)
#   --with-nginx    also nginx (deployment tests)
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

packages=(libexpat1-dev zlib1g-dev libssl-dev pkg-config prosody openssl curl dnsmasq-base ca-certificates procps)
for argument in "$@"; do
    case "$argument" in
        --with-browser) packages+=(chromium chromium-driver libjs-strophe) ;;
        --with-nginx) packages+=(nginx) ;;
        *) echo "install-deps: unknown option $argument" >&2; exit 2 ;;
    esac
done

missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done

if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "install-deps: need root to install: ${missing[*]}" >&2
        exit 1
    fi
    echo "==> installing ${missing[*]}"
    # Packaged daemons (prosody, nginx) must not start on install: the tests run their own, on their own ports.
    policy=/usr/sbin/policy-rc.d
    created_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy"
        chmod +x "$policy"
        created_policy=1
    fi
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
    if [ "$created_policy" -eq 1 ]; then rm -f "$policy"; fi
fi

# A system Prosody started by an earlier install would hold 5222/5280: stop it (its own pidfile only).
if [ -f /run/prosody/prosody.pid ] && kill -0 "$(cat /run/prosody/prosody.pid)" 2>/dev/null; then
    echo "==> stopping the system Prosody started by its package"
    kill "$(cat /run/prosody/prosody.pid)" || true
fi
