/* log.c — the core's view of its log: the durable storage (mr_storage) plus
 * an unstable tail not yet handed to / acknowledged by the host.
 *
 *   storage:  [first_index ........ unstable_off - 1]     durable
 *   unstable:                      [unstable_off ... last] in memory
 *   unstable_snap (optional): a received snapshot not yet installed; while
 *   set, the log starts at unstable_snap->index + 1 and storage is ignored.
 *
 * Invariant: storage is consulted only below unstable_off, so a suffix the
 * host has not yet overwritten in storage is never read.
 */
#include "multiraft/raft_int.h"

#include <stdlib.h>
#include <string.h>

static void check_storage_rc(int rc) {
  RK_ASSERTF(rc == RK_OK || rc == RK_ECOMPACTED || rc == RK_EUNAVAILABLE,
             "storage fault %d: a node with a broken log must stop", rc);
}

uint64_t mr_log_first(const mr_raft *r) {
  if (r->unstable_snap) return r->unstable_snap->index + 1;
  return r->storage.ops->first_index(r->storage.ctx);
}

uint64_t mr_log_last(const mr_raft *r) {
  if (r->unstable.len > 0) return r->unstable_off + r->unstable.len - 1;
  if (r->unstable_snap) return r->unstable_snap->index;
  uint64_t last = r->storage.ops->last_index(r->storage.ctx);
  RK_ASSERTF(last + 1 == r->unstable_off, "storage last %llu, unstable_off %llu",
             (unsigned long long)last, (unsigned long long)r->unstable_off);
  return last;
}

int mr_log_term(const mr_raft *r, uint64_t i, uint64_t *term) {
  const mr_snapshot *s = r->unstable_snap;
  if (s && i == s->index) {
    *term = s->term;
    return RK_OK;
  }
  uint64_t last = mr_log_last(r);
  if (i > last) return RK_EUNAVAILABLE;
  if (r->unstable.len > 0 && i >= r->unstable_off) {
    *term = r->unstable.v[i - r->unstable_off].term;
    RK_ASSERT(r->unstable.v[i - r->unstable_off].index == i);
    return RK_OK;
  }
  if (s) return RK_ECOMPACTED; /* i < s->index */
  RK_ASSERT(i < r->unstable_off);
  int rc = r->storage.ops->term(r->storage.ctx, i, term);
  check_storage_rc(rc);
  return rc;
}

uint64_t mr_log_term_or0(const mr_raft *r, uint64_t i) {
  uint64_t t = 0;
  if (mr_log_term(r, i, &t) != RK_OK) return 0;
  return t;
}

uint64_t mr_log_last_term(const mr_raft *r) {
  uint64_t t = 0;
  int rc = mr_log_term(r, mr_log_last(r), &t);
  RK_ASSERTF(rc == RK_OK, "term of the last index must be known (rc %d)", rc);
  return t;
}

int mr_log_match_term(const mr_raft *r, uint64_t i, uint64_t term) {
  uint64_t t;
  if (mr_log_term(r, i, &t) != RK_OK) return 0;
  return t == term;
}

/* Thesis §5.4.1: the candidate's log is at least as up-to-date as ours. */
int mr_log_is_up_to_date(const mr_raft *r, uint64_t last_index, uint64_t last_term) {
  uint64_t lt = mr_log_last_term(r);
  return last_term > lt || (last_term == lt && last_index >= mr_log_last(r));
}

int mr_log_entries(const mr_raft *r, uint64_t lo, uint64_t hi, uint64_t max_bytes,
                   rk_entry_vec *out) {
  RK_ASSERT(lo <= hi);
  if (lo < mr_log_first(r)) return RK_ECOMPACTED;
  RK_ASSERTF(hi <= mr_log_last(r) + 1, "hi %llu beyond last %llu", (unsigned long long)hi,
             (unsigned long long)mr_log_last(r));
  size_t start = out->len;
  uint64_t bytes = 0;
  if (lo < r->unstable_off && !r->unstable_snap) {
    uint64_t shi = hi < r->unstable_off ? hi : r->unstable_off;
    if (lo < shi) {
      int rc = r->storage.ops->entries(r->storage.ctx, lo, shi, max_bytes, out);
      check_storage_rc(rc);
      if (rc != RK_OK) return rc;
      RK_ASSERT(out->len > start);
      RK_ASSERT(out->v[start].index == lo);
      /* Storage counts payload only: keep the prefix that fits with the
       * framing charged too. */
      size_t got = out->len;
      for (size_t k = start; k < got; k++) {
        uint64_t cost = (uint64_t)out->v[k].len + MR_ENTRY_OVERHEAD;
        if (k > start && bytes + cost > max_bytes) {
          rk_entry_vec_truncate(out, k);
          return RK_OK;
        }
        bytes += cost;
      }
      if (got - start < shi - lo) return RK_OK; /* size limit hit */
      lo = shi;
    }
  }
  for (uint64_t i = lo; i < hi; i++) {
    const rk_entry *e = &r->unstable.v[i - r->unstable_off];
    RK_ASSERT(e->index == i);
    uint64_t cost = (uint64_t)e->len + MR_ENTRY_OVERHEAD;
    if (out->len > start && bytes + cost > max_bytes) break;
    if (rk_entry_vec_push(out, e) != RK_OK) return RK_ENOMEM;
    bytes += cost;
  }
  return RK_OK;
}

