/* WAL recovery: torn tail at every byte of the final batch, bit flips before
 * the tail, damaged or foreign segments, crash points. */
#include "eng_test.h"

#include "engine/wal_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAXLEN 48u

typedef struct batch_pos {
  uint64_t seg, off, len;
} batch_pos;

static char *seg_path(const char *dir, uint64_t seq) {
  char *p = malloc(4096);
  snprintf(p, 4096, "%s/%016lx.wal", dir, (unsigned long)seq);
  return p;
}

static uint8_t *read_file(const char *path, size_t *len) {
  int fd = open(path, O_RDONLY);
  cr_assert(fd >= 0, "open %s", path);
  struct stat st;
  fstat(fd, &st);
  uint8_t *b = malloc((size_t)st.st_size + 1);
  cr_assert_eq(pread(fd, b, (size_t)st.st_size, 0), st.st_size);
  close(fd);
  *len = (size_t)st.st_size;
  return b;
}

static void write_at(const char *path, uint64_t off, const void *p, size_t n) {
  int fd = open(path, O_WRONLY);
  cr_assert(fd >= 0);
  cr_assert_eq(pwrite(fd, p, n, (off_t)off), (ssize_t)n);
  close(fd);
}

/* Lists every batch in the log, in order (test-side parser of the format). */
static size_t list_batches(const char *dir, batch_pos *out, size_t cap) {
  size_t n = 0;
  uint64_t next = 0;
  int found = 0;
  for (uint64_t seq = 1; seq < 4096; seq++) {
    char *p = seg_path(dir, seq);
    if (access(p, F_OK) != 0) {
      free(p);
      if (!found) continue; /* purged */
      break;
    }
    found = 1;
    size_t len;
    uint8_t *b = read_file(p, &len);
    free(p);
    uint64_t off = WAL_SEG_HDR;
    while (off + WAL_BATCH_HDR <= len) {
      wal_batch_hdr h;
      if (wal_batch_hdr_decode(b + off, &h) != RK_OK) break;
      if (h.payload_len > len - off - WAL_BATCH_HDR) break;
      if (next && h.seq != next) break; /* stale: a recycled file's earlier life */
      next = h.seq + 1;
      cr_assert(n < cap);
      out[n++] = (batch_pos){seq, off, WAL_BATCH_HDR + h.payload_len};
      off += WAL_BATCH_HDR + h.payload_len;
    }
    free(b);
  }
  return n;
}

/* Writes K acknowledged batches for groups 1..3, then one final batch. */
enum { K = 12, PER = 4 };
static void build_log_extra(const eng_wal_options *o, int extra) {
  eng_wal *w = eng_open_or_skip(o);
  /* group 10: bulk that spreads the log over several segments */
  if (extra) cr_assert_eq(eng_append_sync(w, 10, 1, 801, 1, 200, NULL), RK_OK);
  for (uint64_t b = 0; b < K; b++) {
    uint64_t g = b % 3 + 1, lo = (b / 3) * PER + 1;
    rk_hard_state hs = {.term = 1, .vote = g, .commit = lo};
    cr_assert_eq(eng_append_sync(w, g, lo, lo + PER, 1, MAXLEN, &hs), RK_OK);
  }
  /* final batch: group 1 gets entries 17..19 at term 2 + a hard state */
  rk_hard_state hs = {.term = 2, .vote = 9, .commit = 16};
  cr_assert_eq(eng_append_sync(w, 1, 17, 20, 2, MAXLEN, &hs), RK_OK);
  eng_wal_close(w);
}

static void build_log(const eng_wal_options *o) { build_log_extra(o, 0); }

static void check_acked(eng_wal *w) {
  for (uint64_t g = 1; g <= 3; g++) {
    uint64_t f, l;
    cr_assert_eq(eng_wal_first_index(w, g, &f), RK_OK);
    cr_assert_eq(eng_wal_last_index(w, g, &l), RK_OK);
    cr_assert_eq(f, 1);
    cr_assert_geq(l, (uint64_t)(K / 3) * PER, "group %lu lost acknowledged entries (last %lu)",
                  (unsigned long)g, (unsigned long)l);
    eng_check_range(w, g, 1, (K / 3) * PER + 1, 1, MAXLEN);
  }
}

/* The final batch is either entirely there or entirely gone. */
static int final_batch_present(eng_wal *w) {
  uint64_t l;
  cr_assert_eq(eng_wal_last_index(w, 1, &l), RK_OK);
  rk_hard_state hs;
  int found;
  cr_assert_eq(eng_wal_hard_state(w, 1, &hs, &found), RK_OK);
  cr_assert(found);
  if (l == 19) {
    eng_check_range(w, 1, 17, 20, 2, MAXLEN);
    cr_assert_eq(hs.term, 2);
    cr_assert_eq(hs.vote, 9);
    return 1;
  }
  cr_assert_eq(l, (K / 3) * PER, "partial final batch visible: last=%lu", (unsigned long)l);
  cr_assert_eq(hs.term, 1, "hard state of a cut batch survived");
  return 0;
}

