/* WAL failure semantics (fsyncgate): an injected EIO/ENOSPC on fsync or write
 * reaches every waiting caller and stops the WAL; nothing is retried. */
#include "eng_test.h"

#include "common/rk_clock.h"

#include <errno.h>
#include <stdlib.h>

#ifdef RK_TEST_HOOKS

/* A WAL in a fresh dir (*dir, options *o) holding group 1's entries 1..10,
 * acknowledged; *h is the default hooks, for the caller to arm. */
static eng_wal *open_acked(char **dir, eng_wal_options *o, eng_wal_hooks *h) {
  *dir = eng_tmpdir();
  eng_small_opts(o, *dir);
  eng_wal *w = eng_open_or_skip(o);
  cr_assert_eq(eng_append_sync(w, 1, 1, 11, 1, 40, NULL), RK_OK);
  eng_wal_hooks_default(h);
  return w;
}

static void fail_one(int fsync_or_write, int err, int expect) {
  char *dir;
  eng_wal_options o;
  eng_wal_hooks h;
  eng_wal *w = open_acked(&dir, &o, &h);
  if (fsync_or_write)
    h.fail_fsync_at = 0;
  else
    h.fail_write_at = 0;
  h.fail_errno = err;
  eng_wal_set_hooks(w, &h);
  /* r1 goes out at once (idle WAL); r2, r3 wait behind it in the next batch */
  eng_wal_append_req r1, r2, r3, r4;
  eng_cb_state s1, s2, s3, s4;
  cr_assert_eq(eng_append_async(w, &r1, &s1, 1, 11, 12, 1, 40, NULL), RK_OK);
  cr_assert_eq(eng_append_async(w, &r2, &s2, 2, 1, 5, 1, 40, NULL), RK_OK);
  cr_assert_eq(eng_append_async(w, &r3, &s3, 1, 12, 13, 1, 40, NULL), RK_OK);
  int rc = eng_wal_sync(w);
  cr_assert_eq(rc, expect, "sync returned %s", rk_errname(rc));
  cr_assert_eq(s1.calls, 1);
  cr_assert_eq(s1.status, expect, "in-flight waiter got %s", rk_errname(s1.status));
  cr_assert_eq(s2.calls, 1);
  cr_assert_eq(s2.status, expect, "queued waiter got %s", rk_errname(s2.status));
  cr_assert_eq(s3.calls, 1);
  cr_assert_eq(s3.status, expect);
  cr_assert_eq(eng_wal_stopped(w), expect);
  /* no retry, no new appends, no compaction, no reads of unsafe state */
  cr_assert_eq(eng_append_async(w, &r4, &s4, 1, 13, 14, 1, 40, NULL), RK_ESTOPPED);
  cr_assert_eq(eng_wal_compact(w, 1, 3, 0), RK_ESTOPPED);
  cr_assert_eq(eng_wal_purge(w, NULL), RK_ESTOPPED);
  uint64_t l;
  cr_assert_eq(eng_wal_last_index(w, 1, &l), RK_ESTOPPED);
  cr_assert_eq(eng_wal_process(w), expect);
  cr_assert_eq(s1.calls + s2.calls + s3.calls + s4.calls, 3, "a waiter was called twice");
  eng_wal_stats st;
  eng_wal_get_stats(w, &st);
  eng_wal_close(w);
  /* What was acknowledged before the failure is still there. */
  w = eng_open_or_skip(&o);
  eng_check_range(w, 1, 1, 11, 1, 40);
  eng_wal_close(w);
  eng_rmtree(dir);
  free(dir);
}

Test(wal_faults, eio_on_fsync_reaches_every_waiter_and_stops_appends) { fail_one(1, EIO, RK_EIO); }
Test(wal_faults, enospc_on_fsync_is_reported_as_enospc) { fail_one(1, ENOSPC, RK_ENOSPC); }
Test(wal_faults, eio_on_write_stops_the_wal) { fail_one(0, EIO, RK_EIO); }

/* io_uring_submit refused: the batch's SQEs stay in the ring and their
 * completions never come unless they go in. The waiter hears of it, the
 * WAL stops, and close still returns (it submits them as it drains; it used
 * to wait for them forever). */
