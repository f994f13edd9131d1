/* WAL segment recycling: purged segments kept as spares and reused, zero-
 * filled spares made at open, version 1 segments still read, a spare left
 * half-prepared by a crash. (Torn tails and bit flips inside recycled
 * segments: test_wal_recovery.c.) */
#include "eng_test.h"

#include "engine/wal_int.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAXLEN 200u

/* Group 1 appends `rounds` x 120 entries, compacting all but its last 10
 * and purging after each round; the spare count never exceeds the limit. */
static uint64_t churn(eng_wal *w, const eng_wal_options *o, uint64_t next, int rounds) {
  for (int r = 0; r < rounds; r++) {
    for (int k = 0; k < 3; k++) {
      cr_assert_eq(eng_append_sync(w, 1, next, next + 40, 1, MAXLEN, NULL), RK_OK);
      next += 40;
    }
    cr_assert_eq(eng_wal_compact(w, 1, next - 10, 0), RK_OK);
    cr_assert_eq(eng_wal_sync(w), RK_OK);
    cr_assert_eq(eng_wal_purge(w, NULL), RK_OK);
    eng_wal_stats st;
    eng_wal_get_stats(w, &st);
    size_t spares = eng_count_files(o->dir, ".spare");
    cr_assert_leq(spares, o->recycle_segments);
    /* a spare the ring is renaming into the next segment is no longer
     * counted but may still carry its spare name */
    cr_assert(st.spares <= spares && spares <= st.spares + 1, "%lu spares, %zu files",
              (unsigned long)st.spares, spares);
  }
  return next;
}

Test(wal_recycle, purged_segments_become_spares_and_new_segments_reuse_them) {
  char *dir = eng_tmpdir();
  eng_wal_options o;
  eng_small_opts(&o, dir);
  o.recycle_segments = 3;
  eng_wal *w = eng_open_or_skip(&o);
  uint64_t next = churn(w, &o, 1, 40);
  eng_wal_stats st;
  eng_wal_get_stats(w, &st);
  cr_assert_gt(st.segments_deleted, 6, "the test must retire segments");
  cr_assert_gt(st.segments_recycled, 3, "spares were not reused");
  wal_seg_hdr h;
  cr_assert_eq(eng_read_seg_hdr(dir, st.active_segment, &h), RK_OK);
  cr_assert(h.recycled, "the active segment is a reused spare");
  cr_assert_eq(h.version, WAL_SEG_VERSION);
  cr_assert_geq(h.min_bseq, 2);
  eng_check_range(w, 1, next - 10, next, 1, MAXLEN);
  eng_wal_close(w);
  /* Stale batches of the files' earlier lives are neither replayed nor a
   * torn tail; the spares are found again. */
  eng_wal_recovery rec;
  cr_assert_eq(eng_wal_open(&o, &w, &rec), RK_OK, "%s", rec.message);
  cr_assert_eq(rec.torn_tail + rec.corrupt, 0, "%s", rec.message);
  uint64_t f, l;
  eng_wal_first_index(w, 1, &f);
  eng_wal_last_index(w, 1, &l);
  cr_assert_eq(f, next - 10);
  cr_assert_eq(l, next - 1);
  eng_check_range(w, 1, next - 10, next, 1, MAXLEN);
  next = churn(w, &o, next, 20);
  eng_wal_close(w);
  w = eng_open_or_skip(&o);
  eng_check_range(w, 1, next - 10, next, 1, MAXLEN);
  eng_wal_close(w);
  eng_rmtree(dir);
  free(dir);
}

Test(wal_recycle, recycling_off_deletes_segments) {
  char *dir = eng_tmpdir();
  eng_wal_options o;
  eng_small_opts(&o, dir);
  o.recycle_segments = 0;
  eng_wal *w = eng_open_or_skip(&o);
  uint64_t next = churn(w, &o, 1, 30);
  eng_wal_stats st;
  eng_wal_get_stats(w, &st);
  cr_assert_gt(st.segments_deleted, 3);
  cr_assert_eq(st.segments_recycled, 0);
  cr_assert_eq(eng_count_files(dir, ".spare"), 0);
  wal_seg_hdr h;
  cr_assert_eq(eng_read_seg_hdr(dir, st.active_segment, &h), RK_OK);
  cr_assert(!h.recycled);
  eng_wal_close(w);
  /* Reopening with a smaller limit drops the surplus spares. */
  o.recycle_segments = 3;
  w = eng_open_or_skip(&o);
  next = churn(w, &o, next, 10);
  /* group 2 fills several segments, then both groups drop everything */
  cr_assert_eq(eng_append_sync(w, 2, 1, 3001, 1, MAXLEN, NULL), RK_OK);
  cr_assert_eq(eng_wal_compact(w, 2, 3001, 0), RK_OK);
  cr_assert_eq(eng_wal_compact(w, 1, next, 0), RK_OK);
  cr_assert_eq(eng_wal_sync(w), RK_OK);
  cr_assert_eq(eng_wal_purge(w, NULL), RK_OK);
  eng_wal_close(w);
  cr_assert_eq(eng_count_files(dir, ".spare"), 3);
  o.recycle_segments = 1;
  w = eng_open_or_skip(&o);
  eng_wal_close(w);
  cr_assert_leq(eng_count_files(dir, ".spare"), 1);
  eng_rmtree(dir);
  free(dir);
}

