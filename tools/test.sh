#!/usr/bin/env bash
# The test command: same set-up as quickstart.sh, then every test (unit, golden, bad input,
# regress against the committed baseline, validation against published runs).
#
#   tools/test.sh [CTEST_ARGS...]             default build (build/), every test
#   tools/test.sh --sanitize [CTEST_ARGS...]  ASan + UBSan build (build-asan/), every test under it
#   tools/test.sh --fuzz SECONDS              fuzz the scenario loader for SECONDS (clang, build-fuzz/)
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
  seconds=${2:?usage: tools/test.sh --fuzz SECONDS}
  build_odyssey fuzz
  # Seeds: the shipped scenarios and the bad-input cases, copied so the fuzzer's corpus additions
  # stay out of the tree. A crash leaves its input in build-fuzz/ and fails this command.
  corpus=$(mktemp -d)
  trap 'rm -rf "$corpus"' EXIT
  cp scenarios/*.yaml tests/errors/*.yaml "$corpus/"
  ./build-fuzz/tests/odyssey_fuzz_scenario -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
    -print_final_stats=1 -artifact_prefix=build-fuzz/ -dict=tests/fuzz/scenario.dict "$corpus"
  ;;
*)
  build_odyssey default
  ctest --preset default -j "$(nproc)" "$@"
  ;;
esac
