/* WAL: append/read across segments, overwrite, compaction + purge, laggard
 * rewrite, clean-close recovery, group commit, bad input. */
#include "eng_test.h"

#include "engine/wal.h"

#include <stdlib.h>
#include <string.h>

#define MAXLEN 300u

static void check_hs(eng_wal *w, uint64_t g, uint64_t term, uint64_t vote, uint64_t commit) {
  rk_hard_state hs;
  int found = 0;
  cr_assert_eq(eng_wal_hard_state(w, g, &hs, &found), RK_OK);
  cr_assert(found, "group %lu has no hard state", (unsigned long)g);
  cr_assert_eq(hs.term, term);
  cr_assert_eq(hs.vote, vote);
  cr_assert_eq(hs.commit, commit);
}

/* 40 groups x 60 entries, appended round by round in multi-group requests,
 * then read back before and after a clean close. */
Test(wal, multi_group_append_read_across_segments_and_clean_reopen) {
  char *dir = eng_tmpdir();
  eng_wal_options o;
  eng_small_opts(&o, dir);
  eng_wal *w = eng_open_or_skip(&o);
  enum { G = 40, N = 60 };
  uint8_t *bufs = malloc((size_t)G * (MAXLEN + 1));
  rk_entry es[G];
  eng_wal_write wr[G];
  rk_hard_state hs[G];
  eng_wal_append_req reqs[N];
  eng_cb_state sts[N];
  for (uint64_t i = 1; i <= N; i++) {
    for (uint64_t g = 0; g < G; g++) {
      es[g] = (rk_entry){.index = i, .term = 3, .data = bufs + g * (MAXLEN + 1)};
      es[g].len = eng_payload(g + 1, i, 3, MAXLEN, es[g].data);
      hs[g] = (rk_hard_state){.term = 3, .vote = g % 5, .commit = i - 1};
      wr[g] = (eng_wal_write){.group = g + 1,
                              .entries = &es[g],
                              .n_entries = 1,
                              .hard_state = (i % 7 == 0 || i == N) ? &hs[g] : NULL};
    }
    memset(&sts[i - 1], 0, sizeof sts[i - 1]);
    reqs[i - 1].data = &sts[i - 1];
    cr_assert_eq(eng_wal_append(w, &reqs[i - 1], wr, G, eng_cb), RK_OK);
    if (i % 5 == 0) eng_wal_process(w);
  }
  free(bufs);
  cr_assert_eq(eng_wal_sync(w), RK_OK);
  for (int i = 0; i < N; i++) {
    cr_assert_eq(sts[i].calls, 1, "request %d called %d times", i, sts[i].calls);
    cr_assert_eq(sts[i].status, RK_OK);
  }
  eng_wal_stats st;
  eng_wal_get_stats(w, &st);
  cr_assert_gt(st.active_segment, 5, "only %lu segments used", (unsigned long)st.active_segment);
  cr_assert_eq(st.entries, (uint64_t)G * N);
  for (int pass = 0; pass < 2; pass++) {
    for (uint64_t g = 1; g <= G; g++) {
      uint64_t f, l;
      cr_assert_eq(eng_wal_first_index(w, g, &f), RK_OK);
      cr_assert_eq(eng_wal_last_index(w, g, &l), RK_OK);
      cr_assert_eq(f, 1);
      cr_assert_eq(l, N);
      eng_check_range(w, g, 1, N + 1, 3, MAXLEN);
      check_hs(w, g, 3, (g - 1) % 5, N - 1);
    }
    eng_wal_close(w);
    if (pass == 0) {
      eng_wal_recovery rec;
      cr_assert_eq(eng_wal_open(&o, &w, &rec), RK_OK, "%s", rec.message);
      cr_assert_eq(rec.torn_tail, 0);
      cr_assert_eq(rec.corrupt, 0);
      cr_assert_eq(rec.entries, (uint64_t)G * N);
      cr_assert_eq(rec.groups, G);
    }
  }
  eng_rmtree(dir);
  free(dir);
}

