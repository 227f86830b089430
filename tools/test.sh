#!/usr/bin/env bash
# The test command: same set-up as quickstart.sh, then every test (unit, golden, bad input,
# regress against the committed baseline, validation against published runs).
#
#   tools/test.sh [CTEST_ARGS...]             default build (build/), every test
#   tools/test.sh --sanitize [CTEST_ARGS...]  ASan + UBSan build (build-asan/), every test under it
#   tools/test.sh --fuzz SECONDS [SEED]       fuzz the scenario, profile, raw-file and
#                                             published-table loaders for SECONDS each (clang,
#                                             build-fuzz/);
#                                             with SEED the run is repeatable (CI), without it each
#                                             run explores new inputs
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$ODYSSEY_ROOT"

case "${1:-}" in
--sanitize)
  shift
  build_odyssey asan
  # Every finding fails its test; leak checks stay on, with third-party suppressions only
  # (tests/sanitizers/lsan.supp says why each is there). SimGrid (not instrumented) switches actor
  # stacks itself: ASan warns once per simulation that it cannot follow, and reports nothing.
  export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1"
  export LSAN_OPTIONS="suppressions=$ODYSSEY_ROOT/tests/sanitizers/lsan.supp:print_suppressions=0"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
  ctest --preset asan -j "$(nproc)" "$@"
  ;;
--fuzz)
  seconds=${2:?usage: tools/test.sh --fuzz SECONDS [SEED]}
  seed=${3:-0}  # libFuzzer: 0 draws a seed; any other value repeats the same sequence of inputs
  build_odyssey fuzz
  # Each target for SECONDS, from seeds copied so the fuzzer's corpus additions stay out of the
  # tree: the shipped scenarios and bad-input cases; the shipped profiles; the raw-file fixtures;
  # the shipped published tables.
  # A crash leaves its input in build-fuzz/ and fails this command.
  corpus=$(mktemp -d)
  trap 'rm -rf "$corpus"' EXIT
  fuzz() {  # TARGET DICTIONARY MAX_LEN SEED_FILES...
    local target=$1 dict=$2 max_len=$3
    shift 3
    mkdir -p "$corpus/$target"
    cp "$@" "$corpus/$target/"
    echo "== fuzzing $target for $seconds s"
    ./build-fuzz/tests/odyssey_fuzz_"$target" -max_total_time="$seconds" -seed="$seed" -timeout=10 -rss_limit_mb=2048 \
      -max_len="$max_len" -print_final_stats=1 -artifact_prefix=build-fuzz/ -dict="$dict" "$corpus/$target"
  }
  fuzz scenario tests/fuzz/scenario.dict 4096 scenarios/*.yaml tests/errors/*.yaml
  fuzz profile tests/fuzz/calibration.dict 16384 calibration/profiles/*.yaml
  fuzz import tests/fuzz/calibration.dict 131072 tests/calibration/*.json
  fuzz published tests/fuzz/published.dict 65536 calibration/published/*.csv calibration/published/*.textproto
  ;;
*)
  build_odyssey default
  ctest --preset default -j "$(nproc)" "$@"
  ;;
esac