/* Cuts the final batch at every byte: mode 0, only its first `cut` bytes
 * reached the disk; mode 1, only the bytes from `cut` on did (later pages
 * written back first). Where the write did not land, the file holds `under`:
 * the bytes that were there before it (zeros in a fresh segment, stale
 * batches in a recycled one). Never a crash, a wrong entry, or a lost
 * acknowledged one; a torn batch whose header landed is reported. */
static void torn_tail_at_every_byte(const eng_wal_options *o, const uint8_t *under, int recycled) {
  batch_pos bp[256];
  size_t nb = list_batches(o->dir, bp, 256);
  cr_assert_geq(nb, (size_t)K + 1, "batches: %zu", nb);
  batch_pos fin = bp[nb - 1];
  char *path = seg_path(o->dir, fin.seg);
  size_t flen;
  uint8_t *orig = read_file(path, &flen);
  wal_seg_hdr sh;
  cr_assert_eq(wal_seg_hdr_decode(orig, &sh), RK_OK);
  cr_assert_eq(sh.recycled, recycled, "the final batch is not in a %s segment",
               recycled ? "recycled" : "fresh");
  const uint8_t *was = under + fin.off;
  for (int mode = 0; mode < 2; mode++) {
    for (uint64_t cut = 0; cut <= fin.len; cut++) {
      if (mode == 0)
        write_at(path, fin.off + cut, was + cut, fin.len - cut);
      else
        write_at(path, fin.off, was, cut);
      eng_wal *w = NULL;
      eng_wal_recovery rec;
      int rc = eng_wal_open(o, &w, &rec);
      cr_assert_eq(rc, RK_OK, "mode %d cut %lu: %s (%s)", mode, (unsigned long)cut, rk_errname(rc),
                   rec.message);
      cr_assert_eq(rec.corrupt, 0);
      /* "whole" when every byte put back was the batch's own anyway: the
       * write was not torn in content. */
      uint64_t za = mode == 0 ? cut : 0, zb = mode == 0 ? fin.len : cut;
      int whole = 1;
      for (uint64_t i = za; i < zb; i++) whole &= orig[fin.off + i] == was[i];
      uint64_t ka = mode == 0 ? 0 : cut, kb = mode == 0 ? cut : fin.len;
      int nothing = 1;
      for (uint64_t i = ka; i < kb; i++) nothing &= orig[fin.off + i] == was[i];
      int header_landed = 1;
      for (uint64_t i = 0; i < WAL_BATCH_HDR; i++)
        header_landed &= (mode == 0 ? i < cut : i >= cut) || orig[fin.off + i] == was[i];
      check_acked(w);
      int present = final_batch_present(w);
      cr_assert_eq(present, whole, "mode %d cut %lu torn %d at %lu (batch at %lu) batches %lu %s",
                   mode, (unsigned long)cut, rec.torn_tail, (unsigned long)rec.torn_offset,
                   (unsigned long)fin.off, (unsigned long)rec.batches, rec.message);
      /* A fresh segment's zeros say where the log ends, so any torn
       * content is seen; in a recycled one, only a header that landed. */
      if (!whole && !nothing && (!recycled || header_landed)) {
        cr_assert_eq(rec.torn_tail, 1, "mode %d cut %lu: torn tail not reported", mode,
                     (unsigned long)cut);
        cr_assert_eq(rec.torn_segment, fin.seg);
        cr_assert_eq(rec.torn_offset, fin.off);
      }
      eng_wal_close(w);
      write_at(path, fin.off, orig + fin.off, fin.len); /* restore */
    }
  }
  /* After a cut, appending continues at the cut and survives a reopen. */
  write_at(path, fin.off + fin.len / 2, was + fin.len / 2, fin.len - fin.len / 2);
  eng_wal *w = eng_open_or_skip(o);
  cr_assert_eq(eng_append_sync(w, 1, 17, 18, 5, MAXLEN, NULL), RK_OK);
  eng_wal_close(w);
  eng_wal_recovery rec;
  cr_assert_eq(eng_wal_open(o, &w, &rec), RK_OK, "%s", rec.message);
  cr_assert_eq(rec.torn_tail + rec.corrupt, 0, "%s", rec.message);
  check_acked(w);
  uint64_t l;
  eng_wal_last_index(w, 1, &l);
  cr_assert_eq(l, 17);
  eng_check_range(w, 1, 17, 18, 5, MAXLEN);
  eng_wal_close(w);
  free(orig);
  free(path);
}

Test(wal_recovery, torn_tail_at_every_byte_of_the_final_batch, .timeout = 120) {
  char *dir = eng_tmpdir();
  eng_wal_options o;
  eng_small_opts(&o, dir);
  build_log(&o);
  batch_pos bp[64];
  size_t nb = list_batches(dir, bp, 64);
  cr_assert_eq(nb, (size_t)K + 1, "batches: %zu", nb);
  uint8_t *zeros = calloc(1, o.segment_bytes);
  torn_tail_at_every_byte(&o, zeros, 0);
  free(zeros);
  eng_rmtree(dir);
  free(dir);
}