Test(wal, max_bytes_limits_entries_but_returns_at_least_one) {
  char *dir = eng_tmpdir();
  eng_wal_options o;
  eng_small_opts(&o, dir);
  eng_wal *w = eng_open_or_skip(&o);
  cr_assert_eq(eng_append_sync(w, 9, 1, 51, 1, MAXLEN, NULL), RK_OK);
  rk_entry_vec ev;
  rk_entry_vec_init(&ev);
  cr_assert_eq(eng_wal_entries(w, 9, 1, 51, 0, &ev), RK_OK);
  cr_assert_eq(ev.len, 1);
  rk_entry_vec_clear(&ev);
  cr_assert_eq(eng_wal_entries(w, 9, 1, 51, 1000, &ev), RK_OK);
  cr_assert(ev.len >= 1 && ev.len < 50);
  cr_assert_leq(ev.bytes, 1000 + MAXLEN);
  rk_entry_vec_clear(&ev);
  cr_assert_eq(eng_wal_entries(w, 9, 0, 5, 100, &ev), RK_ECOMPACTED);
  cr_assert_eq(eng_wal_entries(w, 9, 5, 53, 100, &ev), RK_EUNAVAILABLE);
  cr_assert_eq(eng_wal_entries(w, 9, 6, 5, 100, &ev), RK_EINVAL);
  cr_assert_eq(eng_wal_entries(w, 9, 51, 51, 100, &ev), RK_OK);
  cr_assert_eq(ev.len, 0);
  uint64_t t;
  cr_assert_eq(eng_wal_term(w, 9, 0, &t), RK_OK);
  cr_assert_eq(t, 0);
  cr_assert_eq(eng_wal_term(w, 9, 51, &t), RK_EUNAVAILABLE);
  cr_assert_eq(eng_wal_term(w, 12345, 0, &t), RK_OK); /* unknown group: empty log */
  cr_assert_eq(eng_wal_last_index(w, 12345, &t), RK_OK);
  cr_assert_eq(t, 0);
  rk_entry_vec_free(&ev);
  eng_wal_close(w);
  eng_rmtree(dir);
  free(dir);
}

Test(wal, suffix_overwrite_discards_tail_and_survives_reopen) {
  char *dir = eng_tmpdir();
  eng_wal_options o;
  eng_small_opts(&o, dir);
  eng_wal *w = eng_open_or_skip(&o);
  cr_assert_eq(eng_append_sync(w, 5, 1, 101, 1, MAXLEN, NULL), RK_OK);
  cr_assert_eq(eng_append_sync(w, 6, 1, 11, 1, MAXLEN, NULL), RK_OK);
  /* leader change: term 2 rewrites from 60 and stops at 80 */
  cr_assert_eq(eng_append_sync(w, 5, 60, 81, 2, MAXLEN, NULL), RK_OK);
  for (int pass = 0; pass < 2; pass++) {
    uint64_t l;
    cr_assert_eq(eng_wal_last_index(w, 5, &l), RK_OK);
    cr_assert_eq(l, 80);
    eng_check_range(w, 5, 1, 60, 1, MAXLEN);
    eng_check_range(w, 5, 60, 81, 2, MAXLEN);
    eng_check_range(w, 6, 1, 11, 1, MAXLEN);
    rk_entry_vec ev;
    rk_entry_vec_init(&ev);
    cr_assert_eq(eng_wal_entries(w, 5, 79, 82, UINT64_MAX, &ev), RK_EUNAVAILABLE);
    rk_entry_vec_free(&ev);
    eng_wal_close(w);
    w = eng_open_or_skip(&o);
  }
  /* overwrite in the middle of a not-yet-durable batch is legal too */
  eng_wal_append_req r1, r2;
  eng_cb_state s1, s2;
  cr_assert_eq(eng_append_async(w, &r1, &s1, 5, 81, 91, 2, MAXLEN, NULL), RK_OK);
  cr_assert_eq(eng_append_async(w, &r2, &s2, 5, 85, 88, 3, MAXLEN, NULL), RK_OK);
  cr_assert_eq(eng_wal_sync(w), RK_OK);
  cr_assert_eq(s1.status, RK_OK);
  cr_assert_eq(s2.status, RK_OK);
  eng_check_range(w, 5, 81, 85, 2, MAXLEN);
  eng_check_range(w, 5, 85, 88, 3, MAXLEN);
  eng_wal_close(w);
  w = eng_open_or_skip(&o);
  uint64_t l;
  eng_wal_last_index(w, 5, &l);
  cr_assert_eq(l, 87);
  eng_check_range(w, 5, 85, 88, 3, MAXLEN);
  eng_wal_close(w);
  eng_rmtree(dir);
  free(dir);
}

