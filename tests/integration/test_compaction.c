/* Log compaction on real nodes: with a low --compact-entries, the entries
 * every node holds in its logs (status log_entries) stay bounded however
 * much is written; a node that was down meanwhile holds its ranges' logs
 * back (with --compact-lag-entries 0) and catches up from them on return,
 * or (with a lag limit) is compacted past and catches up from snapshots of
 * its ranges; and after kill -9 of every node the data is all there (a
 * restart replays from the state store's applied index over the compacted
 * logs). */
#include "itest.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

#define CP_WRITES 1500
#define CP_VALUE  2048

static void fini(void) { it_fini(); }

/* No .timeout: every wait is bounded, and two suites with a Criterion
 * .timeout running in parallel leak in its runner under LSan. */
TestSuite(compaction, .fini = fini);

static void value_of(char *v, unsigned i) {
  memset(v, 'a' + (char)(i % 26), CP_VALUE);
  snprintf(v, 16, "%u:", i);
  v[strlen(v)] = '-';
  v[CP_VALUE] = '\0';
}

static void write_all(rkc_client *c, const char *tag) {
  static char v[CP_VALUE + 1];
  char k[64];
  for (unsigned i = 0; i < CP_WRITES; i++) {
    it_key(k, sizeof k, tag, i);
    value_of(v, i);
    IT_PUT_OK(c, k, v);
  }
}

static void read_sample(rkc_client *c, const char *tag) {
  static char v[CP_VALUE + 1];
  char k[64];
  for (unsigned i = 0; i < CP_WRITES; i += 37) {
    it_key(k, sizeof k, tag, i);
    value_of(v, i);
    IT_GET_IS(c, k, v);
  }
}

/* Polls the status (every 50 ms, bounded) until every answering node holds
 * at most `max` log entries; returns the largest count seen last. */
static uint64_t wait_log_entries_at_most(rkc_client *c, uint64_t max, unsigned timeout_ms) {
  uint64_t until = itc_now_ns() + (uint64_t)timeout_ms * 1000000u, worst = UINT64_MAX;
  while (itc_now_ns() < until) {
    rkc_node_status *st = NULL;
    size_t n = 0;
    if (rkc_status(c, &st, &n) == RK_OK) {
      worst = 0;
      for (size_t i = 0; i < n; i++)
        if (st[i].err == RK_OK && st[i].log_entries > worst) worst = st[i].log_entries;
    }
    free(st);
    if (worst <= max) return worst;
    itc_sleep_ms(50);
  }
  return worst;
}

/* 8 ranges x (20 entries per compaction step + what arrives between two
 * rounds, which are 1 s apart at 20 ms ticks) stays far below the 1,500
 * writes. */
#define CP_BOUND 600u

/* Every answering node's logs come down to CP_BOUND entries within 20 s. */
static void assert_logs_bounded(rkc_client *c) {
  uint64_t worst = wait_log_entries_at_most(c, CP_BOUND, 20000);
  cr_assert_leq(worst, CP_BOUND, "an answering node still holds %llu log entries",
                (unsigned long long)worst);
}

static void compaction_flags(const char *lag) {
  itc.extra[0] = "--compact-entries";
  itc.extra[1] = "20";
  itc.extra[2] = "--compact-lag-entries";
  itc.extra[3] = lag;
  itc.n_extra = 4;
}

/* Polls the status (every 50 ms, bounded) until node i has applied as much
 * as node `ref` (both answering) and has installed at least min_snaps range
 * snapshots. */
static int wait_caught_up(rkc_client *c, int i, int ref, uint64_t min_snaps, unsigned timeout_ms) {
  uint64_t until = itc_now_ns() + (uint64_t)timeout_ms * 1000000u;
  while (itc_now_ns() < until) {
    rkc_node_status *st = NULL;
    size_t n = 0;
    int ok = 0;
    if (rkc_status(c, &st, &n) == RK_OK && n == 3 && st[i].err == RK_OK && st[ref].err == RK_OK &&
        st[i].have_indexes && st[ref].have_indexes)
      ok = st[i].sum_applied > 0 && st[i].sum_applied == st[ref].sum_applied &&
           st[i].snapshots_installed >= min_snaps;
    free(st);
    if (ok) return 1;
    itc_sleep_ms(50);
  }
  return 0;
}

/* Whether node i reports no staged snapshot bytes within timeout_ms: the
 * accounting of every staged, sealed and installed image came back. */