static int seg_is_recycled(const char *dir, uint64_t seq) {
  wal_seg_hdr h;
  cr_assert_eq(eng_read_seg_hdr(dir, seq, &h), RK_OK, "segment %lu", (unsigned long)seq);
  return h.recycled;
}

/* Like build_log, but the K batches and the final one go into a recycled
 * segment: group 10 writes and compacts away whole segments until the
 * active one is a reused spare. *under gets that segment's bytes as they
 * were just before the final batch was written over them. */
static void build_log_recycled(const eng_wal_options *o, uint8_t **under) {
  eng_wal *w = eng_open_or_skip(o);
  uint64_t next = 1;
  eng_wal_stats st;
  for (int round = 0;; round++) {
    cr_assert_lt(round, 400, "no recycled segment became active");
    cr_assert_eq(eng_append_sync(w, 10, next, next + 40, 1, 200, NULL), RK_OK);
    next += 40;
    cr_assert_eq(eng_wal_compact(w, 10, next, 0), RK_OK);
    cr_assert_eq(eng_wal_sync(w), RK_OK);
    cr_assert_eq(eng_wal_purge(w, NULL), RK_OK);
    eng_wal_get_stats(w, &st);
    if (st.segments_recycled < 3) continue;
    if (seg_is_recycled(o->dir, st.active_segment)) break;
  }
  for (uint64_t b = 0; b < K; b++) {
    uint64_t g = b % 3 + 1, lo = (b / 3) * PER + 1;
    rk_hard_state hs = {.term = 1, .vote = g, .commit = lo};
    cr_assert_eq(eng_append_sync(w, g, lo, lo + PER, 1, MAXLEN, &hs), RK_OK);
  }
  eng_wal_get_stats(w, &st);
  eng_wal_close(w);
  char *p = seg_path(o->dir, st.active_segment);
  size_t len;
  *under = read_file(p, &len);
  free(p);
  w = eng_open_or_skip(o);
  rk_hard_state hs = {.term = 2, .vote = 9, .commit = 16};
  cr_assert_eq(eng_append_sync(w, 1, 17, 20, 2, MAXLEN, &hs), RK_OK);
  eng_wal_close(w);
}

/* A fresh directory with build_log_recycled's log; *under as there, or
 * freed when under is NULL. */
static char *recycled_log(eng_wal_options *o, uint8_t **under) {
  char *dir = eng_tmpdir();
  eng_small_opts(o, dir);
  uint8_t *u;
  build_log_recycled(o, &u);
  if (under)
    *under = u;
  else
    free(u);
  return dir;
}

Test(wal_recovery, torn_tail_in_a_recycled_segment_at_every_byte, .timeout = 120) {
  eng_wal_options o;
  uint8_t *under;
  char *dir = recycled_log(&o, &under);
  eng_wal *w = NULL;
  eng_wal_recovery rec;
  cr_assert_eq(eng_wal_open(&o, &w, &rec), RK_OK, "%s", rec.message);
  cr_assert_eq(rec.torn_tail + rec.corrupt, 0, "stale batches are not a torn tail: %s",
               rec.message);
  check_acked(w);
  cr_assert(final_batch_present(w));
  eng_wal_close(w);
  torn_tail_at_every_byte(&o, under, 1);
  free(under);
  eng_rmtree(dir);
  free(dir);
}

/* Flips, one at a time, bits bit0, bit0 + bit_step, ... of every byte of
 * batch v's header and of every 5th byte after it; each flip must make open
 * fail with RK_ECORRUPT, reported at v (or, with next_ok, anywhere in v's
 * segment or the next one: a flip there may show first as a gap). Every
 * byte is restored after its flips. */
static void flips_are_corruption(const eng_wal_options *o, batch_pos v, int bit0, int bit_step,
                                 int next_ok) {
  char *path = seg_path(o->dir, v.seg);
  size_t flen;
  uint8_t *orig = read_file(path, &flen);
  for (uint64_t byte = 0; byte < v.len; byte += (byte < 40 ? 1 : 5)) {
    for (int bit = bit0; bit < 8; bit += bit_step) {
      uint8_t x = orig[v.off + byte] ^ (uint8_t)(1u << bit);
      write_at(path, v.off + byte, &x, 1);
      eng_wal *w = NULL;
      eng_wal_recovery rec;
      int rc = eng_wal_open(o, &w, &rec);
      cr_assert_eq(rc, RK_ECORRUPT, "byte %lu bit %d: %s (%s)", (unsigned long)byte, bit,
                   rk_errname(rc), rec.message);
      if (next_ok) {
        cr_assert(rec.corrupt_segment == v.seg || rec.corrupt_segment == v.seg + 1,
                  "byte %lu: corruption reported in segment %lu", (unsigned long)byte,
                  (unsigned long)rec.corrupt_segment);
      } else {
        cr_assert_eq(rec.corrupt_segment, v.seg);
        cr_assert_eq(rec.corrupt_offset, v.off, "byte %lu: reported offset %lu not %lu",
                     (unsigned long)byte, (unsigned long)rec.corrupt_offset, (unsigned long)v.off);
      }
      write_at(path, v.off + byte, orig + v.off + byte, 1);
    }
  }
  free(orig);
  free(path);
}

