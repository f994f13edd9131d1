/* engine/wal_segment.c — segment files.
 *
 * Lifecycle of a segment:
 *
 *   (absent) --wal_seg_prepare--> PREPARING --4 CQEs ok--> READY --purge--> (deleted)
 *                                     |
 *                                     +--any CQE fails--> WAL stopped
 *
 * Preparation runs on the ring as one linked chain so the event loop never
 * blocks on it: fallocate(segment_bytes) -> write header -> fsync(file) ->
 * fsync(dir) (the new name must be durable before any batch in it is
 * acknowledged). The segment after the active one is prepared as soon as a
 * batch is placed in a new segment, so a rotation normally finds it READY.
 */
#include "engine/wal_int.h"

#include "common/rk_assert.h"
#include "common/rk_clock.h"
#include "common/rk_err.h"
#include "common/rk_log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int wal_seg_path(const eng_wal *w, uint64_t seq, char *buf, size_t cap) {
  int n = snprintf(buf, cap, "%s/%016" PRIx64 ".wal", w->dir, seq);
  return (n < 0 || (size_t)n >= cap) ? RK_EINVAL : RK_OK;
}

wal_seg *wal_seg_get(const eng_wal *w, uint64_t seq) {
  if (seq < w->seg_first || seq - w->seg_first >= w->nsegs) return NULL;
  return w->segs[seq - w->seg_first];
}

static int segs_push(eng_wal *w, wal_seg *s) {
  if (w->nsegs == 0) w->seg_first = s->seq;
  RK_ASSERTF(s->seq == w->seg_first + w->nsegs, "segment %" PRIu64 " not contiguous", s->seq);
  if (w->nsegs == w->segs_cap) {
    size_t ncap = w->segs_cap ? w->segs_cap * 2 : 16;
    wal_seg **n = realloc(w->segs, ncap * sizeof *n);
    if (n == NULL) return RK_ENOMEM;
    w->segs = n;
    w->segs_cap = ncap;
  }
  w->segs[w->nsegs++] = s;
  return RK_OK;
}

int wal_seg_adopt(eng_wal *w, uint64_t seq, int fd) {
  wal_seg *s = calloc(1, sizeof *s);
  if (s == NULL) return RK_ENOMEM;
  s->seq = seq;
  s->fd = fd;
  s->state = WAL_SEG_READY;
  int rc = segs_push(w, s);
  if (rc != RK_OK) free(s);
  return rc;
}

int wal_seg_prepare(eng_wal *w, uint64_t seq) {
  char path[4096];
  int rc = wal_seg_path(w, seq, path, sizeof path);
  if (rc != RK_OK) return rc;
  wal_seg *s = calloc(1, sizeof *s);
  if (s == NULL) return RK_ENOMEM;
  s->seq = seq;
  s->fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (s->fd < 0) {
    rc = rk_err_from_errno(errno);
    RK_ERROR("wal", "cannot create segment %s: %s", path, strerror(errno));
    free(s);
    return rc;
  }
  wal_seg_hdr h = {.seq = seq,
                   .cluster_id = w->opt.cluster_id,
                   .node_id = w->opt.node_id,
                   .segment_bytes = w->opt.segment_bytes};
  wal_seg_hdr_encode(s->hdr, &h);
  s->state = WAL_SEG_PREPARING;
  rc = segs_push(w, s);
  if (rc != RK_OK) {
    close(s->fd);
    unlink(path);
    free(s);
    return rc;
  }
  if (io_uring_sq_space_left(&w->ring) < 4) io_uring_submit(&w->ring);
  struct io_uring_sqe *sq[4];
  for (int i = 0; i < 4; i++) {
    sq[i] = io_uring_get_sqe(&w->ring);
    RK_ASSERT(sq[i] != NULL);
    s->ops[i].owner = s;
  }
  s->ops[0].kind = WAL_OP_PREP_FALLOC;
  io_uring_prep_fallocate(sq[0], s->fd, 0, 0, (off_t)w->opt.segment_bytes);
  s->ops[1].kind = WAL_OP_PREP_HDR;
  io_uring_prep_write(sq[1], s->fd, s->hdr, WAL_SEG_HDR, 0);
  s->ops[2].kind = WAL_OP_PREP_FSYNC;
  io_uring_prep_fsync(sq[2], s->fd, 0);
  s->ops[3].kind = WAL_OP_PREP_DIRSYNC;
  io_uring_prep_fsync(sq[3], w->dirfd, 0);
  for (int i = 0; i < 4; i++) {
    io_uring_sqe_set_data(sq[i], &s->ops[i]);
    if (i < 3) sq[i]->flags |= IOSQE_IO_LINK;
  }
  s->prep_pending = 4;
  w->ops_out += 4;
  int sr = io_uring_submit(&w->ring);
  if (sr < 0) {
    RK_ERROR("wal", "io_uring_submit: %s", strerror(-sr));
    return rk_err_from_errno(sr);
  }
  return RK_OK;
}

