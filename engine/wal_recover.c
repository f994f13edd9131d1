/* engine/wal_recover.c — rebuilding the index from the segments.
 *
 * 1. List %016llx.wal files; their numbers must be contiguous (a hole is
 *    corruption: a segment that some group may need is missing).
 * 2. Read every header. A header naming another cluster or node fails with
 *    RK_EWRONGCLUSTER / RK_EWRONGNODE before anything is modified. An invalid
 *    header is tolerated only on the LAST file, when it has no batch: a
 *    crash during a fresh segment's preparation; the file is deleted. (A
 *    recycled segment gets its header before its name, so it never has an
 *    invalid one.)
 * 3. Scan batches in order. A batch is good when its magic, length, sequence
 *    number (previous + 1; the first one at least the segment's lowest) and
 *    XXH3 checksum (seeded with the segment's number) are right; its records
 *    are replayed with the same rules as live appends (suffix overwrite,
 *    compaction marks, last hard state wins).
 * 4. Where a segment's good batches end, the bytes at that offset are either
 *      - NOT OURS: zeros to the end of a fresh segment, or, in a recycled
 *        one, anything but a header with exactly the next sequence number
 *        (a stale batch of the file's earlier life — lower sequence number,
 *        checksum seeded with another salt — a piece of one, or client
 *        bytes imitating a header), and anything at all when the next
 *        segment opens with a good batch of exactly the next number. The
 *        segment simply ends there — unless a good batch of this life
 *        follows later in the segment, which is corruption.
 *      - OURS: a fresh segment's non-zero bytes, or a recycled segment's
 *        header with exactly the next sequence number, that did not verify.
 *        It is a TORN TAIL when no good batch (sequence >= expected) follows
 *        in this segment and no later segment holds a batch of its life:
 *        batches are written one at a time and each is acknowledged only
 *        after its fdatasync, so only the last batch can be torn and it was
 *        never acknowledged. It is cut: its bytes are zeroed (and
 *        fdatasync'ed) and appends resume there. Otherwise it is CORRUPTION
 *        (a flipped bit, a lost sector before the tail).
 *    A good batch whose sequence number skips ahead of the expected one is
 *    corruption too (a torn write cannot make a gap).
 *    Corruption makes eng_wal_open fail with RK_ECORRUPT naming segment and
 *    offset, writing nothing — unless truncate_on_corruption is set, in
 *    which case the log is cut there and every later segment is deleted.
 * 5. Segments after the resume point were prepared ahead; one whose lowest
 *    sequence number is above the one appends resume with (prepared when a
 *    batch opened that never landed) goes, with every one after it.
 * 6. (Done first, as each file is opened.) Every segment is fdatasync'ed
 *    and its cached pages dropped before anything of it is read, so the
 *    scan reads what is on the disk: a restarted replica answers for its
 *    log without syncing it again. The batch whose sync was in flight when
 *    the process was killed is still dirty in the page cache: the sync
 *    writes it. A batch whose writeback FAILED is cached as clean yet not
 *    on the disk (the error went to the process that died, so this sync
 *    succeeds): dropping the cache makes the scan see the disk's bytes
 *    instead. A failed sync fails the open.
 */
#include "engine/wal_int.h"

#include "common/rk_assert.h"
#include "common/rk_err.h"
#include "common/rk_log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const uint8_t zeros[4096];

#ifdef RK_TEST_HOOKS
int (*eng_wal_recovery_sync_)(int fd) = fdatasync;
#define recovery_sync eng_wal_recovery_sync_
#else
#define recovery_sync fdatasync
#endif

__attribute__((format(printf, 2, 3))) static void rec_msg(eng_wal_recovery *rec, const char *fmt,
                                                          ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(rec->message, sizeof rec->message, fmt, ap);
  va_end(ap);
}

/* Offset of the first non-zero byte in [from, to), or `to`. */
static size_t first_nonzero(const uint8_t *buf, size_t from, size_t to) {
  size_t i = from;
  while (i < to) {
    size_t n = to - i < sizeof zeros ? to - i : sizeof zeros;
    if (memcmp(buf + i, zeros, n) != 0) {
      while (buf[i] == 0) i++;
      return i;
    }
    i += n;
  }
  return to;
}