/* A flipped bit in an acknowledged batch of a recycled segment is reported,
 * never mistaken for the stale end of the segment. */
Test(wal_recovery, flipped_bit_in_a_recycled_segment_is_reported, .timeout = 120) {
  eng_wal_options o;
  char *dir = recycled_log(&o, NULL);
  batch_pos bp[256];
  size_t nb = list_batches(dir, bp, 256);
  cr_assert_geq(nb, 3);
  flips_are_corruption(&o, bp[nb - 3], 0, 3, 0);
  eng_rmtree(dir);
  free(dir);
}

/* Every bit flip in an acknowledged, non-final batch is reported with its
 * segment and offset; opening writes nothing. truncate_on_corruption cuts. */
Test(wal_recovery, flipped_bit_before_tail_is_reported_not_skipped, .timeout = 120) {
  char *dir = eng_tmpdir();
  eng_wal_options o;
  eng_small_opts(&o, dir);
  build_log(&o);
  batch_pos bp[64];
  size_t nb = list_batches(dir, bp, 64);
  cr_assert_geq(nb, 6);
  batch_pos victim = bp[3];
  char *path = seg_path(dir, victim.seg);
  size_t flen;
  uint8_t *orig = read_file(path, &flen);
  for (uint64_t byte = 0; byte < victim.len; byte += (byte < 40 ? 1 : 7)) {
    for (int bit = 0; bit < 8; bit += 3) {
      uint8_t v = orig[victim.off + byte] ^ (uint8_t)(1u << bit);
      write_at(path, victim.off + byte, &v, 1);
      eng_wal *w = NULL;
      eng_wal_recovery rec;
      int rc = eng_wal_open(&o, &w, &rec);
      cr_assert_eq(rc, RK_ECORRUPT, "byte %lu bit %d: %s", (unsigned long)byte, bit,
                   rk_errname(rc));
      cr_assert_null(w);
      cr_assert_eq(rec.corrupt, 1);
      cr_assert_eq(rec.corrupt_segment, victim.seg);
      cr_assert_eq(rec.corrupt_offset, victim.off, "byte %lu: reported offset %lu not %lu",
                   (unsigned long)byte, (unsigned long)rec.corrupt_offset,
                   (unsigned long)victim.off);
      cr_assert(strstr(rec.message, "offset") != NULL);
      size_t l2;
      uint8_t *now = read_file(path, &l2);
      cr_assert_eq(l2, flen);
      now[victim.off + byte] ^= (uint8_t)(1u << bit);
      cr_assert_eq(memcmp(now, orig, flen), 0, "a refused open modified the segment");
      free(now);
      write_at(path, victim.off + byte, orig + victim.off + byte, 1);
    }
  }
  /* The operator asks to truncate there. */
  uint8_t v = orig[victim.off + 40] ^ 1;
  write_at(path, victim.off + 40, &v, 1);
  o.truncate_on_corruption = 1;
  eng_wal *w = NULL;
  eng_wal_recovery rec;
  cr_assert_eq(eng_wal_open(&o, &w, &rec), RK_OK, "%s", rec.message);
  cr_assert_eq(rec.corrupt, 1);
  cr_assert_eq(rec.batches, 3);
  /* batches 0..2 were groups 1,2,3 entries 1..4 */
  for (uint64_t g = 1; g <= 3; g++) {
    uint64_t l;
    eng_wal_last_index(w, g, &l);
    cr_assert_eq(l, PER);
    eng_check_range(w, g, 1, PER + 1, 1, MAXLEN);
  }
  cr_assert_eq(eng_append_sync(w, 1, 5, 6, 1, MAXLEN, NULL), RK_OK);
  eng_wal_close(w);
  o.truncate_on_corruption = 0;
  w = eng_open_or_skip(&o);
  eng_check_range(w, 1, 1, 6, 1, MAXLEN);
  eng_wal_close(w);
  free(orig);
  free(path);
  eng_rmtree(dir);
  free(dir);
}

static uint64_t dir_hash(const char *dir) {
  uint64_t h = 1469598103934665603ull;
  for (uint64_t seq = 1; seq < 64; seq++) {
    char *p = seg_path(dir, seq);
    if (access(p, F_OK) == 0) {
      size_t len;
      uint8_t *b = read_file(p, &len);
      for (size_t i = 0; i < len; i++) h = (h ^ b[i]) * 1099511628211ull;
      h ^= seq * 31 + len;
      free(b);
    }
    free(p);
  }
  return h;
}

