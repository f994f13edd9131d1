/* engine/wal.c — opening, appending, group commit over io_uring.
 *
 * Batch pipeline (at most one batch in flight):
 *
 *   append() --> [open batch] --seal (full, window over, flush)--> [sealed FIFO]
 *                                                                    |
 *           durable: callbacks <-- [in flight: WRITE ->link-> FDATASYNC] <--+
 *
 * The open batch's place in the log (segment, offset) is fixed when it is
 * opened, so entries are indexed at their final location at append time;
 * until their batch is durable their payload stays pinned in the entry cache.
 * A batch is submitted when nothing is in flight and (window == 0, or the
 * window since its first record has passed, or it is sealed). While it syncs,
 * the next one accumulates: under load each fsync carries everything that
 * arrived during the previous one. A durable batch's callbacks run after
 * the next batch is submitted, in log order, with a reap every
 * WAL_FIRE_SLICE of them (fire_durable).
 *
 * Failure: any failed write or fsync stops the WAL (wal_fail). Requests of
 * the failed batch and of every batch behind it get the error; nothing is
 * ever retried (fsyncgate: after a failed fsync the page cache may claim
 * clean pages that never reached the disk). A short write (no error) is
 * continued, never treated as durable until its own fdatasync succeeds.
 */
#include "engine/wal_int.h"

#include "common/rk_assert.h"
#include "common/rk_clock.h"
#include "common/rk_err.h"
#include "common/rk_log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- batches ------------------------------------------------------------ */

static wal_batch *batch_new(eng_wal *w, size_t need) {
  wal_batch *b = w->free_batches;
  if (b) {
    w->free_batches = b->next;
  } else {
    b = calloc(1, sizeof *b);
    if (b == NULL) return NULL;
  }
  uint8_t *buf = b->buf;
  size_t cap = b->cap;
  memset(b, 0, sizeof *b);
  b->buf = buf;
  b->cap = cap;
  if (b->cap < need) {
    size_t ncap = need < 64 * 1024 ? 64 * 1024 : need;
    uint8_t *nb = realloc(b->buf, ncap);
    if (nb == NULL) {
      b->next = w->free_batches;
      w->free_batches = b;
      return NULL;
    }
    b->buf = nb;
    b->cap = ncap;
  }
  b->len = WAL_BATCH_HDR;
  b->op_write = (wal_op){WAL_OP_WRITE, b};
  b->op_fsync = (wal_op){WAL_OP_FSYNC, b};
  return b;
}

static void batch_recycle(eng_wal *w, wal_batch *b) {
  if (b->cap > 4 * (w->opt.max_batch_bytes < (1u << 20) ? w->opt.max_batch_bytes : (1u << 20))) {
    free(b->buf); /* do not hoard huge buffers */
    b->buf = NULL;
    b->cap = 0;
  }
  b->next = w->free_batches;
  w->free_batches = b;
}

static void batch_seal(eng_wal *w) {
  wal_batch *b = w->open;
  RK_ASSERT(b != NULL && b->len >= WAL_BATCH_HDR);
  RK_ASSERT(b->off + b->len <= w->opt.segment_bytes);
  const wal_seg *s = wal_seg_get(w, b->seg);
  RK_ASSERT(s != NULL);
  wal_batch_seal(b->buf, (uint32_t)(b->len - WAL_BATCH_HDR), b->seq, b->nrec, s->mix);
  w->cur_seg = b->seg;
  w->cur_off = b->off + b->len;
  b->next = NULL;
  if (w->sealed_tail)
    w->sealed_tail->next = b;
  else
    w->sealed = b;
  w->sealed_tail = b;
  w->open = NULL;
}

