/* ready.c — the output side of the core: the outgoing message queue, the
 * Ready batch and Advance (host loop contract in raft.h).
 *
 * Durability rule (thesis §3.8 / §10.2.1): a message that acknowledges
 * something our persistent state must back — a vote granted or requested, an
 * append or snapshot acknowledgement — is flagged must_persist and leaves
 * only after this Ready is durable. A leader's AppendEntries may leave at
 * once: the leader counts its own entries toward commit only after they are
 * durable (mr_update_self_match in advance).
 */
#include "multiraft/raft_int.h"

#include <stdlib.h>
#include <string.h>

static const char *const msg_names[] = {
    [0] = "NONE",
    [MR_MSG_APP] = "APP",
    [MR_MSG_APP_RESP] = "APP_RESP",
    [MR_MSG_VOTE] = "VOTE",
    [MR_MSG_VOTE_RESP] = "VOTE_RESP",
    [MR_MSG_PREVOTE] = "PREVOTE",
    [MR_MSG_PREVOTE_RESP] = "PREVOTE_RESP",
    [MR_MSG_HEARTBEAT] = "HEARTBEAT",
    [MR_MSG_HEARTBEAT_RESP] = "HEARTBEAT_RESP",
    [MR_MSG_SNAP] = "SNAP",
    [MR_MSG_TIMEOUT_NOW] = "TIMEOUT_NOW",
    [MR_MSG_READ_INDEX] = "READ_INDEX",
    [MR_MSG_READ_INDEX_RESP] = "READ_INDEX_RESP",
};

const char *mr_msg_type_name(int type) {
  if (type <= 0 || type >= MR_MSG_TYPE_MAX_) return "UNKNOWN";
  return msg_names[type];
}

void mr_msg_free(mr_msg *m) {
  rk_entry_vec_free(&m->entries);
  if (m->snap) {
    mr_snapshot_free(m->snap);
    free(m->snap);
  }
  memset(m, 0, sizeof *m);
}

void mr_send(mr_raft *r, mr_msg *m) {
  RK_ASSERT(m->type > 0 && m->type < MR_MSG_TYPE_MAX_);
  RK_ASSERT(m->to != 0 && m->to != r->cfg.id);
  m->from = r->cfg.id;
  switch (m->type) {
  case MR_MSG_VOTE:
  case MR_MSG_VOTE_RESP: m->must_persist = 1; break;
  case MR_MSG_APP_RESP: m->must_persist = mr_bug(r, MR_BUG_ACK_BEFORE_PERSIST) ? 0 : 1; break;
  default: m->must_persist = 0; break;
  }
  if (r->n_out == r->cap_out) {
    uint32_t nc = r->cap_out ? r->cap_out * 2 : 4;
    mr_msg *nv = realloc(r->out, nc * sizeof *nv);
    RK_ASSERTF(nv != NULL, "out of memory queueing a message");
    r->out = nv;
    r->cap_out = nc;
  }
  r->out[r->n_out++] = *m;
  memset(m, 0, sizeof *m); /* ownership moved */
}

static uint64_t committed_lo(const mr_raft *r) {
  uint64_t lo = r->applied;
  if (r->unstable_snap && r->unstable_snap->index > lo) lo = r->unstable_snap->index;
  return lo + 1;
}

int mr_raft_has_ready(const mr_raft *r) {
  if (r->ready_outstanding) return 0;
  if (r->term != r->prev_hs.term || r->vote != r->prev_hs.vote || r->commit != r->prev_hs.commit)
    return 1;
  if (r->unstable.len > 0 || r->unstable_snap || r->n_out > 0) return 1;
  if (committed_lo(r) <= r->commit) return 1;
  return mr_ro_ready_count(r) > 0;
}

void mr_ready_free(mr_ready *rd) {
  mr_snapshot_free(&rd->snapshot);
  rk_entry_vec_free(&rd->entries);
  for (size_t i = 0; i < rd->n_msgs; i++) mr_msg_free(&rd->msgs[i]);
  free(rd->msgs);
  rk_entry_vec_free(&rd->committed);
  free(rd->reads);
  memset(rd, 0, sizeof *rd);
}

