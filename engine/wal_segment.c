/* engine/wal_segment.c — segment files and their recycling.
 *
 * Lifecycle of a segment:
 *
 *   (spare or absent) --wal_seg_prepare--> QUEUED --seg_start--> PREPARING
 *        ^                                                     |      |
 *        |                          WAL stopped <--any CQE fails--+   chain ok
 *        |                                                            v
 *        +--------- purge: renamed to a spare (or deleted) ------- READY
 *
 * Preparation runs on the ring as one linked chain so the event loop never
 * blocks on it (the chains are in seg_start). One segment prepares at a
 * time: a queued one starts, file and all, when the one before it is
 * READY. So a crash leaves at most the newest segment half-made (no
 * header, or a recycled file not yet renamed), which recovery drops;
 * two preparing at once could leave a half-made one before a later file,
 * or a hole, which recovery must call corruption. The segment after the
 * active one is asked for as soon as a batch is placed in a new segment,
 * so a rotation normally finds it READY.
 *
 * Recycling (docs/wal.md, "Recycling"): an fdatasync into blocks fallocate
 * only reserved also commits their conversion to written extents (a journal
 * commit: a second device flush per batch), and deleting a big file on a
 * discard-mounted filesystem holds the device for tens of milliseconds. So
 * up to recycle_segments retired segments are kept as %016llx.spare files
 * and reused; prefill_segments zero-filled ones can be made at open.
 */
#include "engine/wal_int.h"

#include "common/rk_assert.h"
#include "common/rk_clock.h"
#include "common/rk_err.h"
#include "common/rk_log.h"

#include <dirent.h>
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

int wal_parse_name(const char *name, const char *suffix, uint64_t *num) {
  size_t sl = strlen(suffix);
  if (strlen(name) != 16 + sl || strcmp(name + 16, suffix) != 0) return 0;
  uint64_t v = 0;
  for (int i = 0; i < 16; i++) {
    char c = name[i];
    int dv = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
    if (dv < 0) return 0;
    v = (v << 4) | (uint64_t)dv;
  }
  *num = v;
  return v != 0;
}

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

int wal_seg_adopt(eng_wal *w, uint64_t seq, int fd, uint64_t mix, uint64_t min_bseq) {
  wal_seg *s = calloc(1, sizeof *s);
  if (s == NULL) return RK_ENOMEM;
  s->seq = seq;
  s->fd = fd;
  s->mix = mix;
  s->min_bseq = min_bseq;
  s->state = WAL_SEG_READY;
  int rc = segs_push(w, s);
  if (rc != RK_OK) free(s);
  return rc;
}

static void spare_name(uint64_t id, char *buf, size_t cap) {
  snprintf(buf, cap, "%016" PRIx64 ".spare", id);
}

/* Opens the oldest spare for reuse as segment s; -1 if there is none (or
 * it cannot be opened: it is then dropped). */
static int take_spare(eng_wal *w, wal_seg *s) {
  while (w->nspares > 0) {
    uint64_t id = w->spares[0];
    memmove(w->spares, w->spares + 1, (w->nspares - 1) * sizeof *w->spares);
    w->nspares--;
    spare_name(id, s->spare_name, sizeof s->spare_name);
    int fd = openat(w->dirfd, s->spare_name, O_RDWR | O_CLOEXEC);
    if (fd >= 0) return fd;
    RK_WARN("wal", "cannot open spare %s: %s; dropping it", s->spare_name, strerror(errno));
    unlinkat(w->dirfd, s->spare_name, 0);
  }
  return -1;
}

static int spares_push(eng_wal *w, uint64_t id);

/* Starts a queued segment's preparation: its file (a spare, else a new
 * one) and the ring chain that gives it a durable header and name. */