/* Bad input: typed errors and nothing written. */
Test(wal, bad_input_is_rejected_and_writes_nothing) {
  char *dir = eng_tmpdir();
  eng_wal_options o;
  eng_small_opts(&o, dir);
  eng_wal *w = eng_open_or_skip(&o);
  cr_assert_eq(eng_append_sync(w, 1, 1, 11, 1, 50, NULL), RK_OK);
  eng_wal_stats before;
  eng_wal_get_stats(w, &before);
#ifdef RK_TEST_HOOKS
  uint64_t seq_before = eng_wal_next_batch_seq(w);
#endif
  eng_wal_append_req req;
  eng_cb_state st;
  /* gap after last */
  cr_assert_eq(eng_append_async(w, &req, &st, 1, 13, 14, 1, 50, NULL), RK_EINVAL);
  /* index 0 */
  cr_assert_eq(eng_append_async(w, &req, &st, 1, 0, 2, 1, 50, NULL), RK_EINVAL);
  /* too large payload */
  uint8_t *big = calloc(1, o.max_entry_bytes + 1);
  rk_entry e = {.index = 11, .term = 1, .len = o.max_entry_bytes + 1, .data = big};
  eng_wal_write wr = {.group = 1, .entries = &e, .n_entries = 1};
  cr_assert_eq(eng_wal_append(w, &req, &wr, 1, eng_cb), RK_ETOOLARGE);
  /* a valid write bundled with a bad one: the whole request is refused */
  rk_entry good = {.index = 1, .term = 1, .len = 3, .data = big};
  rk_entry nonc[2] = {{.index = 11, .term = 1}, {.index = 13, .term = 1}};
  eng_wal_write two[2] = {{.group = 2, .entries = &good, .n_entries = 1},
                          {.group = 1, .entries = nonc, .n_entries = 2}};
  cr_assert_eq(eng_wal_append(w, &req, two, 2, eng_cb), RK_EINVAL);
  /* the same group twice in one request */
  rk_entry e11 = {.index = 11, .term = 1}, e12 = {.index = 12, .term = 1};
  eng_wal_write dup[2] = {{.group = 1, .entries = &e11, .n_entries = 1},
                          {.group = 1, .entries = &e12, .n_entries = 1}};
  cr_assert_eq(eng_wal_append(w, &req, dup, 2, eng_cb), RK_EINVAL);
  /* group 0 is reserved */
  eng_wal_write g0 = {.group = 0, .entries = &e11, .n_entries = 1};
  cr_assert_eq(eng_wal_append(w, &req, &g0, 1, eng_cb), RK_EINVAL);
  /* below first after compaction */
  cr_assert_eq(eng_wal_compact(w, 1, 6, 0), RK_OK);
  cr_assert_eq(eng_wal_sync(w), RK_OK);
  eng_wal_get_stats(w, &before);
#ifdef RK_TEST_HOOKS
  seq_before = eng_wal_next_batch_seq(w);
#endif
  cr_assert_eq(eng_append_async(w, &req, &st, 1, 3, 5, 2, 50, NULL), RK_EINVAL);
  free(big);
  eng_wal_stats after;
  eng_wal_get_stats(w, &after);
  cr_assert_eq(after.entries, before.entries);
  cr_assert_eq(after.appends, before.appends);
#ifdef RK_TEST_HOOKS
  cr_assert_eq(eng_wal_next_batch_seq(w), seq_before, "a rejected append opened a batch");
#endif
  uint64_t f, l;
  eng_wal_first_index(w, 1, &f);
  eng_wal_last_index(w, 1, &l);
  cr_assert_eq(f, 6);
  cr_assert_eq(l, 10);
  eng_check_range(w, 1, 6, 11, 1, 50);
  uint64_t t;
  eng_wal_last_index(w, 2, &t);
  cr_assert_eq(t, 0, "group 2 was written by a refused request");
  eng_wal_close(w);
  eng_rmtree(dir);
  free(dir);
}

Test(wal, bad_options_are_rejected) {
  eng_wal_options o;
  eng_wal *w = NULL;
  eng_wal_recovery rec;
  eng_small_opts(&o, "/tmp/never-created-rk");
  o.node_id = 0;
  cr_assert_eq(eng_wal_open(&o, &w, &rec), RK_EINVAL);
  cr_assert(strstr(rec.message, "node_id") != NULL);
  eng_small_opts(&o, "/tmp/never-created-rk");
  o.max_batch_bytes = o.segment_bytes;
  cr_assert_eq(eng_wal_open(&o, &w, &rec), RK_EINVAL);
  cr_assert_null(w);
}