Test(wal_recycle, prefill_makes_zeroed_spares_that_the_first_segments_use) {
  char *dir = eng_tmpdir();
  eng_wal_options o;
  eng_small_opts(&o, dir);
  o.recycle_segments = 3;
  o.prefill_segments = 3;
  eng_wal *w = eng_open_or_skip(&o);
  eng_wal_stats st;
  eng_wal_get_stats(w, &st);
  /* segments 1 and 2 (the next one is prepared ahead) took two of them */
  cr_assert_eq(st.segments_recycled, 2);
  cr_assert_eq(st.spares, 1);
  cr_assert_eq(eng_count_files(dir, ".spare"), 1);
  wal_seg_hdr h;
  cr_assert_eq(eng_read_seg_hdr(dir, 1, &h), RK_OK);
  cr_assert(h.recycled);
  cr_assert_eq(h.min_bseq, 1);
  struct stat sb;
  char p[4200];
  snprintf(p, sizeof p, "%s/%016lx.wal", dir, 1ul);
  cr_assert_eq(stat(p, &sb), 0);
  cr_assert_eq((uint64_t)sb.st_size, o.segment_bytes);
  cr_assert_eq(eng_append_sync(w, 1, 1, 101, 1, MAXLEN, NULL), RK_OK);
  eng_wal_close(w);
  eng_wal_recovery rec;
  cr_assert_eq(eng_wal_open(&o, &w, &rec), RK_OK, "%s", rec.message);
  cr_assert_eq(rec.torn_tail + rec.corrupt, 0, "%s", rec.message);
  eng_check_range(w, 1, 1, 101, 1, MAXLEN);
  eng_wal_close(w);
  o.prefill_segments = 4; /* more than it may keep */
  cr_assert_eq(eng_wal_open(&o, &w, &rec), RK_EINVAL);
  cr_assert(strstr(rec.message, "prefill_segments") != NULL, "%s", rec.message);
  eng_rmtree(dir);
  free(dir);
}

/* A crash after a spare got its new header but before it took the
 * segment's name leaves a spare with a valid header: it is still a spare. */
Test(wal_recycle, spare_with_a_new_header_from_a_crash_is_still_a_spare) {
  char *dir = eng_tmpdir();
  eng_wal_options o;
  eng_small_opts(&o, dir);
  o.recycle_segments = 2;
  eng_wal *w = eng_open_or_skip(&o);
  uint64_t next = churn(w, &o, 1, 30);
  eng_wal_stats st;
  eng_wal_get_stats(w, &st);
  uint64_t next_bseq = eng_wal_next_batch_seq(w);
  eng_wal_close(w);
  cr_assert_geq(eng_count_files(dir, ".spare"), 1);
  /* the oldest spare gets the header segment active + 2 would have had */
  uint64_t id = 0;
  for (uint64_t i = 1; i < 4096 && id == 0; i++) {
    char p[4200];
    snprintf(p, sizeof p, "%s/%016lx.spare", dir, (unsigned long)i);
    if (access(p, F_OK) == 0) id = i;
  }
  cr_assert_neq(id, 0);
  wal_seg_hdr h = {.seq = st.active_segment + 2,
                   .cluster_id = o.cluster_id,
                   .node_id = o.node_id,
                   .segment_bytes = o.segment_bytes,
                   .version = WAL_SEG_VERSION,
                   .min_bseq = next_bseq,
                   .recycled = 1};
  uint8_t b[WAL_SEG_HDR];
  wal_seg_hdr_encode(b, &h);
  char p[4200];
  snprintf(p, sizeof p, "%s/%016lx.spare", dir, (unsigned long)id);
  int fd = open(p, O_WRONLY);
  cr_assert(fd >= 0);
  cr_assert_eq(pwrite(fd, b, sizeof b, 0), (ssize_t)sizeof b);
  close(fd);
  eng_wal_recovery rec;
  cr_assert_eq(eng_wal_open(&o, &w, &rec), RK_OK, "%s", rec.message);
  cr_assert_eq(rec.torn_tail + rec.corrupt, 0, "%s", rec.message);
  eng_check_range(w, 1, next - 10, next, 1, MAXLEN);
  next = churn(w, &o, next, 30); /* it is reused: rewritten, renamed */
  eng_wal_close(w);
  cr_assert_eq(eng_wal_open(&o, &w, &rec), RK_OK, "%s", rec.message);
  cr_assert_eq(rec.torn_tail + rec.corrupt, 0, "%s", rec.message);
  eng_check_range(w, 1, next - 10, next, 1, MAXLEN);
  eng_wal_close(w);
  eng_rmtree(dir);
  free(dir);
}