wal_batch *wal_batch_reserve(eng_wal *w, size_t bytes, int *err) {
  RK_ASSERT(bytes + WAL_BATCH_HDR <= w->opt.max_batch_bytes);
  wal_batch *b = w->open;
  if (b &&
      (b->len + bytes > w->opt.max_batch_bytes || b->off + b->len + bytes > w->opt.segment_bytes))
    batch_seal(w);
  if (w->open == NULL) {
    uint64_t seg = w->cur_seg, off = w->cur_off;
    if (off + WAL_BATCH_HDR + bytes > w->opt.segment_bytes) {
      seg++;
      off = WAL_SEG_HDR;
    }
    /* The batch's segment and the one after it must exist (or be preparing). */
    for (uint64_t s = seg; s <= seg + 1; s++) {
      if (wal_seg_get(w, s) == NULL) {
        int rc = wal_seg_prepare(w, s);
        if (rc != RK_OK) {
          *err = rc;
          return NULL;
        }
      }
    }
    b = batch_new(w, WAL_BATCH_HDR + bytes);
    if (b == NULL) {
      *err = RK_ENOMEM;
      return NULL;
    }
    b->seq = w->next_bseq++;
    RK_ASSERTF(b->seq >= wal_seg_get(w, seg)->min_bseq, "batch %" PRIu64 " below segment's lowest",
               b->seq);
    b->seg = seg;
    b->off = off;
    b->open_ns = rk_clock_mono_ns();
    w->cur_seg = seg;
    w->cur_off = off;
    w->open = b;
  }
  b = w->open;
  if (b->len + bytes > b->cap) {
    size_t ncap = b->cap * 2;
    while (ncap < b->len + bytes) ncap *= 2;
    uint8_t *nb = realloc(b->buf, ncap);
    if (nb == NULL) {
      *err = RK_ENOMEM;
      return NULL;
    }
    /* Cache entries point into their own copies, never into b->buf. */
    b->buf = nb;
    b->cap = ncap;
  }
  return b;
}

/* ---- failure ---------------------------------------------------------------- */

static void fire(eng_wal_append_req *head, int status) {
  while (head) {
    eng_wal_append_req *next = head->next_;
    head->next_ = NULL;
    head->cb(head, status);
    head = next;
  }
}

void wal_fail(eng_wal *w, int err) {
  RK_ASSERT(err != RK_OK);
  if (w->stopped) return;
  w->stopped = err;
  RK_ERROR("wal", "WAL stopped: %s; every undurable append fails, nothing is retried",
           rk_strerror(err));
}

/* Takes every waiting request out of every batch and fails it. Called only
 * from process/sync/close so callbacks never run inside eng_wal_append_req. */
void wal_fire_failed(eng_wal *w) {
  /* Inside fire_durable (a callback called eng_wal_process): the outer call
   * fails the rest once the durable callbacks before them have run. */
  if (w->crashed || w->firing) return;
  int err = w->stopped;
  RK_ASSERT(err != RK_OK);
  if (w->done_head) { /* these were durable before the failure */
    eng_wal_append_req *h = w->done_head;
    w->done_head = w->done_tail = NULL;
    fire(h, RK_OK);
  }
  wal_batch *lists[3] = {w->inflight, w->sealed, w->open};
  for (int i = 0; i < 3; i++) {
    for (wal_batch *b = lists[i]; b; b = (i == 1 ? b->next : NULL)) {
      eng_wal_append_req *h = b->reqs_head;
      b->reqs_head = b->reqs_tail = NULL;
      /* Requests of the failing batch get the I/O error; later ones too:
       * they were waiting for a durability that will never come. */
      fire(h, err);
    }
  }
}

/* ---- submission ------------------------------------------------------------- */

