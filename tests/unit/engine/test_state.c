/* State store: atomic apply + applied index across reopen and across a
 * SIGKILL, identity check, iterators, range state. */
#include "eng_test.h"

#include "engine/state.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int sync_commits; /* set by a test to run the synchronous mode */

static eng_state *open_state(const char *dir, uint64_t cluster, uint64_t node) {
  eng_state_options o;
  eng_state_options_default(&o);
  o.sync_commits = sync_commits;
  o.dir = dir;
  o.cluster_id = cluster;
  o.node_id = node;
  o.block_cache_bytes = 8u << 20;
  eng_state *s = NULL;
  char msg[256] = "";
  int rc = eng_state_open(&o, &s, msg, sizeof msg);
  cr_assert_eq(rc, RK_OK, "eng_state_open: %s %s", rk_errname(rc), msg);
  return s;
}

static void key_of(char *buf, size_t cap, uint64_t range, uint64_t i) {
  snprintf(buf, cap, "r%03lu/k%06lu", (unsigned long)range, (unsigned long)i);
}

/* One apply round: range r gets keys for entries (from, to], applied = to. */
static void apply_round(eng_state *s, eng_state_batch *b, const uint64_t *from, const uint64_t *to,
                        int nranges) {
  eng_state_batch_clear(b);
  for (int r = 0; r < nranges; r++) {
    for (uint64_t i = from[r] + 1; i <= to[r]; i++) {
      char k[64], v[64];
      key_of(k, sizeof k, (uint64_t)r + 1, i);
      snprintf(v, sizeof v, "value-%lu-%lu", (unsigned long)r + 1, (unsigned long)i);
      eng_state_batch_put(b, k, strlen(k), v, strlen(v));
    }
    if (to[r] > from[r]) eng_state_batch_set_applied(b, (uint64_t)r + 1, to[r]);
  }
  cr_assert_eq(eng_state_commit(s, b), RK_OK);
}

/* Every range: keys exist exactly for entries <= applied. */
static void check_consistent(eng_state *s, int nranges, uint64_t maxi, uint64_t *applied_out) {
  for (int r = 1; r <= nranges; r++) {
    uint64_t a;
    cr_assert_eq(eng_state_applied(s, (uint64_t)r, &a), RK_OK);
    uint64_t top = maxi ? maxi : a + 5; /* 0: just past applied (a round adds <= 2) */
    for (uint64_t i = 1; i <= top; i++) {
      char k[64];
      key_of(k, sizeof k, (uint64_t)r, i);
      void *v = NULL;
      size_t vl;
      int rc = eng_state_get(s, k, strlen(k), &v, &vl);
      if (i <= a)
        cr_assert_eq(rc, RK_OK, "range %d entry %lu <= applied %lu missing", r, (unsigned long)i,
                     (unsigned long)a);
      else
        cr_assert_eq(rc, RK_ENOTFOUND, "range %d entry %lu > applied %lu present", r,
                     (unsigned long)i, (unsigned long)a);
      free(v);
    }
    if (applied_out) applied_out[r - 1] = a;
  }
}

static void atomic_across_reopen(void) {
  char *dir = eng_tmpdir();
  eng_state *s = open_state(dir, 7, 1);
  eng_state_batch *b = eng_state_batch_new(s);
  uint64_t from[3] = {0, 0, 0}, to[3] = {5, 0, 9};
  apply_round(s, b, from, to, 3);
  uint64_t from2[3] = {5, 0, 9}, to2[3] = {8, 4, 9};
  apply_round(s, b, from2, to2, 3);
  /* a batch that is built but never committed leaves no trace */
  uint64_t from3[3] = {8, 4, 9}, to3[3] = {20, 20, 20};
  eng_state_batch_clear(b);
  for (uint64_t i = 9; i <= 20; i++) {
    char k[64];
    key_of(k, sizeof k, 1, i);
    eng_state_batch_put(b, k, strlen(k), "x", 1);
  }
  eng_state_batch_set_applied(b, 1, 20);
  cr_assert_gt(eng_state_batch_count(b), 0);
  (void)from3;
  (void)to3;
  cr_assert_eq(eng_state_sync(s), RK_OK);
  eng_state_batch_free(b);
  eng_state_close(s);
  s = open_state(dir, 7, 1);
  uint64_t ap[3];
  check_consistent(s, 3, 25, ap);
  cr_assert_eq(ap[0], 8);
  cr_assert_eq(ap[1], 4);
  cr_assert_eq(ap[2], 9);
  eng_state_close(s);
  eng_rmtree(dir);
  free(dir);
}