Test(wal_recovery, segment_from_another_node_or_cluster_is_refused) {
  char *dir = eng_tmpdir();
  eng_wal_options o;
  eng_small_opts(&o, dir);
  build_log(&o);
  uint64_t h0 = dir_hash(dir);
  eng_wal *w = NULL;
  eng_wal_recovery rec;
  eng_wal_options other = o;
  other.node_id = o.node_id + 1;
  cr_assert_eq(eng_wal_open(&other, &w, &rec), RK_EWRONGNODE);
  cr_assert(strstr(rec.message, "node") != NULL, "%s", rec.message);
  other = o;
  other.cluster_id = o.cluster_id + 1;
  cr_assert_eq(eng_wal_open(&other, &w, &rec), RK_EWRONGCLUSTER);
  cr_assert(strstr(rec.message, "cluster") != NULL, "%s", rec.message);
  cr_assert_eq(dir_hash(dir), h0, "a refused open changed the WAL");
  /* one foreign segment among ours: copy another node's segment 2 over ours */
  char *odir = eng_tmpdir();
  eng_wal_options oo = o;
  oo.dir = odir;
  oo.node_id = 42;
  build_log(&oo);
  char *mine = seg_path(dir, 2), *theirs = seg_path(odir, 2);
  size_t len;
  uint8_t *b = read_file(theirs, &len);
  int fd = open(mine, O_WRONLY | O_TRUNC);
  cr_assert_eq(write(fd, b, len), (ssize_t)len);
  close(fd);
  free(b);
  uint64_t h1 = dir_hash(dir);
  cr_assert_eq(eng_wal_open(&o, &w, &rec), RK_EWRONGNODE);
  cr_assert_eq(dir_hash(dir), h1);
  free(mine);
  free(theirs);
  eng_rmtree(odir);
  free(odir);
  eng_rmtree(dir);
  free(dir);
}

Test(wal_recovery, damaged_header_or_missing_segment_is_corruption) {
  char *dir = eng_tmpdir();
  eng_wal_options o;
  eng_small_opts(&o, dir);
  build_log_extra(&o, 1);
  char *p1 = seg_path(dir, 1);
  size_t len;
  uint8_t *orig = read_file(p1, &len);
  uint8_t v = orig[20] ^ 4;
  write_at(p1, 20, &v, 1);
  eng_wal *w = NULL;
  eng_wal_recovery rec;
  cr_assert_eq(eng_wal_open(&o, &w, &rec), RK_ECORRUPT);
  cr_assert_eq(rec.corrupt_segment, 1);
  cr_assert_eq(rec.corrupt_offset, 0);
  write_at(p1, 20, orig + 20, 1);
  /* a hole in the sequence: segment 2 gone while 3 exists */
  char *p2 = seg_path(dir, 2), *p3 = seg_path(dir, 3);
  cr_assert_eq(access(p3, F_OK), 0, "test needs 3 segments");
  char *moved = malloc(4200);
  snprintf(moved, 4200, "%s.bak", p2);
  cr_assert_eq(rename(p2, moved), 0);
  cr_assert_eq(eng_wal_open(&o, &w, &rec), RK_ECORRUPT);
  cr_assert_eq(rec.corrupt_segment, 2);
  cr_assert(strstr(rec.message, "missing") != NULL);
  cr_assert_eq(rename(moved, p2), 0);
  w = eng_open_or_skip(&o);
  check_acked(w);
  eng_wal_close(w);
  /* a half-prepared last segment (crash during preparation) is removed */
  uint64_t last = 1;
  for (uint64_t s = 1; s < 64; s++) {
    char *p = seg_path(dir, s);
    if (access(p, F_OK) == 0) last = s;
    free(p);
  }
  char *pl = seg_path(dir, last + 1);
  int fd = open(pl, O_CREAT | O_WRONLY, 0644);
  cr_assert(fd >= 0);
  cr_assert_eq(ftruncate(fd, 4096), 0);
  close(fd);
  w = eng_open_or_skip(&o);
  check_acked(w);
  eng_wal_close(w);
  free(moved);
  free(p1);
  free(p2);
  free(p3);
  free(pl);
  free(orig);
  eng_rmtree(dir);
  free(dir);
}

#ifdef RK_TEST_HOOKS
/* Crash while writing a batch: only a prefix reached the file. */
/* Group 1's entries 1..20 acknowledged, then the process "dies" writing
 * the batch of 21..25: torn_bytes of it reach the file, no sync. */
static void crash_writing_21_to_25(const eng_wal_options *o, uint32_t torn_bytes) {
  eng_wal *w = eng_open_or_skip(o);
  cr_assert_eq(eng_append_sync(w, 1, 1, 21, 1, MAXLEN, NULL), RK_OK);
  eng_wal_hooks h;
  eng_wal_hooks_default(&h);
  h.crash = ENG_WAL_CRASH_TORN_WRITE;
  h.crash_batch = eng_wal_next_batch_seq(w);
  h.crash_torn_bytes = torn_bytes;
  eng_wal_set_hooks(w, &h);
  eng_wal_append_req r;
  eng_cb_state s;
  cr_assert_eq(eng_append_async(w, &r, &s, 1, 21, 26, 1, MAXLEN, NULL), RK_OK);
  cr_assert_eq(eng_wal_process(w), RK_ESTOPPED);
  cr_assert_eq(eng_append_async(w, &r, &s, 1, 26, 27, 1, MAXLEN, NULL), RK_ESTOPPED);
  cr_assert_eq(s.calls, 0, "a dead process calls nobody back");
  eng_wal_close(w);
}