static void submit_batch(eng_wal *w, wal_batch *b) {
  wal_seg *s = wal_seg_get(w, b->seg);
  RK_ASSERT(s && s->state == WAL_SEG_READY);
  RK_ASSERT(b->written < b->len);
  b->submit_ns = rk_clock_mono_ns();
  w->inflight = b;
#ifdef RK_TEST_HOOKS
  if (w->hooks.crash == ENG_WAL_CRASH_TORN_WRITE && b->seq == w->hooks.crash_batch) {
    size_t n = w->hooks.crash_torn_bytes < b->len ? w->hooks.crash_torn_bytes : b->len;
    if (n) {
      ssize_t r = pwrite(s->fd, b->buf, n, (off_t)b->off);
      (void)r;
    }
    w->crashed = 1;
    RK_WARN("wal", "test hook: crashed writing batch %" PRIu64 " (%zu of %zu bytes)", b->seq, n,
            b->len);
    return;
  }
#endif
  /* The write and its linked fsync need two free slots together (a link
   * cannot span submits). A submit that cannot free them (the kernel
   * refusing it) fails the batch like any I/O error: never an abort. */
  if (io_uring_sq_space_left(&w->ring) < 2) io_uring_submit(&w->ring);
  if (io_uring_sq_space_left(&w->ring) < 2) {
    RK_ERROR("wal", "no room in the io_uring submission queue for batch %" PRIu64, b->seq);
    wal_fail(w, RK_EIO);
    return;
  }
  struct io_uring_sqe *wr = io_uring_get_sqe(&w->ring);
  RK_ASSERT(wr != NULL);
  io_uring_prep_write(wr, s->fd, b->buf + b->written, (unsigned)(b->len - b->written),
                      b->off + b->written);
  io_uring_sqe_set_data(wr, &b->op_write);
  /* IOSQE_ASYNC: a buffered write can block (page-cache throttling, a
   * journal commit in progress); run it in io_uring's worker, never inline
   * in the event loop's submit. */
  wr->flags |= IOSQE_IO_LINK | IOSQE_ASYNC;
  struct io_uring_sqe *fs = io_uring_get_sqe(&w->ring);
  RK_ASSERT(fs != NULL); /* room for both was checked above */
  io_uring_prep_fsync(fs, s->fd, IORING_FSYNC_DATASYNC);
  io_uring_sqe_set_data(fs, &b->op_fsync);
  b->write_done = b->fsync_done = 0;
  b->fsync_res = 0;
  w->ops_out += 2;
  int rc;
#ifdef RK_TEST_HOOKS
  if (w->hooks.fail_submit_at >= 0 && w->nsubmit_seen++ == (uint64_t)w->hooks.fail_submit_at)
    rc = -(w->hooks.fail_errno ? w->hooks.fail_errno : EBUSY);
  else
#endif
    rc = io_uring_submit(&w->ring);
  if (rc < 0) {
    RK_ERROR("wal", "io_uring_submit: %s", strerror(-rc));
    wal_fail(w, RK_EIO);
  }
}

static int batch_due(const eng_wal *w, const wal_batch *b, uint64_t now) {
  if (b->nrec == 0) return 0;
  return w->opt.batch_window_us == 0 || now >= b->open_ns + w->opt.batch_window_us * 1000;
}

static void maybe_submit(eng_wal *w) {
  if (w->stopped || w->crashed || w->inflight) return;
  if (w->sealed == NULL && w->open && batch_due(w, w->open, rk_clock_mono_ns())) batch_seal(w);
  wal_batch *b = w->sealed;
  if (b == NULL) return;
  wal_seg *s = wal_seg_get(w, b->seg);
  RK_ASSERT(s != NULL);
  if (s->state != WAL_SEG_READY) return; /* its preparation completes first */
  w->sealed = b->next;
  if (w->sealed == NULL) w->sealed_tail = NULL;
  b->next = NULL;
  submit_batch(w, b);
}

static void reap(eng_wal *w);

static void done_push(eng_wal *w, eng_wal_append_req *head, eng_wal_append_req *tail) {
  if (head == NULL) return;
  RK_ASSERT(tail != NULL && tail->next_ == NULL);
  if (w->done_tail)
    w->done_tail->next_ = head;
  else
    w->done_head = head;
  w->done_tail = tail;
}

