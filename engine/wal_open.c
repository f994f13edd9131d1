/* engine/wal_open.c — opening (io_uring probe, directory lock, recovery,
 * segment preparation), closing, statistics, the invariant checker and the
 * test hooks. */
#include "engine/wal_int.h"

#include "common/rk_assert.h"
#include "common/rk_clock.h"
#include "common/rk_err.h"
#include "common/rk_log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define WAL_RING_ENTRIES 64u

void eng_wal_options_default(eng_wal_options *o) {
  memset(o, 0, sizeof *o);
  o->segment_bytes = 64u << 20;
  o->max_entry_bytes = 8u << 20;
  o->max_batch_bytes = 16u << 20;
  o->batch_window_us = 0;
  o->cache_bytes = 64u << 20;
  o->rewrite_after_segments = 8;
  o->rewrite_max_group_bytes = 1u << 20;
  o->recycle_segments = 4;
  o->prefill_segments = 0;
}

__attribute__((format(printf, 2, 3))) static void set_msg(eng_wal_recovery *rec, const char *fmt,
                                                          ...) {
  if (rec == NULL) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(rec->message, sizeof rec->message, fmt, ap);
  va_end(ap);
}

/* ---- open / close ------------------------------------------------------------ */

static int probe_uring(eng_wal *w, eng_wal_recovery *rec) {
  int rc = io_uring_queue_init(WAL_RING_ENTRIES, &w->ring, 0);
  if (rc < 0) {
    set_msg(rec,
            "io_uring_queue_init failed (%s): rangekv needs io_uring (Linux >= 5.6) for "
            "its WAL; check /proc/sys/kernel/io_uring_disabled and container seccomp "
            "policy%s",
            strerror(-rc), "");
    RK_ERROR("wal", "%s", rec ? rec->message : "io_uring unavailable");
    return RK_EUNSUPPORTED;
  }
  w->ring_ok = 1;
  struct io_uring_probe *p = io_uring_get_probe_ring(&w->ring);
  if (p == NULL) {
    set_msg(rec, "io_uring probe failed: kernel too old for rangekv's WAL (need >= 5.6)%s%s", "",
            "");
    return RK_EUNSUPPORTED;
  }
  static const struct {
    int op;
    const char *name;
  } need[] = {
      {IORING_OP_WRITE, "WRITE"}, {IORING_OP_FSYNC, "FSYNC"}, {IORING_OP_FALLOCATE, "FALLOCATE"}};
  for (size_t i = 0; i < sizeof need / sizeof need[0]; i++) {
    if (!io_uring_opcode_supported(p, need[i].op)) {
      io_uring_free_probe(p);
      set_msg(rec, "io_uring lacks IORING_OP_%s: kernel too old for rangekv's WAL%s", need[i].name,
              " (need >= 5.6)");
      return RK_EUNSUPPORTED;
    }
  }
  /* Recycling renames a spare on the ring (Linux >= 5.11); without it,
   * purged segments are deleted as before. */
  w->can_rename = io_uring_opcode_supported(p, IORING_OP_RENAMEAT);
  if (!w->can_rename && w->opt.recycle_segments)
    RK_WARN("wal", "io_uring lacks IORING_OP_RENAMEAT (Linux < 5.11): segments are not recycled");
  io_uring_free_probe(p);
  return RK_OK;
}

