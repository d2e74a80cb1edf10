#!/usr/bin/env bash
# Sets up everything the tests need on Debian 12 (as root) and runs the whole suite:
# unit tests of the state machines and framers, then integration tests against a real
# Prosody, nginx and headless Chromium started by the tests themselves.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh --with-nginx --with-browser

echo "==> building (debug, with tests)"
swift build --build-tests

echo "==> running tests"
mkdir -p .build
log=.build/test-output.log
set +e
swift test --skip-build 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e

# swift test prints XCTest's summary, then Swift Testing's; ours are Swift Testing tests.
summary=$(grep -E '^(✔|✘) Test run with [0-9]+ tests' "$log" | tail -n 1 || true)
if [ "$status" -ne 0 ] || [ -z "$summary" ] || [[ "$summary" == ✘* ]]; then
    echo "==> tests FAILED (exit $status): ${summary:-no Swift Testing summary}" >&2
    exit 1
fi
count=$(sed -E 's/.*Test run with ([0-9]+) tests.*/\1/' <<<"$summary")
if [ "$count" -eq 0 ]; then
    echo "==> no tests ran" >&2
    exit 1
fi
echo "==> $summary"
