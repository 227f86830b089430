#!/usr/bin/env python3
"""Golden reports: runs `odyssey run --json` on every scenario in scenarios/ and compares the
report with tests/golden/<name>.json. Wall-clock figures are ignored; every other value must match
(floats to 1e-9 relative, since the engine is deterministic). `--update` rewrites the goldens.

usage: run.py ODYSSEY_BINARY [--update] [NAME...]"""
import json
import math
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
IGNORED = {("simulation", "wall_s"), ("simulation", "peak_memory_bytes")}


def strip(report):
    for path in IGNORED:
        node = report
        for key in path[:-1]:
            node = node.get(key, {})
        node.pop(path[-1], None)
    return report


def diff(expected, actual, path=""):
    if isinstance(expected, dict) and isinstance(actual, dict):
        out = []
        for key in sorted(set(expected) | set(actual)):
            if key not in actual:
                out.append(f"{path}.{key}: missing")
            elif key not in expected:
                out.append(f"{path}.{key}: unexpected")
            else:
                out += diff(expected[key], actual[key], f"{path}.{key}")
        return out
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return [f"{path}: {len(expected)} items expected, {len(actual)} found"]
        return [d for i, (e, a) in enumerate(zip(expected, actual)) for d in diff(e, a, f"{path}[{i}]")]
    if isinstance(expected, float) or isinstance(actual, float):
        if isinstance(expected, (int, float)) and isinstance(actual, (int, float)) and math.isclose(expected, actual, rel_tol=1e-9, abs_tol=1e-12):
            return []
    elif expected == actual:
        return []
    return [f"{path}: expected {expected!r}, got {actual!r}"]


def main():
    args = sys.argv[1:]
    if not args:
        print(__doc__, file=sys.stderr)
        return 2
    binary, update = args[0], "--update" in args
    names = [a for a in args[1:] if a != "--update"]
    scenarios = sorted((ROOT / "scenarios").glob("*.yaml"))
    if names:
        scenarios = [s for s in scenarios if s.stem in names]
    failures = 0
    for scenario in scenarios:
        golden = ROOT / "tests" / "golden" / f"{scenario.stem}.json"
        run = subprocess.run([binary, "run", str(scenario.relative_to(ROOT)), "--json"], cwd=ROOT,
                             capture_output=True, text=True)
        if run.returncode != 0:
            print(f"FAIL {scenario.stem}: exit {run.returncode}\n{run.stderr}")
            failures += 1
            continue
        report = strip(json.loads(run.stdout))
        if update or not golden.exists():
            golden.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
            print(f"{'updated' if update else 'created'} {golden.relative_to(ROOT)}")
            continue
        problems = diff(json.loads(golden.read_text()), report)
        if problems:
            failures += 1
            print(f"FAIL {scenario.stem}:\n  " + "\n  ".join(problems[:20]))
        else:
            print(f"ok   {scenario.stem}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
