/* engine/wal_purge.c — compaction marks, segment purge, laggard rewrite.
 *
 * A group needs the segments holding its retained entries, its latest hard
 * state and its latest compaction mark; wal_group_min_seg() is the oldest of
 * those. A segment older than every group's oldest need (and older than the
 * active one) is deleted — always from the front, so the live segments stay
 * a contiguous range.
 *
 * One idle or slow group can pin an old segment and with it every segment
 * after it. Policy (TiKV raft-engine's "rewrite"): when more than
 * rewrite_after_segments segments are live, every group whose oldest need is
 * older than the newest rewrite_after_segments / 2 segments is rewritten
 * forward — its compaction mark, hard state and all retained entries are
 * re-appended, together, in ONE batch (so replay, with its suffix-overwrite
 * rule, sees either the old copy or the complete new one). Groups with more
 * than rewrite_max_group_bytes of live entries are not rewritten (that would
 * copy too much); they are counted in laggards_too_big and the host should
 * compact them (snapshot) instead. Segments freed by marks or a rewrite are
 * deleted by a later eng_wal_purge(), once the batches holding them are
 * durable (purge_cand_*): deleting earlier could lose data if the new copy
 * never reached the disk.
 */
#include "engine/wal_int.h"

#include "common/rk_assert.h"
#include "common/rk_err.h"
#include "common/rk_log.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int writable(const eng_wal *w) { return (w->crashed || w->stopped) ? RK_ESTOPPED : RK_OK; }

int eng_wal_compact(eng_wal *w, uint64_t group, uint64_t index, uint64_t prev_term) {
  int rc = writable(w);
  if (rc != RK_OK) return rc;
  if (group == 0 || index == 0) return RK_EINVAL;
  wal_group *g = wal_index_get(&w->ix, group);
  if (g == NULL) return RK_ENOMEM;
  if (index < g->first || (index == g->first && (g->has_mark || !prev_term))) return RK_OK;
  wal_batch *b = wal_batch_reserve(w, WAL_REC_COMPACT_LEN, &rc);
  if (b == NULL) return rc;
  wal_group_compact(g, index, prev_term);
  wal_rec_compact_encode(b->buf + b->len, g->id, g->first, g->prev_known ? g->prev_term : 0, 0);
  b->len += WAL_REC_COMPACT_LEN;
  b->nrec++;
  b->internal = 1;
  g->mark_seg = b->seg;
  return RK_OK;
}

int eng_wal_reset(eng_wal *w, uint64_t group, uint64_t first, uint64_t prev_term) {
  int rc = writable(w);
  if (rc != RK_OK) return rc;
  if (group == 0 || first == 0) return RK_EINVAL;
  wal_group *g = wal_index_get(&w->ix, group);
  if (g == NULL) return RK_ENOMEM;
  wal_batch *b = wal_batch_reserve(w, WAL_REC_COMPACT_LEN, &rc);
  if (b == NULL) return rc;
  wal_group_reset(g, first, prev_term);
  wal_rec_compact_encode(b->buf + b->len, g->id, first, prev_term, WAL_MARK_RESTATE);
  b->len += WAL_REC_COMPACT_LEN;
  b->nrec++;
  b->internal = 1;
  g->mark_seg = b->seg;
  return RK_OK;
}

static int rewrite_group(eng_wal *w, wal_group *g, uint64_t *nent) {
  size_t bytes = (size_t)wal_group_rewrite_bytes(g, UINT64_MAX);
  int rc;
  uint8_t *tmp = NULL;
  size_t tmpcap = 0;
  /* Read everything first: a failed read must leave the group untouched. */
  size_t total = 0;
  for (size_t k = 0; k < g->n; k++) total += g->locs[(g->head + k) % g->cap].len;
  if (total) {
    tmp = malloc(total);
    if (tmp == NULL) return RK_ENOMEM;
    tmpcap = total;
  }
  size_t at = 0;
  for (size_t k = 0; k < g->n; k++) {
    const wal_loc *l = &g->locs[(g->head + k) % g->cap];
    rc = wal_read_payload(w, g, g->first + k, l, tmp + at);
    if (rc != RK_OK) {
      free(tmp);
      return rc;
    }
    at += l->len;
  }
  RK_ASSERT(at <= tmpcap || tmpcap == 0);
  /* Reserved only now: a failed read above leaves no empty batch open. */
  wal_batch *b = wal_batch_reserve(w, bytes, &rc);
  if (b == NULL) {
    free(tmp);
    return rc;
  }
  /* RESTATE: replay may hold a partial, older view of this group (segments
   * deleted after an earlier rewrite); this batch states it in full. */
  wal_rec_compact_encode(b->buf + b->len, g->id, g->first, g->prev_known ? g->prev_term : 0,
                         WAL_MARK_RESTATE);
  b->len += WAL_REC_COMPACT_LEN;
  b->nrec++;
  g->has_mark = 1;
  g->touched = 1;
  g->mark_seg = b->seg;
  /* what replay of this RESTATE mark will remember (wal_group_reset) */
  uint64_t mark_pt = g->prev_known ? g->prev_term : 0;
  wal_group_remember_mark(g, g->first, mark_pt, mark_pt != 0 || g->first == 1);
  if (g->has_hs) {
    wal_rec_hs_encode(b->buf + b->len, g->id, &g->hs);
    b->len += WAL_REC_HS_LEN;
    b->nrec++;
    g->hs_seg = b->seg;
  }
  at = 0;
  for (size_t k = 0; k < g->n; k++) {
    wal_loc *l = &g->locs[(g->head + k) % g->cap];
    rk_entry e = {.index = g->first + k,
                  .term = l->term,
                  .type = l->type,
                  .len = l->len,
                  .data = l->len ? tmp + at : NULL};
    uint8_t *p = b->buf + b->len;
    wal_rec_entry_encode(p, g->id, &e);
    l->bseq = b->seq;
    l->seg = b->seg;
    l->off = (uint32_t)(b->off + b->len);
    /* Until this batch is durable the new location cannot be read: pin it
     * (a fresh copy: the cache pins by chunk, in batch order). */
    if (wal_cache_put(&w->ix, l, p + WAL_REC_ENTRY_HDR) != RK_OK) wal_fail(w, RK_ENOMEM);
    b->len += wal_rec_entry_size(l->len);
    b->nrec++;
    at += l->len;
  }
  free(tmp);
  b->internal = 1;
  *nent += g->n;
  return RK_OK;
}