static void count_group(void *ctx, uint64_t g) {
  (void)g;
  (*(int *)ctx)++;
}

Test(wal, compaction_and_segment_deletion) {
  char *dir = eng_tmpdir();
  eng_wal_options o;
  eng_small_opts(&o, dir);
  o.rewrite_after_segments = 1000; /* this test is about plain purge */
  eng_wal *w = eng_open_or_skip(&o);
  enum { G = 8, N = 300 };
  for (uint64_t g = 1; g <= G; g++) {
    rk_hard_state hs = {.term = 1, .vote = 1, .commit = N};
    cr_assert_eq(eng_append_sync(w, g, 1, N + 1, 1, MAXLEN, &hs), RK_OK);
  }
  eng_wal_stats st;
  eng_wal_get_stats(w, &st);
  size_t files_before = eng_count_files(dir, ".wal");
  cr_assert_gt(files_before, 4);
  eng_wal_purge_stats ps;
  cr_assert_eq(eng_wal_purge(w, &ps), RK_OK);
  cr_assert_eq(ps.segments_deleted, 0, "nothing compacted yet, nothing may go");
  /* every group compacts all but its last 5 entries; hard states are
   * rewritten so old segments are not pinned by them */
  /* groups 1..G-1 compact everything, group G keeps its last 5 entries */
  eng_wal_append_req hreq[G];
  eng_cb_state hst[G];
  for (uint64_t g = 1; g <= G; g++) {
    cr_assert_eq(eng_wal_compact(w, g, g < G ? N + 1 : N - 4, 0), RK_OK);
    rk_hard_state hs = {.term = 2, .vote = 0, .commit = N};
    eng_wal_write wr = {.group = g, .hard_state = &hs};
    hst[g - 1] = (eng_cb_state){0};
    hreq[g - 1].data = &hst[g - 1];
    cr_assert_eq(eng_wal_append(w, &hreq[g - 1], &wr, 1, eng_cb), RK_OK);
  }
  cr_assert_eq(eng_wal_purge(w, &ps), RK_OK);
  cr_assert_eq(ps.segments_deleted, 0, "marks not durable yet: must not delete");
  cr_assert_eq(eng_wal_sync(w), RK_OK);
  cr_assert_eq(eng_wal_purge(w, &ps), RK_OK);
  cr_assert_gt(ps.segments_deleted, 0);
  size_t files_after = eng_count_files(dir, ".wal");
  cr_assert_eq(files_after + ps.segments_deleted, files_before);
  for (int pass = 0; pass < 2; pass++) {
    for (uint64_t g = 1; g <= G; g++) {
      uint64_t f, l, t;
      eng_wal_first_index(w, g, &f);
      eng_wal_last_index(w, g, &l);
      uint64_t first = g < G ? N + 1 : N - 4;
      cr_assert_eq(f, first);
      cr_assert_eq(l, N);
      cr_assert_eq(eng_wal_term(w, g, first - 1, &t), RK_OK, "term(first-1) is known");
      cr_assert_eq(t, 1);
      cr_assert_eq(eng_wal_term(w, g, first - 2, &t), RK_ECOMPACTED);
      rk_entry_vec ev;
      rk_entry_vec_init(&ev);
      cr_assert_eq(eng_wal_entries(w, g, first - 1, N, UINT64_MAX, &ev), RK_ECOMPACTED);
      rk_entry_vec_free(&ev);
      eng_check_range(w, g, first, N + 1, 1, MAXLEN);
      check_hs(w, g, 2, 0, N);
    }
    eng_wal_close(w);
    w = eng_open_or_skip(&o);
  }
  int groups = 0;
  eng_wal_for_each_group(w, count_group, &groups);
  cr_assert_eq(groups, G);
  /* compaction beyond the end (snapshot install): empty log at 500 */
  cr_assert_eq(eng_wal_compact(w, 1, 500, 7), RK_OK);
  uint64_t f, l, t;
  eng_wal_first_index(w, 1, &f);
  eng_wal_last_index(w, 1, &l);
  cr_assert_eq(f, 500);
  cr_assert_eq(l, 499);
  cr_assert_eq(eng_wal_term(w, 1, 499, &t), RK_OK);
  cr_assert_eq(t, 7);
  eng_wal_append_req req;
  eng_cb_state cs;
  cr_assert_eq(eng_append_async(w, &req, &cs, 1, 501, 502, 8, 10, NULL), RK_EINVAL);
  cr_assert_eq(eng_append_sync(w, 1, 500, 505, 8, 10, NULL), RK_OK);
  eng_wal_close(w);
  w = eng_open_or_skip(&o);
  eng_wal_first_index(w, 1, &f);
  cr_assert_eq(f, 500);
  cr_assert_eq(eng_wal_term(w, 1, 499, &t), RK_OK);
  cr_assert_eq(t, 7);
  eng_check_range(w, 1, 500, 505, 8, 10);
  eng_wal_close(w);
  eng_rmtree(dir);
  free(dir);
}

