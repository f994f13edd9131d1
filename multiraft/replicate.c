/* replicate.c — log replication (Raft §5.3, thesis ch. 3 and §10.2):
 * AppendEntries and InstallSnapshot on the leader and follower sides, and
 * the commit rule.
 *
 * Leader side: mr_send_append picks AppendEntries (prev index/term + up to
 * max_msg_bytes of entries + commit) or, when the entries a follower needs
 * are compacted, InstallSnapshot. In REPLICATE several appends are pipelined
 * up to the in-flight window; in PROBE one at a time.
 *
 * Follower side: accept iff (prev index, prev term) matches (Log Matching),
 * replace a conflicting suffix, never an entry at or below commit. A
 * rejection carries the fast back-off hint (reject_hint, log_term): the
 * largest index i <= prev with term(i) <= the leader's prev term; the leader
 * skips every index between, so a divergent log costs one round trip per
 * term, not per entry.
 */
#include "multiraft/raft_int.h"

#include <stdlib.h>
#include <string.h>

static int send_snapshot(mr_raft *r, mr_progress *pr) {
  if (!pr->recent_active) return 0; /* do not ship a snapshot into the void */
  mr_snapshot *s = calloc(1, sizeof *s);
  if (!s) return 0;
  int rc = r->storage.ops->snapshot(r->storage.ctx, s);
  if (rc != RK_OK) {
    RK_ASSERTF(rc == RK_EUNAVAILABLE, "storage snapshot fault %d", rc);
    free(s);
    return 0;
  }
  RK_ASSERTF(s->index != 0 && s->index + 1 >= mr_log_first(r),
             "the storage's snapshot %llu must cover its compacted prefix (first %llu)",
             (unsigned long long)s->index, (unsigned long long)mr_log_first(r));
  mr_msg m = {.type = MR_MSG_SNAP, .to = pr->id, .term = r->term, .snap = s};
  mr_pr_become_snapshot(pr, s->index);
  mr_send(r, &m);
  return 1;
}

int mr_send_append(mr_raft *r, mr_progress *pr, int send_if_empty) {
  RK_ASSERT(r->role == MR_LEADER);
  RK_ASSERT(pr->id != r->cfg.id);
  if (mr_pr_is_paused(r, pr)) return 0;
  uint64_t prev = pr->next - 1, pterm = 0, last = mr_log_last(r);
  if (pr->next < mr_log_first(r) || mr_log_term(r, prev, &pterm) != RK_OK)
    return send_snapshot(r, pr);
  mr_msg m = {.type = MR_MSG_APP, .to = pr->id, .term = r->term};
  if (pr->next <= last) {
    int rc = mr_log_entries(r, pr->next, last + 1, r->cfg.max_msg_bytes, &m.entries);
    if (rc == RK_ECOMPACTED) return send_snapshot(r, pr);
    RK_ASSERTF(rc == RK_OK, "reading entries: %d", rc);
  }
  if (m.entries.len == 0 && !send_if_empty) return 0;
  m.index = prev;
  m.log_term = pterm;
  m.commit = r->commit;
  if (m.entries.len > 0) {
    uint64_t ln = m.entries.v[m.entries.len - 1].index;
    RK_ASSERT(ln == prev + m.entries.len);
    if (pr->state == MR_PR_REPLICATE) {
      pr->next = ln + 1; /* optimistic: pipelining */
      uint64_t cost = m.entries.bytes + (uint64_t)MR_ENTRY_OVERHEAD * m.entries.len;
      if (mr_pr_inflight_add(r, pr, ln, cost) != RK_OK) {
        mr_msg_free(&m);
        mr_pr_become_probe(pr);
        return 0;
      }
    } else if (pr->state == MR_PR_PROBE) {
      pr->probe_sent = 1;
    }
  } else if (pr->state == MR_PR_PROBE) {
    pr->probe_sent = 1;
  }
  mr_send(r, &m);
  return 1;
}

