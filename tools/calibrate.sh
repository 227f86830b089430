#!/usr/bin/env bash
# Calibrates Odyssey on this GPU node: builds the project (the kernels/ benchmarks need a CUDA
# toolkit), runs every benchmark, and imports their raw results as a measured profile.
#
#   tools/calibrate.sh [--scenario FILE] [--quick] [--out PROFILE] [--raw DIR] [--gpu TYPE]
#                      [--mpi "mpirun -np 16 --hostfile hosts"]
#
#   --scenario FILE  measure exactly the GEMM and attention shapes of this scenario (odyssey
#                    calibrate shapes) instead of the built-in sweep, and refuse results from a GPU
#                    other than its machine's
#   --quick          short sweeps and fewer repeats (minutes instead of about an hour)
#   --out PROFILE    the profile to write (default calibration/profiles/measured-DATE.yaml)
#   --raw DIR        where the raw results go (default build/calibration-raw/DATE)
#   --gpu TYPE       the GPU type, when the device name is not one Odyssey knows
#   --mpi "CMD"      run the NCCL benchmark under this launcher, one rank per GPU, across nodes
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
today=$(date -u +%F)
scenario="" quick=() out="$ROOT/calibration/profiles/measured-$today.yaml" raw="$ROOT/build/calibration-raw/$today"
gpu=() mpi=""
while (($#)); do
  case "$1" in
    --scenario) scenario=$(realpath "$2"); shift 2 ;;
    --quick) quick=(--quick); shift ;;
    --out) out="$2"; shift 2 ;;
    --raw) raw="$2"; shift 2 ;;
    --gpu) gpu=(--gpu "$2"); shift 2 ;;
    --mpi) mpi="$2"; shift 2 ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "calibrate.sh: error: unknown argument '$1' (--help lists them)" >&2; exit 2 ;;
  esac
done

# shellcheck source=tools/setup.sh
source "$ROOT/tools/setup.sh"
build_odyssey default >/dev/null
bin="$ROOT/build/kernels"
for b in gemm attention memory nccl; do
  [[ -x $bin/odyssey_bench_$b ]] || echo "calibrate.sh: odyssey_bench_$b was not built (no CUDA toolkit or library; see the CMake messages)" >&2
done
[[ -x $bin/odyssey_bench_memory ]] || exit 1

mkdir -p "$raw"
shapes=()
if [[ -n $scenario ]]; then
  "$ROOT/build/odyssey" calibrate shapes "$scenario" --out "$raw/shapes.txt"
  shapes=(--shapes "$raw/shapes.txt")
fi

files=()
run_bench() {  # name, then the command; exit 3 (no CUDA device) stops everything
  local name=$1; shift
  echo "calibrate.sh: $name" >&2
  local rc=0
  "$@" --out "$raw/$name.json" "${quick[@]}" || rc=$?
  if ((rc == 3)); then echo "calibrate.sh: no CUDA device on this machine; run it on a GPU node" >&2; exit 3; fi
  if ((rc != 0)); then echo "calibrate.sh: $name failed (exit $rc); its results are left out" >&2; return; fi
  files+=("$raw/$name.json")
}
[[ -x $bin/odyssey_bench_memory ]] && run_bench memory "$bin/odyssey_bench_memory"
[[ -x $bin/odyssey_bench_gemm ]] && run_bench gemm "$bin/odyssey_bench_gemm" "${shapes[@]}"
[[ -x $bin/odyssey_bench_attention ]] && run_bench attention "$bin/odyssey_bench_attention" "${shapes[@]}"
if [[ -x $bin/odyssey_bench_nccl ]]; then
  if [[ -n $mpi ]]; then
    # shellcheck disable=SC2086  # the launcher line is split into its words on purpose
    run_bench nccl $mpi "$bin/odyssey_bench_nccl"
  else
    run_bench nccl "$bin/odyssey_bench_nccl"
  fi
fi
((${#files[@]})) || { echo "calibrate.sh: no benchmark produced results" >&2; exit 1; }

scenario_arg=()
[[ -n $scenario ]] && scenario_arg=(--scenario "$scenario")
"$ROOT/build/odyssey" calibrate import "${files[@]}" --out "$out" "${gpu[@]}" "${scenario_arg[@]}"
echo "calibrate.sh: raw results in $raw; profile $out (calibration: auto now picks it for its GPU)" >&2