static size_t last_nonzero_end(const uint8_t *buf, size_t from, size_t to) {
  size_t end = to;
  while (end > from && buf[end - 1] == 0) end--;
  return end;
}

static int list_segments(const char *dir, uint64_t **out, size_t *n) {
  DIR *d = opendir(dir);
  if (d == NULL) return rk_err_from_errno(errno);
  uint64_t *v = NULL;
  size_t len = 0, cap = 0;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    uint64_t seq;
    if (!wal_parse_name(de->d_name, ".wal", &seq)) continue;
    if (len == cap) {
      cap = cap ? cap * 2 : 16;
      uint64_t *nv = realloc(v, cap * sizeof *nv);
      if (nv == NULL) {
        free(v);
        closedir(d);
        return RK_ENOMEM;
      }
      v = nv;
    }
    v[len++] = seq;
  }
  closedir(d);
  if (len) qsort(v, len, sizeof *v, wal_cmp_u64);
  *out = v;
  *n = len;
  return RK_OK;
}

typedef struct scan_seg {
  uint64_t seq;
  int fd;
  uint64_t size;
  int hdr_ok;
  uint64_t mix;      /* checksum seed of its batches */
  uint64_t min_bseq; /* lowest batch sequence of its life (>= 1) */
  int recycled;
} scan_seg;

static int read_all(int fd, uint8_t *buf, uint64_t size) {
  uint64_t got = 0;
  while (got < size) {
    ssize_t r = pread(fd, buf + got, size - got, (off_t)got);
    if (r < 0) {
      if (errno == EINTR) continue;
      return rk_err_from_errno(errno);
    }
    if (r == 0) break;
    got += (uint64_t)r;
  }
  if (got < size) memset(buf + got, 0, size - got);
  return RK_OK;
}

/* Applies one good batch. RK_ECORRUPT if its (checksummed) content is
 * malformed — a writer bug or a collision, never a torn write. */
static int replay_batch(eng_wal *w, uint64_t seg, uint64_t off, const uint8_t *p,
                        const wal_batch_hdr *h, eng_wal_recovery *rec) {
  size_t pos = 0;
  uint32_t nrec = 0;
  const uint8_t *pl = p + WAL_BATCH_HDR;
  wal_group *g = NULL; /* records of one group tend to be adjacent */
  while (pos < h->payload_len) {
    wal_rec r;
    if (wal_rec_decode(pl + pos, h->payload_len - pos, &r) != RK_OK) return RK_ECORRUPT;
    if (r.group == 0) return RK_ECORRUPT;
    if (g == NULL || g->id != r.group) g = wal_index_get(&w->ix, r.group);
    if (g == NULL) return RK_ENOMEM;
    uint64_t rec_off = off + WAL_BATCH_HDR + pos;
    switch (r.kind) {
    case WAL_REC_ENTRY: {
      wal_loc loc = {.term = r.e.term,
                     .bseq = h->seq,
                     .seg = seg,
                     .off = (uint32_t)rec_off,
                     .len = r.e.len,
                     .type = r.e.type};
      if (wal_group_add(g, r.e.index, &loc) != RK_OK) return RK_ENOMEM;
      rec->entries++;
      break;
    }
    case WAL_REC_HARD_STATE:
      g->hs = r.hs;
      g->has_hs = 1;
      g->hs_seg = seg;
      g->touched = 1;
      rec->hard_states++;
      break;
    case WAL_REC_COMPACT:
      if (r.flags & WAL_MARK_RESTATE)
        wal_group_reset(g, r.index, r.prev_term);
      else
        wal_group_compact(g, r.index, r.prev_term);
      g->has_mark = 1;
      g->mark_seg = seg;
      break;
    default: RK_UNREACHABLE();
    }
    pos += r.size;
    nrec++;
  }
  if (nrec != h->nrec) return RK_ECORRUPT;
  return RK_OK;
}

/* A good batch of segment sg with sequence >= min_seq starts at `at`? */
static int good_batch_at(const scan_seg *sg, const uint8_t *buf, size_t at, uint64_t min_seq) {
  if (at + WAL_BATCH_HDR > sg->size) return 0;
  wal_batch_hdr h;
  if (wal_batch_hdr_decode(buf + at, &h) != RK_OK) return 0;
  if (h.payload_len > sg->size - at - WAL_BATCH_HDR) return 0;
  if (h.seq < min_seq) return 0;
  return wal_batch_verify(buf + at, &h, sg->mix);
}