void mr_send_append_all(mr_raft *r, mr_progress *pr, int send_if_empty) {
  if (!mr_send_append(r, pr, send_if_empty)) return;
  uint64_t last = mr_log_last(r);
  while (pr->state == MR_PR_REPLICATE && pr->next <= last && mr_send_append(r, pr, 0)) {
  }
}

void mr_bcast_append(mr_raft *r) {
  for (uint8_t i = 0; i < r->n_prs; i++)
    if (r->prs[i].id != r->cfg.id) mr_send_append_all(r, &r->prs[i], 1);
}

void mr_send_timeout_now(mr_raft *r, uint64_t to) {
  mr_msg m = {.type = MR_MSG_TIMEOUT_NOW, .to = to, .term = r->term};
  mr_send(r, &m);
}

/* The leader's own entries count toward commit only once durable. */
void mr_update_self_match(mr_raft *r) {
  mr_progress *self = mr_pr_find(r, r->cfg.id);
  if (!self || r->unstable_snap) return;
  uint64_t stable = r->unstable_off - 1;
  if (stable > self->match) self->match = stable;
  self->next = self->match + 1;
}

/* Raft §5.4.2 / Figure 8: a leader commits only by counting replicas of an
 * entry of its CURRENT term; earlier entries then commit indirectly. */
int mr_maybe_commit(mr_raft *r) {
  RK_ASSERT(r->role == MR_LEADER);
  uint64_t vals[MR_MAX_REPLICAS];
  for (uint8_t i = 0; i < r->n_prs; i++) vals[i] = r->prs[i].match;
  uint64_t mci = mr_quorum_index(r->prs, r->n_prs, vals);
  if (mci == UINT64_MAX || mci <= r->commit) return 0;
  RK_ASSERT(mci <= mr_log_last(r));
  if (mr_log_term_or0(r, mci) != r->term && !mr_bug(r, MR_BUG_COMMIT_OLD_TERM)) return 0;
  mr_log_commit_to(r, mci);
  RK_ASSERT(r->commit == mci);
  return 1;
}

/* ---- leader: responses ---- */

void mr_handle_append_resp(mr_raft *r, const mr_msg *m) {
  RK_ASSERT(r->role == MR_LEADER && m->term == r->term);
  mr_progress *pr = mr_pr_find(r, m->from);
  RK_ASSERT(pr != NULL); /* step() filtered non-members */
  uint64_t last = mr_log_last(r);
  if (m->index > last || (m->reject && m->reject_hint > m->index)) {
    r->counters.bad_index++;
    return;
  }
  pr->recent_active = 1;
  if (m->reject) {
    uint64_t hint = m->reject_hint;
    if (m->log_term > 0) hint = mr_log_find_conflict_by_term(r, hint, m->log_term);
    if (mr_pr_maybe_decr_to(pr, m->index, hint)) {
      if (pr->state == MR_PR_REPLICATE) mr_pr_become_probe(pr);
      mr_send_append_all(r, pr, 1);
    }
    return;
  }
  int was_paused = mr_pr_is_paused(r, pr);
  if (!mr_pr_maybe_update(pr, m->index)) {
    /* nothing new; but a probe answered unpauses */
    if (pr->state == MR_PR_PROBE && pr->probe_sent && m->index == pr->match) pr->probe_sent = 0;
    return;
  }
  switch (pr->state) {
  case MR_PR_PROBE: mr_pr_become_replicate(pr); break;
  case MR_PR_SNAPSHOT:
    if (pr->match >= pr->pending_snap) mr_pr_become_probe(pr);
    break;
  case MR_PR_REPLICATE: mr_pr_inflight_free_le(pr, r->cfg.max_inflight_msgs, pr->match); break;
  default: RK_UNREACHABLE();
  }
  if (mr_maybe_commit(r)) {
    mr_bcast_append(r);
  } else {
    /* a follower we were holding back (probe) also learns the commit index */
    mr_send_append_all(r, pr, was_paused);
  }
  if (r->transferee == pr->id && pr->match == mr_log_last(r)) mr_send_timeout_now(r, pr->id);
}

