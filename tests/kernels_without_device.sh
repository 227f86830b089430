#!/usr/bin/env bash
# Every calibration benchmark, run where no CUDA device is visible, must stop at once with one
# line "NAME: error: no CUDA device (...)" on stderr, exit code 3, and no result file.
# Usage: tests/kernels_without_device.sh BINARY...   (CTest runs it with CUDA_VISIBLE_DEVICES="")
set -u
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
for bin in "$@"; do
  name=$(basename "$bin")
  "$bin" --out "$tmp/$name.json" --quick >"$tmp/out" 2>"$tmp/err"
  rc=$?
  problems=()
  [[ $rc -eq 3 ]] || problems+=("exit code $rc, expected 3")
  [[ $(wc -l <"$tmp/err") -eq 1 ]] || problems+=("stderr has $(wc -l <"$tmp/err") lines, expected 1")
  grep -q "^$name: error: no CUDA device (cudaGetDeviceCount: " "$tmp/err" || problems+=("message: $(head -c 300 "$tmp/err")")
  [[ -e $tmp/$name.json ]] && problems+=("wrote a result file")
  if ((${#problems[@]})); then
    fail=1
    echo "FAIL $name"
    for p in "${problems[@]}"; do echo "  $p"; done
  else
    echo "ok   $name: $(cat "$tmp/err")"
  fi
done
exit $fail
