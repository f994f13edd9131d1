/* Event-loop integration: the ring fd wakes a poll() loop; a kernel that
 * refuses io_uring yields RK_EUNSUPPORTED with an actionable message. */
#include "eng_test.h"

#include "engine/wal_int.h"

#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

Test(wal_loop, ring_fd_wakes_a_poll_loop) {
  char *dir = eng_tmpdir();
  eng_wal_options o;
  eng_small_opts(&o, dir);
  eng_wal *w = eng_open_or_skip(&o);
  eng_wal_append_req r;
  eng_cb_state s;
  cr_assert_eq(eng_append_async(w, &r, &s, 1, 1, 4, 1, 30, NULL), RK_OK);
  /* the loop a node runs: poll the fd, bounded by the WAL's timeout */
  int turns = 0;
  while (s.calls == 0) {
    cr_assert_lt(turns++, 1000, "no completion after 1000 loop turns");
    int64_t t = eng_wal_timeout_ns(w);
    int ms = t < 0 ? 10000 : (int)(t / 1000000);
    struct pollfd pfd = {.fd = eng_wal_fd(w), .events = POLLIN};
    int n = poll(&pfd, 1, ms);
    cr_assert(n >= 0, "poll: %s", strerror(errno));
    cr_assert_eq(eng_wal_process(w), RK_OK);
  }
  cr_assert_eq(s.status, RK_OK);
  eng_check_range(w, 1, 1, 4, 1, 30);
  eng_wal_close(w);
  eng_rmtree(dir);
  free(dir);
}

/* A seccomp filter makes io_uring_setup fail with ENOSYS, as a locked-down
 * container would (Criterion runs each test in its own process). */