static int seg_start(eng_wal *w, wal_seg *s) {
  RK_ASSERT(s->state == WAL_SEG_QUEUED && s->fd < 0);
  for (size_t i = 0; i < w->nsegs; i++) RK_ASSERT(w->segs[i]->state != WAL_SEG_PREPARING);
  char path[4096];
  int rc = wal_seg_path(w, s->seq, path, sizeof path);
  if (rc != RK_OK) return rc;
  wal_seg_hdr h = {.seq = s->seq,
                   .cluster_id = w->opt.cluster_id,
                   .node_id = w->opt.node_id,
                   .salt = s->mix,
                   .version = WAL_SEG_VERSION,
                   .min_bseq = s->min_bseq};
#ifdef RK_TEST_HOOKS
  int legacy = w->hooks.legacy_v1_segments;
#else
  int legacy = 0;
#endif
  s->fd = legacy || !w->can_rename ? -1 : take_spare(w, s);
  h.recycled = s->fd >= 0;
  if (legacy) {
    h.version = 1;
    h.min_bseq = 0;
    h.salt = 0;
    h.segment_bytes = w->opt.segment_bytes;
  }
  if (s->fd < 0) {
    s->fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (s->fd < 0) {
      rc = rk_err_from_errno(errno);
      RK_ERROR("wal", "cannot create segment %s: %s", path, strerror(errno));
      return rc;
    }
  } else {
    snprintf(s->name, sizeof s->name, "%016" PRIx64 ".wal", s->seq);
    /* We hold the directory's lock, so nothing else can create the name
     * before the ring's rename (a plain rename: RENAME_NOREPLACE is not
     * supported by every filesystem). */
    RK_ASSERTF(faccessat(w->dirfd, s->name, F_OK, 0) != 0, "segment %s already exists", s->name);
    w->st.segments_recycled++;
  }
  wal_seg_hdr_encode(s->hdr, &h);
  RK_ASSERT(s->mix == wal_seg_mix(&h));
  s->min_bseq = h.min_bseq ? h.min_bseq : 1;
  s->state = WAL_SEG_PREPARING;
  /* One linked chain, so the event loop never blocks on it.
   * Fresh:    fallocate -> header -> fsync -> fsync(dir): the new name must
   *           be durable before any batch in it is acknowledged.
   * Recycled: fsync(dir) -> header -> fsync -> rename -> fsync(dir). The
   *           first directory sync makes the purge's rename of this file to
   *           a spare durable before its header changes (else a crash could
   *           bring back the old name over a new header); the header is
   *           durable before the file takes the segment's name, so a
   *           segment file always has a valid header. */
  int kinds[WAL_SEG_PREP_OPS], nops = 0;
  if (h.recycled) {
    kinds[nops++] = WAL_OP_PREP_DIRSYNC;
    kinds[nops++] = WAL_OP_PREP_HDR;
    kinds[nops++] = WAL_OP_PREP_FSYNC;
    kinds[nops++] = WAL_OP_PREP_RENAME;
  } else {
    kinds[nops++] = WAL_OP_PREP_FALLOC;
    kinds[nops++] = WAL_OP_PREP_HDR;
    kinds[nops++] = WAL_OP_PREP_FSYNC;
  }
  kinds[nops++] = WAL_OP_PREP_DIRSYNC;
  if (io_uring_sq_space_left(&w->ring) < (unsigned)nops) io_uring_submit(&w->ring);
  if (io_uring_sq_space_left(&w->ring) < (unsigned)nops) {
    /* The kernel would not take what is queued: an I/O error, not an
     * abort (the caller fails the append, or the WAL). */
    RK_ERROR("wal", "no room in the io_uring submission queue to prepare segment %" PRIu64, s->seq);
    close(s->fd);
    s->fd = -1;
    if (h.recycled) {
      w->st.segments_recycled--;
      uint64_t id = 0;
      if (wal_parse_name(s->spare_name, ".spare", &id) && spares_push(w, id) == RK_OK) {
        /* back at the front, where take_spare found it */
        memmove(w->spares + 1, w->spares, (w->nspares - 1) * sizeof *w->spares);
        w->spares[0] = id;
      }
    } else {
      unlink(path);
    }
    s->state = WAL_SEG_QUEUED;
    return RK_EIO;
  }
  for (int i = 0; i < nops; i++) {
    struct io_uring_sqe *sq = io_uring_get_sqe(&w->ring);
    RK_ASSERT(sq != NULL);
    s->ops[i] = (wal_op){kinds[i], s};
    switch (kinds[i]) {
    case WAL_OP_PREP_FALLOC:
      io_uring_prep_fallocate(sq, s->fd, 0, 0, (off_t)w->opt.segment_bytes);
      break;
    case WAL_OP_PREP_HDR: io_uring_prep_write(sq, s->fd, s->hdr, WAL_SEG_HDR, 0); break;
    case WAL_OP_PREP_FSYNC: io_uring_prep_fsync(sq, s->fd, 0); break;
    case WAL_OP_PREP_RENAME:
      io_uring_prep_renameat(sq, w->dirfd, s->spare_name, w->dirfd, s->name, 0);
      break;
    case WAL_OP_PREP_DIRSYNC: io_uring_prep_fsync(sq, w->dirfd, 0); break;
    default: RK_UNREACHABLE();
    }
    io_uring_sqe_set_data(sq, &s->ops[i]);
    if (i < nops - 1) sq->flags |= IOSQE_IO_LINK;
  }
  s->prep_pending = nops;
  w->ops_out += nops;
  int sr = io_uring_submit(&w->ring);
  if (sr < 0) {
    /* Its chain sits unsubmitted and every segment queued behind it
     * would wait: stop the WAL, as submit_batch does. */
    RK_ERROR("wal", "io_uring_submit: %s", strerror(-sr));
    wal_fail(w, RK_EIO);
    return rk_err_from_errno(sr);
  }
  return RK_OK;
}

