#!/usr/bin/env bash
# Benchmark (not a test): the default scenario at full fidelity, with wall time, peak memory and
# simulation statistics. Figures vary with the machine; compare on the same one.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
build_odyssey release
cd "$ODYSSEY_ROOT"
scenario="${1:-scenarios/gpt3-175b-azure-2020.yaml}"
json=$(mktemp)
trap 'rm -f "$json" "$json.time"' EXIT
/usr/bin/time -f "%e %M" -o "$json.time" ./build-release/odyssey run "$scenario" --json >"$json"
read -r wall kib <"$json.time"
python3 - "$json" "$wall" "$kib" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
s = r["simulation"]
print(f"scenario          {r['scenario']}")
print(f"wall seconds      {float(sys.argv[2]):.2f} (process), {s['wall_s']:.2f} (simulation)")
print(f"peak memory       {s['peak_memory_bytes'] / 2**30:.2f} GiB (simulation process), {int(sys.argv[3]) / 1048576:.2f} GiB (max RSS seen by time)")
print(f"simulated GPUs    {s['simulated_gpus']} (platform: {s['platform_gpus']} GPUs, {s['platform_cpu_hosts']} CPU hosts)")
print(f"actors            {s['actors']}")
print(f"activities        {s['activities']} ({s['flows']} flows)")
print(f"iteration time    {r['iteration_time_s']:.4f} s")
PY