#ifdef RK_TEST_HOOKS
/* Segments written by format version 1 (no segment number in the checksum
 * seed, no lowest sequence number) are read, and appends continue in them. */
Test(wal_recycle, version_1_segments_are_still_read) {
  char *dir = eng_tmpdir();
  eng_wal_options o;
  eng_small_opts(&o, dir);
  eng_wal *w = eng_open_or_skip(&o);
  eng_wal_hooks hk;
  eng_wal_hooks_default(&hk);
  hk.legacy_v1_segments = 1;
  eng_wal_set_hooks(w, &hk);
  cr_assert_eq(eng_append_sync(w, 1, 1, 4001, 1, MAXLEN, NULL), RK_OK);
  eng_wal_stats st;
  eng_wal_get_stats(w, &st);
  uint64_t v1_last = st.active_segment;
  eng_wal_close(w);
  wal_seg_hdr h;
  cr_assert_eq(eng_read_seg_hdr(dir, 1, &h), RK_OK);
  cr_assert_eq(h.version, 2, "segments 1 and 2 were prepared at open");
  cr_assert_geq(v1_last, 4, "the test must write v1 segments");
  cr_assert_eq(eng_read_seg_hdr(dir, 3, &h), RK_OK);
  cr_assert_eq(h.version, 1);
  cr_assert_eq(h.min_bseq, 0);
  eng_wal_recovery rec;
  cr_assert_eq(eng_wal_open(&o, &w, &rec), RK_OK, "%s", rec.message);
  cr_assert_eq(rec.torn_tail + rec.corrupt, 0, "%s", rec.message);
  eng_check_range(w, 1, 1, 4001, 1, MAXLEN);
  /* appends resume in the last (v1) segment and go on into v2 ones */
  cr_assert_eq(eng_append_sync(w, 1, 4001, 5001, 1, MAXLEN, NULL), RK_OK);
  eng_wal_get_stats(w, &st);
  eng_wal_close(w);
  cr_assert_eq(eng_read_seg_hdr(dir, st.active_segment, &h), RK_OK);
  cr_assert_eq(h.version, 2);
  cr_assert_eq(eng_wal_open(&o, &w, &rec), RK_OK, "%s", rec.message);
  cr_assert_eq(rec.torn_tail + rec.corrupt, 0, "%s", rec.message);
  eng_check_range(w, 1, 1, 5001, 1, MAXLEN);
  /* the version 1 files retire into spares and come back as version 2
   * segments over their old batches (seeded 0: never verify again) */
  cr_assert_eq(eng_wal_compact(w, 1, 4990, 0), RK_OK);
  cr_assert_eq(eng_wal_sync(w), RK_OK);
  cr_assert_eq(eng_wal_purge(w, NULL), RK_OK);
  cr_assert_eq(eng_append_sync(w, 1, 5001, 9001, 1, MAXLEN, NULL), RK_OK);
  eng_wal_get_stats(w, &st);
  cr_assert_geq(st.segments_recycled, 3);
  eng_wal_close(w);
  cr_assert_eq(eng_wal_open(&o, &w, &rec), RK_OK, "%s", rec.message);
  cr_assert_eq(rec.torn_tail + rec.corrupt, 0, "%s", rec.message);
  uint64_t f;
  eng_wal_first_index(w, 1, &f);
  cr_assert_eq(f, 4990);
  eng_check_range(w, 1, 4990, 9001, 1, MAXLEN);
  eng_wal_close(w);
  eng_rmtree(dir);
  free(dir);
}
#endif
