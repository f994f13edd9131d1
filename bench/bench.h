/* bench/bench.h — benchmarks run by `rangekv bench ...` (never by tests).
 * Each prints informational lines, then ONE final machine-readable line
 * whose exact shape other tools parse (see each function). */
#ifndef RK_BENCH_H
#define RK_BENCH_H

#include <stddef.h>
#include <stdint.h>

typedef struct bench_fsync_opts {
  uint64_t bytes;  /* per write (default 4096) */
  double seconds;  /* default 5 */
  const char *dir; /* a scratch dir is made inside it (default $TMPDIR or /tmp) */
  /* > 0: the ideal group commit instead of fixed-size syncs (below) */
  uint64_t rate;        /* entries/s arriving on a fixed schedule */
  uint64_t entry_bytes; /* payload per entry (default 128) */
  uint64_t in_flight;   /* > 0: the ideal commit through io_uring, this many syncs at once */
} bench_fsync_opts;

/* Raw single-threaded pwrite + fdatasync loop on one pre-written file.
 * Before the last line: "fsync: ops=N p999_us=C max_us=M over_1ms_left_pct=P1
 * over_2ms_left_pct=P2" — the share of the run during which the sync in
 * progress still had more than 1 (2) ms to go. An append arriving then
 * cannot be durable within that time whatever a WAL does (the device runs
 * one cache flush at a time), so P2 bounds from below the share of appends
 * slower than 2 ms on this disk at that time.
 * Last line: "fsync: ops_per_sec=X p50_us=A p99_us=B". Returns 0 or an RK_ code.
 *
 * With rate > 0 it is instead the ideal group commit on this disk: entries
 * arrive at `rate` per second on a fixed schedule, and each sync writes, in
 * one pwrite, every entry that arrived while the previous one ran (framed as
 * the WAL frames them: a batch header, an entry header each), then
 * fdatasyncs; no CPU is spent per entry. An entry's latency is its arrival
 * to the end of the sync that carries it. This is the best any WAL that runs
 * one sync at a time can do at that rate on this disk, to set `bench wal
 * --rate` against. An extra line before the last: "fsync: ideal_rate=R
 * entry_bytes=B bytes_per_sync=S ideal_p50_us=A ideal_p99_us=B
 * ideal_p999_us=C ideal_over_2ms_pct=P"; the last line's figures are then
 * per sync.
 *
 * With in_flight K > 0 the ideal commit runs through io_uring with up to K
 * syncs at once (each a write linked to an fdatasync of its range, started
 * as soon as a slot is free and an entry waits; K = 1 is the same schedule
 * as without it). Unlike the WAL it sets no IOSQE_ASYNC (the WAL's loop must
 * never block in a write; this thread has nothing else to do) and syncs the
 * write's range, not the whole file. A sync's entries count
 * as durable once it and every earlier sync have finished, as a WAL that
 * overlapped its syncs could acknowledge them. It answers whether such a
 * WAL would have a lower floor on this disk than one sync at a time. */
int bench_fsync(const bench_fsync_opts *o);

typedef struct bench_wal_opts {
  uint64_t groups;      /* Raft groups written to */
  uint64_t entry_bytes; /* payload per entry */
  double seconds;
  uint64_t window_us; /* WAL batch window */
  uint64_t writers;   /* closed loop: appends outstanding at any time (default 256) */
  uint64_t rate;      /* > 0: open loop at this many entries/s instead of writers */
  /* zero-filled spare segments made at open (default 4, the WAL's default
   * recycle_segments): a node has that many recycled spares once it has
   * written and purged its first segments; 0 measures a fresh directory */
  uint64_t prefill_segments;
  /* the same load runs this long before the measured `seconds` start; its
   * entries are reported on their own line, not in the last line's figures
   * (default 0: measure from the WAL's open) */
  double warmup_seconds;
  int per_second; /* also print each measured second's figures */
  const char *dir;
} bench_wal_opts;

/* Last line: "wal: entries_per_sec=X mb_per_sec=Y fsyncs_per_sec=Z
 * entries_per_fsync=W p50_us=A p99_us=B p999_us=C" (one line). Before it,
 * with a warm-up, "wal: warmup entries=N over_2ms_pct=P max_us=M", and with
 * per_second one such line per second ("wal: second=K ..."), by the second
 * an entry was issued in. The last line's latencies run from an entry's
 * place in the schedule (open loop; no coordinated omission: the
 * generator's own lateness counts) or its append (closed loop); the open
 * loop also prints "wal: from_append p50_us=A p99_us=B p999_us=C", from the
 * eng_wal_append call itself. */
