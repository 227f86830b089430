#!/usr/bin/env python3
"""One run path: `odyssey run --json`, a sweep point with no overrides and the plan's simulated row
for the scenario's own strategy give the same figures to the last digit. The scenario sits on an
NVLS preset with a non-default nccl.algo and placement, so a command that priced without the
machine's NCCL configuration or without the placement would not match.

usage: run.py ODYSSEY_BINARY"""
import json
import pathlib
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
SCENARIO = HERE / "scenario.yaml"
BREAKDOWN = ["compute", "tp_comm_exposed", "cp_comm_exposed", "ep_comm_exposed", "pp_bubble", "pp_comm_exposed",
             "dp_comm_exposed", "optimizer"]
FIGURES = ["iteration_time_s", "tokens_per_s", "mfu", "memory_per_gpu_bytes", "fits_memory"]


def odyssey(*args):
    done = subprocess.run([sys.argv[1], *args], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"FAIL odyssey {' '.join(args)}: exit {done.returncode}\n{done.stderr}")
    return done.stdout


def figures(row, breakdown):
    out = {key: row[key] for key in FIGURES}
    out.update({f"breakdown.{key}": breakdown[key] for key in BREAKDOWN})
    return out


def main():
    run = json.loads(odyssey("run", str(SCENARIO), "--json"))
    expected = figures(run, run["breakdown"])

    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / "sweep.jsonl"
        odyssey("sweep", str(HERE / "sweep.yaml"), "--out", str(out), "--jobs", "1", "--no-progress")
        rows = [json.loads(line) for line in out.read_text().splitlines()]
    if len(rows) != 1 or rows[0]["status"] != "ok" or rows[0]["overrides"] != "":
        sys.exit(f"FAIL the sweep has one point without overrides, got {rows}")
    sweep = figures(rows[0], rows[0])

    # --fast 1: the best screened strategy and the scenario's own are simulated at fast fidelity;
    # --full 2: then both again at full fidelity, the scenario's fidelity.
    plan = json.loads(odyssey("plan", str(SCENARIO), "--json", "--fast", "1", "--full", "2", "--jobs", "1"))
    own = [r for r in plan["ranked"] if r.get("scenario_plan")]
    if len(own) != 1 or own[0]["fidelity"] != "full":
        sys.exit(f"FAIL the plan has the scenario's own strategy simulated at full fidelity, got {own}")
    planned = figures(own[0], own[0]["breakdown"])

    fail = False
    for name, got in (("sweep point", sweep), ("plan row", planned)):
        for key, value in expected.items():
            if got[key] != value:  # exact: one run path gives the same doubles
                print(f"FAIL {name}: {key} = {got[key]!r}, odyssey run says {value!r}")
                fail = True
    if not fail:
        print(f"ok   run, sweep point and plan row agree to the last digit on {len(expected)} figures "
              f"(iteration {expected['iteration_time_s']!r} s)")
    return 1 if fail else 0


if __name__ == "__main__":
    sys.exit(main())
