#!/usr/bin/env bash
# Quick start: install what is missing, build into build/, run the default scenario.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
build_odyssey default
cd "$ODYSSEY_ROOT"
./build/odyssey run
