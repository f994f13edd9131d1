#!/usr/bin/env bash
# bench/wal-floor.sh [ROUNDS] [RATE...] — the WAL against the disk's own
# floor, minute by minute. Each round: the raw 4 KiB fsync rate, the WAL's
# peak (4096 appends outstanding), then for half of that peak and for each
# RATE (default 500000) the ideal group commit on this disk (`bench fsync
# --rate`, no CPU cost per entry), the WAL at the same rate (`bench wal
# --rate`), then the ideal again: the WAL has an ideal run on each side,
# and the second is not disturbed by the peak's aftermath. ROUNDS
# defaults to 3. The ideal's p99 is the least a WAL that syncs one batch at
# a time could show in the windows next to it (docs/performance.md, "The
# disk's floor at a given rate"). Runs in the
# scratch dir of $TMPDIR (or /tmp); RANGEKV=path picks the binary
# (default build/release-gcc/rangekv). Every WAL run, the peak's too, first
# runs its load for WARMUP seconds (default 2) unmeasured: a fresh WAL's
# first second is not its steady state (bench/bench_wal.c), and the ideal
# has no state to warm. WARMUP=0 measures from the WAL's open.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${RANGEKV:-$root/build/release-gcc/rangekv}"
[ -x "$bin" ] || { echo "wal-floor: no rangekv at $bin (build first)" >&2; exit 2; }
rounds="${1:-3}"
shift || true
rates=("$@")
[ ${#rates[@]} -gt 0 ] || rates=(500000)
wal=(bench wal --groups 1000 --entry-bytes 128 --seconds 10 --warmup-seconds "${WARMUP:-2}")
for round in $(seq 1 "$rounds"); do
  echo "== round $round $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
  "$bin" bench fsync --bytes 4096 --seconds 5 | tail -2
  peak_line=$("$bin" "${wal[@]}" --writers 4096 | tail -1)
  echo "peak $peak_line"
  peak=$(echo "$peak_line" | sed 's/.*entries_per_sec=\([0-9]*\).*/\1/')
  for r in $((peak / 2)) "${rates[@]}"; do
    "$bin" bench fsync --rate "$r" --seconds 10 | grep 'ideal_rate='
    "$bin" "${wal[@]}" --rate "$r" | grep -E 'wal: warmup |from_append|entries_per_sec='
    "$bin" bench fsync --rate "$r" --seconds 10 | grep 'ideal_rate='
  done
done
