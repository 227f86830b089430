#!/usr/bin/env python3
"""A killed odyssey leaves nothing running.

Starts `run`, `sweep`, `plan` and `regress` on work that lasts minutes, waits until their
simulations have run in child processes for a few seconds, then stops the odyssey process with SIGTERM, SIGINT and
SIGKILL in turn (and, where mpirun is found, `mpirun ... sweep --mpi` with SIGKILL). Requires that it exits within 2 s (SIGTERM and SIGINT: exit code 128 + signal and
one line on stderr) and that no process it started is left 2 s after the signal. Each odyssey runs
in a process group of its own; whatever is left of it (its group, and every process seen below it)
is killed at the end, pass or fail.

Usage: tests/interrupt/run.py PATH/TO/odyssey   (from the repository root)
"""
import ctypes
import os
import shutil
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

# A simulation that runs for minutes: Llama 3 405B at full fidelity (16,384 GPUs simulated), as a
# scenario file for regress and as a one-point sweep.
LONG = "scenarios/llama3-405b-h100-roce.yaml"
with open(LONG) as f, open(f"{TMP}/long.yaml", "w") as out:
    out.write(f.read().replace("fidelity: fast", "fidelity: full"))
with open(f"{TMP}/long-sweep.yaml", "w") as out:
    out.write(f"scenario: {os.path.abspath(LONG)}\npoints:\n  - {{simulation.fidelity: full}}\n")

# (name, command, depth of the process tree that shows the simulation running). `plan` skips the
# fast stage (a second or two per candidate) and simulates the screen's best at full fidelity.
COMMANDS = [
    ("run", ["run", LONG, "--set", "simulation.fidelity=full"], 1),
    ("sweep", ["sweep", f"{TMP}/long-sweep.yaml", "--out", f"{TMP}/rows.csv", "--jobs", "1", "--no-progress"], 2),
    ("plan", ["plan", LONG, "--fast", "0", "--full", "1", "--jobs", "1"], 2),
    ("regress", ["regress", "--update", "--baseline", f"{TMP}/baseline.yaml", "--jobs", "1", f"{TMP}/long.yaml"], 2),
]
SIGNALS = [signal.SIGTERM, signal.SIGINT, signal.SIGKILL]
# A simulation process this old is a long one: one that ends of itself within the 2 s the test
# allows would hide a process left running.
MIN_AGE_S = 2.5
# Under mpirun (where Open MPI is installed and this odyssey has MPI support): ranks sit in process
# groups of their own, below mpirun; killed, mpirun must take them with it.
MPIRUN = shutil.which("mpirun")
MPI_SWEEP = ["--oversubscribe", "--allow-run-as-root", "-n", "2", ODYSSEY, "sweep", f"{TMP}/long-sweep.yaml",
             "--out", f"{TMP}/rows.csv", "--mpi", "--jobs", "1", "--no-progress"]

groups = []  # process groups started here: each odyssey's pid
seen = {}  # every process seen below them: pid -> start time (a pid may be reused once it ends)


def processes():
    """pid -> (ppid, pgid, state, start time) of every process."""
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
        out[int(entry)] = (int(fields[1]), int(fields[2]), fields[0], int(fields[19]))
    return out


def descendants(root, table):
    """pid -> start time of every process below `root`."""
    found, level = {}, {root}
    while level:
        level = {p for p, (ppid, _, _, _) in table.items() if ppid in level}
        found.update({p: table[p][3] for p in level})
    return found


def running(pids):
    """Those of `pids` (pid -> start time) that still run: the same processes, not zombies."""
    table = processes()
    return sorted(p for p, start in pids.items() if p in table and table[p][3] == start and table[p][2] not in "ZX")


def simulating(root, depth, table):
    """Whether `root` has a live descendant `depth` generations down that has run MIN_AGE_S."""
    level = {root}
    for _ in range(depth):
        level = {p for p, (ppid, _, state, _) in table.items() if ppid in level and state not in "ZX"}
    with open("/proc/uptime") as f:
        now = float(f.read().split()[0])
    ticks = os.sysconf("SC_CLK_TCK")
    return any(now - table[p][3] / ticks >= MIN_AGE_S for p in level)


def left_in_group(pgid):
    return sorted(p for p, (_, group, state, _) in processes().items() if group == pgid and state not in "ZX")


def die_with_this_test():
    # Should this script itself be killed, the odyssey under test goes too.
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def check(name, args, depth, sig, launcher=None):
    label = f"{name} {sig.name}"
    err_path = os.path.join(TMP, "stderr")
    if os.path.exists(f"{TMP}/rows.csv"):
        os.remove(f"{TMP}/rows.csv")  # a sweep resumes: each case starts it afresh
    with open(err_path, "w") as err:
        proc = subprocess.Popen([launcher or ODYSSEY, *args], stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=True, preexec_fn=die_with_this_test)
    groups.append(proc.pid)
    deadline = time.monotonic() + 120
    while not simulating(proc.pid, depth, processes()):
        seen.update(descendants(proc.pid, processes()))
        if proc.poll() is not None:
            if launcher:
                return None  # Open MPI cannot start ranks here: nothing to test
            return [f"{label}: odyssey ended (exit code {proc.returncode}) before its simulations started: "
                    + open(err_path).read()[-400:]]
        if time.monotonic() > deadline:
            return [f"{label}: no simulation process after 120 s"]
        time.sleep(0.05)
    tracked = descendants(proc.pid, processes())
    seen.update(tracked)
    problems = []
    os.kill(proc.pid, sig)
    killed = time.monotonic()
    try:
        rc = proc.wait(timeout=GRACE_S)
    except subprocess.TimeoutExpired:
        rc = None
        problems.append(f"{label}: odyssey still running {GRACE_S:.0f} s after the signal")
    expected = -signal.SIGKILL if sig == signal.SIGKILL else 128 + sig
    if rc is not None and rc != expected and not launcher:
        problems.append(f"{label}: exit code {rc}, expected {expected}")
    if sig != signal.SIGKILL and not launcher:
        lines = open(err_path).read().splitlines()
        want = f"odyssey: stopped by {sig.name}; its child processes stop with it"
        if lines != [want]:
            problems.append(f"{label}: stderr {lines}, expected ['{want}']")
    def left():
        return sorted(set(left_in_group(proc.pid)) | set(running(tracked)))
    still = left()
    while still and time.monotonic() - killed < GRACE_S:
        time.sleep(0.05)
        still = left()
    if still:
        problems.append(f"{label}: processes {still} still running {GRACE_S:.0f} s after the signal")
    return problems


def cleanup():
    for pgid in groups:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    for pid in running(seen):
        try:
            os.kill(pid, signal.SIGKILL)
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
    cases = 0
    try:
        for name, args, depth in COMMANDS:
            for sig in SIGNALS:
                found = check(name, args, depth, sig)
                print(f"{'FAIL' if found else 'ok  '} {name}: {sig.name}")
                problems += found
                cases += 1
        if MPIRUN:
            # mpirun -> rank -> point -> simulation; SIGKILL, which mpirun cannot pass on.
            found = check("mpirun sweep --mpi", MPI_SWEEP, 3, signal.SIGKILL, launcher=MPIRUN)
            print(f"{'skip' if found is None else 'FAIL' if found else 'ok  '} mpirun sweep --mpi: SIGKILL"
                  + (" (Open MPI could not start ranks here)" if found is None else ""))
            problems += found or []
            cases += found is not None
    finally:
        cleanup()
    for p in problems:
        print("  " + p)
    print(f"interrupt: {cases} cases, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