/* Group 1 writes a little early, then stays idle; group 2 writes a lot and
 * keeps compacting. Group 1 pins segment 1 until it is rewritten forward. */
/* Group 2 writes 200 rounds of 20 entries, each time compacting all but
 * the last two: segments fill while older groups pin the first. Returns
 * group 2's next index. */
static uint64_t busy_group_2(eng_wal *w) {
  uint64_t next = 1;
  for (int round = 0; round < 200; round++) {
    cr_assert_eq(eng_append_sync(w, 2, next, next + 20, 1, MAXLEN, NULL), RK_OK);
    next += 20;
    cr_assert_eq(eng_wal_compact(w, 2, next - 2, 0), RK_OK);
  }
  return next;
}

/* A laggard of many tiny entries is judged by what its rewrite would
 * write (a 32-byte record header each), not by its payload: under the
 * limit by payload, over the batch size in records, a rewrite would not fit
 * one batch. It is left pinning its segments. */
Test(wal, a_laggard_of_tiny_entries_is_judged_by_its_records) {
  char *dir = eng_tmpdir();
  eng_wal_options o;
  eng_small_opts(&o, dir);
  eng_wal *w = eng_open_or_skip(&o);
  for (uint64_t lo = 1; lo < 3001; lo += 200)
    cr_assert_eq(eng_append_sync(w, 3, lo, lo + 200, 1, 1, NULL), RK_OK);
  uint64_t next = busy_group_2(w);
  cr_assert_eq(eng_wal_sync(w), RK_OK);
  eng_wal_purge_stats ps;
  cr_assert_eq(eng_wal_purge(w, &ps), RK_OK);
  cr_assert_eq(ps.laggards_too_big, 1, "3,000 entries of 0-1 bytes: ~99 KB of records");
  eng_check_range(w, 3, 1, 3001, 1, 1);
  eng_wal_close(w);
  w = eng_open_or_skip(&o);
  eng_check_range(w, 3, 1, 3001, 1, 1);
  eng_check_range(w, 2, next - 2, next, 1, MAXLEN);
  eng_wal_close(w);
  eng_rmtree(dir);
  free(dir);
}

Test(wal, laggard_group_is_rewritten_forward) {
  char *dir = eng_tmpdir();
  eng_wal_options o;
  eng_small_opts(&o, dir);
  eng_wal *w = eng_open_or_skip(&o);
  rk_hard_state hs1 = {.term = 4, .vote = 2, .commit = 3};
  cr_assert_eq(eng_append_sync(w, 1, 1, 6, 4, MAXLEN, &hs1), RK_OK);
  /* group 3: big and idle: too big to rewrite */
  cr_assert_eq(eng_append_sync(w, 3, 1, 61, 1, 200, NULL), RK_OK);
  uint64_t next = busy_group_2(w);
  cr_assert_eq(eng_wal_sync(w), RK_OK);
  eng_wal_stats st;
  eng_wal_get_stats(w, &st);
  cr_assert_eq(st.first_segment, 1);
  cr_assert_gt(st.active_segment, 6);
  eng_wal_purge_stats ps;
  cr_assert_eq(eng_wal_purge(w, &ps), RK_OK);
  cr_assert_eq(ps.segments_deleted, 0, "groups 1 and 3 pin segment 1");
  /* group 3 too big for the 4 KiB rewrite limit at first */
  cr_assert_geq(ps.groups_rewritten, 1);
  cr_assert_eq(ps.laggards_too_big, 1);
  /* the host compacts the big laggard instead (as after a snapshot) */
  cr_assert_eq(eng_wal_compact(w, 3, 57, 0), RK_OK);
  cr_assert_eq(eng_wal_sync(w), RK_OK);
  cr_assert_eq(eng_wal_purge(w, &ps), RK_OK);
  /* now group 3 (4 entries) is small: rewritten too; deletion waits */
  cr_assert_eq(eng_wal_sync(w), RK_OK);
  cr_assert_eq(eng_wal_purge(w, &ps), RK_OK);
  eng_wal_get_stats(w, &st);
  cr_assert_gt(st.first_segment, 1, "old segments still live: first=%lu active=%lu",
               (unsigned long)st.first_segment, (unsigned long)st.active_segment);
  cr_assert_leq(st.active_segment - st.first_segment + 1, o.rewrite_after_segments + 1);
  cr_assert_gt(st.entries_rewritten, 0);
  for (int pass = 0; pass < 2; pass++) {
    eng_check_range(w, 1, 1, 6, 4, MAXLEN);
    check_hs(w, 1, 4, 2, 3);
    eng_check_range(w, 3, 57, 61, 1, 200);
    eng_check_range(w, 2, next - 2, next, 1, MAXLEN);
    eng_wal_close(w);
    eng_wal_recovery rec;
    cr_assert_eq(eng_wal_open(&o, &w, &rec), RK_OK, "%s", rec.message);
  }
  eng_wal_close(w);
  eng_rmtree(dir);
  free(dir);
}

