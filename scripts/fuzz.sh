#!/usr/bin/env bash
# scripts/fuzz.sh [SECONDS] — builds the libFuzzer targets in fuzz/ with clang
# (ASan + UBSan + fuzzer) and runs each for SECONDS (default 60). The corpus
# lives in build/fuzz-corpus/<target> (never committed). Targets: frames,
# handshake payloads, node-to-node RaftBatch payloads, client requests. Exit non-zero if a
# target finds a crash.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
secs="${1:-60}"
"$root/scripts/setup.sh"
dir="$root/build/fuzz-clang"
gen=()
command -v ninja >/dev/null 2>&1 && gen=(-G Ninja)
CC=clang cmake -S "$root" -B "$dir" "${gen[@]}" -DCMAKE_BUILD_TYPE=Sanitize -DRK_FUZZ=ON >/dev/null
cmake --build "$dir" -j"$(nproc)" >/dev/null
for src in "$root"/fuzz/*.c; do
  t=$(basename "$src" .c)
  corpus="$root/build/fuzz-corpus/$t"
  mkdir -p "$corpus"
  # Seed: a valid handshake frame, so the search starts past the magic.
  printf 'RRK1\x06\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x08\x01\x10\x02\x18\x01' >"$corpus/seed-handshake"
  echo "== $t for ${secs}s"
  (cd "$dir" && "./$t" -max_total_time="$secs" -print_final_stats=1 "$corpus" 2>&1 | tail -12)
done