Test(wal_faults, a_failed_submit_stops_the_wal_and_close_still_returns, .timeout = 30) {
  char *dir;
  eng_wal_options o;
  eng_wal_hooks h;
  eng_wal *w = open_acked(&dir, &o, &h);
  h.fail_submit_at = 0;
  eng_wal_set_hooks(w, &h);
  eng_wal_append_req r1, r2;
  eng_cb_state s1, s2;
  cr_assert_eq(eng_append_async(w, &r1, &s1, 1, 11, 12, 1, 40, NULL), RK_OK);
  cr_assert_eq(eng_wal_sync(w), RK_EIO);
  cr_assert_eq(s1.calls, 1);
  cr_assert_eq(s1.status, RK_EIO, "the waiter got %s", rk_errname(s1.status));
  cr_assert_eq(eng_append_async(w, &r2, &s2, 1, 12, 13, 1, 40, NULL), RK_ESTOPPED);
  eng_wal_close(w);
  w = eng_open_or_skip(&o);
  eng_check_range(w, 1, 1, 11, 1, 40); /* what was acknowledged before */
  eng_wal_close(w);
  eng_rmtree(dir);
  free(dir);
}

/* The fsync delay hook: durability is never reported before the delay, and
 * appends made meanwhile share the next batch. */
Test(wal_faults, injected_fsync_delay_holds_durability_back) {
  char *dir = eng_tmpdir();
  eng_wal_options o;
  eng_small_opts(&o, dir);
  eng_wal *w = eng_open_or_skip(&o);
  eng_wal_hooks h;
  eng_wal_hooks_default(&h);
  h.fsync_delay_us = 20000;
  eng_wal_set_hooks(w, &h);
  eng_wal_append_req r[10];
  eng_cb_state s[10];
  uint64_t t0 = rk_clock_mono_ns();
  cr_assert_eq(eng_append_async(w, &r[0], &s[0], 1, 1, 2, 1, 40, NULL), RK_OK);
  for (int i = 1; i < 10; i++)
    cr_assert_eq(
        eng_append_async(w, &r[i], &s[i], 1, (uint64_t)i + 1, (uint64_t)i + 2, 1, 40, NULL), RK_OK);
  while (s[0].calls == 0) eng_wal_poll(w, 100000);
  uint64_t t1 = rk_clock_mono_ns();
  /* a lower bound only: the delay can make it later, never earlier */
  cr_assert_geq(t1 - t0, 20000u * 1000u);
  cr_assert_eq(eng_wal_sync(w), RK_OK);
  eng_wal_stats st;
  eng_wal_get_stats(w, &st);
  cr_assert_eq(st.fsyncs, 2);
  for (int i = 0; i < 10; i++) cr_assert_eq(s[i].status, RK_OK);
  eng_wal_close(w);
  eng_rmtree(dir);
  free(dir);
}
#else
Test(wal_faults, hooks_compiled_out) { cr_skip_test("built without RK_TEST_HOOKS"); }
#endif

#ifdef RK_TEST_HOOKS
/* A short write (no error) is continued and synced again; the callback only
 * fires once the whole batch is written and synced. */
Test(wal_faults, short_write_is_continued_not_acknowledged_early) {
  char *dir = eng_tmpdir();
  eng_wal_options o;
  eng_small_opts(&o, dir);
  eng_wal *w = eng_open_or_skip(&o);
  eng_wal_hooks h;
  eng_wal_hooks_default(&h);
  h.short_write_at = 0;
  eng_wal_set_hooks(w, &h);
  cr_assert_eq(eng_append_sync(w, 3, 1, 15, 2, 100, NULL), RK_OK);
  cr_assert_eq(eng_wal_stopped(w), RK_OK);
  eng_wal_stats st;
  eng_wal_get_stats(w, &st);
  cr_assert_eq(st.short_writes, 1, "the short-write path was not taken");
  eng_wal_close(w);
  w = eng_open_or_skip(&o);
  eng_check_range(w, 3, 1, 15, 2, 100);
  eng_wal_close(w);
  eng_rmtree(dir);
  free(dir);
}
#endif