static int staged_bytes_return_to_zero(rkc_client *c, int i, unsigned timeout_ms) {
  uint64_t until = itc_now_ns() + (uint64_t)timeout_ms * 1000000u;
  for (;;) {
    rkc_node_status *st = NULL;
    size_t n = 0;
    int zero = rkc_status(c, &st, &n) == RK_OK && (size_t)i < n && st[i].err == RK_OK &&
               st[i].snapshot_staged_bytes == 0;
    free(st);
    if (zero) return 1;
    if (itc_now_ns() >= until) return 0;
    itc_sleep_ms(50);
  }
}

/* Whether node i's snapshot staging directory empties within timeout_ms:
 * no staged file outlives its install or its refusal. */
static int staging_empties(int i, unsigned timeout_ms) {
  char path[600];
  snprintf(path, sizeof path, "%s/snap", itc.nodes[i].data_dir);
  uint64_t until = itc_now_ns() + (uint64_t)timeout_ms * 1000000u;
  for (;;) {
    DIR *d = opendir(path);
    cr_assert_not_null(d, "%s exists", path);
    int files = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) files += e->d_name[0] != '.';
    closedir(d);
    if (files == 0) return 1;
    if (itc_now_ns() >= until) return 0;
    itc_sleep_ms(50);
  }
}

/* WAL segments every node made from spare files since it started. */
static uint64_t wal_recycled(rkc_client *c) {
  rkc_node_status *st = NULL;
  size_t n = 0;
  uint64_t sum = 0;
  if (rkc_status(c, &st, &n) == RK_OK)
    for (size_t i = 0; i < n; i++)
      if (st[i].err == RK_OK) sum += st[i].wal_recycled;
  free(st);
  return sum;
}

/* 1 MiB WAL segments (a test hook), so the writes fill several: purge
 * retires the old ones as spares and new segments reuse them, and the
 * restart after kill -9 of every node recovers from recycled segments. */
Test(compaction, old_segments_go_and_every_node_restarts_with_all_data) {
  compaction_flags("0");
  setenv("RK_TEST_WAL_SEGMENT_BYTES", "1048576", 1);
  it_start(3);
  rkc_client *c = it_client(-1, 10000);
  write_all(c, "cp");
  /* Bounded: more writes until a node needed a segment after a purge. */
  for (int round = 0; round < 5 && wal_recycled(c) == 0; round++) write_all(c, "cp");
  cr_assert_gt(wal_recycled(c), 0, "no node reused a retired segment");
  assert_logs_bounded(c);
  rkc_close(c);
  /* Every node dies at once; all come back from the compacted logs. */
  char err[512];
  for (int i = 0; i < 3; i++) itc_kill9(&itc, i);
  for (int i = 0; i < 3; i++) cr_assert_eq(itc_restart(&itc, i, err, sizeof err), 0, "%s", err);
  c = it_client(-1, 10000);
  read_sample(c, "cp");
  rkc_close(c);
}

Test(compaction, a_down_node_holds_its_logs_back_and_catches_up_from_them) {
  compaction_flags("0");
  it_start(3);
  itc_kill9(&itc, 2);
  rkc_client *c = it_client(-1, 10000);
  write_all(c, "dn"); /* the two live nodes are a quorum of every range */
  rkc_close(c);
  char err[512];
  cr_assert_eq(itc_restart(&itc, 2, err, sizeof err), 0, "%s", err);
  /* Node 3 catches up from the others' logs (no snapshots exist): once it
   * has applied what node 1 has, node 1 and 2 may go and node 3 alone with
   * one of them still serves everything. */
  c = it_client(-1, 10000);
  cr_assert(wait_caught_up(c, 2, 0, 0, 20000), "node 3 did not catch up");
  /* And then the logs are compacted everywhere. */
  assert_logs_bounded(c);
  itc_kill9(&itc, 0);
  read_sample(c, "dn");
  rkc_close(c);
}

/* Every "sn" value and no "gone" key, through whichever node leads. */
static void read_everything(rkc_client *c) {
  static char v[CP_VALUE + 1];
  char k[64];
  for (unsigned i = 0; i < CP_WRITES; i++) {
    it_key(k, sizeof k, "sn", i);
    value_of(v, i);
    IT_GET_IS(c, k, v);
  }
  for (unsigned i = 0; i < 200; i++) {
    it_key(k, sizeof k, "gone", i);
    IT_GET_IS(c, k, NULL);
  }
}

/* Node `down` (0-based) dies with node `wipe`, whose data dir is then
 * removed; `wipe` returns empty, so node `serve` — the only one with data —
 * leads every range, serves every read, and rebuilds `wipe` through
 * snapshots. (An empty data dir under an old id is NOT a supported way to
 * replace a machine: the node forgets its votes and what it acknowledged.
 * It is safe here only because `serve` holds everything ever committed and
 * nothing is in flight.) */
