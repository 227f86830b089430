#!/usr/bin/env bash
# odyssey regress: the committed baseline holds (the CI guard), the same build gives the same
# numbers to the last digit (--update on a copy rewrites it byte for byte), a slower iteration
# is caught, a faster one is not a failure, a rejected baseline is never overwritten, a scenario
# that stops fitting in GPU memory fails, and a baseline that cannot be found or written is
# reported before anything simulates, saying where it looked.
# Usage: tests/regress/run.sh PATH/TO/odyssey
set -u
odyssey=$(realpath "${1:?usage: tests/regress/run.sh PATH/TO/odyssey}")
cd "$(dirname "$0")/../.." || exit 1
baseline=tests/regress/baseline.yaml
quick=scenarios/mixtral-8x7b-dgx-h100.yaml
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
source tests/check.sh

"$odyssey" regress >"$tmp/all.md"
check "every scenario matches the baseline" 0 $? "0 regressions" "$tmp/all.md"
cat "$tmp/all.md"

cp "$baseline" "$tmp/copy.yaml"
"$odyssey" regress --update --baseline "$tmp/copy.yaml" "$quick" >/dev/null
check "--update rewrites the baseline digit for digit" 0 $?
cmp -s "$baseline" "$tmp/copy.yaml" || { echo "FAIL --update changed the baseline:"; diff "$baseline" "$tmp/copy.yaml"; fail=1; }

# The baseline says the iteration took 10% less time than it does now: a regression.
python3 - "$baseline" "$tmp/slower.yaml" "$tmp/faster.yaml" "$quick" <<'PY'
import sys
lines = open(sys.argv[1]).read().splitlines(keepends=True)
for out, factor in ((sys.argv[2], 0.9), (sys.argv[3], 1.1)):
    inside = False
    with open(out, "w") as f:
        for line in lines:
            if line.strip().startswith("- file:"):
                inside = line.strip() == f"- file: {sys.argv[4]}"
            if inside and line.strip().startswith("iteration_time_s:"):
                key, value = line.split(":")
                line = f"{key}: {float(value) * factor!r}\n"
            f.write(line)
PY
"$odyssey" regress --baseline "$tmp/slower.yaml" "$quick" >"$tmp/slower.md"
check "an iteration 11% slower is a regression" 1 $? "iteration_time_s .*REGRESSION" "$tmp/slower.md"
"$odyssey" regress --baseline "$tmp/faster.yaml" "$quick" >"$tmp/faster.md"
check "an iteration 9% faster is an improvement, not a failure" 0 $? "iteration_time_s .*improved" "$tmp/faster.md"

# Bad baselines: exit 2 and the file untouched, even with --update.
for bad in tests/errors/regress-old-schema.yaml tests/errors/regress-missing-scenario.yaml; do
  cp "$bad" "$tmp/bad.yaml"
  "$odyssey" regress --update --baseline "$tmp/bad.yaml" "$quick" >/dev/null 2>&1
  rc=$?
  check "$(basename "$bad") is rejected" 2 $rc
  cmp -s "$bad" "$tmp/bad.yaml" || { echo "FAIL $(basename "$bad") was overwritten"; fail=1; }
done
# A scenario that fit in GPU memory and no longer does fails, whatever the tolerances: here the
# GPU's memory shrinks under the same layout (same figures, the fit alone changes).
sed 's|^machine: dgx-h100-superpod|machine: {preset: dgx-h100-superpod, gpu: {memory: "80 GiB"}}|' "$quick" >"$tmp/tight.yaml"
"$odyssey" regress --update --baseline "$tmp/fit.yaml" "$tmp/tight.yaml" >/dev/null
check "--update records whether a scenario fits" 0 $? "fits_memory: true" "$tmp/fit.yaml"
sed -i 's|"80 GiB"|"40 GiB"|' "$tmp/tight.yaml"
"$odyssey" regress --baseline "$tmp/fit.yaml" "$tmp/tight.yaml" >"$tmp/tight.md"
check "a scenario that no longer fits in GPU memory is a regression" 1 $? "fits_memory | fits | does not fit .*REGRESSION" "$tmp/tight.md"

# Outside the repository root: the default baseline is relative to the working directory; the
# message says where it looked. --update into a folder that does not exist fails before
# simulating anything (nothing on stdout) and says how to create it.
mkdir "$tmp/elsewhere"
here=$(cd "$tmp/elsewhere" && pwd -P)
root=$(pwd -P)
(cd "$tmp/elsewhere" && "$odyssey" regress >"$tmp/out" 2>"$tmp/err")
check "outside the root, the missing default baseline names where it looked" 2 $? \
  "looked for $here/tests/regress/baseline.yaml (relative to the working directory; run odyssey regress from the repository root" "$tmp/err"
(cd "$tmp/elsewhere" && "$odyssey" regress --update --baseline ci/odyssey-baseline.yaml --scenarios "$root/scenarios" >"$tmp/out" 2>"$tmp/err")
check "--update into a missing folder fails first, saying how to create it" 2 $? \
  "folder 'ci' does not exist in the working directory $here (create it first: mkdir -p ci)" "$tmp/err"
[[ -s $tmp/out ]] && { echo "FAIL --update into a missing folder simulated first:"; cat "$tmp/out"; fail=1; }
exit $fail