/* Runs the callbacks on the done list (durable appends), in order, until it
 * is empty. Every WAL_FIRE_SLICE callbacks it reaps: a batch found durable
 * then starts the next write at once, and its callbacks join the done list
 * behind these, so callers still see completions in log order. Inside a
 * callback (w->firing) it does nothing: the running call gets to them. */
static void fire_durable(eng_wal *w) {
  if (w->firing) return;
  w->firing = 1;
  while (w->done_head) {
    eng_wal_append_req *head = w->done_head;
    w->done_head = w->done_tail = NULL;
    for (unsigned k = 1; head; k++) {
      eng_wal_append_req *next = head->next_;
      head->next_ = NULL;
      head->cb(head, RK_OK);
      head = next;
      if (k % WAL_FIRE_SLICE == 0 && head && !w->stopped && !w->crashed) {
        reap(w);
        maybe_submit(w); /* a segment readied by this reap frees a sealed batch */
      }
    }
  }
  w->firing = 0;
}

static void batch_durable(eng_wal *w, wal_batch *b) {
  RK_ASSERT(w->inflight == b);
  RK_ASSERT(b->seq == w->durable_bseq + 1);
  w->durable_bseq = b->seq;
  w->inflight = NULL;
  w->st.batches++;
  w->st.fsyncs++;
  w->st.bytes_written += b->len;
  eng_wal_append_req *reqs = b->reqs_head, *reqs_tail = b->reqs_tail;
  b->reqs_head = b->reqs_tail = NULL;
  batch_recycle(w, b);
  /* Start the next write before running callbacks: the disk works while the
   * callers react; their new appends accumulate for the batch after. */
  maybe_submit(w);
  /* Behind whatever is already durable and waiting (empty appends, or the
   * callbacks being run now), so completions stay in log order. */
  done_push(w, reqs, reqs_tail);
  fire_durable(w);
  wal_cache_trim(&w->ix, w->durable_bseq);
}

static void batch_io_done(eng_wal *w, wal_batch *b) {
  if (!b->write_done || !b->fsync_done) return;
  if (w->stopped) return; /* already failed; buffers freed at close */
  if (b->written < b->len) {
    /* Short write: the linked fdatasync was cancelled or covered only a
     * prefix. Continue the write and sync again. */
    RK_WARN("wal", "short write in batch %" PRIu64 " (%zu of %zu), continuing", b->seq, b->written,
            b->len);
    w->inflight = NULL;
    w->st.short_writes++;
    submit_batch(w, b);
    return;
  }
  if (b->fsync_res < 0) {
    RK_ERROR("wal", "fdatasync of batch %" PRIu64 " failed: %s", b->seq, strerror(-b->fsync_res));
    wal_fail(w, rk_err_from_errno(b->fsync_res) == RK_ENOSPC ? RK_ENOSPC : RK_EIO);
    return;
  }
#ifdef RK_TEST_HOOKS
  if (w->hooks.fsync_delay_us) {
    uint64_t until = b->submit_ns + w->hooks.fsync_delay_us * 1000;
    if (rk_clock_mono_ns() < until) {
      b->hold_until_ns = until;
      return; /* eng_wal_process() releases it */
    }
  }
#endif
  batch_durable(w, b);
}