static int check_options(const eng_wal_options *o, eng_wal_recovery *rec) {
  const char *bad = NULL;
  if (o->dir == NULL || o->dir[0] == '\0')
    bad = "dir is required";
  else if (o->cluster_id == 0 || o->node_id == 0)
    bad = "cluster_id and node_id must be non-zero";
  else if (o->segment_bytes < WAL_MIN_SEGMENT || o->segment_bytes > WAL_MAX_SEGMENT)
    bad = "segment_bytes out of range [16 KiB, 4 GiB]";
  else if (o->max_batch_bytes + WAL_SEG_HDR > o->segment_bytes || o->max_batch_bytes < 4096)
    bad = "max_batch_bytes must be >= 4096 and fit in a segment after its header";
  else if ((uint64_t)o->max_entry_bytes + WAL_REC_ENTRY_HDR + WAL_BATCH_HDR > o->max_batch_bytes)
    bad = "max_entry_bytes must fit in one batch";
  else if (o->rewrite_max_group_bytes * 2 + 4096 > o->max_batch_bytes)
    bad = "rewrite_max_group_bytes must fit in half a batch";
  else if (o->prefill_segments > o->recycle_segments)
    bad = "prefill_segments must not exceed recycle_segments";
  if (bad) {
    set_msg(rec, "invalid WAL options: %s%s", bad, "");
    return RK_EINVAL;
  }
  return RK_OK;
}