/* Pipelined group commit: while batch 1 is in flight, later appends share
 * one batch and one fdatasync. Deterministic: completions are only processed
 * when we ask. */
Test(wal, appends_during_a_sync_share_the_next_batch) {
  char *dir = eng_tmpdir();
  eng_wal_options o;
  eng_small_opts(&o, dir);
  eng_wal *w = eng_open_or_skip(&o);
  eng_wal_stats s0, s1;
  eng_wal_get_stats(w, &s0);
  enum { R = 50 };
  eng_wal_append_req reqs[R];
  eng_cb_state sts[R];
  for (int i = 0; i < R; i++)
    cr_assert_eq(eng_append_async(w, &reqs[i], &sts[i], (uint64_t)i + 1, 1, 3, 1, 20, NULL), RK_OK);
  for (int i = 0; i < R; i++) cr_assert_eq(sts[i].calls, 0, "callback ran inside append");
  cr_assert_eq(eng_wal_sync(w), RK_OK);
  eng_wal_get_stats(w, &s1);
  cr_assert_eq(s1.fsyncs - s0.fsyncs, 2, "%lu fsyncs for 50 appends",
               (unsigned long)(s1.fsyncs - s0.fsyncs));
  for (int i = 0; i < R; i++) {
    cr_assert_eq(sts[i].calls, 1);
    cr_assert_eq(sts[i].status, RK_OK);
  }
  /* an empty append completes once everything before it is durable */
  eng_wal_append_req e;
  eng_cb_state es = {0};
  e.data = &es;
  cr_assert_eq(eng_wal_append(w, &e, NULL, 0, eng_cb), RK_OK);
  cr_assert_eq(es.calls, 0);
  cr_assert_eq(eng_wal_sync(w), RK_OK);
  cr_assert_eq(es.calls, 1);
  eng_wal_close(w);
  eng_rmtree(dir);
  free(dir);
}

/* The batch window holds an idle WAL's batch back; flush releases it. */
Test(wal, batch_window_and_flush) {
  char *dir = eng_tmpdir();
  eng_wal_options o;
  eng_small_opts(&o, dir);
  o.batch_window_us = 60u * 1000u * 1000u; /* effectively forever */
  eng_wal *w = eng_open_or_skip(&o);
  eng_wal_append_req r;
  eng_cb_state s;
  cr_assert_eq(eng_append_async(w, &r, &s, 1, 1, 3, 1, 20, NULL), RK_OK);
  cr_assert_eq(eng_wal_process(w), RK_OK);
  cr_assert_gt(eng_wal_timeout_ns(w), 0);
  eng_wal_stats st;
  eng_wal_get_stats(w, &st);
  cr_assert_eq(st.fsyncs, 0, "window ignored");
  cr_assert_eq(eng_wal_flush(w), RK_OK);
  while (s.calls == 0) eng_wal_poll(w, 100000);
  cr_assert_eq(s.status, RK_OK);
  cr_assert(eng_wal_fd(w) >= 0);
  eng_wal_close(w);
  eng_rmtree(dir);
  free(dir);
}