static void handle_cqe(eng_wal *w, const struct io_uring_cqe *cqe) {
  wal_op *op = io_uring_cqe_get_data(cqe);
  int res = cqe->res;
  RK_ASSERT(w->ops_out > 0);
  w->ops_out--;
  RK_ASSERT(op != NULL);
  switch (op->kind) {
  case WAL_OP_WRITE: {
    wal_batch *b = op->owner;
#ifdef RK_TEST_HOOKS
    if (w->hooks.fail_write_at >= 0 && w->nwrite_seen++ == (uint64_t)w->hooks.fail_write_at)
      res = -(w->hooks.fail_errno ? w->hooks.fail_errno : EIO);
    if (res > 1 && w->hooks.short_write_at >= 0 &&
        w->nshort_seen++ == (uint64_t)w->hooks.short_write_at)
      res /= 2; /* the kernel wrote only a prefix (the rest is rewritten) */
#endif
    b->write_done = 1;
    if (res < 0) {
      RK_ERROR("wal", "write of batch %" PRIu64 " failed: %s", b->seq, strerror(-res));
      wal_fail(w, rk_err_from_errno(res) == RK_ENOSPC ? RK_ENOSPC : RK_EIO);
    } else {
      b->written += (size_t)res;
    }
    batch_io_done(w, b);
    break;
  }
  case WAL_OP_FSYNC: {
    wal_batch *b = op->owner;
#ifdef RK_TEST_HOOKS
    if (res != -ECANCELED && w->hooks.fail_fsync_at >= 0 &&
        w->nfsync_seen++ == (uint64_t)w->hooks.fail_fsync_at)
      res = -(w->hooks.fail_errno ? w->hooks.fail_errno : EIO);
#endif
    b->fsync_done = 1;
    b->fsync_res = (res == -ECANCELED && b->written < b->len) ? 0 : res;
    batch_io_done(w, b);
    break;
  }
  case WAL_OP_BACKGROUND:
    if (res < 0) RK_WARN("wal", "background close/fsync failed: %s", strerror(-res));
    break;
  default: wal_seg_prep_complete(w, op->owner, op, res); break;
  }
}

/* ---- event loop ------------------------------------------------------------ */

static void reap(eng_wal *w) {
  struct io_uring_cqe *cqe;
  while (io_uring_peek_cqe(&w->ring, &cqe) == 0) {
    struct io_uring_cqe c = *cqe;
    io_uring_cqe_seen(&w->ring, cqe);
    handle_cqe(w, &c);
  }
}

int eng_wal_process(eng_wal *w) {
  if (w->crashed) return RK_ESTOPPED;
  reap(w);
  fire_durable(w);
  if (w->inflight && w->inflight->hold_until_ns && !w->stopped &&
      rk_clock_mono_ns() >= w->inflight->hold_until_ns)
    batch_durable(w, w->inflight);
  if (w->stopped) {
    wal_fire_failed(w);
    return w->stopped;
  }
  maybe_submit(w);
  return RK_OK;
}

int64_t eng_wal_timeout_ns(eng_wal *w) {
  if (w->crashed || w->stopped) return -1;
  uint64_t now = rk_clock_mono_ns();
  if (w->done_head && !w->firing) return 0; /* durable empty appends to answer */
  if (w->inflight) {
    if (w->inflight->hold_until_ns)
      return w->inflight->hold_until_ns > now ? (int64_t)(w->inflight->hold_until_ns - now) : 0;
    return -1;
  }
  if (w->sealed) return wal_seg_get(w, w->sealed->seg)->state == WAL_SEG_READY ? 0 : -1;
  if (w->open && w->open->nrec) {
    uint64_t due = w->open->open_ns + w->opt.batch_window_us * 1000;
    return due > now ? (int64_t)(due - now) : 0;
  }
  return -1;
}

int eng_wal_poll(eng_wal *w, uint64_t timeout_us) {
  if (w->crashed) return RK_ESTOPPED;
  int64_t t = eng_wal_timeout_ns(w);
  uint64_t wait = timeout_us * 1000;
  if (t >= 0 && (uint64_t)t < wait) wait = (uint64_t)t;
  struct io_uring_cqe *cqe;
  if (wait > 0 && io_uring_peek_cqe(&w->ring, &cqe) != 0) {
    if (w->ops_out > 0) {
      struct __kernel_timespec ts = {.tv_sec = (long long)(wait / 1000000000u),
                                     .tv_nsec = (long long)(wait % 1000000000u)};
      io_uring_wait_cqe_timeout(&w->ring, &cqe, &ts);
    } else {
      struct timespec ts = {.tv_sec = (time_t)(wait / 1000000000u),
                            .tv_nsec = (long)(wait % 1000000000u)};
      nanosleep(&ts, NULL);
    }
  }
  return eng_wal_process(w);
}

