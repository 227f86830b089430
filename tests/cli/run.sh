#!/usr/bin/env bash
# Command-line behaviour beyond bad input (tests/errors) that users and CI scripts rely on:
# `validate` warns about a layout that does not fit in GPU memory but passes it (exit 0,
# `--strict` makes it an error, an errors/ case), and `sweep` without --out writes
# <sweep name>.csv in the working directory and says so.
# Usage: tests/cli/run.sh PATH/TO/odyssey
set -u
odyssey=$(realpath "${1:?usage: tests/cli/run.sh PATH/TO/odyssey}")
cd "$(dirname "$0")/../.." || exit 1
root=$(pwd -P)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
source tests/check.sh

"$odyssey" validate tests/errors/validate-strict-does-not-fit.yaml >"$tmp/out" 2>"$tmp/err"
check "validate passes a layout that does not fit" 0 $? "^tests/errors/validate-strict-does-not-fit.yaml: warning: the layout does not fit in GPU memory: each GPU needs" "$tmp/err"
[[ $(wc -l <"$tmp/err") -eq 1 ]] || { echo "FAIL the warning is not one line:"; cat "$tmp/err"; fail=1; }
grep -q "^name: does-not-fit" "$tmp/out" || { echo "FAIL validate did not print the scenario"; fail=1; }
"$odyssey" validate scenarios/mixtral-8x7b-dgx-h100.yaml --strict >"$tmp/out" 2>"$tmp/err"
check "validate --strict passes a layout that fits, silently" 0 $?
[[ -s $tmp/err ]] && { echo "FAIL validate --strict wrote to stderr:"; cat "$tmp/err"; fail=1; }

# A one-point sweep of the sample sweeps' base scenario, with no 'out' and no --out.
cat >"$tmp/one-point.yaml" <<YAML
scenario: $root/scenarios/sweeps/gpt3-175b-dgx-a100.yaml
points:
  - {parallelism.dp: 8}
YAML
(cd "$tmp" && "$odyssey" sweep one-point.yaml --no-progress >"$tmp/out" 2>"$tmp/err")
check "sweep without --out says where the rows go" 0 $? "no --out and no 'out' in one-point.yaml: the rows go to one-point.csv" "$tmp/err"
check "sweep without --out says where the results are" 0 0 "results in one-point.csv" "$tmp/err"
[[ $(wc -l 2>/dev/null <"$tmp/one-point.csv") -eq 2 ]] || { echo "FAIL no one-point.csv with a header and one row"; fail=1; }
exit $fail