Test(state, apply_batch_and_applied_index_are_atomic_across_reopen) { atomic_across_reopen(); }

Test(state, same_with_synchronous_commits) {
  sync_commits = 1;
  atomic_across_reopen();
}

/* A child applies rounds and reports each eng_state_sync() through a pipe;
 * the parent SIGKILLs it mid-stream and checks: every range is consistent
 * with its applied index, and nothing synced was lost. */
Test(state, sigkill_mid_apply_keeps_data_and_applied_index_together, .timeout = 60) {
  char *dir = eng_tmpdir();
  { /* create it in the parent so the child only reopens */
    eng_state *s = open_state(dir, 7, 1);
    eng_state_close(s);
  }
  int p[2];
  cr_assert_eq(pipe(p), 0);
  pid_t pid = fork();
  cr_assert(pid >= 0);
  enum { R = 4, ROUNDS = 1000000 }; /* the kill always lands mid-stream */
  if (pid == 0) {
    close(p[0]);
    eng_state_options o;
    eng_state_options_default(&o);
    o.dir = dir;
    o.cluster_id = 7;
    o.node_id = 1;
    eng_state *s = NULL;
    if (eng_state_open(&o, &s, NULL, 0) != RK_OK) _exit(3);
    eng_state_batch *b = eng_state_batch_new(s);
    uint64_t cur[R] = {0};
    for (int round = 0; round < ROUNDS; round++) {
      uint64_t nxt[R];
      for (int r = 0; r < R; r++) nxt[r] = cur[r] + (uint64_t)((round + r) % 3);
      apply_round(s, b, cur, nxt, R);
      memcpy(cur, nxt, sizeof cur);
      if (round % 10 == 9) {
        if (eng_state_sync(s) != RK_OK) _exit(4);
        if (write(p[1], cur, sizeof cur) != (ssize_t)sizeof cur) _exit(5);
      }
    }
    for (;;) pause(); /* wait to be killed */
  }
  close(p[1]);
  uint64_t synced[R] = {0}, got[R];
  for (int n = 0; n < 20; n++) {
    cr_assert_eq(read(p[0], got, sizeof got), (ssize_t)sizeof got);
    memcpy(synced, got, sizeof got);
  }
  kill(pid, SIGKILL);
  int st;
  waitpid(pid, &st, 0);
  close(p[0]);
  cr_assert(WIFSIGNALED(st), "child exited with %d before the kill", WEXITSTATUS(st));
  eng_state *s = open_state(dir, 7, 1);
  uint64_t ap[R];
  check_consistent(s, R, 0, ap);
  for (int r = 0; r < R; r++)
    cr_assert_geq(ap[r], synced[r], "range %d lost synced applies (%lu < %lu)", r + 1,
                  (unsigned long)ap[r], (unsigned long)synced[r]);
  eng_state_close(s);
  eng_rmtree(dir);
  free(dir);
}

Test(state, store_of_another_node_or_cluster_is_refused) {
  char *dir = eng_tmpdir();
  eng_state *s = open_state(dir, 7, 1);
  eng_state_close(s);
  eng_state_options o;
  eng_state_options_default(&o);
  o.dir = dir;
  o.cluster_id = 7;
  o.node_id = 2;
  char msg[256] = "";
  cr_assert_eq(eng_state_open(&o, &s, msg, sizeof msg), RK_EWRONGNODE);
  cr_assert_null(s);
  cr_assert(strstr(msg, "node") != NULL, "%s", msg);
  o.cluster_id = 8;
  o.node_id = 1;
  cr_assert_eq(eng_state_open(&o, &s, msg, sizeof msg), RK_EWRONGCLUSTER);
  o.node_id = 0;
  cr_assert_eq(eng_state_open(&o, &s, msg, sizeof msg), RK_EINVAL);
  s = open_state(dir, 7, 1);
  eng_state_close(s);
  eng_rmtree(dir);
  free(dir);
}