void wal_seg_prep_complete(eng_wal *w, wal_seg *s, wal_op *op, int res) {
  RK_ASSERT(s->state == WAL_SEG_PREPARING && s->prep_pending > 0);
  int bad = res < 0 || (op->kind == WAL_OP_PREP_HDR && res != (int)WAL_SEG_HDR);
  if (bad && s->prep_err == 0) s->prep_err = res < 0 ? -res : EIO;
  if (--s->prep_pending > 0) return;
  if (s->prep_err) {
    RK_ERROR("wal", "preparing segment %" PRIu64 " failed: %s", s->seq, strerror(s->prep_err));
    wal_fail(w, rk_err_from_errno(s->prep_err) == RK_ENOSPC ? RK_ENOSPC : RK_EIO);
    return;
  }
  s->state = WAL_SEG_READY;
}

void wal_seg_close_all(eng_wal *w) {
  for (size_t i = 0; i < w->nsegs; i++) {
    if (w->segs[i]->fd >= 0) close(w->segs[i]->fd);
    free(w->segs[i]);
  }
  free(w->segs);
  w->segs = NULL;
  w->nsegs = w->segs_cap = 0;
}

/* Freeing an unlinked segment's blocks, a slice at a time. */
#define WAL_FREE_SLICE (256u * 1024u)

static void *closer(void *arg) {
  int fd = (int)(intptr_t)arg;
  struct stat st;
  if (fstat(fd, &st) == 0) {
    /* With -o discard every block freed is discarded synchronously: one
     * 64 MiB discard (the final close) holds the device ~25 ms, and every
     * fdatasync of the live segment queues behind it (measured: 22-45 ms
     * batches once per deleted segment). Shrinking the file a slice at a
     * time makes each discard short (~0.3 ms); resting as long as each
     * slice took leaves the disk to the WAL at least half the time. */
    off_t size = st.st_size;
    while (size > 0) {
      off_t next = size > (off_t)WAL_FREE_SLICE ? size - (off_t)WAL_FREE_SLICE : 0;
      uint64_t t0 = rk_clock_mono_ns();
      if (ftruncate(fd, next) != 0) break;
      uint64_t took = rk_clock_mono_ns() - t0;
      size = next;
      if (size > 0) {
        if (took > 10000000u) took = 10000000u;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)took};
        nanosleep(&ts, NULL);
      }
    }
  }
  close(fd);
  return NULL;
}

/* The last close of an unlinked 64 MiB file frees (and, with -o discard,
 * discards) its blocks: tens of milliseconds that must not stall the event
 * loop, nor the disk under it. A detached thread does it, gradually (see
 * closer); on failure to start one, close inline. */
static void close_in_background(int fd) {
  pthread_t t;
  pthread_attr_t a;
  if (pthread_attr_init(&a) == 0) {
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&t, &a, closer, (void *)(intptr_t)fd);
    pthread_attr_destroy(&a);
    if (rc == 0) return;
  }
  close(fd);
}

int wal_seg_delete_first(eng_wal *w) {
  RK_ASSERT(w->nsegs > 1);
  wal_seg *s = w->segs[0];
  RK_ASSERT(s->seq < w->cur_seg);
  char path[4096];
  int rc = wal_seg_path(w, s->seq, path, sizeof path);
  if (rc != RK_OK) return rc;
  if (unlink(path) != 0) {
    rc = rk_err_from_errno(errno);
    RK_ERROR("wal", "cannot delete segment %s: %s", path, strerror(errno));
    return rc;
  }
  close_in_background(s->fd);
  free(s);
  memmove(w->segs, w->segs + 1, (w->nsegs - 1) * sizeof *w->segs);
  w->nsegs--;
  w->seg_first++;
  w->st.segments_deleted++;
  return RK_OK;
}

void wal_dir_sync_async(eng_wal *w) {
  struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);
  if (sqe == NULL) {
    io_uring_submit(&w->ring);
    sqe = io_uring_get_sqe(&w->ring);
  }
  if (sqe == NULL) {
    fsync(w->dirfd);
    return;
  }
  io_uring_prep_fsync(sqe, w->dirfd, 0);
  io_uring_sqe_set_data(sqe, &w->op_bg);
  w->ops_out++;
  io_uring_submit(&w->ring);
}
