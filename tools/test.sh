#!/usr/bin/env bash
# The test command: same set-up as quickstart.sh, then every test (unit, golden, bad input,
# validation against published runs).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
build_odyssey default
cd "$ODYSSEY_ROOT"
ctest --preset default -j "$(nproc)" "$@"
