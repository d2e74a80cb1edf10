#!/usr/bin/env bash
# Sets up everything the tests need on Debian 12 (as root) and runs the whole suite:
# unit tests of the state machines and framers, then integration tests against a real
# Prosody, nginx and headless Chromium started by the tests themselves.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh --with-nginx --with-browser

echo "==> building (debug, with tests)"
swift build --build-tests

# The hostile flood saturates the machine on purpose: it runs on its own after the rest, so the
# other tests' timeouts are not shared with it (they still have to hold on a busy machine).
isolated='HostileFloodTests'

# swift test prints XCTest's summary, then Swift Testing's; ours are Swift Testing tests.
run_tests() {
    local name=$1
    shift
    local log=".build/test-output-$name.log"
    set +e
    swift test --skip-build "$@" 2>&1 | tee "$log"
    local status=${PIPESTATUS[0]}
    set -e
    local summary
    summary=$(grep -E '^(✔|✘) Test run with [0-9]+ tests?' "$log" | tail -n 1 || true)
    if [ "$status" -ne 0 ] || [ -z "$summary" ] || [[ "$summary" == ✘* ]]; then
        echo "==> $name tests FAILED (exit $status): ${summary:-no Swift Testing summary}" >&2
        return 1
    fi
    local count
    count=$(sed -E 's/.*Test run with ([0-9]+) tests?.*/\1/' <<<"$summary")
    if [ "$count" -eq 0 ]; then
        echo "==> $name: no tests ran" >&2
        return 1
    fi
    echo "==> $name: $summary"
    total=$((total + count))
}

echo "==> running tests"
mkdir -p .build
total=0
failed=0
run_tests main --skip "$isolated" || failed=1
run_tests isolated --filter "$isolated" || failed=1
if [ "$failed" -ne 0 ]; then
    echo "==> tests FAILED" >&2
    exit 1
fi
echo "==> all $total tests passed"
