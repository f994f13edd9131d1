/* readonly.c — ReadIndex, the linearizable read barrier (thesis §6.4).
 *
 * 1. The leader refuses until an entry of its own term has committed (its
 *    no-op): before that its commit index may lag the true one.
 * 2. It records read index = commit and starts a heartbeat round (ctx = a new
 *    round number, read_seq).
 * 3. Each follower echoes the highest round it saw (pr->read_ack). The rounds
 *    confirmed by a quorum are those <= the quorum index of read_ack (the
 *    leader counts as having acknowledged every round): at the time those
 *    followers answered, no other leader could have been elected with a
 *    newer commit, so the recorded index is not stale.
 * 4. Confirmed requests become read states (local) or READ_INDEX_RESP
 *    (forwarded); a read state is handed out once applied >= index.
 *
 * A deposed leader never completes step 3 (a quorum now answers with a
 * higher term, which deposes it), and stepping down drops pending requests.
 */
#include "multiraft/raft_int.h"

#include <stdlib.h>
#include <string.h>

/* Room for one more element in v (n of *cap used; doubles from 4): the
 * array to keep, or NULL (v untouched) when out of memory. */
static void *grow(void *v, uint32_t n, uint32_t *cap, size_t elem) {
  if (n < *cap) return v;
  uint32_t nc = *cap ? *cap * 2 : 4;
  void *nv = realloc(v, nc * elem);
  if (nv) *cap = nc;
  return nv;
}

void mr_ro_drop_pending(mr_raft *r) {
  free(r->reqs);
  r->reqs = NULL;
  r->n_reqs = r->cap_reqs = 0;
}

int mr_ro_forwarded(mr_raft *r, uint64_t ctx) {
  if (r->n_fwd == MR_MAX_FWD_READS) {
    memmove(r->fwd, r->fwd + 1, (r->n_fwd - 1) * sizeof *r->fwd);
    r->n_fwd--;
  }
  void *g = grow(r->fwd, r->n_fwd, &r->cap_fwd, sizeof *r->fwd);
  if (!g) return RK_ENOMEM;
  r->fwd = g;
  r->fwd[r->n_fwd++] = ctx;
  return RK_OK;
}

int mr_ro_take_forwarded(mr_raft *r, uint64_t ctx) {
  for (uint32_t i = 0; i < r->n_fwd; i++) {
    if (r->fwd[i] != ctx) continue;
    memmove(r->fwd + i, r->fwd + i + 1, (r->n_fwd - i - 1) * sizeof *r->fwd);
    if (--r->n_fwd == 0) mr_ro_drop_forwarded(r); /* no heap at rest */
    return 1;
  }
  return 0;
}

void mr_ro_drop_forwarded(mr_raft *r) {
  free(r->fwd);
  r->fwd = NULL;
  r->n_fwd = r->cap_fwd = 0;
}

int mr_ro_add_read_state(mr_raft *r, uint64_t ctx, uint64_t index) {
  void *g = grow(r->reads, r->n_reads, &r->cap_reads, sizeof *r->reads);
  if (!g) return RK_ENOMEM;
  r->reads = g;
  r->reads[r->n_reads++] = (mr_read_state){.ctx = ctx, .index = index};
  RK_ASSERT(r->n_reads <= r->cap_reads);
  return RK_OK;
}

static void release(mr_raft *r, const mr_read_req *q) {
  RK_ASSERT(r->role == MR_LEADER);
  RK_ASSERT(q->index <= r->commit);
  if (q->from == r->cfg.id) {
    /* Loudly, as elsewhere in the core: a confirmed read silently dropped
     * would leave its client waiting out its deadline. */
    int rc = mr_ro_add_read_state(r, q->ctx, q->index);
    RK_ASSERTF(rc == RK_OK, "out of memory recording a confirmed read");
    return;
  }
  mr_msg m = {.type = MR_MSG_READ_INDEX_RESP, .to = q->from, .term = r->term};
  m.ctx = q->ctx;
  m.index = q->index;
  mr_send(r, &m);
}

int mr_ro_request(mr_raft *r, uint64_t ctx, uint64_t from) {
  RK_ASSERT(r->role == MR_LEADER);
  RK_ASSERT(mr_committed_term_is_current(r)); /* the no-op committed (§6.4 step 1) */
  mr_read_req q = {.ctx = ctx, .index = r->commit, .seq = 0, .from = from};
  /* a lone voter is its own quorum */
  uint64_t vals[MR_MAX_REPLICAS];
  for (uint8_t i = 0; i < r->n_prs; i++) vals[i] = r->prs[i].id == r->cfg.id ? 1 : 0;
  if (mr_quorum_index(r->prs, r->n_prs, vals) >= 1) {
    release(r, &q);
    return RK_OK;
  }
  void *g = grow(r->reqs, r->n_reqs, &r->cap_reqs, sizeof *r->reqs);
  if (!g) return RK_ENOMEM;
  r->reqs = g;
  q.seq = ++r->read_seq;
  if (r->n_reqs > 0) RK_ASSERT(r->reqs[r->n_reqs - 1].seq < q.seq);
  r->reqs[r->n_reqs++] = q;
  mr_bcast_heartbeat(r, q.seq);
  return RK_OK;
}

void mr_ro_on_heartbeat_resp(mr_raft *r, mr_progress *pr, uint64_t ctx) {
  if (ctx == 0 || ctx > r->read_seq) return; /* not a round of this term */
  if (ctx > pr->read_ack) pr->read_ack = ctx;
  mr_ro_advance(r);
}

void mr_ro_advance(mr_raft *r) {
  if (r->n_reqs == 0 || r->role != MR_LEADER) return;
  uint64_t vals[MR_MAX_REPLICAS];
  for (uint8_t i = 0; i < r->n_prs; i++)
    vals[i] = r->prs[i].id == r->cfg.id ? UINT64_MAX : r->prs[i].read_ack;
  uint64_t confirmed = mr_quorum_index(r->prs, r->n_prs, vals);
  uint32_t k = 0;
  while (k < r->n_reqs && r->reqs[k].seq <= confirmed) {
    RK_ASSERT(r->reqs[k].seq <= r->read_seq);
    release(r, &r->reqs[k]);
    k++;
  }
  if (k == 0) return;
  RK_ASSERT(k <= r->n_reqs);
  memmove(r->reqs, r->reqs + k, (r->n_reqs - k) * sizeof *r->reqs);
  r->n_reqs -= k;
  if (r->n_reqs == 0) mr_ro_drop_pending(r);
}

size_t mr_ro_ready_count(const mr_raft *r) {
  size_t n = 0;
  for (uint32_t i = 0; i < r->n_reads; i++) n += r->reads[i].index <= r->applied;
  return n;
}