Test(state, iterators_scan_a_key_range_in_order) {
  char *dir = eng_tmpdir();
  eng_state *s = open_state(dir, 7, 1);
  eng_state_batch *b = eng_state_batch_new(s);
  for (int i = 99; i >= 0; i--) {
    char k[16], v[16];
    snprintf(k, sizeof k, "k%03d", i);
    snprintf(v, sizeof v, "v%d", i);
    eng_state_batch_put(b, k, strlen(k), v, strlen(v));
  }
  eng_state_batch_set_applied(b, 1, 100);
  cr_assert_eq(eng_state_commit(s, b), RK_OK);
  eng_state_iter *it = eng_state_iter_new(s, "k010", 4, "k020", 4);
  /* a write after the iterator was created is not seen by it */
  eng_state_batch_clear(b);
  eng_state_batch_put(b, "k015x", 5, "late", 4);
  eng_state_batch_delete(b, "k012", 4);
  cr_assert_eq(eng_state_commit(s, b), RK_OK);
  int n = 0;
  for (; eng_state_iter_valid(it); eng_state_iter_next(it)) {
    size_t kl, vl;
    const char *k = eng_state_iter_key(it, &kl);
    const char *v = eng_state_iter_value(it, &vl);
    char want[16], wantv[16];
    snprintf(want, sizeof want, "k%03d", 10 + n);
    snprintf(wantv, sizeof wantv, "v%d", 10 + n);
    cr_assert_eq(kl, strlen(want));
    cr_assert_eq(memcmp(k, want, kl), 0);
    cr_assert_eq(vl, strlen(wantv));
    cr_assert_eq(memcmp(v, wantv, vl), 0);
    n++;
  }
  cr_assert_eq(eng_state_iter_status(it), RK_OK);
  cr_assert_eq(n, 10);
  eng_state_iter_free(it);
  /* a new iterator sees the later write and the delete */
  it = eng_state_iter_new(s, "k010", 4, "k020", 4);
  n = 0;
  int saw_late = 0;
  for (; eng_state_iter_valid(it); eng_state_iter_next(it)) {
    size_t kl;
    const char *k = eng_state_iter_key(it, &kl);
    if (kl == 5 && memcmp(k, "k015x", 5) == 0) saw_late = 1;
    cr_assert(!(kl == 4 && memcmp(k, "k012", 4) == 0));
    n++;
  }
  cr_assert(saw_late);
  cr_assert_eq(n, 10);
  eng_state_iter_free(it);
  /* delete_range over user keys */
  eng_state_batch_clear(b);
  eng_state_batch_delete_range(b, "k000", 4, "k050", 4);
  cr_assert_eq(eng_state_commit(s, b), RK_OK);
  it = eng_state_iter_new(s, NULL, 0, NULL, 0);
  size_t kl;
  cr_assert(eng_state_iter_valid(it));
  cr_assert_eq(memcmp(eng_state_iter_key(it, &kl), "k050", 4), 0);
  eng_state_iter_free(it);
  eng_state_batch_free(b);
  eng_state_close(s);
  eng_rmtree(dir);
  free(dir);
}

Test(state, range_state_records_roundtrip_and_clear) {
  char *dir = eng_tmpdir();
  eng_state *s = open_state(dir, 7, 1);
  eng_state_batch *b = eng_state_batch_new(s);
  eng_state_batch_range_put(b, 5, ENG_RANGE_DESC, "desc5", 5);
  eng_state_batch_range_put(b, 5, ENG_RANGE_LEASE, "lease5", 6);
  eng_state_batch_set_applied(b, 5, 42);
  eng_state_batch_set_applied(b, 6, 7);
  cr_assert_eq(eng_state_commit(s, b), RK_OK);
  eng_state_batch_free(b);
  eng_state_close(s);
  s = open_state(dir, 7, 1);
  void *v;
  size_t vl;
  cr_assert_eq(eng_state_range_get(s, 5, ENG_RANGE_DESC, &v, &vl), RK_OK);
  cr_assert_eq(vl, 5);
  cr_assert_eq(memcmp(v, "desc5", 5), 0);
  free(v);
  uint64_t a;
  cr_assert_eq(eng_state_applied(s, 5, &a), RK_OK);
  cr_assert_eq(a, 42);
  b = eng_state_batch_new(s);
  eng_state_batch_range_clear(b, 5);
  cr_assert_eq(eng_state_commit(s, b), RK_OK);
  cr_assert_eq(eng_state_range_get(s, 5, ENG_RANGE_LEASE, &v, &vl), RK_ENOTFOUND);
  cr_assert_eq(eng_state_applied(s, 5, &a), RK_OK);
  cr_assert_eq(a, 0);
  cr_assert_eq(eng_state_applied(s, 6, &a), RK_OK);
  cr_assert_eq(a, 7, "clearing range 5 touched range 6");
  eng_state_batch_free(b);
  eng_state_close(s);
  eng_rmtree(dir);
  free(dir);
}