Test(wal, second_open_of_same_dir_is_refused) {
  char *dir = eng_tmpdir();
  eng_wal_options o;
  eng_small_opts(&o, dir);
  eng_wal *w = eng_open_or_skip(&o);
  eng_wal *w2 = NULL;
  eng_wal_recovery rec;
  cr_assert_eq(eng_wal_open(&o, &w2, &rec), RK_EAGAIN);
  cr_assert_null(w2);
  eng_wal_close(w);
  eng_rmtree(dir);
  free(dir);
}

/* A leader reads its own unsynced tail: served from the cache even with a
 * zero budget; once durable the entries come from the segment. */
Test(wal, undurable_entries_are_readable_even_with_zero_cache) {
  char *dir = eng_tmpdir();
  eng_wal_options o;
  eng_small_opts(&o, dir);
  o.cache_bytes = 0;
  eng_wal *w = eng_open_or_skip(&o);
  eng_wal_append_req r1, r2;
  eng_cb_state s1, s2;
  cr_assert_eq(eng_append_async(w, &r1, &s1, 4, 1, 11, 2, MAXLEN, NULL), RK_OK);
  cr_assert_eq(eng_append_async(w, &r2, &s2, 4, 11, 21, 2, MAXLEN, NULL), RK_OK);
  cr_assert_eq(s1.calls + s2.calls, 0);
  eng_check_range(w, 4, 1, 21, 2, MAXLEN); /* before any completion */
  cr_assert_eq(eng_wal_sync(w), RK_OK);
  eng_wal_stats st;
  eng_wal_get_stats(w, &st);
  cr_assert_eq(st.cache_bytes, 0, "durable entries stayed cached with a zero budget");
  uint64_t misses = st.cache_misses;
  eng_check_range(w, 4, 1, 21, 2, MAXLEN);
  eng_wal_get_stats(w, &st);
  cr_assert_gt(st.cache_misses, misses, "reads did not go to the segment");
  eng_wal_close(w);
  eng_rmtree(dir);
  free(dir);
}

static void sum_group(void *ctx, uint64_t g) { *(uint64_t *)ctx += g; }

/* Many groups in one request: the group table grows; all survive a reopen. */
Test(wal, twenty_thousand_groups_in_few_requests) {
  char *dir = eng_tmpdir();
  eng_wal_options o;
  eng_small_opts(&o, dir);
  o.segment_bytes = 4u << 20;
  o.max_batch_bytes = 2u << 20;
  eng_wal *w = eng_open_or_skip(&o);
  enum { G = 20000, PER = 5000 };
  static rk_entry es[PER];
  static eng_wal_write wr[PER];
  static rk_hard_state hs[PER];
  static uint8_t payload[PER][8];
  eng_wal_append_req reqs[G / PER];
  eng_cb_state sts[G / PER];
  for (int r = 0; r < G / PER; r++) {
    for (int k = 0; k < PER; k++) {
      uint64_t g = (uint64_t)r * PER + k + 1;
      memcpy(payload[k], &g, 8);
      es[k] = (rk_entry){.index = 1, .term = 1, .len = 8, .data = payload[k]};
      hs[k] = (rk_hard_state){.term = 1, .vote = g % 3, .commit = 1};
      wr[k] = (eng_wal_write){.group = g, .entries = &es[k], .n_entries = 1, .hard_state = &hs[k]};
    }
    sts[r] = (eng_cb_state){0};
    reqs[r].data = &sts[r];
    cr_assert_eq(eng_wal_append(w, &reqs[r], wr, PER, eng_cb), RK_OK);
  }
  cr_assert_eq(eng_wal_sync(w), RK_OK);
  for (int r = 0; r < G / PER; r++) cr_assert_eq(sts[r].status, RK_OK);
  for (int pass = 0; pass < 2; pass++) {
    uint64_t sum = 0;
    eng_wal_for_each_group(w, sum_group, &sum);
    cr_assert_eq(sum, (uint64_t)G * (G + 1) / 2);
    for (uint64_t g = 1; g <= G; g += 997) {
      rk_entry_vec ev;
      rk_entry_vec_init(&ev);
      cr_assert_eq(eng_wal_entries(w, g, 1, 2, UINT64_MAX, &ev), RK_OK);
      uint64_t got;
      memcpy(&got, ev.v[0].data, 8);
      cr_assert_eq(got, g);
      rk_entry_vec_free(&ev);
      check_hs(w, g, 1, g % 3, 1);
    }
    eng_wal_close(w);
    w = eng_open_or_skip(&o);
  }
  eng_wal_close(w);
  eng_rmtree(dir);
  free(dir);
}

