#!/usr/bin/env python3
"""A killed odyssey leaves nothing running.

Starts `run`, `sweep`, `plan` and `regress` on work that lasts many seconds, waits until their
simulations run in child processes, then stops the odyssey process with SIGTERM, SIGINT and
SIGKILL in turn. Requires that it exits within 2 s (SIGTERM and SIGINT: exit code 128 + signal and
one line on stderr) and that no process it started is left 2 s after the signal. Each odyssey runs
in a process group of its own; whatever is left of it is killed at the end, pass or fail.

Usage: tests/interrupt/run.py PATH/TO/odyssey   (from the repository root)
"""
import ctypes
import os
import signal
import subprocess
import sys
import tempfile
import time

ODYSSEY = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else sys.exit(__doc__)
os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
TMP = tempfile.mkdtemp(prefix="odyssey-interrupt-")
GRACE_S = 2.0
PR_SET_PDEATHSIG = 1

# (name, command, depth of the process tree that shows the simulation running)
COMMANDS = [
    ("run", ["run", "scenarios/llama3-405b-h100-roce.yaml"], 1),
    ("sweep", ["sweep", "scenarios/sweeps/gpt3-a100-network.yaml", "--out", f"{TMP}/rows.csv", "--jobs", "1",
               "--no-progress"], 2),
    ("plan", ["plan", "scenarios/llama3-70b-dgx-h100.yaml", "--jobs", "1"], 1),
    ("regress", ["regress", "--jobs", "1", "scenarios/llama3-405b-h100-roce.yaml"], 2),
]
SIGNALS = [signal.SIGTERM, signal.SIGINT, signal.SIGKILL]

groups = []  # process groups started here: each odyssey's pid


def processes():
    """pid -> (ppid, pgid, state) of every process."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                text = f.read()
        except OSError:
            continue
        fields = text[text.rfind(")") + 2:].split()
        out[int(entry)] = (int(fields[1]), int(fields[2]), fields[0])
    return out


def depth_below(root, table):
    """How many generations of live descendants `root` has."""
    depth, level = 0, {root}
    while True:
        level = {p for p, (ppid, _, state) in table.items() if ppid in level and state not in "ZX"}
        if not level:
            return depth
        depth += 1


def left_in_group(pgid):
    return sorted(p for p, (_, group, state) in processes().items() if group == pgid and state not in "ZX")


def die_with_this_test():
    # Should this script itself be killed, the odyssey under test goes too.
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def check(name, args, depth, sig):
    label = f"{name} {sig.name}"
    err_path = os.path.join(TMP, "stderr")
    if os.path.exists(f"{TMP}/rows.csv"):
        os.remove(f"{TMP}/rows.csv")  # a sweep resumes: each case starts it afresh
    with open(err_path, "w") as err:
        proc = subprocess.Popen([ODYSSEY, *args], stdout=subprocess.DEVNULL, stderr=err, start_new_session=True,
                                preexec_fn=die_with_this_test)
    groups.append(proc.pid)
    deadline = time.monotonic() + 120
    while depth_below(proc.pid, processes()) < depth:
        if proc.poll() is not None:
            return [f"{label}: odyssey ended (exit code {proc.returncode}) before its simulations started: "
                    + open(err_path).read()[-400:]]
        if time.monotonic() > deadline:
            return [f"{label}: no simulation process after 120 s"]
        time.sleep(0.05)
    time.sleep(0.3)  # the simulations are under way
    problems = []
    os.kill(proc.pid, sig)
    killed = time.monotonic()
    try:
        rc = proc.wait(timeout=GRACE_S)
    except subprocess.TimeoutExpired:
        rc = None
        problems.append(f"{label}: odyssey still running {GRACE_S:.0f} s after the signal")
    expected = -signal.SIGKILL if sig == signal.SIGKILL else 128 + sig
    if rc is not None and rc != expected:
        problems.append(f"{label}: exit code {rc}, expected {expected}")
    if sig != signal.SIGKILL:
        lines = open(err_path).read().splitlines()
        want = f"odyssey: stopped by {sig.name}; its child processes stop with it"
        if lines != [want]:
            problems.append(f"{label}: stderr {lines}, expected ['{want}']")
    left = left_in_group(proc.pid)
    while left and time.monotonic() - killed < GRACE_S:
        time.sleep(0.05)
        left = left_in_group(proc.pid)
    if left:
        problems.append(f"{label}: processes {left} still running {GRACE_S:.0f} s after the signal")
    return problems


def cleanup():
    for pgid in groups:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    for name in os.listdir(TMP):
        os.remove(os.path.join(TMP, name))
    os.rmdir(TMP)


def main():
    # ctest's timeout or a Ctrl-C must still reach the cleanup below.
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, lambda number, frame: sys.exit(128 + number))
    problems = []
    try:
        for name, args, depth in COMMANDS:
            for sig in SIGNALS:
                found = check(name, args, depth, sig)
                print(f"{'FAIL' if found else 'ok  '} {name}: {sig.name}")
                problems += found
    finally:
        cleanup()
    for p in problems:
        print("  " + p)
    print(f"interrupt: {len(COMMANDS) * len(SIGNALS)} cases, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