int mr_raft_ready(mr_raft *r, mr_ready *rd) {
  RK_ASSERT(!r->ready_outstanding);
  memset(rd, 0, sizeof *rd);
  rd->hs = (rk_hard_state){.term = r->term, .vote = r->vote, .commit = r->commit};
  rd->hs_changed = memcmp(&rd->hs, &r->prev_hs, sizeof rd->hs) != 0;
  RK_ASSERT(rd->hs.term >= r->prev_hs.term);
  RK_ASSERT(rd->hs.commit >= r->prev_hs.commit);
  int rc = RK_OK;
  if (r->unstable_snap && (rc = mr_snapshot_copy(&rd->snapshot, r->unstable_snap)) != RK_OK)
    goto fail;
  for (size_t i = 0; i < r->unstable.len; i++)
    if ((rc = rk_entry_vec_push(&rd->entries, &r->unstable.v[i])) != RK_OK) goto fail;
  uint64_t lo = committed_lo(r);
  if (lo <= r->commit) {
    RK_ASSERTF(lo >= mr_log_first(r), "applied %llu below the log start %llu",
               (unsigned long long)r->applied, (unsigned long long)mr_log_first(r));
    rc = mr_log_entries(r, lo, r->commit + 1, r->cfg.max_committed_bytes, &rd->committed);
    if (rc != RK_OK) goto fail;
    RK_ASSERT(rd->committed.len > 0 && rd->committed.v[0].index == lo);
  }
  size_t nr = mr_ro_ready_count(r);
  if (nr > 0) {
    rd->reads = malloc(nr * sizeof *rd->reads);
    if (!rd->reads) {
      rc = RK_ENOMEM;
      goto fail;
    }
    uint32_t keep = 0;
    for (uint32_t i = 0; i < r->n_reads; i++) {
      if (r->reads[i].index <= r->applied)
        rd->reads[rd->n_reads++] = r->reads[i];
      else
        r->reads[keep++] = r->reads[i];
    }
    RK_ASSERT(rd->n_reads == nr);
    r->n_reads = keep;
    if (keep == 0) {
      free(r->reads);
      r->reads = NULL;
      r->cap_reads = 0;
    }
  }
  /* messages move: no copy */
  rd->msgs = r->out;
  rd->n_msgs = r->n_out;
  r->out = NULL;
  r->n_out = r->cap_out = 0;
  rd->role = r->role;
  rd->lead = r->lead;
  int hs_moved = rd->hs.term != r->prev_hs.term || rd->hs.vote != r->prev_hs.vote;
  rd->must_sync = rd->snapshot.index != 0 || rd->entries.len > 0 || hs_moved;
  /* Every message carries our term: none leaves before a new term or vote
   * is durable (etcd's Ready contract). A lone voter wins its election in
   * the same Ready; its APPs at a term it could forget in a crash would let
   * a learner keep entries of a term the restarted leader then reuses. */
  if (hs_moved)
    for (size_t i = 0; i < rd->n_msgs; i++) rd->msgs[i].must_persist = 1;
  r->prev_hs = rd->hs;
  r->ready_outstanding = 1;
  return RK_OK;
fail:
  mr_ready_free(rd);
  return rc;
}

void mr_apply_conf_entry(mr_raft *r, const rk_entry *e);
void mr_after_advance(mr_raft *r);

void mr_raft_advance(mr_raft *r, mr_ready *rd) {
  RK_ASSERT(r->ready_outstanding);
  if (rd->snapshot.index != 0) {
    if (r->unstable_snap && r->unstable_snap->index == rd->snapshot.index) {
      RK_ASSERT(r->unstable.len == 0 || r->unstable_off == rd->snapshot.index + 1);
      mr_snapshot_free(r->unstable_snap);
      free(r->unstable_snap);
      r->unstable_snap = NULL;
    }
    if (rd->snapshot.index > r->applied) r->applied = rd->snapshot.index;
  }
  if (rd->entries.len > 0) {
    const rk_entry *last = &rd->entries.v[rd->entries.len - 1];
    mr_log_stable_to(r, last->index, last->term);
  }
  for (size_t i = 0; i < rd->committed.len; i++) {
    const rk_entry *e = &rd->committed.v[i];
    if (e->index <= r->applied) continue; /* a snapshot overtook it */
    RK_ASSERTF(e->index == r->applied + 1, "apply gap: %llu after %llu",
               (unsigned long long)e->index, (unsigned long long)r->applied);
    RK_ASSERT(e->index <= r->commit);
    r->applied = e->index;
    if (r->role == MR_LEADER && e->term == r->term) { /* what mr_raft_propose charged */
      uint64_t cost = mr_uncommitted_cost(e->len);
      r->uncommitted_bytes = r->uncommitted_bytes > cost ? r->uncommitted_bytes - cost : 0;
    }
    if (e->type == RK_ENTRY_CONF_CHANGE) mr_apply_conf_entry(r, e);
  }
  r->ready_outstanding = 0;
  mr_ready_free(rd);
  mr_after_advance(r);
}
