#!/usr/bin/env bash
# Benchmark (not a test) of the capacity planner on the question of issue 6: GPT-3 175B on 256 to
# 10,240 GPUs of dgx-a100-superpod, 300B tokens in 30 days. Prints the analytical screen's rate
# (candidates per second, one core) and the wall time of the whole plan (screen, fast and full
# fidelity simulations on every core). Figures vary with the machine and its load.
# Usage: tools/bench-plan.sh [PRESET]   (default: release)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
preset="${1:-release}"
build_odyssey "$preset"
cd "$ODYSSEY_ROOT"
case "$preset" in default) binary=build ;; release) binary=build-release ;; asan) binary=build-asan ;; esac
question=(plan scenarios/gpt3-175b-azure-2020.yaml --set machine.preset=dgx-a100-superpod --gpus 256:10240)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
/usr/bin/time -f "%e %M" -o "$tmp/screen.time" "./$binary/odyssey" "${question[@]}" --fast 0 --full 0 --json >"$tmp/screen.json"
/usr/bin/time -f "%e %M" -o "$tmp/plan.time" "./$binary/odyssey" "${question[@]}" --deadline 30 --json >"$tmp/plan.json"
python3 - "$tmp" <<'PY'
import json, sys
d = sys.argv[1]
s = json.load(open(f"{d}/screen.json"))
p = json.load(open(f"{d}/plan.json"))
sw, sk = open(f"{d}/screen.time").read().split()
pw, pk = open(f"{d}/plan.time").read().split()
print("question          GPT-3 175B, dgx-a100-superpod, 256 to 10,240 GPUs, 300B tokens in 30 days")
print(f"candidates        {s['candidates']} enumerated, {s['screened']} within the rules, {s['fitting']} fit, {s['shapes']} shapes priced")
print(f"screen            {s['screen_seconds']:.2f} s, {s['candidates'] / s['screen_seconds']:.0f} candidates/s (one core); process {float(sw):.2f} s, {int(sk) / 1024:.0f} MiB")
print(f"plan              {float(pw):.1f} s wall, {int(pk) / 1024:.0f} MiB max RSS: screen {p['screen_seconds']:.1f} s, "
      f"{p['fast_runs']} fast runs {p['fast_seconds']:.1f} s, {p['full_runs']} full runs {p['full_seconds']:.1f} s")
a = p.get("deadline_answer")
if a:
    print(f"answer            {a['gpus']} GPUs ({a['strategy']}), {a['time_to_train_s'] / 86400:.1f} days, "
          f"{a['gpu_hours']:.0f} GPU-hours ({a['fidelity']} fidelity)")
PY
