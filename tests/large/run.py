#!/usr/bin/env python3
"""Full fidelity at scale: GPT-3 175B on 12,288 A100 (tp 8, pp 8 interleaved v6, sequence
parallelism, dp 192; tools/bench/gpt3-175b-a100-12288.yaml) runs to completion, every GPU
simulated, and its iteration stays within 0.5% of fast fidelity's on this non-blocking fabric,
where the replicas are alike (fast fidelity's premise; its data-parallel all-reduce runs on NCCL's
tree, whose busiest server stands for all).
Wall time and memory are benchmarks (tools/bench.sh --large), not checked here.
Usage: tests/large/run.py PATH/TO/odyssey"""
import json
import subprocess
import sys

SCENARIO = "tools/bench/gpt3-175b-a100-12288.yaml"


def run(odyssey, fidelity):
    p = subprocess.run([odyssey, "run", SCENARIO, "--set", f"simulation.fidelity={fidelity}", "--json"],
                       capture_output=True, text=True, timeout=1200)
    if p.returncode != 0:
        print(f"FAIL {fidelity} fidelity exited {p.returncode}:\n{p.stderr}")
        sys.exit(1)
    return json.loads(p.stdout)


def main():
    odyssey = sys.argv[1]
    full = run(odyssey, "full")
    fast = run(odyssey, "fast")
    sim = full["simulation"]
    failures = []
    if sim["fidelity"] != "full" or sim["simulated_gpus"] != 12288:
        failures.append(f"expected 12288 GPUs at full fidelity, got {sim['simulated_gpus']} at {sim['fidelity']}")
    ratio = full["iteration_time_s"] / fast["iteration_time_s"]
    if not 0.995 <= ratio <= 1.005:
        failures.append(f"full {full['iteration_time_s']:.4f} s against fast {fast['iteration_time_s']:.4f} s")
    print(f"12,288 GPUs at full fidelity: {full['iteration_time_s']:.4f} s per iteration "
          f"(fast {fast['iteration_time_s']:.4f} s), {sim['flows']} flows, {sim['wall_s']:.1f} s wall")
    for f in failures:
        print("FAIL", f)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
