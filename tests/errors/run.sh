#!/usr/bin/env bash
# Bad-input cases: for each tests/errors/<name>.expected, runs
#   ODYSSEY validate tests/errors/<name>.yaml [contents of <name>.args]
# from the repository root and requires exit code 2, an empty stdout and exactly one stderr line
# equal to <name>.expected. A case without <name>.yaml tests a missing file.
# Usage: tests/errors/run.sh PATH/TO/odyssey
set -u
odyssey=${1:?usage: tests/errors/run.sh PATH/TO/odyssey}
cd "$(dirname "$0")/../.." || exit 1

pass=0
fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for expected in tests/errors/*.expected; do
  name=$(basename "$expected" .expected)
  args=()
  if [[ -f tests/errors/$name.cmd ]]; then
    # A whole command line (one argument per line), for commands other than validate.
    mapfile -t args < "tests/errors/$name.cmd"
    "$odyssey" "${args[@]}" >"$tmp/out" 2>"$tmp/err"
  else
    if [[ -f tests/errors/$name.args ]]; then read -r -a args < "tests/errors/$name.args"; fi
    "$odyssey" validate "tests/errors/$name.yaml" "${args[@]}" >"$tmp/out" 2>"$tmp/err"
  fi
  rc=$?
  problems=()
  [[ $rc -eq 2 ]] || problems+=("exit code $rc, expected 2")
  [[ -s $tmp/out ]] && problems+=("stdout not empty")
  [[ $(wc -l <"$tmp/err") -eq 1 ]] || problems+=("stderr has $(wc -l <"$tmp/err") lines, expected 1")
  if ! cmp -s "$tmp/err" "$expected"; then
    problems+=("stderr differs: got '$(head -c 400 "$tmp/err")'; expected '$(cat "$expected")'")
  fi
  if [[ ${#problems[@]} -eq 0 ]]; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1))
    echo "FAIL $name"
    for p in "${problems[@]}"; do echo "  $p"; done
  fi
done

echo "errors: $pass passed, $fail failed"
[[ $fail -eq 0 ]]