Test(wal_recovery, crash_mid_write_loses_only_the_unacknowledged_batch) {
  char *dir = eng_tmpdir();
  eng_wal_options o;
  eng_small_opts(&o, dir);
  crash_writing_21_to_25(&o, 45);
  eng_wal *w;
  eng_wal_recovery rec;
  cr_assert_eq(eng_wal_open(&o, &w, &rec), RK_OK, "%s", rec.message);
  cr_assert_eq(rec.torn_tail, 1);
  uint64_t l;
  eng_wal_last_index(w, 1, &l);
  cr_assert_eq(l, 20);
  eng_check_range(w, 1, 1, 21, 1, MAXLEN);
  eng_wal_close(w);
  eng_rmtree(dir);
  free(dir);
}

static int sync_calls, sync_fails;
static int counting_sync(int fd) {
  sync_calls++;
  if (sync_fails) {
    errno = EIO;
    return -1;
  }
  return fdatasync(fd);
}

/* Crash after a batch was written whole but before its fdatasync: recovery
 * reads it back as good (from the page cache) and must make it durable
 * before it counts, since a restarted follower answers for its log without
 * another sync. A failed sync there fails the open, naming the segment. */
Test(wal_recovery, a_batch_written_but_never_synced_is_synced_before_it_counts) {
  char *dir = eng_tmpdir();
  eng_wal_options o;
  eng_small_opts(&o, dir);
  crash_writing_21_to_25(&o, UINT32_MAX); /* all of it written, never synced */
  eng_wal *w;
  eng_wal_recovery_sync_ = counting_sync;
  sync_fails = 1;
  eng_wal_recovery rec;
  cr_assert_eq(eng_wal_open(&o, &w, &rec), RK_EIO, "a failed sync must fail the open");
  cr_assert(strstr(rec.message, "cannot sync WAL segment") != NULL, "%s", rec.message);
  cr_assert_eq(rec.batches, 0, "nothing was read before the sync");
  sync_fails = 0;
  sync_calls = 0;
  cr_assert_eq(eng_wal_open(&o, &w, &rec), RK_OK, "%s", rec.message);
  cr_assert_eq(rec.torn_tail, 0);
  cr_assert_geq(sync_calls, 1, "the segment read back was never synced");
  uint64_t l;
  eng_wal_last_index(w, 1, &l);
  cr_assert_eq(l, 25, "the whole batch was found");
  eng_check_range(w, 1, 1, 26, 1, MAXLEN);
  eng_wal_close(w);
  eng_wal_recovery_sync_ = fdatasync;
  eng_rmtree(dir);
  free(dir);
}

/* A crash can leave segments prepared ahead of the one appends resume in:
 * one was prepared when a batch opened that never reached the disk, so its
 * lowest sequence number is above the one that resumes. Recovery drops
 * them; kept, the first batch placed in one would fall below its lowest
 * number and the node would abort, at every restart. */
Test(wal_recovery, segments_prepared_ahead_of_the_resume_point_are_dropped) {
  char *dir = eng_tmpdir();
  eng_wal_options o;
  eng_small_opts(&o, dir);
  eng_wal *w = eng_open_or_skip(&o);
  cr_assert_eq(eng_append_sync(w, 1, 1, 21, 1, MAXLEN, NULL), RK_OK);
  eng_wal_stats st;
  eng_wal_get_stats(w, &st);
  uint64_t resume = st.active_segment, next = eng_wal_next_batch_seq(w);
  eng_wal_close(w);
  /* What the crash left: after the segment prepared ahead of the resume
   * point, one prepared for a batch numbered well above the next one. */
  char *ahead = seg_path(dir, resume + 1);
  cr_assert_eq(access(ahead, F_OK), 0, "the WAL prepares one segment ahead");
  free(ahead);
  wal_seg_hdr h = {.seq = resume + 2,
                   .cluster_id = o.cluster_id,
                   .node_id = o.node_id,
                   .salt = wal_new_salt(),
                   .version = WAL_SEG_VERSION,
                   .min_bseq = next + 1000};
  uint8_t hb[WAL_SEG_HDR];
  wal_seg_hdr_encode(hb, &h);
  char *p = seg_path(dir, resume + 2);
  int fd = open(p, O_CREAT | O_EXCL | O_WRONLY, 0644);
  cr_assert(fd >= 0, "%s", p);
  cr_assert_eq(ftruncate(fd, (off_t)o.segment_bytes), 0);
  cr_assert_eq(pwrite(fd, hb, sizeof hb, 0), (ssize_t)sizeof hb);
  close(fd);
  free(p);
  eng_wal_recovery rec;
  cr_assert_eq(eng_wal_open(&o, &w, &rec), RK_OK, "%s", rec.message);
  /* Enough to fill the resume segment and the two after it. */
  uint64_t last = 20;
  for (int round = 0; round < 200; round++, last += 20)
    cr_assert_eq(eng_append_sync(w, 1, last + 1, last + 21, 1, 4 * MAXLEN, NULL), RK_OK);
  eng_wal_get_stats(w, &st);
  cr_assert_gt(st.active_segment, resume + 2, "active %lu", (unsigned long)st.active_segment);
  eng_wal_close(w);
  w = eng_open_or_skip(&o);
  eng_check_range(w, 1, 1, 21, 1, MAXLEN);
  eng_check_range(w, 1, 21, last + 1, 1, 4 * MAXLEN);
  eng_wal_close(w);
  eng_rmtree(dir);
  free(dir);
}