/* 1 if a good batch with sequence >= lo starts after position `at`. */
static int good_batch_after(const scan_seg *sg, const uint8_t *buf, size_t at, uint64_t lo) {
  const uint8_t magic[4] = {'R', 'K', 'W', 'B'};
  for (size_t i = at + 1; i + WAL_BATCH_HDR <= sg->size; i++) {
    if (buf[i] != magic[0]) continue;
    if (memcmp(buf + i, magic, 4) == 0 && good_batch_at(sg, buf, i, lo)) return 1;
  }
  return 0;
}

/* 1 if segment si + 1 exists and opens with a good batch numbered seq. */
static int next_segment_starts_at(const scan_seg *ss, size_t nss, size_t si, uint64_t seq) {
  if (si + 1 >= nss) return 0;
  const scan_seg *sg = &ss[si + 1];
  uint8_t h[WAL_BATCH_HDR];
  wal_batch_hdr bh;
  if (pread(sg->fd, h, sizeof h, WAL_SEG_HDR) != (ssize_t)sizeof h) return 0;
  if (wal_batch_hdr_decode(h, &bh) != RK_OK || bh.seq != seq) return 0;
  if (bh.payload_len > sg->size - WAL_SEG_HDR - WAL_BATCH_HDR) return 0;
  size_t len = WAL_BATCH_HDR + (size_t)bh.payload_len;
  uint8_t *b = malloc(len);
  if (b == NULL) return 0;
  int ok = pread(sg->fd, b, len, WAL_SEG_HDR) == (ssize_t)len && wal_batch_verify(b, &bh, sg->mix);
  free(b);
  return ok;
}

/* 1 if a segment after si holds a batch (good or not) of its own life:
 * then what came before it was acknowledged. */
static int later_segment_written(const scan_seg *ss, size_t nss, size_t si, uint64_t lo) {
  for (size_t j = si + 1; j < nss; j++) {
    uint8_t h[WAL_BATCH_HDR];
    ssize_t r = pread(ss[j].fd, h, sizeof h, WAL_SEG_HDR);
    if (r < (ssize_t)sizeof h) {
      if (r > 0 && first_nonzero(h, 0, (size_t)r) < (size_t)r) return 1;
      continue;
    }
    if (!ss[j].recycled) {
      if (first_nonzero(h, 0, sizeof h) < sizeof h) return 1;
      continue;
    }
    wal_batch_hdr bh;
    uint64_t min = lo > ss[j].min_bseq ? lo : ss[j].min_bseq;
    if (wal_batch_hdr_decode(h, &bh) == RK_OK && bh.seq >= min) return 1;
  }
  return 0;
}

static int zero_range(int fd, uint64_t from, uint64_t to) {
  while (from < to) {
    size_t n = to - from < sizeof zeros ? (size_t)(to - from) : sizeof zeros;
    ssize_t r = pwrite(fd, zeros, n, (off_t)from);
    if (r < 0) {
      if (errno == EINTR) continue;
      return rk_err_from_errno(errno);
    }
    from += (uint64_t)r;
  }
  return fdatasync(fd) == 0 ? RK_OK : rk_err_from_errno(errno);
}

/* Removes the newest of the *n segments (it holds no batch of this life). */
static int drop_newest(eng_wal *w, scan_seg *ss, size_t *n, const char *why) {
  char path[4096];
  wal_seg_path(w, ss[*n - 1].seq, path, sizeof path);
  RK_WARN("wal", "removing segment %s: %s", path, why);
  if (unlink(path) != 0) return rk_err_from_errno(errno);
  close(ss[*n - 1].fd);
  ss[*n - 1].fd = -1;
  (*n)--;
  return RK_OK;
}