int wal_seg_prepare(eng_wal *w, uint64_t seq) {
  char path[4096];
  int rc = wal_seg_path(w, seq, path, sizeof path);
  if (rc != RK_OK) return rc;
  wal_seg *s = calloc(1, sizeof *s);
  if (s == NULL) return RK_ENOMEM;
  s->seq = seq;
  s->fd = -1;
  s->state = WAL_SEG_QUEUED;
  s->min_bseq = w->next_bseq;
#ifdef RK_TEST_HOOKS
  int legacy = w->hooks.legacy_v1_segments;
#else
  int legacy = 0;
#endif
  /* Batches placed in it are sealed with its salt, maybe before it starts. */
  s->mix = legacy ? 0 : wal_new_salt();
  /* Sequence numbers only grow along the segments (recovery relies on it). */
  if (w->nsegs > 0) RK_ASSERT(s->min_bseq >= w->segs[w->nsegs - 1]->min_bseq);
  int busy = 0;
  for (size_t i = 0; i < w->nsegs; i++) busy |= w->segs[i]->state != WAL_SEG_READY;
  rc = segs_push(w, s);
  if (rc != RK_OK) {
    free(s);
    return rc;
  }
  if (busy) return RK_OK; /* started when the one before it is READY */
  rc = seg_start(w, s);
  if (rc != RK_OK && s->prep_pending == 0) {
    RK_ASSERT(s->fd < 0); /* its file could not be made: take it back */
    w->nsegs--;
    free(s);
  }
  return rc;
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
  for (size_t i = 0; i < w->nsegs; i++) {
    if (w->segs[i]->state != WAL_SEG_QUEUED) continue;
    int rc = seg_start(w, w->segs[i]);
    if (rc != RK_OK) wal_fail(w, rc);
    return;
  }
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

static int spares_reserve(eng_wal *w) {
  if (w->nspares < w->spares_cap) return RK_OK;
  size_t ncap = w->spares_cap ? w->spares_cap * 2 : 8;
  uint64_t *n = realloc(w->spares, ncap * sizeof *n);
  if (n == NULL) return RK_ENOMEM;
  w->spares = n;
  w->spares_cap = ncap;
  return RK_OK;
}

static int spares_push(eng_wal *w, uint64_t id) {
  int rc = spares_reserve(w);
  if (rc == RK_OK) w->spares[w->nspares++] = id;
  return rc;
}

/* Renames the retired segment s to a new spare; 0 if it is not kept. */
static int recycle(eng_wal *w, const wal_seg *s) {
  struct stat st;
  if (!w->can_rename || w->nspares >= w->opt.recycle_segments) return 0;
  if (fstat(s->fd, &st) != 0 || (uint64_t)st.st_size != w->opt.segment_bytes) return 0;
  if (spares_reserve(w) != RK_OK) return 0; /* so the push below cannot fail */
  char from[32], to[32];
  snprintf(from, sizeof from, "%016" PRIx64 ".wal", s->seq);
  spare_name(w->next_spare, to, sizeof to);
  if (renameat(w->dirfd, from, w->dirfd, to) != 0) {
    RK_WARN("wal", "cannot keep segment %s as spare %s: %s; deleting it", from, to,
            strerror(errno));
    return 0;
  }
  spares_push(w, w->next_spare++);
  return 1;
}

int wal_seg_delete_first(eng_wal *w) {
  RK_ASSERT(w->nsegs > 1);
  wal_seg *s = w->segs[0];
  RK_ASSERT(s->seq < w->cur_seg);
  if (recycle(w, s)) {
    close(s->fd); /* nothing to free: the blocks stay allocated */
  } else {
    char path[4096];
    int rc = wal_seg_path(w, s->seq, path, sizeof path);
    if (rc != RK_OK) return rc;
    if (unlink(path) != 0) {
      rc = rk_err_from_errno(errno);
      RK_ERROR("wal", "cannot delete segment %s: %s", path, strerror(errno));
      return rc;
    }
    close_in_background(s->fd);
  }
  free(s);
  memmove(w->segs, w->segs + 1, (w->nsegs - 1) * sizeof *w->segs);
  w->nsegs--;
  w->seg_first++;
  w->st.segments_deleted++;
  return RK_OK;
}

/* Writes a zero-filled spare of segment_bytes (no fallocate: the point is
 * that its blocks are written, not merely reserved). */
static int prefill_one(eng_wal *w) {
  char name[32];
  spare_name(w->next_spare, name, sizeof name);
  int fd = openat(w->dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return rk_err_from_errno(errno);
  static const uint8_t zeros[1u << 16];
  int rc = RK_OK;
  for (uint64_t off = 0; off < w->opt.segment_bytes && rc == RK_OK;) {
    uint64_t n =
        w->opt.segment_bytes - off < sizeof zeros ? w->opt.segment_bytes - off : sizeof zeros;
    ssize_t r = pwrite(fd, zeros, (size_t)n, (off_t)off);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0)
      rc = r < 0 ? rk_err_from_errno(errno) : RK_EIO;
    else
      off += (uint64_t)r;
  }
  if (rc == RK_OK && fdatasync(fd) != 0) rc = rk_err_from_errno(errno);
  close(fd);
  if (rc != RK_OK) {
    unlinkat(w->dirfd, name, 0);
    return rc;
  }
  return spares_push(w, w->next_spare++);
}

int wal_spares_open(eng_wal *w) {
  DIR *d = opendir(w->dir);
  if (d == NULL) return rk_err_from_errno(errno);
  struct dirent *de;
  int rc = RK_OK;
  while (rc == RK_OK && (de = readdir(d)) != NULL) {
    uint64_t id;
    if (!wal_parse_name(de->d_name, ".spare", &id)) continue;
    rc = spares_push(w, id);
  }
  closedir(d);
  if (rc != RK_OK) return rc;
  if (w->nspares) qsort(w->spares, w->nspares, sizeof *w->spares, wal_cmp_u64);
  size_t keep = 0;
  for (size_t i = 0; i < w->nspares; i++) {
    char name[32];
    struct stat st;
    spare_name(w->spares[i], name, sizeof name);
    if (w->spares[i] >= w->next_spare) w->next_spare = w->spares[i] + 1;
    int ok = w->can_rename && keep < w->opt.recycle_segments &&
             fstatat(w->dirfd, name, &st, 0) == 0 && (uint64_t)st.st_size == w->opt.segment_bytes;
    if (ok)
      w->spares[keep++] = w->spares[i];
    else if (unlinkat(w->dirfd, name, 0) != 0)
      RK_WARN("wal", "cannot remove surplus spare %s: %s", name, strerror(errno));
  }
  w->nspares = keep;
  if (w->next_spare == 0) w->next_spare = 1;
  uint32_t want = w->opt.prefill_segments < w->opt.recycle_segments ? w->opt.prefill_segments
                                                                    : w->opt.recycle_segments;
  while (w->can_rename && w->nspares < want) {
    int prc = prefill_one(w);
    if (prc != RK_OK) { /* an optimisation: never a reason not to start */
      RK_WARN("wal", "cannot prefill a spare segment in %s: %s; continuing with %zu", w->dir,
              rk_strerror(prc), w->nspares);
      break;
    }
  }
  /* No directory fsync here: a spare's name (made or removed) needs no
   * durability of its own, and the chain that reuses one starts with a
   * directory fsync (wal_seg_prepare). Recovery already synced the
   * directory once. */
  return rc;
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
