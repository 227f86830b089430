#!/usr/bin/env bash
# Benchmark (not a test): scenarios at full fidelity and at fast fidelity, with wall time, peak
# memory and simulation statistics, one line each. Figures vary with the machine and its load;
# compare on the same one.
#   tools/bench.sh [SCENARIO...]        the default scenario when none is named
#   tools/bench.sh --large              the 10k-16k GPU layouts the engine is measured on
#   tools/bench.sh --100k               the 100,352-GPU Llama 3 405B layout (minutes)
#   --timeout S                         give up on one run after S seconds (default 900)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
timeout_s=900
scenarios=()
while (($#)); do
  case "$1" in
  --large)
    scenarios+=(scenarios/llama3-405b-h100-roce.yaml
      tests/validation/llama3-2024/llama3-405b-128k-16384gpu.yaml
      tests/validation/mlperf-v3.1/mlperf31-gpt3-10752.yaml
      tools/bench/gpt3-175b-a100-12288.yaml)
    ;;
  --100k) scenarios+=(scenarios/llama3-405b-100k-h100.yaml) ;;
  --timeout) timeout_s="$2"; shift ;;
  -h | --help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) scenarios+=("$1") ;;
  esac
  shift
done
((${#scenarios[@]})) || scenarios=(scenarios/gpt3-175b-azure-2020.yaml)
build_odyssey release
cd "$ODYSSEY_ROOT"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# run SCENARIO FIDELITY: one simulation; prints "wall max_rss_kib" (of the parent process; the
# simulation's own peak is in the report) and leaves the report in $work/r.json.
run() {
  local rc=0
  /usr/bin/time -f "%e %M" -o "$work/time" timeout "$timeout_s" \
    ./build-release/odyssey run "$1" --set "simulation.fidelity=$2" --json >"$work/r.json" 2>"$work/err" || rc=$?
  if ((rc == 124)); then echo "timeout"; elif ((rc != 0)); then echo "failed"; else tail -1 "$work/time"; fi
}

printf '%-44s %-5s %10s %10s %8s %8s %11s %10s %10s\n' scenario fid. "wall (s)" "peak (GiB)" GPUs actors activities flows iteration
for s in "${scenarios[@]}"; do
  declare -A wall_of=()
  for fidelity in full fast; do
    result=$(run "$s" "$fidelity")
    name=$(basename "$s" .yaml)
    case "$result" in
    timeout) printf '%-44s %-5s %10s  no answer in %s s\n' "$name" "$fidelity" "-" "$timeout_s"; continue ;;
    failed) printf '%-44s %-5s %10s  failed: %s\n' "$name" "$fidelity" "-" "$(tail -1 "$work/err")"; continue ;;
    esac
    read -r wall kib <<<"$result"
    wall_of[$fidelity]=$wall
    python3 - "$work/r.json" "$name" "$fidelity" "$wall" "$kib" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
s = r["simulation"]
print(f"{sys.argv[2]:<44} {sys.argv[3]:<5} {float(sys.argv[4]):>10.2f} {max(s['peak_memory_bytes'], int(sys.argv[5]) * 1024) / 2**30:>10.2f} "
      f"{s['simulated_gpus']:>8} {s['actors']:>8} {s['activities']:>11} {s['flows']:>10} {r['iteration_time_s']:>9.4f}s")
PY
  done
  if [[ -n ${wall_of[full]:-} && -n ${wall_of[fast]:-} ]]; then
    python3 -c "import sys; print(f'  full fidelity took {float(sys.argv[1]) / max(float(sys.argv[2]), 0.01):.1f}x the wall time of fast')" \
      "${wall_of[full]}" "${wall_of[fast]}"
  fi
  unset wall_of
done