/* The user keys of s in order, "k=v" joined by spaces, into out. */
static void dump_keys(eng_state *s, char *out, size_t cap) {
  out[0] = '\0';
  size_t at = 0;
  eng_state_iter *it = eng_state_iter_new(s, NULL, 0, NULL, 0);
  for (; eng_state_iter_valid(it); eng_state_iter_next(it)) {
    size_t kl, vl;
    const char *k = eng_state_iter_key(it, &kl);
    const char *v = eng_state_iter_value(it, &vl);
    at +=
        (size_t)snprintf(out + at, cap - at, "%s%.*s=%.*s", at ? " " : "", (int)kl, k, (int)vl, v);
    cr_assert_lt(at, cap);
  }
  cr_assert_eq(eng_state_iter_status(it), RK_OK);
  eng_state_iter_free(it);
}

static void put_str(eng_state *s, const char *k, const char *v) {
  eng_state_batch *b = eng_state_batch_new(s);
  eng_state_batch_put(b, k, strlen(k), v, strlen(v));
  cr_assert_eq(eng_state_commit(s, b), RK_OK);
  eng_state_batch_free(b);
}

Test(state, an_ingested_file_replaces_its_span_and_nothing_else) {
  char *dir = eng_tmpdir();
  char db[4096], sst[4096];
  snprintf(db, sizeof db, "%s/db", dir);
  snprintf(sst, sizeof sst, "%s/img.sst", dir);
  eng_state *s = open_state(db, 7, 1);
  const char *old[] = {"a", "b", "b5", "c", "d", "z"};
  for (size_t i = 0; i < sizeof old / sizeof *old; i++) put_str(s, old[i], "old");
  /* [b, d): b5 goes, c is replaced, b1 is new; a, d and z stay. */
  eng_state_sst *w = NULL;
  cr_assert_eq(eng_state_sst_open(s, sst, &w), RK_OK);
  cr_assert_eq(eng_state_sst_delete_range(w, "b", 1, "d", 1), RK_OK);
  cr_assert_eq(eng_state_sst_put(w, "b1", 2, "new", 3), RK_OK);
  cr_assert_eq(eng_state_sst_put(w, "c", 1, "new", 3), RK_OK);
  cr_assert_neq(eng_state_sst_put(w, "b2", 2, "x", 1), RK_OK, "a key out of order is refused");
  cr_assert_eq(eng_state_sst_finish(w), RK_OK);
  eng_state_sst_free(w);
  cr_assert_eq(eng_state_ingest(s, sst, "b", 1, "d", 1), RK_OK);
  cr_assert_eq(eng_state_ingest_retries(s), 0, "the memtable overlap was flushed beforehand");
  char got[512];
  dump_keys(s, got, sizeof got);
  cr_assert_str_eq(got, "a=old b1=new c=new d=old z=old");
  cr_assert_eq(access(sst, F_OK), 0, "the staged file is kept for a redo");
  /* A redo ingests it again: the same result, also across a reopen. */
  put_str(s, "b7", "later");
  cr_assert_eq(eng_state_ingest(s, sst, NULL, 0, NULL, 0), RK_OK, "no span: RocksDB asks");
  cr_assert_eq(eng_state_ingest_retries(s), 1, "no span given: RocksDB asked for the flush");
  eng_state_close(s);
  s = open_state(db, 7, 1);
  dump_keys(s, got, sizeof got);
  cr_assert_str_eq(got, "a=old b1=new c=new d=old z=old");
  /* An open-ended span (the last range) with no keys at all. */
  cr_assert_eq(eng_state_sst_open(s, sst, &w), RK_OK);
  cr_assert_eq(eng_state_sst_delete_range(w, "c", 1, NULL, 0), RK_OK);
  cr_assert_eq(eng_state_sst_finish(w), RK_OK);
  eng_state_sst_free(w);
  cr_assert_eq(eng_state_ingest(s, sst, "c", 1, NULL, 0), RK_OK);
  dump_keys(s, got, sizeof got);
  cr_assert_str_eq(got, "a=old b1=new");
  /* A file that is not there, or not an SST file: an error, nothing changed. */
  cr_assert_neq(eng_state_ingest(s, "/nonexistent/x.sst", NULL, 0, NULL, 0), RK_OK);
  FILE *f = fopen(sst, "w");
  cr_assert_not_null(f);
  fputs("not an sst file", f);
  fclose(f);
  cr_assert_neq(eng_state_ingest(s, sst, "a", 1, NULL, 0), RK_OK);
  dump_keys(s, got, sizeof got);
  cr_assert_str_eq(got, "a=old b1=new");
  eng_state_close(s);
  eng_rmtree(dir);
  free(dir);
}

