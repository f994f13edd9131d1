/* progress.c — a follower's replication progress at the leader and its
 * in-flight window (state diagram in raft_int.h).
 *
 * The window is a ring of (last index, bytes) per unacknowledged
 * AppendEntries, capacity cfg.max_inflight_msgs, allocated on first use in
 * REPLICATE and freed when it drains at a heartbeat or the state changes, so
 * an idle follower costs no heap.
 */
#include "multiraft/raft_int.h"

#include <stdlib.h>

void mr_pr_inflight_release(mr_progress *pr) {
  free(pr->ring);
  pr->ring = NULL;
  pr->infl_head = 0;
  pr->infl_count = 0;
  pr->infl_bytes = 0;
}

void mr_pr_reset(mr_progress *pr, uint64_t next) {
  RK_ASSERT(next >= 1);
  mr_pr_inflight_release(pr);
  pr->match = 0;
  pr->next = next;
  pr->pending_snap = 0;
  pr->read_ack = 0;
  pr->state = MR_PR_PROBE;
  pr->vote = MR_VOTE_NONE;
  pr->probe_sent = 0;
  pr->recent_active = 1;
  pr->snap_stale = 0;
}

void mr_pr_become_probe(mr_progress *pr) {
  /* after a snapshot, resume right after it (thesis §5.3) */
  if (pr->state == MR_PR_SNAPSHOT) {
    uint64_t ps = pr->pending_snap;
    pr->next = (pr->match > ps ? pr->match : ps) + 1;
  } else {
    pr->next = pr->match + 1;
  }
  pr->state = MR_PR_PROBE;
  pr->pending_snap = 0;
  pr->probe_sent = 0;
  pr->snap_stale = 0;
  mr_pr_inflight_release(pr);
}

void mr_pr_become_replicate(mr_progress *pr) {
  pr->state = MR_PR_REPLICATE;
  pr->next = pr->match + 1;
  pr->pending_snap = 0;
  pr->probe_sent = 0;
  mr_pr_inflight_release(pr);
}

void mr_pr_become_snapshot(mr_progress *pr, uint64_t snap_index) {
  mr_pr_inflight_release(pr);
  pr->state = MR_PR_SNAPSHOT;
  pr->pending_snap = snap_index;
  pr->probe_sent = 0;
  pr->snap_stale = 0;
}

/* An acknowledgement of index n; returns 1 if it moved match. */
int mr_pr_maybe_update(mr_progress *pr, uint64_t n) {
  int updated = 0;
  if (pr->match < n) {
    pr->match = n;
    updated = 1;
    pr->probe_sent = 0;
  }
  if (pr->next < n + 1) pr->next = n + 1;
  return updated;
}

/* A rejection of the append whose prev index was `rejected`; match_hint is
 * the last index that may match. Returns 0 for a stale rejection. */
int mr_pr_maybe_decr_to(mr_progress *pr, uint64_t rejected, uint64_t match_hint) {
  if (pr->state == MR_PR_REPLICATE) {
    if (rejected <= pr->match) return 0; /* stale: already matched past it */
    pr->next = pr->match + 1;
    return 1;
  }
  if (pr->next - 1 != rejected) return 0; /* not the probe we are waiting for */
  if (rejected <= pr->match) return 0;    /* contradicts an earlier ack */
  uint64_t n = rejected < match_hint + 1 ? rejected : match_hint + 1;
  if (n < pr->match + 1) n = pr->match + 1;
  pr->next = n;
  pr->probe_sent = 0;
  RK_ASSERT(pr->next >= 1);
  return 1;
}

int mr_pr_inflight_full(const mr_raft *r, const mr_progress *pr) {
  if (pr->infl_count >= r->cfg.max_inflight_msgs) return 1;
  return r->cfg.max_inflight_bytes != 0 && pr->infl_bytes >= r->cfg.max_inflight_bytes;
}

int mr_pr_is_paused(const mr_raft *r, const mr_progress *pr) {
  switch (pr->state) {
  case MR_PR_PROBE: return pr->probe_sent;
  case MR_PR_REPLICATE: return mr_pr_inflight_full(r, pr);
  case MR_PR_SNAPSHOT: return 1;
  default: RK_UNREACHABLE();
  }
}

int mr_pr_inflight_add(mr_raft *r, mr_progress *pr, uint64_t last, uint64_t bytes) {
  uint32_t cap = r->cfg.max_inflight_msgs;
  RK_ASSERT(pr->state == MR_PR_REPLICATE);
  RK_ASSERT(pr->infl_count < cap);
  if (!pr->ring) {
    pr->ring = calloc(cap, sizeof *pr->ring);
    if (!pr->ring) return RK_ENOMEM;
  }
  if (pr->infl_count > 0) {
    const mr_inflight *prev = &pr->ring[(pr->infl_head + pr->infl_count - 1) % cap];
    RK_ASSERTF(prev->last < last, "in-flight indices must grow");
  }
  mr_inflight *slot = &pr->ring[(pr->infl_head + pr->infl_count) % cap];
  slot->last = last;
  slot->bytes = bytes;
  pr->infl_count++;
  pr->infl_bytes += bytes;
  return RK_OK;
}

void mr_pr_inflight_free_le(mr_progress *pr, uint32_t cap, uint64_t index) {
  while (pr->infl_count > 0) {
    mr_inflight *slot = &pr->ring[pr->infl_head];
    if (slot->last > index) break;
    RK_ASSERT(pr->infl_bytes >= slot->bytes);
    pr->infl_bytes -= slot->bytes;
    pr->infl_head = (uint16_t)((pr->infl_head + 1) % cap);
    pr->infl_count--;
  }
  if (pr->infl_count == 0) {
    pr->infl_head = 0;
    RK_ASSERT(pr->infl_bytes == 0);
  }
}

void mr_pr_inflight_free_first(mr_progress *pr, uint32_t cap) {
  if (pr->infl_count == 0) return;
  mr_pr_inflight_free_le(pr, cap, pr->ring[pr->infl_head].last);
}

mr_progress *mr_pr_find(const mr_raft *r, uint64_t id) {
  for (uint8_t i = 0; i < r->n_prs; i++)
    if (r->prs[i].id == id) return &r->prs[i];
  return NULL;
}

void mr_pr_check(const mr_raft *r, const mr_progress *pr) {
  RK_ASSERT(pr->id != 0);
  RK_ASSERT(pr->flags != 0);
  RK_ASSERT(pr->state <= MR_PR_SNAPSHOT);
  RK_ASSERT(pr->infl_count <= r->cfg.max_inflight_msgs);
  RK_ASSERT(pr->infl_count == 0 || pr->ring != NULL);
  RK_ASSERT(pr->state == MR_PR_REPLICATE || pr->infl_count == 0);
  if (r->role != MR_LEADER) return;
  RK_ASSERTF(pr->match < pr->next, "replica %llu match %llu next %llu", (unsigned long long)pr->id,
             (unsigned long long)pr->match, (unsigned long long)pr->next);
  RK_ASSERT(pr->match <= mr_log_last(r));
  RK_ASSERT(pr->next <= mr_log_last(r) + 1);
  uint64_t bytes = 0, prev = 0;
  for (uint16_t k = 0; k < pr->infl_count; k++) {
    const mr_inflight *s = &pr->ring[(pr->infl_head + k) % r->cfg.max_inflight_msgs];
    RK_ASSERT(s->last > prev);
    prev = s->last;
    bytes += s->bytes;
  }
  RK_ASSERT(bytes == pr->infl_bytes);
}