void mr_handle_heartbeat_resp(mr_raft *r, const mr_msg *m) {
  RK_ASSERT(r->role == MR_LEADER && m->term == r->term);
  mr_progress *pr = mr_pr_find(r, m->from);
  RK_ASSERT(pr != NULL);
  pr->recent_active = 1;
  pr->probe_sent = 0;
  if (pr->state == MR_PR_REPLICATE && mr_pr_inflight_full(r, pr))
    mr_pr_inflight_free_first(pr, r->cfg.max_inflight_msgs);
  if (pr->match < mr_log_last(r) || pr->state == MR_PR_PROBE) mr_send_append_all(r, pr, 1);
  mr_ro_on_heartbeat_resp(r, pr, m->ctx);
}

/* ---- follower: requests ---- */

static void reply_append(mr_raft *r, const mr_msg *m, uint64_t index) {
  mr_msg resp = {.type = MR_MSG_APP_RESP, .to = m->from, .term = r->term, .index = index};
  mr_send(r, &resp);
}

/* Validates the entries of an AppendEntries from the network. */
static int check_entries(mr_raft *r, const mr_msg *m) {
  const rk_entry_vec *ev = &m->entries;
  uint64_t prev_term = m->log_term;
  for (size_t k = 0; k < ev->len; k++) {
    const rk_entry *e = &ev->v[k];
    if (e->len > r->cfg.max_entry_bytes) {
      r->counters.oversized++;
      return RK_ETOOLARGE;
    }
    if (e->index != m->index + 1 + k || e->term < prev_term || e->term > m->term ||
        (e->len > 0 && e->data == NULL) || e->type > RK_ENTRY_CONF_CHANGE) {
      r->counters.malformed++;
      return RK_EMALFORMED;
    }
    prev_term = e->term;
  }
  return RK_OK;
}

/* How many of the message's entries from k on (the first new or
 * conflicting one) fit under max_unstable_bytes, with what stays
 * unpersisted once the tail from entry k's index is replaced: the longest
 * prefix that fits. At least one when nothing would stay, since
 * check_entries refused entries over max_entry_bytes and mr_raft_init a
 * cap below one of those: so any leader's message makes progress, even one
 * whose max_msg_bytes is larger than ours. */
static size_t unstable_room(const mr_raft *r, const rk_entry_vec *ev, size_t k) {
  if (r->cfg.max_unstable_bytes == 0) return ev->len - k;
  uint64_t from = ev->v[k].index; /* the tail from here is replaced */
  size_t kept = r->unstable.len;
  if (from < r->unstable_off)
    kept = 0;
  else if (from - r->unstable_off < kept)
    kept = (size_t)(from - r->unstable_off);
  uint64_t cost = MR_ENTRY_OVERHEAD * kept;
  if (kept == r->unstable.len)
    cost += r->unstable.bytes;
  else
    for (size_t i = 0; i < kept; i++) cost += r->unstable.v[i].len;
  size_t i = k;
  for (; i < ev->len; i++) {
    cost += (uint64_t)ev->v[i].len + MR_ENTRY_OVERHEAD;
    if (cost > r->cfg.max_unstable_bytes) break;
  }
  RK_ASSERT(i > k || kept > 0);
  return i - k;
}