/* Crash in the middle of a purge (after one segment was deleted). */
Test(wal_recovery, crash_during_purge_keeps_everything_needed) {
  char *dir = eng_tmpdir();
  eng_wal_options o;
  eng_small_opts(&o, dir);
  o.rewrite_after_segments = 1000;
  eng_wal *w = eng_open_or_skip(&o);
  for (uint64_t g = 1; g <= 4; g++)
    cr_assert_eq(eng_append_sync(w, g, 1, 401, 1, 200, NULL), RK_OK);
  for (uint64_t g = 1; g <= 3; g++) cr_assert_eq(eng_wal_compact(w, g, 401, 0), RK_OK);
  cr_assert_eq(eng_wal_compact(w, 4, 390, 0), RK_OK);
  cr_assert_eq(eng_wal_sync(w), RK_OK);
  eng_wal_hooks h;
  eng_wal_hooks_default(&h);
  h.crash = ENG_WAL_CRASH_IN_PURGE;
  eng_wal_set_hooks(w, &h);
  eng_wal_purge_stats ps;
  cr_assert_eq(eng_wal_purge(w, &ps), RK_ESTOPPED);
  cr_assert_eq(ps.segments_deleted, 1);
  eng_wal_close(w);
  w = eng_open_or_skip(&o);
  uint64_t f;
  eng_wal_first_index(w, 4, &f);
  cr_assert_eq(f, 390);
  eng_check_range(w, 4, 390, 401, 1, 200);
  for (uint64_t g = 1; g <= 3; g++) {
    eng_wal_first_index(w, g, &f);
    cr_assert_eq(f, 401);
  }
  cr_assert_eq(eng_wal_purge(w, &ps), RK_OK);
  cr_assert_gt(ps.segments_deleted, 0);
  eng_check_range(w, 4, 390, 401, 1, 200);
  eng_wal_close(w);
  eng_rmtree(dir);
  free(dir);
}
#endif

/* A cut at the very first batch of the oldest segment (expect unknown) must
 * not restart the batch numbers below what that segment was prepared for:
 * the batches written after the cut would read as stale and be lost. */
Test(wal_recovery, truncation_at_the_oldest_batch_then_appends_survive, .timeout = 120) {
  eng_wal_options o;
  char *dir = recycled_log(&o, NULL);
  batch_pos bp[256];
  size_t nb = list_batches(dir, bp, 256);
  cr_assert_geq(nb, 2);
  char *path = seg_path(dir, bp[0].seg);
  size_t flen;
  uint8_t *orig = read_file(path, &flen);
  uint8_t v = orig[bp[0].off + WAL_BATCH_HDR + 3] ^ 0x10;
  write_at(path, bp[0].off + WAL_BATCH_HDR + 3, &v, 1);
  free(orig);
  free(path);
  o.truncate_on_corruption = 1;
  eng_wal *w = NULL;
  eng_wal_recovery rec;
  cr_assert_eq(eng_wal_open(&o, &w, &rec), RK_OK, "%s", rec.message);
  cr_assert_eq(rec.corrupt, 1);
  cr_assert_eq(rec.batches, 0);
  cr_assert_eq(eng_append_sync(w, 50, 1, 201, 1, MAXLEN, NULL), RK_OK);
  eng_wal_close(w);
  o.truncate_on_corruption = 0;
  cr_assert_eq(eng_wal_open(&o, &w, &rec), RK_OK, "%s", rec.message);
  cr_assert_eq(rec.torn_tail + rec.corrupt, 0, "%s", rec.message);
  uint64_t l;
  eng_wal_last_index(w, 50, &l);
  cr_assert_eq(l, 200, "acknowledged appends after the cut were lost");
  eng_check_range(w, 50, 1, 201, 1, MAXLEN);
  eng_wal_close(w);
  eng_rmtree(dir);
  free(dir);
}

/* Plants a batch (one entry of group 1 at index 20, term 9) at the clean end
 * of the recycled segment: with sequence number seq and checksum seed mix. */