static void only_node_serves(int serve, int down, int wipe) {
  char err[512];
  itc_kill9(&itc, down);
  itc_kill9(&itc, wipe);
  cr_assert_eq(itc_wipe(&itc, wipe), 0, "wiping a data dir");
  cr_assert_eq(itc_restart(&itc, wipe, err, sizeof err), 0, "%s", err);
  rkc_client *c = it_client(-1, 10000);
  read_everything(c);
  cr_assert(wait_caught_up(c, wipe, serve, 1, 20000), "node %d was not rebuilt from snapshots",
            wipe + 1);
  rkc_close(c);
  cr_assert_eq(itc_restart(&itc, down, err, sizeof err), 0, "%s", err);
}

/* With a lag limit, a down node no longer pins the logs: the live nodes
 * compact past it while it is away, and it comes back through snapshots of
 * its ranges (streamed in 8 KiB chunks here, so each takes dozens), which
 * also delete what was deleted meanwhile. Its first return dies inside the
 * first step of an install, its second between the two steps of another;
 * each next start repairs that. Then the proof
 * that its data is whole: node 3 alone serves everything while it rebuilds
 * a wiped node 1, and then node 1 alone serves everything while it
 * rebuilds a wiped node 2. */
Test(compaction, a_node_compacted_past_catches_up_from_snapshots) {
  compaction_flags("50");
  setenv("RK_TEST_SNAP_CHUNK_BYTES", "8192", 1);
  it_start(3);
  rkc_client *c = it_client(-1, 10000);
  char k[64];
  for (unsigned i = 0; i < 200; i++) {
    it_key(k, sizeof k, "gone", i);
    IT_PUT_OK(c, k, "soon deleted");
  }
  cr_assert(wait_caught_up(c, 2, 0, 0, 20000), "node 3 did not apply the first writes");
  itc_kill9(&itc, 2);
  for (unsigned i = 0; i < 200; i++) {
    it_key(k, sizeof k, "gone", i);
    int rc = rkc_del(c, k, strlen(k));
    cr_assert_eq(rc, RK_OK, "del %s: %s", k, rk_strerror(rc));
  }
  write_all(c, "sn");
  /* Node 3 is down, and the logs are bounded all the same. */
  assert_logs_bounded(c);
  char err[512];
#ifdef RK_TEST_HOOKS
  /* First return: the node dies inside the first step of its first install
   * (staged file ingested, applied index and mark not yet written). Second
   * return: the start-up finishes that install from the staged file, and
   * the node dies between the two steps of its next install (data durable
   * in the state store, WAL not yet reset). */
  static const char *const points[] = {"snapshot-ingest", "snapshot-state"};
  for (size_t p = 0; p < 2; p++) {
    setenv("RK_TEST_CRASH_POINT", points[p], 1);
    cr_assert_eq(itc_restart(&itc, 2, err, sizeof err), 0, "%s", err);
    unsetenv("RK_TEST_CRASH_POINT");
    int status = 0;
    cr_assert(itc_wait_exit(itc.nodes[2].pid, 20000, &status),
              "node 3 never reached the crash point %s", points[p]);
    itc.nodes[2].pid = 0;
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 86 /* NODE_TEST_CRASH_EXIT */,
              "node 3 ended with status %#x at %s", status, points[p]);
  }
#endif
  /* Last return: the start-up resets that range's log to the snapshot. */
  cr_assert_eq(itc_restart(&itc, 2, err, sizeof err), 0, "%s", err);
  cr_assert(wait_caught_up(c, 2, 0, 1, 20000),
            "node 3 did not catch up through at least one snapshot");
  cr_assert(staging_empties(2, 10000), "node 3 kept staged snapshot files");
  cr_assert(staged_bytes_return_to_zero(c, 2, 10000), "node 3 still counts staged bytes");
  rkc_close(c);
  only_node_serves(2, 1, 0);
  only_node_serves(0, 2, 1);
}

#ifdef RK_TEST_HOOKS
/* Kills node 3 and restarts it with env (NAME, VALUE pairs, NULL ends)
 * set for it alone. */
static void restart_node3_with(const char *const *env) {
  char err[512];
  itc_kill9(&itc, 2);
  for (const char *const *e = env; *e; e += 2) setenv(e[0], e[1], 1);
  cr_assert_eq(itc_restart(&itc, 2, err, sizeof err), 0, "%s", err);
  for (const char *const *e = env; *e; e += 2) unsetenv(e[0]);
}

/* Writes the tag's keys and waits for node 3 to stop by itself; returns its
 * wait status, and checks its log says `why`. */
static int node3_stops(rkc_client *c, const char *tag, const char *why) {
  write_all(c, tag);
  int status = 0;
  cr_assert(itc_wait_exit(itc.nodes[2].pid, 20000, &status), "node 3 went on (want: %s)", why);
  itc.nodes[2].pid = 0;
  cr_assert(itc_log_has(&itc, 2, why), "node 3 does not say \"%s\"", why);
  return status;
}