int eng_wal_open(const eng_wal_options *opt, eng_wal **out, eng_wal_recovery *rec) {
  *out = NULL;
  if (rec) memset(rec, 0, sizeof *rec);
  uint64_t t0 = rk_clock_mono_ns();
  int rc = check_options(opt, rec);
  if (rc != RK_OK) return rc;
  eng_wal *w = calloc(1, sizeof *w);
  if (w == NULL) return RK_ENOMEM;
  w->opt = *opt;
  w->dirfd = -1;
  w->op_bg = (wal_op){WAL_OP_BACKGROUND, w};
#ifdef RK_TEST_HOOKS
  eng_wal_hooks_default(&w->hooks);
#endif
  w->dir = strdup(opt->dir);
  if (w->dir == NULL) {
    rc = RK_ENOMEM;
    goto fail_free;
  }
  w->opt.dir = w->dir;
  if (mkdir(w->dir, 0755) != 0 && errno != EEXIST) {
    rc = rk_err_from_errno(errno);
    set_msg(rec, "cannot create WAL directory %s: %s", w->dir, strerror(errno));
    goto fail_free;
  }
  w->dirfd = open(w->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (w->dirfd < 0) {
    rc = rk_err_from_errno(errno);
    set_msg(rec, "cannot open WAL directory %s: %s", w->dir, strerror(errno));
    goto fail_free;
  }
  if (flock(w->dirfd, LOCK_EX | LOCK_NB) != 0) {
    rc = RK_EAGAIN;
    set_msg(rec, "WAL directory %s is locked by another process (%s)", w->dir, strerror(errno));
    goto fail_free;
  }
  rc = probe_uring(w, rec);
  if (rc != RK_OK) goto fail_free;
  rc = wal_index_init(&w->ix, opt->cache_bytes);
  if (rc != RK_OK) goto fail_free;
  w->next_bseq = 1;
  rc = wal_recover(w, rec);
  if (rc != RK_OK) goto fail_free;
  w->durable_bseq = w->next_bseq - 1;
  rc = wal_spares_open(w);
  if (rc != RK_OK) {
    set_msg(rec, "cannot set up spare WAL segments in %s: %s", w->dir, rk_strerror(rc));
    goto fail_free;
  }
  if (w->nsegs == 0) {
    rc = wal_seg_prepare(w, 1);
    if (rc != RK_OK) goto fail_free;
    w->cur_seg = 1;
    w->cur_off = WAL_SEG_HDR;
  }
  if (wal_seg_get(w, w->cur_seg + 1) == NULL) {
    rc = wal_seg_prepare(w, w->cur_seg + 1);
    if (rc != RK_OK) goto fail_free;
  }
  /* Wait for every preparation so open reports its errors itself. */
  for (;;) {
    int pending = 0;
    for (size_t i = 0; i < w->nsegs; i++) pending |= w->segs[i]->state != WAL_SEG_READY;
    if (!pending || w->stopped) break;
    wal_wait_one(w);
  }
  if (w->stopped) {
    rc = w->stopped;
    set_msg(rec, "cannot prepare a WAL segment in %s: %s", w->dir, rk_strerror(rc));
    goto fail_free;
  }
  if (rec) {
    rec->groups = w->ix.ngroups;
    rec->elapsed_ns = rk_clock_mono_ns() - t0;
  }
  RK_ASSERT(wal_check_invariants(w) == RK_OK);
  *out = w;
  return RK_OK;

fail_free:
  w->crashed = 1; /* close must not write anything */
  eng_wal_close(w);
  return rc;
}

void eng_wal_close(eng_wal *w) {
  if (w == NULL) return;
  if (!w->crashed && w->ring_ok) {
    eng_wal_sync(w);
    if (w->stopped) wal_fire_failed(w);
  }
  /* Reap whatever the kernel still owes us before freeing its buffers.
   * Submitting as well: a failed io_uring_submit leaves its SQEs in the
   * ring, and their completions never come unless they go in. */
  int leak = 0;
  for (int transient = 0; w->ring_ok && w->ops_out > 0;) {
    int rc = io_uring_submit_and_wait(&w->ring, 1);
    if (rc < 0 && ((rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) || ++transient > 1000)) {
      /* The kernel may still use the buffers: keep them rather than let it
       * write freed memory into a segment. */
      RK_ERROR("wal",
               "close: %" PRId64 " I/O operations never completed (%s); their buffers are leaked",
               w->ops_out, strerror(-rc));
      leak = 1;
      break;
    }
    struct io_uring_cqe *cqe;
    while (w->ops_out > 0 && io_uring_peek_cqe(&w->ring, &cqe) == 0) {
      io_uring_cqe_seen(&w->ring, cqe);
      w->ops_out--;
    }
  }
  wal_batch *lists[4] = {w->inflight, w->sealed, w->open, w->free_batches};
  for (int i = 0; i < 4 && !leak; i++) {
    wal_batch *b = lists[i];
    while (b) {
      wal_batch *next = (i == 0 || i == 2) ? NULL : b->next;
      free(b->buf);
      free(b);
      b = next;
    }
  }
  wal_seg_close_all(w);
  free(w->spares);
  wal_index_free(&w->ix);
  if (w->ring_ok) io_uring_queue_exit(&w->ring);
  if (w->dirfd >= 0) close(w->dirfd);
  free(w->dir);
  free(w);
}

void eng_wal_get_stats(const eng_wal *w, eng_wal_stats *s) {
  *s = w->st;
  s->segments_live = w->nsegs;
  s->first_segment = w->seg_first;
  s->active_segment = w->cur_seg;
  s->cache_bytes = w->ix.cache_bytes;
  s->cache_hits = w->ix.hits;
  s->cache_misses = w->ix.misses;
  s->groups = w->ix.ngroups;
  s->spares = w->nspares;
}

/* Every structural invariant of the WAL; O(retained entries). Called after
 * open and by the tests after every few operations. */
int wal_check_invariants(const eng_wal *w) {
  RK_ASSERT(w->durable_bseq < w->next_bseq);
  RK_ASSERT(w->inflight == NULL || w->inflight->seq == w->durable_bseq + 1);
  RK_ASSERT(w->nsegs == 0 || (w->cur_seg >= w->seg_first && w->cur_seg < w->seg_first + w->nsegs));
  RK_ASSERT(w->cur_off >= WAL_SEG_HDR && w->cur_off <= w->opt.segment_bytes);
  /* segments: READY ones, then at most one PREPARING, then QUEUED ones
   * (no file yet, nothing on the ring) */
  int stage = WAL_SEG_READY;
  for (size_t i = 0; i < w->nsegs; i++) {
    const wal_seg *s = w->segs[i];
    if (s->state == WAL_SEG_READY) {
      RK_ASSERT(stage == WAL_SEG_READY && s->fd >= 0);
    } else if (s->state == WAL_SEG_PREPARING) {
      RK_ASSERT(stage == WAL_SEG_READY);
      stage = WAL_SEG_PREPARING;
    } else {
      RK_ASSERT(s->state == WAL_SEG_QUEUED && s->fd < 0 && s->prep_pending == 0);
      stage = WAL_SEG_QUEUED;
    }
  }
  /* batches: in flight, then sealed, then open, with consecutive sequences */
  uint64_t expect = w->inflight ? w->inflight->seq + 1 : w->durable_bseq + 1;
  for (const wal_batch *b = w->sealed; b; b = b->next) {
    RK_ASSERTF(b->seq == expect, "sealed batch %" PRIu64 " != %" PRIu64, b->seq, expect);
    RK_ASSERT(b->off + b->len <= w->opt.segment_bytes && b->nrec > 0);
    expect++;
  }
  if (w->open) {
    RK_ASSERT(w->open->seq == expect);
    expect++;
  }
  RK_ASSERT(expect == w->next_bseq);
  /* groups and the cache */
  uint64_t cached = 0;
  size_t ngroups = 0;
  for (size_t i = 0; i < w->ix.nslots; i++) {
    const wal_group *g = w->ix.slots[i];
    if (g == NULL) continue;
    ngroups++;
    RK_ASSERT(g->first >= 1 && g->n <= g->cap && (g->n == 0 || g->head < g->cap));
    uint64_t prev_seg = 0;
    for (size_t k = 0; k < g->n; k++) {
      const wal_loc *l = &g->locs[(g->head + k) % g->cap];
      RK_ASSERTF(wal_seg_get(w, l->seg) != NULL,
                 "group %" PRIu64 " index %" PRIu64 " in dead segment %" PRIu64, g->id,
                 g->first + k, l->seg);
      RK_ASSERT(l->seg >= prev_seg);
      prev_seg = l->seg;
      RK_ASSERT(l->bseq < w->next_bseq);
      RK_ASSERT(l->off >= WAL_SEG_HDR + WAL_BATCH_HDR && l->off + l->len <= w->opt.segment_bytes);
      const uint8_t *c = wal_cache_get(&w->ix, l);
      RK_ASSERTF(l->len == 0 || l->bseq <= w->durable_bseq || c != NULL,
                 "undurable entry %" PRIu64 " of group %" PRIu64 " not pinned", g->first + k,
                 g->id);
      if (c) cached += l->len;
    }
    if (g->has_hs) RK_ASSERT(wal_seg_get(w, g->hs_seg) != NULL);
    if (g->has_mark) RK_ASSERT(wal_seg_get(w, g->mark_seg) != NULL);
  }
  RK_ASSERT(ngroups == w->ix.ngroups);
  /* Live entries' copies, plus copies of compacted/overwritten entries not
   * yet evicted with their chunk. */
  RK_ASSERTF(cached <= w->ix.cache_bytes, "cache bytes %" PRIu64 " > %" PRIu64, cached,
             w->ix.cache_bytes);
  uint64_t held = 0;
  for (size_t k = 0; k < w->ix.cn; k++) {
    const wal_cache_chunk *c = &w->ix.chunks[(w->ix.chead + k) % w->ix.ccap];
    RK_ASSERT(c->used <= c->cap && c->max_bseq < w->next_bseq);
    if (k > 0) RK_ASSERT(c->max_bseq >= w->ix.chunks[(w->ix.chead + k - 1) % w->ix.ccap].max_bseq);
    held += c->used;
  }
  RK_ASSERT(held == w->ix.cache_bytes);
  return RK_OK;
}

#ifdef RK_TEST_HOOKS
void eng_wal_hooks_default(eng_wal_hooks *h) {
  memset(h, 0, sizeof *h);
  h->fail_fsync_at = -1;
  h->fail_write_at = -1;
  h->short_write_at = -1;
  h->fail_submit_at = -1;
  h->fail_read_at = -1;
}
void eng_wal_set_hooks(eng_wal *w, const eng_wal_hooks *h) {
  w->hooks = *h;
  w->nfsync_seen = w->nwrite_seen = w->nshort_seen = w->nsubmit_seen = w->nread_seen = 0;
}
void eng_wal_check_invariants(const eng_wal *w) { wal_check_invariants(w); }
uint64_t eng_wal_next_batch_seq(const eng_wal *w) { return w->open ? w->open->seq : w->next_bseq; }
#endif