Test(wal_loop, kernel_refusing_io_uring_gives_unsupported) {
#ifdef __NR_io_uring_setup
  struct sock_filter f[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = {.len = (unsigned short)(sizeof f / sizeof f[0]), .filter = f};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
      prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
    cr_skip_test("cannot install a seccomp filter here: %s", strerror(errno));
  char *dir = eng_tmpdir();
  eng_wal_options o;
  eng_small_opts(&o, dir);
  eng_wal *w = NULL;
  eng_wal_recovery rec;
  cr_assert_eq(eng_wal_open(&o, &w, &rec), RK_EUNSUPPORTED);
  cr_assert_null(w);
  cr_assert(strstr(rec.message, "io_uring") != NULL, "%s", rec.message);
  cr_assert(strstr(rec.message, "io_uring_disabled") != NULL, "not actionable: %s", rec.message);
  eng_rmtree(dir);
  free(dir);
#else
  cr_skip_test("no io_uring syscall number on this platform");
#endif
}

/* A big batch's callbacks do not hold back the batch behind it: every
 * WAL_FIRE_SLICE callbacks the WAL reaps, so a batch whose write has completed
 * meanwhile is found durable (and the next one starts) before the big
 * batch's callbacks end; its own callbacks still run after them, in log
 * order. White-box: the first callback of the big batch waits on the ring
 * until the batch behind it has completed. */
typedef struct slice_probe {
  eng_wal *w;
  int seq, big_done, big_total;
  int waited;
  uint64_t durable_at_end_of_big; /* durable_bseq seen by the big batch's last callback */
} slice_probe;

typedef struct slice_req {
  eng_wal_append_req req;
  slice_probe *p;
  int small;
  int at; /* its place among all callbacks (1 = first) */
} slice_req;

static void slice_cb(eng_wal_append_req *req, int status) {
  slice_req *r = (slice_req *)req;
  slice_probe *p = r->p;
  cr_assert_eq(status, RK_OK);
  r->at = ++p->seq;
  if (r->small) return;
  if (p->big_done++ == 0) { /* the small batch was submitted before this callback ran */
    struct io_uring_cqe *cqe;
    cr_assert_eq(io_uring_wait_cqe_nr(&p->w->ring, &cqe, 2), 0); /* its write and fsync */
    p->waited = 1;
  }
  if (p->big_done == p->big_total) p->durable_at_end_of_big = p->w->durable_bseq;
}

Test(wal_loop, a_big_batchs_callbacks_do_not_hold_back_the_next_batch, .timeout = 30) {
  char *dir = eng_tmpdir();
  eng_wal_options o;
  eng_small_opts(&o, dir);
  o.segment_bytes = 4u << 20; /* the big batch must be one batch */
  o.max_batch_bytes = 1u << 20;
  eng_wal *w = eng_open_or_skip(&o);
  enum { BIG = 3 * WAL_FIRE_SLICE };
  slice_probe p = {.w = w, .big_total = BIG};
  static slice_req reqs[BIG + 2];
  uint8_t payload[8] = {0};
  rk_entry e[BIG + 2];
  eng_wal_write wr[BIG + 2];
  /* Request 0 goes out alone (nothing is in flight); the BIG behind it
   * fill the next batch, sealed by the flush; the last request opens the
   * batch after it. Nothing has completed yet, whatever the timing: the
   * batches follow one another, each only once the one before is durable. */
  for (int i = 0; i < BIG + 2; i++) {
    if (i == BIG + 1) cr_assert_eq(eng_wal_flush(w), RK_OK);
    reqs[i] = (slice_req){.p = &p, .small = i == 0 || i == BIG + 1};
    e[i] = (rk_entry){.index = 1, .term = 1, .len = sizeof payload, .data = payload};
    wr[i] = (eng_wal_write){.group = (uint64_t)i + 1, .entries = &e[i], .n_entries = 1};
    cr_assert_eq(eng_wal_append(w, &reqs[i].req, &wr[i], 1, slice_cb), RK_OK);
  }
  cr_assert_eq(p.seq, 0, "no callback inside append");
  cr_assert_not_null(w->inflight);
  cr_assert_not_null(w->sealed);
  cr_assert_eq(w->sealed->nentries, BIG, "the big batch is one batch");
  cr_assert_not_null(w->open);
  uint64_t small_bseq = w->open->seq;
  cr_assert_eq(eng_wal_sync(w), RK_OK);
  cr_assert(p.waited);
  cr_assert_eq(p.big_done, BIG);
  cr_assert_geq(p.durable_at_end_of_big, small_bseq,
                "the small batch was found durable during the big batch's callbacks");
  cr_assert_eq(reqs[BIG + 1].at, 1 + BIG + 1, "its callback still ran after all of theirs");
  cr_assert_eq(p.seq, BIG + 2);
  eng_wal_close(w);
  eng_rmtree(dir);
  free(dir);
}

/* An empty append made with nothing pending is durable at once; an append
 * after it completes after it, even when both are found in the same turn. */
Test(wal_loop, an_empty_append_completes_before_a_later_one) {
  char *dir = eng_tmpdir();
  eng_wal_options o;
  eng_small_opts(&o, dir);
  eng_wal *w = eng_open_or_skip(&o);
  slice_probe p = {.w = w};
  slice_req empty = {.p = &p, .small = 1}, full = {.p = &p, .small = 1};
  uint8_t payload[4] = {1, 2, 3, 4};
  rk_entry e = {.index = 1, .term = 1, .len = sizeof payload, .data = payload};
  eng_wal_write wr = {.group = 1, .entries = &e, .n_entries = 1};
  cr_assert_eq(eng_wal_append(w, &empty.req, NULL, 0, slice_cb), RK_OK);
  cr_assert_eq(eng_wal_append(w, &full.req, &wr, 1, slice_cb), RK_OK);
  cr_assert_eq(p.seq, 0, "no callback inside append");
  cr_assert_eq(eng_wal_timeout_ns(w), 0, "the empty append is due now, batch in flight or not");
  cr_assert_eq(eng_wal_sync(w), RK_OK);
  cr_assert_eq(empty.at, 1);
  cr_assert_eq(full.at, 2);
  eng_wal_close(w);
  eng_rmtree(dir);
  free(dir);
}