void mr_handle_append(mr_raft *r, const mr_msg *m) {
  RK_ASSERT(r->role == MR_FOLLOWER && r->lead == m->from);
  if (check_entries(r, m) != RK_OK) return;
  if (m->index < r->commit) { /* already committed here: tell the leader */
    reply_append(r, m, r->commit);
    return;
  }
  if (!mr_log_match_term(r, m->index, m->log_term)) {
    /* reject with the fast back-off hint (see file header) */
    uint64_t hint = m->index < mr_log_last(r) ? m->index : mr_log_last(r);
    hint = mr_log_find_conflict_by_term(r, hint, m->log_term);
    mr_msg resp = {.type = MR_MSG_APP_RESP, .to = m->from, .term = r->term};
    resp.reject = 1;
    resp.index = m->index;
    resp.reject_hint = hint;
    resp.log_term = mr_log_term_or0(r, hint);
    mr_send(r, &resp);
    return;
  }
  /* find the first entry that is new or conflicts (Log Matching, §5.3) */
  size_t k = 0;
  const rk_entry_vec *ev = &m->entries;
  while (k < ev->len && mr_log_match_term(r, ev->v[k].index, ev->v[k].term)) k++;
  if (k == ev->len && k > 0 && ev->v[0].index > r->commit && mr_bug(r, MR_BUG_TRUNCATE_MATCHING))
    k = 0;            /* the classic mistake: treat a matching message as a conflict */
  size_t n = ev->len; /* the message's entries taken: [0, n) */
  if (k < ev->len) {
    if (ev->v[k].index <= r->commit) {
      /* would overwrite a committed entry: only a broken leader does that */
      r->counters.bad_index++;
      return;
    }
    /* Over the unstable cap, take the prefix that fits: the answer then
     * acknowledges only that, and the leader sends the rest. */
    n = k + unstable_room(r, ev, k);
    if (n < ev->len) r->counters.unstable_full++;
    if (n == k) return; /* nothing fits until the tail is persisted */
    int rc = mr_log_truncate_and_append(r, &ev->v[k], n - k);
    RK_ASSERTF(rc == RK_OK, "out of memory appending entries");
  }
  uint64_t last_new = m->index + n;
  RK_ASSERT(mr_log_last(r) >= last_new);
  RK_ASSERT(n == 0 || mr_log_match_term(r, last_new, ev->v[n - 1].term));
  uint64_t c = m->commit < last_new ? m->commit : last_new;
  mr_log_commit_to(r, c);
  reply_append(r, m, last_new);
}

void mr_handle_heartbeat(mr_raft *r, const mr_msg *m) {
  RK_ASSERT(r->role == MR_FOLLOWER);
  uint64_t last = mr_log_last(r);
  mr_log_commit_to(r, m->commit < last ? m->commit : last);
  mr_msg resp = {.type = MR_MSG_HEARTBEAT_RESP, .to = m->from, .term = r->term, .ctx = m->ctx};
  mr_send(r, &resp);
}

static int snapshot_ok(const mr_msg *m) {
  const mr_snapshot *s = m->snap;
  if (!s || s->index == 0 || s->term == 0 || s->term > m->term) return 0;
  if (s->len > 0 && !s->data) return 0;
  if (s->conf.n == 0 || mr_conf_validate(&s->conf) != RK_OK) return 0;
  return 1;
}

void mr_handle_snapshot(mr_raft *r, const mr_msg *m) {
  RK_ASSERT(r->role == MR_FOLLOWER);
  if (!snapshot_ok(m)) {
    r->counters.malformed_snap++;
    return;
  }
  const mr_snapshot *s = m->snap;
  if (s->index <= r->commit) {
    reply_append(r, m, r->commit);
    return;
  }
  if (mr_log_match_term(r, s->index, s->term)) {
    /* we already have the prefix: fast-forward commit, keep the log */
    mr_log_commit_to(r, s->index);
    reply_append(r, m, s->index);
    return;
  }
  mr_snapshot *own = calloc(1, sizeof *own);
  RK_ASSERTF(own && mr_snapshot_copy(own, s) == RK_OK, "out of memory copying a snapshot");
  mr_log_restore(r, s, own);
  int rc = mr_conf_switch(r, &s->conf); /* the configuration travels inside */
  RK_ASSERTF(rc == RK_OK, "out of memory switching configuration");
  RK_ASSERT(mr_log_last(r) == s->index && r->commit == s->index);
  reply_append(r, m, s->index);
}
