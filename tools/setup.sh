#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks to build Odyssey (through sudo when not root),
# then configures and builds into build/. Sourced by quickstart.sh, test.sh and bench.sh.
set -euo pipefail

ODYSSEY_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PACKAGES=(build-essential cmake ninja-build pkg-config libsimgrid-dev libyaml-cpp-dev libcli11-dev libfmt-dev
          libeigen3-dev catch2 nlohmann-json3-dev python3 time
          libjemalloc-dev             # the simulator's allocator (CMakeLists.txt says why)
          libopenmpi-dev openmpi-bin  # MPI: the NCCL calibration benchmark across nodes and odyssey sweep --mpi
                                      # (both optional in CMake)
          clang libclang-rt-14-dev    # clang and its compiler-rt: the libFuzzer target (tools/test.sh --fuzz)
          chromium)                   # headless, for the plots test (tests/plots/): text laid out by a browser

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "odyssey setup: installing ${missing[*]}" >&2
  as_root=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "odyssey setup: need root or sudo to install ${missing[*]}" >&2; exit 1; }
    as_root=(sudo)
  fi
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

build_odyssey() {
  local preset="${1:-default}"
  cmake --preset "$preset" -S "$ODYSSEY_ROOT" -G Ninja >/dev/null
  cmake --build --preset "$preset" -j "$(nproc)"
}