int eng_wal_flush(eng_wal *w) {
  if (w->crashed) return RK_ESTOPPED;
  if (w->stopped) return w->stopped;
  if (w->open && w->open->nrec) batch_seal(w);
  maybe_submit(w);
  return RK_OK;
}

static int busy(const eng_wal *w) {
  return w->inflight || w->sealed || (w->open && w->open->nrec) || w->done_head;
}

int eng_wal_sync(eng_wal *w) {
  /* Not from a durability callback: the callbacks behind the running one
   * cannot run until it returns, so this would wait for itself. */
  RK_ASSERT(!w->firing);
  int rc = eng_wal_flush(w);
  while (rc == RK_OK && busy(w)) {
    rc = eng_wal_poll(w, 100000);
    if (rc == RK_OK && w->open && w->open->nrec && !w->inflight && !w->sealed) batch_seal(w);
  }
  /* Stopped (maybe already inside an append, whose submit failed): every
   * waiter hears of it before this returns, as the contract says. */
  if (w->stopped) wal_fire_failed(w);
  return rc;
}

int eng_wal_stopped(const eng_wal *w) { return w->crashed ? RK_ESTOPPED : w->stopped; }

int eng_wal_fd(const eng_wal *w) { return w->ring.ring_fd; }

/* ---- append ------------------------------------------------------------------ */

static int check_dup_groups(const eng_wal_write *writes, size_t n) {
  if (n <= 1) return RK_OK;
  if (n <= 64) {
    for (size_t i = 0; i < n; i++)
      for (size_t j = i + 1; j < n; j++)
        if (writes[i].group == writes[j].group) return RK_EINVAL;
    return RK_OK;
  }
  uint64_t *ids = malloc(n * sizeof *ids);
  if (ids == NULL) return RK_ENOMEM;
  for (size_t i = 0; i < n; i++) ids[i] = writes[i].group;
  int rc = RK_OK;
  for (size_t i = 1; i < n && rc == RK_OK; i++) {
    uint64_t v = ids[i];
    size_t j = i;
    while (j > 0 && ids[j - 1] > v) {
      ids[j] = ids[j - 1];
      j--;
    }
    ids[j] = v;
  }
  for (size_t i = 1; i < n; i++)
    if (ids[i] == ids[i - 1]) rc = RK_EINVAL;
  free(ids);
  return rc;
}

