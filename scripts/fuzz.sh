#!/usr/bin/env bash
# Builds the libFuzzer targets in Fuzzing/ and runs them, each for a fixed time.
#   scripts/fuzz.sh [TARGET|all] [SECONDS]   (defaults: all, 600)
# TARGET: XMLStreamFramerFuzzer, BOSHBodyFuzzer, WebSocketFrameFuzzer, HTTPRequestFuzzer, HTTP2FrameFuzzer,
# EdgePolicyFuzzer.
# Every target starts from a scratch copy of its committed seed corpus (Fuzzing/Corpus/<target>),
# so runs never modify the repository; crash inputs go to Fuzzing/artifacts/. Extra libFuzzer
# options can be passed in FUZZ_OPTIONS (e.g. FUZZ_OPTIONS='-jobs=2 -workers=2'). With
# FUZZ_MERGE_CORPUS=1 the inputs of the run that reach new coverage are merged (libFuzzer
# -merge=1) into the committed corpus afterwards, to be committed with the run's results.
# FUZZ_SKIP_BUILD=1 runs the binaries already built (e.g. while the sources are being edited).
# Exits non-zero when a target finds a crash. See Fuzzing/README.md.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# libFuzzer prints the stack of a crash itself; the Swift runtime backtracer would only add delay.
export SWIFT_BACKTRACE=enable=no
target=${1:-all}
seconds=${2:-600}
all_targets=(XMLStreamFramerFuzzer BOSHBodyFuzzer WebSocketFrameFuzzer HTTPRequestFuzzer HTTP2FrameFuzzer EdgePolicyFuzzer)

case "$target" in
    all) targets=("${all_targets[@]}") ;;
    XMLStreamFramerFuzzer|BOSHBodyFuzzer|WebSocketFrameFuzzer|HTTPRequestFuzzer|HTTP2FrameFuzzer|EdgePolicyFuzzer) targets=("$target") ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "fuzz: unknown target $target (expected ${all_targets[*]} or all)" >&2; exit 2 ;;
esac
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
    echo "fuzz: SECONDS must be a positive integer, got $seconds" >&2
    exit 2
fi

# --sanitize=fuzzer (SwiftPM >= 6.2) adds -parse-as-library and keeps libFuzzer's main; passing
# only -Xswiftc -sanitize=fuzzer fails to link (SwiftPM aliases main to <Target>_main). SwiftPM
# passes each sanitizer to swiftc as its own -sanitize= option and swiftc keeps only the last one,
# so --sanitize=fuzzer --sanitize=address alone builds Swift code without coverage
# instrumentation: the combined option, appended last, gives Swift code both.
# -enable-testing lets the pipeline and edge targets `@testable import TetherServer` (its handlers and
# policies are internal).
build_flags=(--package-path "$root/Fuzzing" -c release --sanitize=fuzzer --sanitize=address -Xswiftc -sanitize=fuzzer,address -Xswiftc -enable-testing)
if [ "${FUZZ_SKIP_BUILD:-0}" != 1 ]; then
    swift build "${build_flags[@]}"
fi
bin=$(swift build "${build_flags[@]}" --show-bin-path)

artifacts="$root/Fuzzing/artifacts"
mkdir -p "$artifacts"
scratch=$(mktemp -d "${TMPDIR:-/tmp}/tether-fuzz.XXXXXX")
trap 'rm -rf "$scratch"' EXIT

status=0
for name in "${targets[@]}"; do
    corpus="$scratch/$name"
    mkdir -p "$corpus"
    cp "$root/Fuzzing/Corpus/$name"/* "$corpus/"
    # XML tokens for the XML and WebSocket targets, HTTP ones for raw requests, frame headers and
    # header names for HTTP/2; the edge policy
    # target reads binary records, where a dictionary of words would only get in the way.
    case "$name" in
        HTTPRequestFuzzer) dict=(-dict="$root/Fuzzing/http.dict") ;;
        HTTP2FrameFuzzer) dict=(-dict="$root/Fuzzing/http2.dict") ;;
        EdgePolicyFuzzer) dict=() ;;
        *) dict=(-dict="$root/Fuzzing/xml.dict") ;;
    esac
    echo "fuzz: $name for ${seconds}s (corpus $corpus, artifacts $artifacts)"
    # shellcheck disable=SC2086 # FUZZ_OPTIONS is a list of options
    if ! "$bin/$name" \
        -max_total_time="$seconds" \
        "${dict[@]}" \
        -max_len=4096 \
        -timeout=10 \
        -rss_limit_mb=4096 \
        -print_final_stats=1 \
        -artifact_prefix="$artifacts/$name-" \
        ${FUZZ_OPTIONS:-} \
        "$corpus"; then
        echo "fuzz: $name FAILED; crash input(s) in $artifacts" >&2
        status=1
    elif [ "${FUZZ_MERGE_CORPUS:-0}" = 1 ]; then
        before=$(find "$root/Fuzzing/Corpus/$name" -type f | wc -l)
        "$bin/$name" -merge=1 "${dict[@]}" -max_len=4096 -timeout=10 -rss_limit_mb=4096 \
            "$root/Fuzzing/Corpus/$name" "$corpus" 2>"$scratch/$name-merge.log" \
            || { echo "fuzz: merging $name's corpus failed:" >&2; tail -5 "$scratch/$name-merge.log" >&2; status=1; }
        after=$(find "$root/Fuzzing/Corpus/$name" -type f | wc -l)
        echo "fuzz: $name corpus merged into Fuzzing/Corpus/$name: $before -> $after inputs"
    fi
done
exit "$status"