/* Restarts node 3 without any fault: it recovers and catches up. */
static void node3_recovers(rkc_client *c, const char *tag) {
  char err[512];
  cr_assert_eq(itc_restart(&itc, 2, err, sizeof err), 0, "%s", err);
  cr_assert(wait_caught_up(c, 2, 0, 0, 30000), "node 3 did not catch up after its restart");
  read_sample(c, tag);
}
#endif

/* A state-store sync that fails before a compaction stops the node: it is
 * never retried (after a failed fsync the kernel may have dropped the
 * pages, so a later success would let the WAL be compacted past data that
 * is not on disk). The other two nodes keep serving. */
Test(compaction, a_failed_state_store_sync_stops_the_node) {
#ifdef RK_TEST_HOOKS
  compaction_flags("0");
  it_start(3);
  restart_node3_with((const char *const[]){"RK_TEST_STATE_SYNC_FAIL", "1", NULL});
  rkc_client *c = it_client(-1, 10000);
  int status = node3_stops(c, "sf", "state store sync failed");
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) != 0, "node 3 ended with status %#x", status);
  read_sample(c, "sf");
  rkc_close(c);
#endif
}

/* A WAL fsync that fails stops the node with a clear message and a nonzero
 * exit, not an abort: once the WAL stops, no handler touches a Raft core
 * again (its storage answers RK_ESTOPPED, which a core treats as a broken
 * invariant). Restarted without the fault, it recovers and catches up. */
Test(compaction, a_failed_wal_fsync_stops_the_node_cleanly) {
#ifdef RK_TEST_HOOKS
  compaction_flags("0");
  it_start(3);
  restart_node3_with((const char *const[]){"RK_TEST_WAL_FSYNC_FAIL_AT", "20", NULL});
  rkc_client *c = it_client(-1, 10000);
  int status = node3_stops(c, "wf", "WAL stopped");
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) != 0,
            "node 3 ended with status %#x (a signal is a crash)", status);
  node3_recovers(c, "wf");
  rkc_close(c);
#endif
}

/* A WAL read that fails (here the first entry a follower reads back from a
 * segment to apply it: its entry cache is off) stops the node with the
 * range named and exit status 74 (EX_IOERR), not an abort. Without the
 * fault it restarts and catches up. */
Test(compaction, a_failed_wal_read_stops_the_node_with_its_own_status) {
#ifdef RK_TEST_HOOKS
  compaction_flags("0");
  it_start(3);
  restart_node3_with(
      (const char *const[]){"RK_TEST_WAL_READ_FAIL_AT", "0", "RK_TEST_WAL_CACHE_BYTES", "0", NULL});
  rkc_client *c = it_client(-1, 10000);
  int status = node3_stops(c, "wr", "reading its log failed");
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 74,
            "node 3 ended with status %#x (want exit 74; a signal is a crash)", status);
  node3_recovers(c, "wr");
  rkc_close(c);
#endif
}

/* A receiver that drops a stream says so: its sender abandons the stream at
 * once (counted as dropped on the sending side, which a stream sent whole
 * into nothing never is), waits out its backoff, streams again, and the
 * returning node catches up. */
Test(compaction, a_stream_the_receiver_refuses_is_abandoned_by_its_sender) {
  compaction_flags("50");
  it_start(3);
  rkc_client *c = it_client(-1, 10000);
  IT_PUT_OK(c, "first", "write");
  cr_assert(wait_caught_up(c, 2, 0, 0, 20000), "node 3 did not apply the first write");
  itc_kill9(&itc, 2);
  write_all(c, "rf");
  assert_logs_bounded(c);
  char err[512];
#ifdef RK_TEST_HOOKS
  setenv("RK_TEST_SNAP_REFUSE", "2", 1);
#endif
  cr_assert_eq(itc_restart(&itc, 2, err, sizeof err), 0, "%s", err);
  unsetenv("RK_TEST_SNAP_REFUSE");
  cr_assert(wait_caught_up(c, 2, 0, 1, 30000), "node 3 did not catch up through a snapshot");
#ifdef RK_TEST_HOOKS
  rkc_node_status *st = NULL;
  size_t n = 0;
  cr_assert_eq(rkc_status(c, &st, &n), RK_OK);
  cr_assert_eq(n, 3);
  cr_assert_geq(st[0].snapshots_dropped + st[1].snapshots_dropped, 1,
                "no sender abandoned a stream node 3 refused");
  cr_assert_geq(st[2].snapshots_dropped, 2, "node 3 refused two streams");
  free(st);
#endif
  rkc_close(c);
}