int eng_wal_append(eng_wal *w, eng_wal_append_req *req, const eng_wal_write *writes, size_t n,
                   eng_wal_append_cb cb) {
  RK_ASSERT(req != NULL && cb != NULL && (n == 0 || writes != NULL));
  if (w->crashed) return RK_ESTOPPED;
  if (w->stopped) return RK_ESTOPPED;
  /* 1. Validate everything; nothing changes before this passes. */
  uint64_t bytes = 0;
  for (size_t i = 0; i < n; i++) {
    const eng_wal_write *wr = &writes[i];
    if (wr->group == 0) return RK_EINVAL;
    if (wr->n_entries && wr->entries == NULL) return RK_EINVAL;
    const wal_group *g = wal_index_find(&w->ix, wr->group);
    for (size_t k = 0; k < wr->n_entries; k++) {
      const rk_entry *e = &wr->entries[k];
      if (e->len > w->opt.max_entry_bytes) return RK_ETOOLARGE;
      if (e->len && e->data == NULL) return RK_EINVAL;
      if (e->type > 255 || e->index == 0) return RK_EINVAL;
      if (k > 0 && e->index != wr->entries[k - 1].index + 1) return RK_EINVAL;
      bytes += wal_rec_entry_size(e->len);
    }
    if (wr->n_entries) {
      int rc = wal_group_check_append(g, wr->entries[0].index);
      if (rc != RK_OK) return rc;
    }
    if (wr->hard_state) bytes += WAL_REC_HS_LEN;
  }
  if (bytes + WAL_BATCH_HDR > w->opt.max_batch_bytes) return RK_ETOOLARGE;
  int rc = check_dup_groups(writes, n);
  if (rc != RK_OK) return rc;
  if (bytes == 0) {
    /* Nothing to write: durable once everything before it is. */
    wal_batch *t = (w->open && w->open->nrec) ? w->open
                   : w->sealed_tail           ? w->sealed_tail
                                              : w->inflight;
    req->cb = cb;
    req->next_ = NULL;
    eng_wal_append_req **head = t ? &t->reqs_head : &w->done_head;
    eng_wal_append_req **tail = t ? &t->reqs_tail : &w->done_tail;
    if (*tail)
      (*tail)->next_ = req;
    else
      *head = req;
    *tail = req;
    w->st.appends++;
    return RK_OK;
  }
  wal_group **gs = NULL;
  wal_group *g1 = NULL;
  if (n > 1) {
    gs = malloc(n * sizeof *gs);
    if (gs == NULL) return RK_ENOMEM;
  }
  for (size_t i = 0; i < n; i++) {
    wal_group *g = wal_index_get(&w->ix, writes[i].group);
    if (g == NULL) {
      free(gs);
      return RK_ENOMEM;
    }
    if (gs)
      gs[i] = g;
    else
      g1 = g;
  }
  wal_batch *b = wal_batch_reserve(w, bytes, &rc);
  if (b == NULL) {
    free(gs);
    return rc;
  }
  /* 2. Encode and index. */
  for (size_t i = 0; i < n; i++) {
    const eng_wal_write *wr = &writes[i];
    wal_group *g = gs ? gs[i] : g1;
    for (size_t k = 0; k < wr->n_entries; k++) {
      const rk_entry *e = &wr->entries[k];
      uint8_t *p = b->buf + b->len;
      wal_rec_entry_encode(p, g->id, e);
      wal_loc loc = {.term = e->term,
                     .bseq = b->seq,
                     .seg = b->seg,
                     .off = (uint32_t)(b->off + b->len),
                     .len = e->len,
                     .type = e->type};
      /* Cannot index or pin what we are about to write: stop rather than
       * serve a read we cannot answer. */
      if (wal_group_add(g, e->index, &loc) != RK_OK ||
          wal_cache_put(&w->ix, wal_group_loc(g, e->index), p + WAL_REC_ENTRY_HDR) != RK_OK)
        wal_fail(w, RK_ENOMEM);
      b->len += wal_rec_entry_size(e->len);
      b->nrec++;
      b->nentries++;
    }
    if (wr->hard_state) {
      wal_rec_hs_encode(b->buf + b->len, g->id, wr->hard_state);
      b->len += WAL_REC_HS_LEN;
      b->nrec++;
      b->nhs++;
      g->hs = *wr->hard_state;
      g->has_hs = 1;
      g->hs_seg = b->seg;
      g->touched = 1;
      w->st.hard_states++;
    }
    w->st.entries += wr->n_entries;
  }
  free(gs);
  req->cb = cb;
  req->next_ = NULL;
  if (b->reqs_tail)
    b->reqs_tail->next_ = req;
  else
    b->reqs_head = req;
  b->reqs_tail = req;
  w->st.appends++;
  maybe_submit(w);
  wal_cache_trim(&w->ix, w->durable_bseq);
  return RK_OK;
}

int wal_wait_one(eng_wal *w) {
  struct io_uring_cqe *cqe;
  int rc = io_uring_wait_cqe(&w->ring, &cqe);
  if (rc < 0) return rk_err_from_errno(rc);
  reap(w);
  return RK_OK;
}
