/* engine/wal_read.c — the per-group log view: the Raft core's log-storage
 * interface (first/last index, term(i), entries[lo, hi)), served from the
 * entry cache or, for older entries, by pread from the segment.
 *
 * A read from a segment re-checks the record header against the index
 * (group, index, term, length): if they disagree the segment no longer holds
 * what we indexed and the answer is RK_ECORRUPT, never a wrong entry.
 */
#include "engine/wal_int.h"

#include "common/rk_assert.h"
#include "common/rk_err.h"
#include "common/rk_log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int readable(const eng_wal *w) {
  return w->crashed ? RK_ESTOPPED : w->stopped ? RK_ESTOPPED : RK_OK;
}

int eng_wal_first_index(eng_wal *w, uint64_t group, uint64_t *out) {
  int rc = readable(w);
  if (rc != RK_OK) return rc;
  const wal_group *g = wal_index_find(&w->ix, group);
  *out = g ? g->first : 1;
  return RK_OK;
}

int eng_wal_last_index(eng_wal *w, uint64_t group, uint64_t *out) {
  int rc = readable(w);
  if (rc != RK_OK) return rc;
  const wal_group *g = wal_index_find(&w->ix, group);
  *out = g ? g->first + g->n - 1 : 0;
  return RK_OK;
}

int eng_wal_term(eng_wal *w, uint64_t group, uint64_t i, uint64_t *out) {
  int rc = readable(w);
  if (rc != RK_OK) return rc;
  const wal_group *g = wal_index_find(&w->ix, group);
  uint64_t first = g ? g->first : 1, last = g ? g->first + g->n - 1 : 0;
  if (i > last) return RK_EUNAVAILABLE;
  if (i + 1 == first) {
    if (g == NULL) {
      *out = 0;
      return RK_OK;
    }
    if (!g->prev_known) return RK_ECOMPACTED;
    *out = g->prev_term;
    return RK_OK;
  }
  if (i < first) return RK_ECOMPACTED;
  *out = wal_group_loc(g, i)->term;
  return RK_OK;
}

int wal_read_payload(eng_wal *w, const wal_group *g, uint64_t index, const wal_loc *loc,
                     uint8_t *dst) {
  if (loc->len == 0) return RK_OK; /* nothing to read (never cached either) */
  const uint8_t *cached = wal_cache_get(&w->ix, loc);
  if (cached) {
    memcpy(dst, cached, loc->len);
    w->ix.hits++;
    return RK_OK;
  }
  w->ix.misses++;
  RK_ASSERTF(loc->bseq <= w->durable_bseq, "undurable entry %" PRIu64 " not cached", index);
  const wal_seg *s = wal_seg_get(w, loc->seg);
  if (s == NULL) {
    RK_ERROR("wal", "group %" PRIu64 " index %" PRIu64 ": segment %" PRIu64 " is gone", g->id,
             index, loc->seg);
    return RK_ECORRUPT;
  }
  uint8_t hdr[WAL_REC_ENTRY_HDR];
#ifdef RK_TEST_HOOKS
  if (w->hooks.fail_read_at >= 0 && w->nread_seen++ == (uint64_t)w->hooks.fail_read_at)
    return w->hooks.fail_errno ? rk_err_from_errno(w->hooks.fail_errno) : RK_EIO;
#endif
  ssize_t r = pread(s->fd, hdr, sizeof hdr, loc->off);
  if (r < 0) return rk_err_from_errno(errno);
  wal_rec rec;
  if (r != (ssize_t)sizeof hdr || hdr[0] != WAL_REC_ENTRY) goto corrupt;
  rec.group = wal_get_u64(hdr + 8);
  rec.e.len = wal_get_u32(hdr + 4);
  rec.e.index = wal_get_u64(hdr + 16);
  rec.e.term = wal_get_u64(hdr + 24);
  if (rec.group != g->id || rec.e.index != index || rec.e.term != loc->term ||
      rec.e.len != loc->len)
    goto corrupt;
  size_t got = 0;
  while (got < loc->len) {
    r = pread(s->fd, dst + got, loc->len - got, (off_t)loc->off + WAL_REC_ENTRY_HDR + (off_t)got);
    if (r < 0) return rk_err_from_errno(errno);
    if (r == 0) goto corrupt;
    got += (size_t)r;
  }
  return RK_OK;
corrupt:
  RK_ERROR("wal",
           "segment %" PRIu64 " offset %" PRIu32 " does not hold group %" PRIu64 " index %" PRIu64,
           loc->seg, loc->off, g->id, index);
  return RK_ECORRUPT;
}

int eng_wal_entries(eng_wal *w, uint64_t group, uint64_t lo, uint64_t hi, uint64_t max_bytes,
                    rk_entry_vec *out) {
  int rc = readable(w);
  if (rc != RK_OK) return rc;
  if (lo > hi) return RK_EINVAL;
  const wal_group *g = wal_index_find(&w->ix, group);
  uint64_t first = g ? g->first : 1, last = g ? g->first + g->n - 1 : 0;
  if (lo < first) return RK_ECOMPACTED;
  if (hi > last + 1) return RK_EUNAVAILABLE;
  uint64_t bytes = 0;
  uint8_t *tmp = NULL;
  size_t tmpcap = 0;
  for (uint64_t i = lo; i < hi; i++) {
    const wal_loc *l = wal_group_loc(g, i);
    RK_ASSERT(l != NULL);
    if (i > lo && bytes + l->len > max_bytes) break;
    rk_entry e = {.index = i, .term = l->term, .type = l->type, .len = l->len, .data = NULL};
    if (l->len) {
      uint8_t *cached = wal_cache_get(&w->ix, l);
      if (cached) {
        e.data = cached;
        w->ix.hits++;
      } else {
        if (tmpcap < l->len) {
          uint8_t *nt = realloc(tmp, l->len);
          if (nt == NULL) {
            rc = RK_ENOMEM;
            break;
          }
          tmp = nt;
          tmpcap = l->len;
        }
        rc = wal_read_payload(w, g, i, l, tmp);
        if (rc != RK_OK) break;
        e.data = tmp;
      }
    }
    rc = rk_entry_vec_push(out, &e);
    if (rc != RK_OK) break;
    bytes += l->len;
  }
  free(tmp);
  return rc;
}

int eng_wal_hard_state(eng_wal *w, uint64_t group, rk_hard_state *hs, int *found) {
  int rc = readable(w);
  if (rc != RK_OK) return rc;
  const wal_group *g = wal_index_find(&w->ix, group);
  *found = g && g->has_hs;
  if (*found)
    *hs = g->hs;
  else
    memset(hs, 0, sizeof *hs);
  return RK_OK;
}

void eng_wal_for_each_group(eng_wal *w, void (*fn)(void *ctx, uint64_t group), void *ctx) {
  for (size_t i = 0; i < w->ix.nslots; i++) {
    const wal_group *g = w->ix.slots[i];
    if (g && g->touched) fn(ctx, g->id);
  }
}
