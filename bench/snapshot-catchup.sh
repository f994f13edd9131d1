#!/usr/bin/env bash
# bench/snapshot-catchup.sh [KEYS] [VALUE_BYTES] [WRITE_SECONDS] — how long a
# replica compacted past takes to come back through a range snapshot.
# Starts 3 rangekv nodes on 127.0.0.1 with ONE range (so the snapshot is
# the whole data set), --compact-entries 1000 --compact-lag-entries 2000;
# kills node 3 (SIGKILL, by PID); writes for WRITE_SECONDS (default 10)
# with `rangekv bench kv` (16 clients, writes only, KEYS distinct keys,
# default 10000, of VALUE_BYTES, default 1024); restarts node 3 and times
# until its applied index equals node 1's. Prints the snapshot lines of the
# node logs and a last line:
#   snapshot: keys=K value_bytes=B snap_bytes=S chunks=C send_ms=X install_ms=Y catchup_ms=Z
#             max_status_ms=M
# (send_ms: from the leader opening the stream to queueing its last frame;
# install_ms: the receiver's install (intent, SST ingestion, applied index
# and mark, each synced); catchup_ms: from restarting node 3 until its
# applied index equals node 1's; max_status_ms: the slowest `rangekv status`
# round over all nodes meanwhile, which a node whose loop is busy answers
# late).
# Every process it starts is stopped by PID on exit. Needs a built rangekv
# (RANGEKV=path, default build/release-gcc/rangekv).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
keys="${1:-10000}"
vbytes="${2:-1024}"
wsecs="${3:-10}"
bin="${RANGEKV:-$root/build/release-gcc/rangekv}"
[ -x "$bin" ] || { echo "snapshot-catchup: no rangekv at $bin (build first)" >&2; exit 2; }
dir=$(mktemp -d /tmp/rangekv-snap.XXXXXX)
base=$((20000 + RANDOM % 20000))
cl="1=127.0.0.1:$base,2=127.0.0.1:$((base + 1)),3=127.0.0.1:$((base + 2))"
eps="127.0.0.1:$((base + 10)),127.0.0.1:$((base + 11)),127.0.0.1:$((base + 12))"
declare -A pid
cleanup() {
  for p in "${pid[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pid[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
  [ -n "${KEEP:-}" ] && echo "kept $dir" >&2 || rm -rf "$dir"
}
trap cleanup EXIT INT TERM
start() { # start ID: launch node ID and wait (bounded) for its ready line
  local i=$1 before
  before=$(grep -c ready "$dir/out$i" 2>/dev/null || true)
  "$bin" --log-level info start --id "$i" --listen "127.0.0.1:$((base + i - 1))" \
    --client-listen "127.0.0.1:$((base + 9 + i))" --initial-cluster "$cl" \
    --data-dir "$dir/n$i" --ranges 1 --compact-entries 1000 --compact-lag-entries 2000 \
    >>"$dir/out$i" 2>>"$dir/err$i" &
  pid[$i]=$!
  local deadline=$((SECONDS + 60))
  until [ "$(grep -c ready "$dir/out$i" 2>/dev/null || true)" -gt "${before:-0}" ]; do
    [ $SECONDS -lt $deadline ] || { echo "snapshot-catchup: node $i not ready" >&2; exit 1; }
    sleep 0.1
  done
}
applied_of() { # applied_of ID: node ID's applied index (status column 9), or -1
  { RANGEKV_ENDPOINTS="$eps" "$bin" status 2>/dev/null || true; } |
    awk -v id="$1" '$1 == id && $9 ~ /^[0-9]+$/ {print $9; f = 1} END {if (!f) print -1}'
}
for i in 1 2 3; do start "$i"; done
kill -KILL "${pid[3]}"
wait "${pid[3]}" 2>/dev/null || true
unset 'pid[3]'
"$bin" bench kv --endpoints "$eps" --clients 16 --value-bytes "$vbytes" --seconds "$wsecs" \
  --read-ratio 0 --keys "$keys" | tail -1
t0=$(date +%s%N)
start 3
deadline=$((SECONDS + 120))
max_status=0
while :; do
  a1=$(applied_of 1)
  s0=$(date +%s%N)
  a3=$(applied_of 3)
  st_ms=$((($(date +%s%N) - s0) / 1000000))
  [ "$st_ms" -le "$max_status" ] || max_status=$st_ms
  if [ "$a1" -gt 0 ] && [ "$a3" = "$a1" ]; then break; fi
  [ $SECONDS -lt $deadline ] || { echo "snapshot-catchup: node 3 did not catch up" >&2; exit 1; }
  sleep 0.05
done
t1=$(date +%s%N)
grep -h "snapshot at" "$dir"/err* | sed 's/^/  /'
sent=$(grep -h "snapshot at .* sent to node 3" "$dir"/err1 "$dir"/err2 | tail -1 || true)
inst=$(grep -h "installed the snapshot" "$dir/err3" | tail -1 || true)
[ -n "$inst" ] || { echo "snapshot-catchup: node 3 caught up without a snapshot" >&2; exit 1; }
snap_bytes=$(echo "$sent" | sed -n 's/.* keys, \([0-9]*\) bytes.*/\1/p')
chunks=$(echo "$sent" | sed -n 's/.* in \([0-9]*\) chunks.*/\1/p')
send_ms=$(echo "$sent" | sed -n 's/.* chunks, \([0-9.]*\) ms.*/\1/p')
install_ms=$(echo "$inst" | sed -n 's/.* in \([0-9.]*\) ms.*/\1/p')
echo "snapshot: keys=$keys value_bytes=$vbytes snap_bytes=${snap_bytes:-?} chunks=${chunks:-?}" \
  "send_ms=${send_ms:-?} install_ms=${install_ms:-?} catchup_ms=$(((t1 - t0) / 1000000))" \
  "max_status_ms=$max_status"