int bench_wal(const bench_wal_opts *o);

typedef struct bench_recover_opts {
  uint64_t mib;         /* WAL size to build (default 1024) */
  uint64_t entry_bytes; /* default 128 */
  uint64_t groups;      /* default 1000 */
  const char *dir;
} bench_recover_opts;

/* Builds a WAL of ~mib MiB, closes it, then times eng_wal_open() twice:
 * with the page cache dropped for the segments (posix_fadvise DONTNEED) and
 * warm. Last line: "recover: bytes=N entries=E cold_seconds=C warm_seconds=W
 * cold_mb_per_sec=M". */
int bench_recover(const bench_recover_opts *o);

typedef struct bench_host_opts {
  uint64_t groups;    /* groups of 3 replicas over 3 hosts (default 10000) */
  double sim_seconds; /* simulated seconds of idle ticking (default 60) */
  uint64_t tick_ms;   /* simulated milliseconds per tick (default 100) */
} bench_host_opts;

/* Idle and busy cost of the multi-raft host (multiraft/hostmem.h cluster).
 * Last line: "host: groups=G idle_cpu_us_per_sim_sec=X busy_tick_us=Y
 * quiesced=Q bytes_per_idle_group=B". Returns 0 or an RK_ code. */
int bench_host(const bench_host_opts *o);

/* helpers (bench_util.c) */
char *bench_scratch_dir(const char *parent); /* mkdtemp; NULL on error (printed) */
void bench_rmtree(const char *dir);
/* Percentile p in [0,1] of v[0..n) (sorted in place on first call). */
uint64_t bench_percentile(uint64_t *v, size_t n, double p, int *sorted);

/* ---- bench kv (bench_kv.c): a closed-loop workload through the client ---- */

#include <signal.h>
#include <stdio.h>

#define BENCH_KV_KEY_LEN 16 /* "%016llx" of a hash: spreads over the hex split */

typedef struct bench_kv_opts {
  const char *endpoints; /* "host:port,..." */
  uint64_t clients;      /* threads, one rkc_client each (default 16) */
  uint64_t value_bytes;  /* default 128 */
  double seconds;        /* <= 0: until *stop */
  double read_ratio;     /* in [0, 1] (default 0.9) */
  uint64_t keys;         /* key space (default 100000) */
  double zipf;           /* 0: uniform; else theta in (0, 1) */
  const char *json;      /* write the results as JSON here (bench_kv only) */
  uint64_t seed;
  uint64_t timeout_ms;         /* per-call deadline (0: the client default) */
  FILE *progress;              /* live line ~1/s (NULL: none) */
  int progress_tty;            /* rewrite one line with \r instead of one line per update */
  int verbose_errors;          /* print every failed operation to stderr */
  volatile sig_atomic_t *stop; /* set by a signal handler to end early */
} bench_kv_opts;

typedef struct bench_kv_range {
  uint64_t range_id;
  uint32_t leader; /* at the end of the run, 0 = unknown */
  uint64_t ops, errors, p50_us, p99_us;
  double ops_per_sec;
} bench_kv_range;

typedef struct bench_kv_result {
  double seconds, ops_per_sec;
  uint64_t ops, errors, unknown, reads, writes, p50_us, p99_us, p999_us;
  bench_kv_range *ranges; /* by range id - 1 */
  size_t nranges;
} bench_kv_result;

/* The key of key number i (BENCH_KV_KEY_LEN lowercase hex digits + NUL). */
void bench_kv_key(uint64_t i, char out[BENCH_KV_KEY_LEN + 1]);
/* Runs the workload; fills *r (free with bench_kv_result_free). */
int bench_kv_run(const bench_kv_opts *o, bench_kv_result *r);
void bench_kv_result_free(bench_kv_result *r);
/* The per-range table: range, leader, ops, ops/s, p50, p99, errors. */
void bench_kv_print_ranges(FILE *f, const bench_kv_result *r);
/* `rangekv bench kv`. Last line: "bench: ops=N ops_per_sec=X p50_us=A
 * p99_us=B p999_us=C errors=E". */
int bench_kv(const bench_kv_opts *o);

#endif
