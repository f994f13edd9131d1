#!/usr/bin/env bash
# bench/etcd-compare.sh [SECONDS] — writes with fsync on, side by side on
# this machine: a 3-member etcd cluster (Debian's etcd-server, installed if
# missing) under etcd's own `etcdctl check perf`, and a 3-node rangekv
# cluster under `rangekv bench kv` (100% writes). Both run on 127.0.0.1 with
# fresh ports and temp dirs; every process started is stopped by PID.
# Needs a built rangekv (RANGEKV=path, default build/release-gcc/rangekv).
#
# Last lines:
#   etcd: load=L ... (etcdctl's own summary lines)
#   rangekv: ranges=R clients=C ops_per_sec=X p50_us=A p99_us=B
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
secs="${1:-10}"
bin="${RANGEKV:-$root/build/release-gcc/rangekv}"
[ -x "$bin" ] || { echo "etcd-compare: no rangekv at $bin (build first)" >&2; exit 2; }
if ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends etcd-server etcd-client >/dev/null
fi
dir=$(mktemp -d /tmp/rangekv-etcd.XXXXXX)
pids=()
stop_all() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
  pids=()
}
trap 'stop_all; rm -rf "$dir"' EXIT INT TERM
base=$((21000 + RANDOM % 20000))

# ---- etcd: 3 members --------------------------------------------------------------
cl=""
for i in 1 2 3; do cl="$cl${cl:+,}e$i=http://127.0.0.1:$((base + i))"; done
eps=""
for i in 1 2 3; do
  etcd --name "e$i" --data-dir "$dir/e$i" \
    --listen-peer-urls "http://127.0.0.1:$((base + i))" \
    --initial-advertise-peer-urls "http://127.0.0.1:$((base + i))" \
    --listen-client-urls "http://127.0.0.1:$((base + 10 + i))" \
    --advertise-client-urls "http://127.0.0.1:$((base + 10 + i))" \
    --initial-cluster "$cl" --initial-cluster-state new \
    --initial-cluster-token "cmp-$base" >"$dir/e$i.log" 2>&1 &
  pids+=($!)
  eps="$eps${eps:+,}127.0.0.1:$((base + 10 + i))"
done
deadline=$((SECONDS + 60))
until ETCDCTL_API=3 etcdctl --endpoints "$eps" endpoint health >/dev/null 2>&1; do
  [ $SECONDS -lt $deadline ] || { echo "etcd-compare: etcd did not become healthy" >&2; exit 1; }
  sleep 0.5
done
for load in s m l; do
  echo "== etcdctl check perf --load=$load"
  ETCDCTL_API=3 etcdctl --endpoints "$eps" check perf --load="$load" 2>&1 | tr '\r' '\n' |
    grep -E "PASS|FAIL|Slowest|Stddev|Throughput" | sed -E "s/.*(PASS|FAIL)/\1/; s/^/etcd: load=$load /" || true
done
stop_all

# ---- rangekv: 3 nodes --------------------------------------------------------------
for ranges in 1 64; do
  rb=$((base + 100 + ranges))
  rcl="1=127.0.0.1:$rb,2=127.0.0.1:$((rb + 1)),3=127.0.0.1:$((rb + 2))"
  reps="127.0.0.1:$((rb + 10)),127.0.0.1:$((rb + 11)),127.0.0.1:$((rb + 12))"
  for i in 1 2 3; do
    "$bin" start --id "$i" --listen "127.0.0.1:$((rb + i - 1))" \
      --client-listen "127.0.0.1:$((rb + 9 + i))" --initial-cluster "$rcl" \
      --data-dir "$dir/r$ranges-$i" --ranges "$ranges" >"$dir/r$i.out" 2>"$dir/r$i.err" &
    pids+=($!)
  done
  deadline=$((SECONDS + 60))
  for i in 1 2 3; do
    until grep -q ready "$dir/r$i.out" 2>/dev/null; do
      [ $SECONDS -lt $deadline ] || { echo "etcd-compare: rangekv not ready" >&2; exit 1; }
      sleep 0.2
    done
  done
  out=$("$bin" bench kv --endpoints "$reps" --clients 64 --value-bytes 128 --seconds "$secs" \
    --read-ratio 0 | tail -1)
  echo "rangekv: ranges=$ranges clients=64 value_bytes=128 writes=100% $out"
  stop_all
done