int wal_recover(eng_wal *w, eng_wal_recovery *rec) {
  eng_wal_recovery dummy;
  if (rec == NULL) {
    memset(&dummy, 0, sizeof dummy);
    rec = &dummy;
  }
  uint64_t *seqs = NULL;
  size_t n = 0;
  int rc = list_segments(w->dir, &seqs, &n);
  if (rc != RK_OK) {
    rec_msg(rec, "cannot list WAL directory %s", w->dir);
    return rc;
  }
  if (n == 0) {
    free(seqs);
    return RK_OK;
  }
  scan_seg *ss = calloc(n, sizeof *ss);
  uint8_t *buf = NULL;
  size_t adopted = 0;
  int drop_last = 0;
  if (ss == NULL) {
    free(seqs);
    return RK_ENOMEM;
  }
  for (size_t i = 0; i < n; i++) ss[i].fd = -1;
  char path[4096];
  /* 1-2: contiguity, headers, identity — read-only. */
  for (size_t i = 0; i < n; i++) {
    ss[i].seq = seqs[i];
    if (i > 0 && seqs[i] != seqs[i - 1] + 1) {
      rec->corrupt = 1;
      rec->corrupt_segment = seqs[i - 1] + 1;
      rec_msg(rec, "WAL segment %016" PRIx64 ".wal is missing (found %016" PRIx64 " after it)",
              seqs[i - 1] + 1, seqs[i]);
      rc = RK_ECORRUPT;
      goto out;
    }
    wal_seg_path(w, seqs[i], path, sizeof path);
    ss[i].fd = open(path, O_RDWR | O_CLOEXEC);
    if (ss[i].fd < 0) {
      rc = rk_err_from_errno(errno);
      rec_msg(rec, "cannot open %s: %s", path, strerror(errno));
      goto out;
    }
    struct stat st;
    if (fstat(ss[i].fd, &st) != 0) {
      rc = rk_err_from_errno(errno);
      goto out;
    }
    ss[i].size = (uint64_t)st.st_size;
    uint8_t hb[WAL_SEG_HDR] = {0};
    wal_seg_hdr h;
    if (ss[i].size > WAL_MAX_SEGMENT) {
      rc = RK_ECORRUPT;
      rec_msg(rec, "%s is larger than any segment", path);
      goto out;
    }
    /* Step 6 of the file comment, before anything is read. */
    if (recovery_sync(ss[i].fd) != 0) {
      rc = rk_err_from_errno(errno);
      rec_msg(rec, "cannot sync WAL segment %016" PRIx64 ".wal before reading it: %s", ss[i].seq,
              strerror(errno));
      RK_ERROR("wal", "%s", rec->message);
      goto out;
    }
    (void)posix_fadvise(ss[i].fd, 0, 0, POSIX_FADV_DONTNEED);
    ssize_t r = ss[i].size >= WAL_SEG_HDR ? pread(ss[i].fd, hb, WAL_SEG_HDR, 0) : 0;
    int hrc = r == (ssize_t)WAL_SEG_HDR ? wal_seg_hdr_decode(hb, &h) : RK_ECORRUPT;
    if (hrc == RK_OK && h.seq != seqs[i]) hrc = RK_ECORRUPT;
    if (hrc == RK_OK) {
      ss[i].hdr_ok = 1;
      ss[i].mix = wal_seg_mix(&h);
      ss[i].min_bseq = h.min_bseq ? h.min_bseq : 1;
      ss[i].recycled = h.recycled;
      if (h.cluster_id != w->opt.cluster_id) {
        rec_msg(rec,
                "WAL segment %s belongs to cluster %" PRIu64 ", not %" PRIu64
                " (wrong --data-dir?); nothing was modified",
                path, h.cluster_id, w->opt.cluster_id);
        rc = RK_EWRONGCLUSTER;
        goto out;
      }
      if (h.node_id != w->opt.node_id) {
        rec_msg(rec,
                "WAL segment %s belongs to node %" PRIu64 ", not %" PRIu64
                " (wrong --data-dir?); nothing was modified",
                path, h.node_id, w->opt.node_id);
        rc = RK_EWRONGNODE;
        goto out;
      }
    } else if (hrc == RK_EUNSUPPORTED) {
      rec_msg(rec, "%s has an unsupported format version", path);
      rc = RK_EUNSUPPORTED;
      goto out;
    }
  }
  for (size_t i = 0; i < n; i++) {
    if (ss[i].hdr_ok) continue;
    uint8_t probe[WAL_BATCH_HDR] = {0};
    ssize_t r = pread(ss[i].fd, probe, sizeof probe, WAL_SEG_HDR);
    int empty = r <= 0 || first_nonzero(probe, 0, (size_t)r) == (size_t)r;
    if (i == n - 1 && n > 0 && empty) {
      drop_last = 1; /* a crash while preparing it */
      continue;
    }
    rec->corrupt = 1;
    rec->corrupt_segment = ss[i].seq;
    rec->corrupt_offset = 0;
    rec_msg(rec, "WAL segment %016" PRIx64 ".wal has a corrupt header (offset 0)", ss[i].seq);
    rc = RK_ECORRUPT;
    goto out;
  }
  /* 3-4: scan. */
  size_t nscan = n - (size_t)drop_last;
  uint64_t expect = 0; /* 0 until the first batch tells us */
  uint64_t bufcap = 0;
  uint64_t cur_seg = ss[0].seq, cur_off = WAL_SEG_HDR;
  size_t cut_si = SIZE_MAX;
  uint64_t cut_off = 0, torn_end = 0;
  int cut_is_corrupt = 0;
  for (size_t i = 0; i < nscan && cut_si == SIZE_MAX; i++) {
    uint64_t size = ss[i].size;
    if (size > bufcap) {
      uint8_t *nb = realloc(buf, size);
      if (nb == NULL) {
        rc = RK_ENOMEM;
        goto out;
      }
      buf = nb;
      bufcap = size;
    }
    /* Let the kernel read the next segment while we replay this one. */
    if (i + 1 < nscan) posix_fadvise(ss[i + 1].fd, 0, 0, POSIX_FADV_WILLNEED);
    rc = read_all(ss[i].fd, buf, size);
    if (rc != RK_OK) goto out;
    rec->segments++;
    const scan_seg *sg = &ss[i];
    uint64_t off = WAL_SEG_HDR;
    for (;;) {
      /* The lowest sequence number a batch of this life may carry here. */
      uint64_t lo = expect ? expect : sg->min_bseq;
      wal_batch_hdr h;
      int hdr = off + WAL_BATCH_HDR <= size && wal_batch_hdr_decode(buf + off, &h) == RK_OK;
      int fits = hdr && h.payload_len <= size - off - WAL_BATCH_HDR;
      int verified = fits && h.seq >= lo && wal_batch_verify(buf + off, &h, sg->mix);
      if (verified && (expect == 0 || h.seq == expect)) {
        rc = replay_batch(w, ss[i].seq, off, buf + off, &h, rec);
        if (rc == RK_ENOMEM) goto out;
        if (rc != RK_OK) {
          rc = RK_OK;
          cut_si = i;
          cut_off = off;
          cut_is_corrupt = 1;
          break;
        }
        rec->batches++;
        rec->bytes += WAL_BATCH_HDR + h.payload_len;
        expect = h.seq + 1;
        off += WAL_BATCH_HDR + h.payload_len;
        cur_seg = ss[i].seq;
        cur_off = off;
        continue;
      }
      /* This segment's good batches end at off. */
      /* In a recycled segment only a header carrying exactly the next
       * sequence number may be a batch of ours (a client's bytes in a stale
       * payload could imitate a header; they cannot imitate a checksum).
       * And if the next segment goes on with exactly that sequence number,
       * nothing of ours was lost here, whatever these bytes are. */
      int ours = !sg->recycled ? off < size && first_nonzero(buf, off, size) < size
                 : expect      ? hdr && h.seq == expect
                               : hdr && h.seq >= lo;
      if (sg->recycled && !verified && expect && next_segment_starts_at(ss, nscan, i, expect))
        ours = 0;
      if (!ours && !verified && !(sg->recycled && good_batch_after(sg, buf, off, lo)))
        break; /* a clean end: on to the next segment */
      cut_si = i;
      cut_off = off;
      cut_is_corrupt = verified /* a gap in the sequence */ || !ours ||
                       good_batch_after(sg, buf, off, lo) ||
                       later_segment_written(ss, nscan, i, lo);
      /* What a torn batch may have written: all of a fresh segment's
       * non-zero tail; in a recycled one, the extent its header claims. */
      torn_end = !sg->recycled ? last_nonzero_end(buf, off, size)
                 : fits        ? off + WAL_BATCH_HDR + h.payload_len
                               : off + WAL_BATCH_HDR;
      break;
    }
  }
  if (cut_si != SIZE_MAX) {
    uint64_t seq = ss[cut_si].seq;
    if (cut_is_corrupt) {
      rec->corrupt = 1;
      rec->corrupt_segment = seq;
      rec->corrupt_offset = cut_off;
      if (!w->opt.truncate_on_corruption) {
        rec_msg(rec,
                "WAL corruption in segment %016" PRIx64 ".wal at offset %" PRIu64
                " (a bad batch with valid data after it); refusing to start. Restore the node "
                "from its peers, or open with truncate_on_corruption to discard the log from "
                "there on",
                seq, cut_off);
        RK_ERROR("wal", "%s", rec->message);
        rc = RK_ECORRUPT;
        goto out;
      }
      rec_msg(rec,
              "WAL corruption in segment %016" PRIx64 ".wal at offset %" PRIu64
              ": truncated there as asked (later batches and segments discarded)",
              seq, cut_off);
      RK_ERROR("wal", "%s", rec->message);
      for (size_t j = n; j-- > cut_si + 1;) {
        wal_seg_path(w, ss[j].seq, path, sizeof path);
        if (unlink(path) != 0) {
          rc = rk_err_from_errno(errno);
          goto out;
        }
        close(ss[j].fd);
        ss[j].fd = -1;
      }
      nscan = cut_si + 1;
      drop_last = 0;
      n = nscan;
    } else {
      rec->torn_tail = 1;
      rec->torn_segment = seq;
      rec->torn_offset = cut_off;
      rec_msg(rec,
              "torn tail cut in segment %016" PRIx64 ".wal at offset %" PRIu64
              " (an unacknowledged batch)",
              seq, cut_off);
      RK_WARN("wal", "%s", rec->message);
    }
    /* buf still holds segment cut_si (the scan stopped in it). A cut for
     * corruption clears everything after it (later good batches must never
     * be read as a continuation); a torn tail, what the torn batch wrote. */
    uint64_t end = cut_is_corrupt ? last_nonzero_end(buf, cut_off, ss[cut_si].size) : torn_end;
    if (end > cut_off) {
      rc = zero_range(ss[cut_si].fd, cut_off, end);
      if (rc != RK_OK) goto out;
    }
    cur_seg = seq;
    cur_off = cut_off;
  }
  if (drop_last) {
    rc = drop_newest(w, ss, &n, "half-prepared");
    if (rc != RK_OK) goto out;
  }
  /* Never below the lowest number the segment we resume in was prepared
   * for (a cut at its first batch leaves expect unknown): batches under it
   * would read as stale. */
  uint64_t next_bseq = expect ? expect : 1;
  for (size_t i = 0; i < n; i++)
    if (ss[i].seq == cur_seg && ss[i].min_bseq > next_bseq) next_bseq = ss[i].min_bseq;
  /* Segments after the one appends resume in hold no batch of this life
   * (the scan would have gone on into them): they were prepared ahead. One
   * prepared when a batch opened that never reached the disk carries a
   * lowest sequence number above the one that resumes, and the batches
   * placed in it would fall below it: it goes, and every one after it (the
   * WAL prepares them afresh). One that fits is kept, as a clean stop
   * leaves it. */
  size_t keep = n;
  for (size_t i = 0; i < n; i++)
    if (ss[i].seq > cur_seg && ss[i].min_bseq > next_bseq) {
      keep = i;
      break;
    }
  while (n > keep) {
    rc = drop_newest(w, ss, &n, "prepared ahead and never written");
    if (rc != RK_OK) goto out;
  }
  if (fsync(w->dirfd) != 0) {
    rc = rk_err_from_errno(errno);
    goto out;
  }
  for (size_t i = 0; i < n; i++) {
    rc = wal_seg_adopt(w, ss[i].seq, ss[i].fd, ss[i].mix, ss[i].min_bseq);
    if (rc != RK_OK) goto out;
    ss[i].fd = -1;
    adopted++;
  }
  w->cur_seg = cur_seg;
  w->cur_off = cur_off;
  w->next_bseq = next_bseq;
  rc = RK_OK;
out:
  for (size_t i = 0; i < n; i++)
    if (ss[i].fd >= 0) close(ss[i].fd);
  (void)adopted;
  free(ss);
  free(seqs);
  free(buf);
  return rc;
}
