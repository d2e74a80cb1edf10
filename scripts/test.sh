#!/usr/bin/env bash
# Sets up everything the tests need on Debian 12 (as root) and runs the whole suite:
# unit tests of the state machines and framers, then integration tests against a real
# Prosody, nginx and headless Chromium started by the tests themselves.
#   scripts/test.sh               the suite, once
#   scripts/test.sh --under-load  the suite 3 times in a row with `stress-ng --cpu N` (N = the
#                                 number of cores) running beside it: no test may depend on speed
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=1
stress=0
for argument in "$@"; do
    case "$argument" in
        --under-load) rounds=3; stress=1 ;;
        -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
        *) echo "test: unknown option $argument" >&2; exit 2 ;;
    esac
done

if [ "$stress" -eq 1 ]; then
    scripts/install-deps.sh --with-nginx --with-browser --with-stress
else
    scripts/install-deps.sh --with-nginx --with-browser
fi

echo "==> checking the format (swift format lint --strict, .swift-format)"
swift format lint --strict --recursive --parallel Sources Tests Fuzzing/Sources Package.swift

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

stress_pid=
stop_stress() {
    if [ -n "$stress_pid" ]; then
        kill "$stress_pid" 2>/dev/null || true
        wait "$stress_pid" 2>/dev/null || true
        stress_pid=
    fi
}
trap stop_stress EXIT

mkdir -p .build
for round in $(seq 1 "$rounds"); do
    if [ "$stress" -eq 1 ]; then
        # Saturates every core for as long as the round takes (stopped right after it).
        stress-ng --cpu "$(nproc)" --timeout 3600s --quiet &
        stress_pid=$!
        echo "==> round $round of $rounds, under stress-ng --cpu $(nproc) (pid $stress_pid)"
    fi
    echo "==> running tests"
    total=0
    failed=0
    run_tests main --skip "$isolated" || failed=1
    run_tests isolated --filter "$isolated" || failed=1
    stop_stress
    if [ "$failed" -ne 0 ]; then
        echo "==> tests FAILED (round $round of $rounds)" >&2
        exit 1
    fi
    echo "==> all $total tests passed"
done