/* Installing a snapshot that does not match the log: everything goes, the
 * log restarts after the snapshot, and that survives a reopen. */
Test(wal, reset_discards_the_whole_log_for_a_snapshot) {
  char *dir = eng_tmpdir();
  eng_wal_options o;
  eng_small_opts(&o, dir);
  eng_wal *w = eng_open_or_skip(&o);
  cr_assert_eq(eng_append_sync(w, 8, 1, 11, 1, MAXLEN, NULL), RK_OK);
  cr_assert_eq(eng_append_sync(w, 9, 1, 4, 1, MAXLEN, NULL), RK_OK);
  /* snapshot at index 5, term 5: the log's entry 5 has term 1 -> restore */
  cr_assert_eq(eng_wal_reset(w, 8, 6, 5), RK_OK);
  cr_assert_eq(eng_wal_reset(w, 0, 6, 5), RK_EINVAL);
  cr_assert_eq(eng_append_sync(w, 8, 6, 9, 5, MAXLEN, NULL), RK_OK);
  for (int pass = 0; pass < 2; pass++) {
    uint64_t f, l, t;
    eng_wal_first_index(w, 8, &f);
    eng_wal_last_index(w, 8, &l);
    cr_assert_eq(f, 6);
    cr_assert_eq(l, 8);
    cr_assert_eq(eng_wal_term(w, 8, 5, &t), RK_OK);
    cr_assert_eq(t, 5);
    eng_check_range(w, 8, 6, 9, 5, MAXLEN);
    eng_check_range(w, 9, 1, 4, 1, MAXLEN);
    rk_entry_vec ev;
    rk_entry_vec_init(&ev);
    cr_assert_eq(eng_wal_entries(w, 8, 4, 7, UINT64_MAX, &ev), RK_ECOMPACTED);
    rk_entry_vec_free(&ev);
    eng_wal_check_invariants(w);
    eng_wal_close(w);
    w = eng_open_or_skip(&o);
  }
  /* reset to an empty log with unknown boundary term (a removed replica) */
  cr_assert_eq(eng_wal_reset(w, 9, 4, 0), RK_OK);
  uint64_t t;
  cr_assert_eq(eng_wal_term(w, 9, 3, &t), RK_ECOMPACTED);
  eng_wal_close(w);
  eng_rmtree(dir);
  free(dir);
}

/* A fresh group's log overwritten from index 1, after the purge dropped the
 * segment holding the start of its first run: replay meets the stale tail
 * of that run, then the rewrite from 1. term(0) must still be 0, not
 * "compacted" (found by the model test's soak, seed 9). */
Test(wal, overwrite_from_index_1_after_purge_keeps_term_0) {
  char *dir = eng_tmpdir();
  eng_wal_options o;
  eng_small_opts(&o, dir);
  o.rewrite_after_segments = 1000; /* plain purge */
  eng_wal *w = eng_open_or_skip(&o);
  cr_assert_eq(eng_append_sync(w, 1, 1, 801, 1, MAXLEN, NULL), RK_OK);
  eng_wal_stats st;
  eng_wal_get_stats(w, &st);
  cr_assert_geq(st.active_segment, 3, "the first run must span segments");
  cr_assert_eq(eng_append_sync(w, 1, 1, 2, 2, MAXLEN, NULL), RK_OK); /* new leader from 1 */
  eng_wal_purge_stats ps;
  cr_assert_eq(eng_wal_purge(w, &ps), RK_OK);
  cr_assert_gt(ps.segments_deleted, 0);
  uint64_t t = 99;
  cr_assert_eq(eng_wal_term(w, 1, 0, &t), RK_OK);
  cr_assert_eq(t, 0);
  eng_wal_close(w);
  w = eng_open_or_skip(&o);
  uint64_t f, l;
  eng_wal_first_index(w, 1, &f);
  eng_wal_last_index(w, 1, &l);
  cr_assert_eq(f, 1);
  cr_assert_eq(l, 1);
  t = 99;
  cr_assert_eq(eng_wal_term(w, 1, 0, &t), RK_OK, "term(0) after replay");
  cr_assert_eq(t, 0);
  eng_check_range(w, 1, 1, 2, 2, MAXLEN);
  eng_wal_close(w);
  eng_rmtree(dir);
  free(dir);
}