/* Whether i answers the search below: its term is <= term, or it is
 * compacted (the snapshot point is a match). True on a prefix of the log,
 * since terms never decrease along it. */
static int term_at_most(const mr_raft *r, uint64_t i, uint64_t term) {
  uint64_t t;
  return mr_log_term(r, i, &t) != RK_OK || t <= term;
}

uint64_t mr_log_find_conflict_by_term(const mr_raft *r, uint64_t index, uint64_t term) {
  uint64_t last = mr_log_last(r);
  if (index > last) index = last;
  if (term_at_most(r, index, term)) return index;
  /* The largest i < index that answers, by bisection: O(log n) lookups
   * however far two logs diverge. A walk back one entry at a time let one
   * cheap message from a peer cost a scan of the whole log. */
  uint64_t lo = 0, hi = index; /* answers at lo (index 0 always does), not at hi */
  while (hi - lo > 1) {
    uint64_t mid = lo + (hi - lo) / 2;
    if (term_at_most(r, mid, term))
      lo = mid;
    else
      hi = mid;
  }
  return lo;
}

int mr_log_append_new(mr_raft *r, uint32_t type, const void *data, uint32_t len) {
  rk_entry e = {.index = mr_log_last(r) + 1,
                .term = r->term,
                .type = type,
                .len = len,
                .data = (uint8_t *)(uintptr_t)data};
  if (r->unstable.len == 0) RK_ASSERT(r->unstable_off == e.index);
  return rk_entry_vec_push(&r->unstable, &e);
}

int mr_log_truncate_and_append(mr_raft *r, const rk_entry *ents, size_t n) {
  RK_ASSERT(n > 0);
  uint64_t after = ents[0].index;
  RK_ASSERTF(after > r->commit, "truncating committed index %llu (commit %llu)",
             (unsigned long long)after, (unsigned long long)r->commit);
  RK_ASSERT(after <= mr_log_last(r) + 1);
  if (after == r->unstable_off + r->unstable.len) {
    /* plain append */
  } else if (after <= r->unstable_off) {
    /* replaces part of the durable log: storage is overwritten by the next
     * Ready's append, which starts at `after` */
    rk_entry_vec_clear(&r->unstable);
    r->unstable_off = after;
  } else {
    rk_entry_vec_truncate(&r->unstable, after - r->unstable_off);
  }
  for (size_t k = 0; k < n; k++) {
    RK_ASSERT(ents[k].index == after + k);
    if (rk_entry_vec_push(&r->unstable, &ents[k]) != RK_OK) return RK_ENOMEM;
  }
  return RK_OK;
}

void mr_log_commit_to(mr_raft *r, uint64_t index) {
  if (index <= r->commit) return; /* never decreases */
  RK_ASSERTF(index <= mr_log_last(r), "commit %llu beyond last %llu", (unsigned long long)index,
             (unsigned long long)mr_log_last(r));
  r->commit = index;
}

void mr_log_stable_to(mr_raft *r, uint64_t index, uint64_t term) {
  if (r->unstable.len == 0 || index < r->unstable_off) return;
  uint64_t last = r->unstable_off + r->unstable.len - 1;
  if (index > last) return;
  if (r->unstable.v[index - r->unstable_off].term != term) return; /* replaced meanwhile */
  size_t drop = (size_t)(index - r->unstable_off + 1);
  /* shift the kept tail down; payload ownership moves with the entries */
  for (size_t k = 0; k < drop; k++) {
    r->unstable.bytes -= r->unstable.v[k].len;
    free(r->unstable.v[k].data);
  }
  memmove(r->unstable.v, r->unstable.v + drop, (r->unstable.len - drop) * sizeof(rk_entry));
  r->unstable.len -= drop;
  r->unstable_off = index + 1;
  if (r->unstable.len == 0) rk_entry_vec_free(&r->unstable); /* no heap at rest */
}

void mr_snapshot_free(mr_snapshot *s) {
  if (!s) return;
  free(s->data);
  memset(s, 0, sizeof *s);
}

int mr_snapshot_copy(mr_snapshot *dst, const mr_snapshot *src) {
  *dst = *src;
  dst->data = NULL;
  if (src->len > 0) {
    dst->data = malloc(src->len);
    if (!dst->data) return RK_ENOMEM;
    memcpy(dst->data, src->data, src->len);
  }
  return RK_OK;
}

/* Follower restore (thesis §5.3/§7): the log becomes empty after s->index. */
void mr_log_restore(mr_raft *r, const mr_snapshot *s, mr_snapshot *owned) {
  RK_ASSERT(owned && owned->index == s->index);
  rk_entry_vec_free(&r->unstable);
  if (r->unstable_snap) {
    mr_snapshot_free(r->unstable_snap);
    free(r->unstable_snap);
  }
  r->unstable_snap = owned;
  r->unstable_off = s->index + 1;
  r->commit = s->index;
}