Test(state, a_snapshot_intent_roundtrips_and_clears) {
  char *dir = eng_tmpdir();
  eng_state *s = open_state(dir, 7, 1);
  uint64_t i = 0, t = 0, f = 0;
  cr_assert_eq(eng_state_snap_intent(s, 3, &i, &t, &f), RK_ENOTFOUND);
  eng_state_batch *b = eng_state_batch_new(s);
  eng_state_batch_set_snap_intent(b, 3, 100, 4, 0xABCDEF0123456789ull);
  eng_state_batch_set_snap_mark(b, 3, 90, 3);
  cr_assert_eq(eng_state_commit(s, b), RK_OK);
  cr_assert_eq(eng_state_snap_intent(s, 3, &i, &t, &f), RK_OK);
  cr_assert(i == 100 && t == 4 && f == 0xABCDEF0123456789ull);
  eng_state_batch_clear(b);
  eng_state_batch_clear_snap_intent(b, 3);
  cr_assert_eq(eng_state_commit(s, b), RK_OK);
  cr_assert_eq(eng_state_snap_intent(s, 3, &i, &t, &f), RK_ENOTFOUND);
  cr_assert_eq(eng_state_snap_mark(s, 3, &i, &t), RK_OK, "the mark is another record");
  cr_assert(i == 90 && t == 3);
  eng_state_batch_clear(b);
  eng_state_batch_range_put(b, 3, ENG_RANGE_SNAP_INTENT, "short", 5);
  cr_assert_eq(eng_state_commit(s, b), RK_OK);
  cr_assert_eq(eng_state_snap_intent(s, 3, &i, &t, &f), RK_ECORRUPT);
  eng_state_batch_free(b);
  eng_state_close(s);
  eng_rmtree(dir);
  free(dir);
}

#ifdef RK_TEST_HOOKS
/* A failed sync is never followed by one that "succeeds": every later
 * commit, sync and ingest returns the first error without asking RocksDB
 * (after a failed fsync the kernel may have dropped the dirty pages). */
Test(state, a_failed_sync_fails_everything_after_it) {
  char *dir = eng_tmpdir();
  eng_state *s = open_state(dir, 7, 1);
  eng_state_batch *b = eng_state_batch_new(s);
  eng_state_batch_put(b, "k", 1, "v", 1);
  cr_assert_eq(eng_state_commit(s, b), RK_OK);
  eng_state_test_fail_sync(s);
  cr_assert_eq(eng_state_sync(s), RK_EIO);
  cr_assert_eq(eng_state_sync(s), RK_EIO, "a second sync must not succeed");
  cr_assert_eq(eng_state_commit(s, b), RK_EIO, "nor a commit");
  cr_assert_eq(eng_state_ingest(s, "/nonexistent/x.sst", NULL, 0, NULL, 0), RK_EIO,
               "nor an ingest: the first error, not the file's");
  void *v = NULL;
  size_t vlen = 0;
  cr_assert_eq(eng_state_get(s, "k", 1, &v, &vlen), RK_OK, "reads still answer");
  free(v);
  eng_state_batch_free(b);
  eng_state_close(s);
  eng_rmtree(dir);
  free(dir);
}
#endif
