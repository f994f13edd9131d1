#!/usr/bin/env bash
# bench/idle-cluster.sh [RANGES] [SECONDS] [on|off] — what an idle cluster
# costs: starts 3 rangekv nodes on 127.0.0.1 with RANGES ranges (default
# 10000), waits until every range has a leader and (with quiescence on) is
# quiesced, then measures each node's CPU% and RSS over SECONDS (default 60)
# of rest. Prints one line per node and a last line:
#   idle: ranges=R quiesce=Q seconds=S cpu_pct_max=X rss_mib_max=Y
# Every process it starts is stopped by PID on exit. Needs a built rangekv
# (RANGEKV=path, default build/release-gcc/rangekv).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
ranges="${1:-10000}"
secs="${2:-60}"
quiesce="${3:-on}"
bin="${RANGEKV:-$root/build/release-gcc/rangekv}"
[ -x "$bin" ] || { echo "idle-cluster: no rangekv at $bin (build first)" >&2; exit 2; }
dir=$(mktemp -d /tmp/rangekv-idle.XXXXXX)
base=$((20000 + RANDOM % 20000))
cl="1=127.0.0.1:$base,2=127.0.0.1:$((base + 1)),3=127.0.0.1:$((base + 2))"
eps="127.0.0.1:$((base + 10)),127.0.0.1:$((base + 11)),127.0.0.1:$((base + 12))"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
  rm -rf "$dir"
}
trap cleanup EXIT INT TERM
for i in 1 2 3; do
  "$bin" start --id "$i" --listen "127.0.0.1:$((base + i - 1))" \
    --client-listen "127.0.0.1:$((base + 9 + i))" --initial-cluster "$cl" \
    --data-dir "$dir/n$i" --ranges "$ranges" --quiesce "$quiesce" \
    >"$dir/out$i" 2>"$dir/err$i" &
  pids+=($!)
done
deadline=$((SECONDS + 120))
for i in 1 2 3; do
  until grep -q ready "$dir/out$i" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || { echo "idle-cluster: node $i not ready" >&2; exit 1; }
    sleep 0.2
  done
done
# Settle: every range has a leader, and (quiescence on) every replica rests.
want=$((ranges * 3))
while :; do
  [ $SECONDS -lt $deadline ] || { echo "idle-cluster: did not settle in time" >&2; break; }
  st=$(RANGEKV_ENDPOINTS="$eps" "$bin" status 2>/dev/null || true)
  leaders=$(echo "$st" | awk '$1 ~ /^[0-9]+$/ {s += $5} END {print s + 0}')
  q=$(echo "$st" | awk '$1 ~ /^[0-9]+$/ {s += $6} END {print s + 0}')
  if [ "$leaders" -ge "$ranges" ] && { [ "$quiesce" = off ] || [ "$q" -ge "$want" ]; }; then break; fi
  sleep 1
done
echo "settled: leaders=$leaders quiesced_replicas=$q of $want"
ticks=$(getconf CLK_TCK)
declare -A c0
for i in 0 1 2; do
  c0[$i]=$(awk '{print $14 + $15}' "/proc/${pids[$i]}/stat")
done
sleep "$secs"
cpu_max=0
rss_max=0
for i in 0 1 2; do
  c1=$(awk '{print $14 + $15}' "/proc/${pids[$i]}/stat")
  rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/${pids[$i]}/status")
  pct=$(awk -v a="${c0[$i]}" -v b="$c1" -v t="$ticks" -v s="$secs" 'BEGIN {printf "%.2f", (b - a) / t / s * 100}')
  rss=$(awk -v k="$rss_kb" 'BEGIN {printf "%.0f", k / 1024}')
  echo "node $((i + 1)): cpu_pct=$pct rss_mib=$rss"
  cpu_max=$(awk -v a="$cpu_max" -v b="$pct" 'BEGIN {print (b > a) ? b : a}')
  rss_max=$(awk -v a="$rss_max" -v b="$rss" 'BEGIN {print (b > a) ? b : a}')
done
echo "idle: ranges=$ranges quiesce=$quiesce seconds=$secs cpu_pct_max=$cpu_max rss_mib_max=$rss_max"
