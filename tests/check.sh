# Sourced by the script tests: `check NAME EXPECTED_RC ACTUAL_RC [PATTERN FILE]` prints "ok NAME",
# or "FAIL NAME" with the reason (and FILE when PATTERN is missing from it) and sets fail=1.
fail=0
check() {
  if [[ $3 -ne $2 ]]; then echo "FAIL $1: exit code $3, expected $2"; fail=1; return; fi
  if [[ $# -ge 5 ]] && ! grep -q -- "$4" "$5"; then echo "FAIL $1: no '$4' in:"; cat "$5"; fail=1; return; fi
  echo "ok   $1"
}