int eng_wal_purge(eng_wal *w, eng_wal_purge_stats *st) {
  eng_wal_purge_stats dummy;
  if (st == NULL) st = &dummy;
  memset(st, 0, sizeof *st);
  int rc = writable(w);
  if (rc != RK_OK) return rc;
  /* 1. Rewrite laggards forward. */
  uint64_t live = w->cur_seg - w->seg_first + 1;
  if (live > w->opt.rewrite_after_segments) {
    uint64_t keep = w->opt.rewrite_after_segments / 2 ? w->opt.rewrite_after_segments / 2 : 1;
    uint64_t horizon = w->cur_seg + 1 - keep;
    for (size_t i = 0; i < w->ix.nslots; i++) {
      wal_group *g = w->ix.slots[i];
      if (g == NULL || wal_group_min_seg(g) >= horizon) continue;
      /* Counted with its records' framing: a rewrite is one batch, and
       * tiny entries cost more in headers than in payload. */
      if (wal_group_rewrite_bytes(g, w->opt.rewrite_max_group_bytes) >
          w->opt.rewrite_max_group_bytes) {
        st->laggards_too_big++;
        continue;
      }
      uint64_t before = st->entries_rewritten;
      rc = rewrite_group(w, g, &st->entries_rewritten);
      if (rc != RK_OK) return rc;
      st->groups_rewritten++;
      w->st.entries_rewritten += st->entries_rewritten - before;
    }
  }
  /* 2. Delete what nobody needs. A candidate computed now is justified by
   * marks and rewrites in batches up to next_bseq - 1; it may be acted on
   * only once those are durable. Needs never move backwards (a group's
   * oldest needed segment only grows; new groups start in new segments), so
   * a candidate stays valid until then. */
  uint64_t need = w->cur_seg;
  for (size_t i = 0; i < w->ix.nslots; i++) {
    const wal_group *g = w->ix.slots[i];
    if (g == NULL) continue;
    uint64_t m = wal_group_min_seg(g);
    if (m < need) need = m;
  }
  /* Never delete a segment an unfinished batch still uses. */
  if (w->inflight && w->inflight->seg < need) need = w->inflight->seg;
  for (const wal_batch *b = w->sealed; b; b = b->next)
    if (b->seg < need) need = b->seg;
  uint64_t upto = 0;
  if (w->purge_cand_seg && w->durable_bseq >= w->purge_cand_bseq) upto = w->purge_cand_seg;
  if (w->durable_bseq + 1 >= w->next_bseq) {
    upto = need; /* everything appended is durable: act on it now */
    w->purge_cand_seg = 0;
  } else {
    w->purge_cand_seg = need;
    w->purge_cand_bseq = w->next_bseq - 1;
  }
  while (w->seg_first < upto && w->seg_first < w->cur_seg && w->nsegs > 1) {
    rc = wal_seg_delete_first(w);
    if (rc != RK_OK) return rc;
    st->segments_deleted++;
#ifdef RK_TEST_HOOKS
    if (w->hooks.crash == ENG_WAL_CRASH_IN_PURGE) {
      w->crashed = 1;
      return RK_ESTOPPED;
    }
#endif
  }
  /* Not waited for: a deletion lost in a crash only brings back old
   * segments whose records later marks supersede. Deletions go oldest
   * first and journaling filesystems (ext4, xfs) persist directory
   * operations in order, so what comes back is a prefix: no hole. */
  if (st->segments_deleted) wal_dir_sync_async(w);
  return RK_OK;
}