static void plant_batch(const char *dir, const batch_pos *end, uint64_t seq, uint64_t mix) {
  uint8_t buf[WAL_BATCH_HDR + WAL_REC_ENTRY_HDR + 8];
  uint8_t data[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  rk_entry e = {.index = 20, .term = 9, .len = 8, .data = data};
  wal_rec_entry_encode(buf + WAL_BATCH_HDR, 1, &e);
  wal_batch_seal(buf, WAL_REC_ENTRY_HDR + 8, seq, 1, mix);
  char *path = seg_path(dir, end->seg);
  write_at(path, end->off + end->len, buf, sizeof buf);
  free(path);
}

/* Each defence against stale bytes on its own: a batch with the segment's
 * own seed but an old sequence number, and one with the next sequence
 * number but another life's seed, are both never replayed. */
Test(wal_recovery, stale_batches_are_never_replayed, .timeout = 120) {
  eng_wal_options o;
  char *dir = recycled_log(&o, NULL);
  batch_pos bp[256];
  size_t nb = list_batches(dir, bp, 256);
  batch_pos fin = bp[nb - 1];
  char *path = seg_path(dir, fin.seg);
  size_t flen;
  uint8_t *orig = read_file(path, &flen);
  wal_seg_hdr sh;
  cr_assert_eq(wal_seg_hdr_decode(orig, &sh), RK_OK);
  cr_assert(sh.recycled);
  wal_batch_hdr fh;
  cr_assert_eq(wal_batch_hdr_decode(orig + fin.off, &fh), RK_OK);
  for (int k = 0; k < 2; k++) {
    if (k == 0)
      plant_batch(dir, &fin, sh.min_bseq - 1, wal_seg_mix(&sh)); /* old number */
    else
      plant_batch(dir, &fin, fh.seq + 1, wal_seg_mix(&sh) ^ 1); /* other life */
    eng_wal *w = NULL;
    eng_wal_recovery rec;
    cr_assert_eq(eng_wal_open(&o, &w, &rec), RK_OK, "case %d: %s", k, rec.message);
    cr_assert_eq(rec.corrupt, 0, "case %d: %s", k, rec.message);
    check_acked(w);
    cr_assert(final_batch_present(w), "case %d", k);
    uint64_t t;
    cr_assert_eq(eng_wal_term(w, 1, 19, &t), RK_OK);
    cr_assert_eq(t, 2, "case %d: a stale batch was replayed", k);
    uint64_t l;
    eng_wal_last_index(w, 1, &l);
    cr_assert_eq(l, 19, "case %d: a stale batch was replayed", k);
    eng_wal_close(w);
    write_at(path, 0, orig, flen);
  }
  free(orig);
  free(path);
  eng_rmtree(dir);
  free(dir);
}

/* A flipped bit in the LAST batch of a recycled segment, with the log going
 * on in the next segment, is corruption (the next segment shows the gap). */
Test(wal_recovery, flipped_bit_at_a_recycled_segment_end_is_reported, .timeout = 120) {
  eng_wal_options o;
  char *dir = recycled_log(&o, NULL);
  /* go on into the next segment(s) */
  eng_wal *w = eng_open_or_skip(&o);
  cr_assert_eq(eng_append_sync(w, 60, 1, 3001, 1, MAXLEN, NULL), RK_OK);
  eng_wal_close(w);
  batch_pos bp[512];
  size_t nb = list_batches(dir, bp, 512);
  size_t vi = SIZE_MAX;
  for (size_t i = 0; i + 1 < nb; i++) {
    if (bp[i + 1].seg != bp[i].seg && seg_is_recycled(dir, bp[i].seg)) {
      vi = i;
      break;
    }
  }
  cr_assert_neq(vi, SIZE_MAX, "no recycled segment ends before another");
  flips_are_corruption(&o, bp[vi], 2, 8, 1);
  eng_rmtree(dir);
  free(dir);
}

/* Spares left behind after every segment file was removed (an operator
 * wiping the log but not the spares) never bring the old log back. */
Test(wal_recovery, leftover_spares_do_not_resurrect_a_removed_log, .timeout = 120) {
  eng_wal_options o;
  char *dir = recycled_log(&o, NULL);
  cr_assert_gt(eng_count_files(dir, ".spare"), 0);
  for (uint64_t s = 1; s < 4096; s++) {
    char *p = seg_path(dir, s);
    unlink(p);
    free(p);
  }
  eng_wal *w = NULL;
  eng_wal_recovery rec;
  cr_assert_eq(eng_wal_open(&o, &w, &rec), RK_OK, "%s", rec.message);
  cr_assert_eq(rec.batches + rec.corrupt + rec.torn_tail, 0, "%s", rec.message);
  for (uint64_t g = 1; g <= 10; g++) {
    uint64_t l;
    eng_wal_last_index(w, g, &l);
    cr_assert_eq(l, 0, "group %lu came back", (unsigned long)g);
  }
  cr_assert_eq(eng_append_sync(w, 1, 1, 3, 4, MAXLEN, NULL), RK_OK);
  eng_wal_close(w);
  cr_assert_eq(eng_wal_open(&o, &w, &rec), RK_OK, "%s", rec.message);
  cr_assert_eq(rec.torn_tail + rec.corrupt, 0, "%s", rec.message);
  uint64_t l;
  eng_wal_last_index(w, 1, &l);
  cr_assert_eq(l, 2);
  eng_check_range(w, 1, 1, 3, 4, MAXLEN);
  eng_wal_close(w);
  eng_rmtree(dir);
  free(dir);
}
