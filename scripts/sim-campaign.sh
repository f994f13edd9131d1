#!/usr/bin/env bash
# scripts/sim-campaign.sh — a long simulator campaign, parallel over cores.
#
#   scripts/sim-campaign.sh [SEEDS] [FIRST] [-- extra rangekv sim flags]
#
# Runs seeds FIRST..FIRST+SEEDS-1 (default 10000 seeds from 1) of
# `rangekv sim --faults all` in chunks of 100 seeds, one `rangekv sim` per
# chunk, with `xargs -P $(nproc)` (override with JOBS=N). Uses the binary at
# $RANGEKV, else build/release-gcc/rangekv (built by scripts/build.sh).
# Every failing seed is listed with its invariant; replay one with
#   rangekv sim --seed S [same flags] --trace trace.txt
# The last line is the summary:
#   campaign: seeds=N events=E violations=V failing=S1,S2,... wall=Ts events_per_sec=R
# (failing lists the first 20 failing seeds).
# Exit 0 when no seed violated an invariant, 1 otherwise.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
seeds="${1:-10000}"
first="${2:-1}"
shift $(( $# >= 2 ? 2 : $# )) || true
if [ "${1:-}" = "--" ]; then shift; fi
extra=("$@")
bin="${RANGEKV:-$root/build/release-gcc/rangekv}"
if [ ! -x "$bin" ]; then
  bin="$("$root/scripts/build.sh" release gcc | tail -1)/rangekv"
fi
jobs="${JOBS:-$(nproc)}"
chunk=100
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
start=$(date +%s)

# One line per chunk: its first seed and size.
s="$first"
end=$(( first + seeds ))
: > "$out/chunks"
while [ "$s" -lt "$end" ]; do
  n=$(( end - s < chunk ? end - s : chunk ))
  echo "$s $n" >> "$out/chunks"
  s=$(( s + n ))
done

export bin out
# shellcheck disable=SC2016
xargs -P "$jobs" -L 1 sh -c '"$bin" sim --seeds "$1" --first "$0" --faults all '"${extra[*]:-}"' > "$out/chunk-$0.txt" 2>&1 || true' < "$out/chunks"

total_seeds=0 total_events=0 total_viol=0
failing=""
nfail=0
for f in "$out"/chunk-*.txt; do
  last=$(tail -1 "$f")
  case "$last" in
    "sim: seeds="*) ;;
    *) echo "campaign: chunk $(basename "$f") did not finish: $last" >&2; total_viol=$((total_viol + 1)); continue ;;
  esac
  n=$(echo "$last" | sed -n 's/.*seeds=\([0-9]*\).*/\1/p')
  e=$(echo "$last" | sed -n 's/.*events=\([0-9]*\).*/\1/p')
  v=$(echo "$last" | sed -n 's/.*violations=\([0-9]*\).*/\1/p')
  total_seeds=$((total_seeds + n))
  total_events=$((total_events + e))
  total_viol=$((total_viol + v))
  while read -r line; do
    seed=$(echo "$line" | sed -n 's/^sim: seed=\([0-9]*\) FAILED invariant=\(.*\)$/\1/p')
    inv=$(echo "$line" | sed -n 's/^sim: seed=\([0-9]*\) FAILED invariant=\(.*\)$/\2/p')
    echo "campaign: seed $seed violated $inv"
    nfail=$((nfail + 1))
    if [ "$nfail" -le 20 ]; then failing="${failing:+$failing,}$seed"; fi
  done < <(grep '^sim: seed=[0-9]* FAILED' "$f" || true)
done
if [ "$nfail" -gt 20 ]; then failing="$failing,..."; fi
wall=$(( $(date +%s) - start ))
[ "$wall" -gt 0 ] || wall=1
echo "campaign: seeds=$total_seeds events=$total_events violations=$total_viol failing=${failing:-none} wall=${wall}s events_per_sec=$(( total_events / wall ))"
[ "$total_viol" -eq 0 ]
