#!/usr/bin/env bash
# scripts/test.sh BUILD_DIR — runs every Criterion test binary the build made
# (listed in BUILD_DIR/test-binaries.txt), prints each one's synthesis line,
# then one total line "N passed, N failed". Exit status 0 only if all passed.
set -uo pipefail
dir="$1"
total_pass=0
total_fail=0
status=0
while read -r bin; do
  [ -n "$bin" ] || continue
  log="$dir/$bin.log"
  echo "== $bin"
  "$dir/$bin" --jobs "$(nproc)" >"$log" 2>&1
  rc=$?
  synth=$(grep -a "Synthesis:" "$log" | tail -1)
  if [ -z "$synth" ]; then
    echo "   (no synthesis line; exit $rc)"; tail -20 "$log"; status=1; total_fail=$((total_fail + 1)); continue
  fi
  echo "   ${synth#*\[====\] }"
  pass=$(echo "$synth" | sed -n 's/.*Passing: \([0-9]*\).*/\1/p')
  fail=$(echo "$synth" | sed -n 's/.*Failing: \([0-9]*\).*/\1/p')
  crash=$(echo "$synth" | sed -n 's/.*Crashing: \([0-9]*\).*/\1/p')
  total_pass=$((total_pass + ${pass:-0}))
  total_fail=$((total_fail + ${fail:-0} + ${crash:-0}))
  if [ "$rc" -ne 0 ] || [ "${fail:-0}" -ne 0 ] || [ "${crash:-0}" -ne 0 ]; then
    status=1
    grep -a -E "FAIL|CRASH|Assertion|invariant" "$log" | head -40
  fi
done < "$dir/test-binaries.txt"
echo "tests: $total_pass passed, $total_fail failed"
exit $status
