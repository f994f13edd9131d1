/* raft.c — roles, terms, elections, message dispatch, ticks and the client
 * inputs of one Raft group (interface and host contract in raft.h).
 *
 * Roles (Raft §5.2, Pre-Vote thesis §9.6):
 *
 *            timeout, pre_vote            quorum of pre-votes
 *  FOLLOWER --------------------> PRECANDIDATE ----------------> CANDIDATE
 *     |  ^ <---- higher term / rejected / leader heard ----+         |
 *     |  +--------------------------------------------------+--------+
 *     |  timeout, !pre_vote  (or TimeoutNow)                  quorum of votes
 *     +-------------------------------------> CANDIDATE ----------> LEADER
 *   LEADER --higher term / CheckQuorum failed / removed--> FOLLOWER
 *
 * Transition -> function: becoming a follower: mr_become_follower;
 * pre-candidate: become_precandidate; candidate: become_candidate; leader:
 * become_leader. Universal rule (§5.1): any message with a higher term makes
 * us a follower in that term (mr_raft_step), except pre-votes and granted
 * pre-vote responses, which never move terms.
 */
#include "multiraft/raft_int.h"

#include <stdlib.h>
#include <string.h>

enum { CAMPAIGN_PRE = 0, CAMPAIGN_ELECTION = 1, CAMPAIGN_TRANSFER = 2 };

void mr_config_default(mr_config *cfg, uint64_t id) {
  memset(cfg, 0, sizeof *cfg);
  cfg->id = id;
  cfg->election_tick = 10;
  cfg->heartbeat_tick = 1;
  cfg->pre_vote = 1;
  cfg->check_quorum = 1;
  cfg->max_inflight_msgs = 256;
  cfg->max_inflight_bytes = 4u << 20;
  cfg->max_msg_bytes = 1u << 20;
  cfg->max_uncommitted_bytes = 64u << 20;
  cfg->max_entry_bytes = 8u << 20;
  cfg->max_committed_bytes = 4u << 20;
}

int mr_is_voter(const mr_raft *r, uint64_t id) {
  const mr_progress *pr = mr_pr_find(r, id);
  return pr && mr_quorum_is_voter(pr->flags);
}

/* In the configuration, as a learner (not a replica removed from it). */
static int mr_is_learner(const mr_raft *r) {
  const mr_progress *pr = mr_pr_find(r, r->cfg.id);
  return pr != NULL && !mr_quorum_is_voter(pr->flags);
}

int mr_self_promotable(const mr_raft *r) { return mr_is_voter(r, r->cfg.id) && !r->unstable_snap; }

uint64_t mr_committed_term_is_current(const mr_raft *r) {
  return mr_log_term_or0(r, r->commit) == r->term;
}

static void reset_randomized_timeout(mr_raft *r) {
  uint32_t e = r->cfg.election_tick;
  r->randomized_timeout = e + (uint32_t)rk_rand_below(r->rng, e);
  RK_ASSERT(r->randomized_timeout >= e && r->randomized_timeout < 2 * e);
}

static void reset(mr_raft *r, uint64_t term) {
  if (r->term != term) {
    RK_ASSERTF(term > r->term, "terms never decrease (%llu -> %llu)", (unsigned long long)r->term,
               (unsigned long long)term);
    r->term = term;
    r->vote = 0;
    mr_ro_drop_forwarded(r); /* their answers carry the old term: dropped as stale */
  }
  r->lead = 0;
  r->election_elapsed = 0;
  r->heartbeat_elapsed = 0;
  reset_randomized_timeout(r);
  r->transferee = 0;
  for (uint8_t i = 0; i < r->n_prs; i++) {
    r->prs[i].vote = MR_VOTE_NONE;
    mr_pr_inflight_release(&r->prs[i]);
  }
  mr_ro_drop_pending(r);
}

void mr_become_follower(mr_raft *r, uint64_t term, uint64_t lead) {
  reset(r, term);
  r->role = MR_FOLLOWER;
  r->lead = lead;
  r->uncommitted_bytes = 0;
}

static void become_precandidate(mr_raft *r) {
  RK_ASSERT(r->role != MR_LEADER);
  RK_ASSERT(mr_self_promotable(r));
  /* §9.6: neither term nor vote moves; only the election state resets */
  r->role = MR_PRECANDIDATE;
  r->lead = 0;
  for (uint8_t i = 0; i < r->n_prs; i++) r->prs[i].vote = MR_VOTE_NONE;
}

static void become_candidate(mr_raft *r) {
  RK_ASSERT(r->role != MR_LEADER);
  uint64_t old = r->term;
  reset(r, r->term + 1);
  r->role = MR_CANDIDATE;
  r->vote = r->cfg.id; /* §5.2: vote for self */
  RK_ASSERT(r->term == old + 1);
}

static void become_leader(mr_raft *r) {
  RK_ASSERT(r->role == MR_CANDIDATE);
  RK_ASSERT(r->vote == r->cfg.id);
  reset(r, r->term);
  r->role = MR_LEADER;
  r->lead = r->cfg.id;
  uint64_t next = mr_log_last(r) + 1;
  for (uint8_t i = 0; i < r->n_prs; i++) mr_pr_reset(&r->prs[i], next);
  mr_update_self_match(r);
  r->uncommitted_bytes = 0;
  /* §8 / thesis §6.4: the no-op commits everything before it and lets
   * ReadIndex and conf changes proceed once it commits; no conf change may
   * be proposed before it is applied (pending_conf_index). */
  int rc = mr_log_append_new(r, RK_ENTRY_NORMAL, NULL, 0);
  RK_ASSERTF(rc == RK_OK, "out of memory appending the no-op");
  r->pending_conf_index = mr_log_last(r);
  RK_ASSERT(mr_log_last_term(r) == r->term);
  mr_bcast_append(r);
}

static void record_vote(mr_raft *r, uint64_t id, int granted) {
  mr_progress *pr = mr_pr_find(r, id);
  if (pr && pr->vote == MR_VOTE_NONE) pr->vote = granted ? MR_VOTE_GRANTED : MR_VOTE_REJECTED;
}

/* A committed but unapplied conf change may change who votes: wait for it
 * (etcd's rule), so we never campaign under a configuration already gone. */
static int has_unapplied_conf(const mr_raft *r) {
  if (r->commit <= r->applied) return 0;
  uint64_t lo = r->applied + 1;
  if (lo < mr_log_first(r)) return 0;
  rk_entry_vec ev;
  rk_entry_vec_init(&ev);
  int found = 0;
  while (lo <= r->commit && !found) {
    rk_entry_vec_clear(&ev);
    if (mr_log_entries(r, lo, r->commit + 1, r->cfg.max_committed_bytes, &ev) != RK_OK) break;
    for (size_t i = 0; i < ev.len; i++) found |= ev.v[i].type == RK_ENTRY_CONF_CHANGE;
    lo = ev.v[ev.len - 1].index + 1;
  }
  rk_entry_vec_free(&ev);
  return found;
}

static void campaign(mr_raft *r, int kind) {
  if (!mr_self_promotable(r) || has_unapplied_conf(r)) return;
  uint64_t vote_term;
  int type;
  if (kind == CAMPAIGN_PRE) {
    become_precandidate(r);
    vote_term = r->term + 1;
    type = MR_MSG_PREVOTE;
  } else {
    become_candidate(r);
    vote_term = r->term;
    type = MR_MSG_VOTE;
  }
  record_vote(r, r->cfg.id, 1);
  if (mr_quorum_vote_result(r->prs, r->n_prs) == MR_VOTE_WON) {
    /* a lone voter wins at once */
    if (kind == CAMPAIGN_PRE)
      campaign(r, CAMPAIGN_ELECTION);
    else
      become_leader(r);
    return;
  }
  uint64_t li = mr_log_last(r), lt = mr_log_last_term(r);
  for (uint8_t i = 0; i < r->n_prs; i++) {
    const mr_progress *pr = &r->prs[i];
    if (pr->id == r->cfg.id || !mr_quorum_is_voter(pr->flags)) continue;
    mr_msg m = {
        .type = (uint8_t)type, .to = pr->id, .term = vote_term, .index = li, .log_term = lt};
    m.transfer = kind == CAMPAIGN_TRANSFER;
    mr_send(r, &m);
  }
}

void mr_raft_campaign(mr_raft *r) {
  if (r->role == MR_LEADER) return;
  campaign(r, r->cfg.pre_vote ? CAMPAIGN_PRE : CAMPAIGN_ELECTION);
}

void mr_raft_forget_leader(mr_raft *r) {
  /* Only a follower's belief changes; the term and the log stay. With no
   * leader known, the lease check (§4.2.3) no longer rejects candidates. */
  if (r->role != MR_FOLLOWER) return;
  r->lead = 0;
}

void mr_raft_step_down(mr_raft *r) {
  if (r->role == MR_LEADER) mr_become_follower(r, r->term, 0);
}

void mr_bcast_heartbeat(mr_raft *r, uint64_t ctx) {
  RK_ASSERT(r->role == MR_LEADER);
  for (uint8_t i = 0; i < r->n_prs; i++) {
    const mr_progress *pr = &r->prs[i];
    if (pr->id == r->cfg.id) continue;
    /* commit capped by match: the follower may not have our log beyond it */
    mr_msg m = {.type = MR_MSG_HEARTBEAT, .to = pr->id, .term = r->term, .ctx = ctx};
    m.commit = pr->match < r->commit ? pr->match : r->commit;
    mr_send(r, &m);
  }
}

/* CheckQuorum (thesis §6.2): did a quorum talk to us this election timeout? */
static int quorum_active(mr_raft *r) {
  uint64_t vals[MR_MAX_REPLICAS];
  for (uint8_t i = 0; i < r->n_prs; i++) {
    mr_progress *pr = &r->prs[i];
    vals[i] = pr->id == r->cfg.id ? 1 : pr->recent_active;
    if (pr->id != r->cfg.id) pr->recent_active = 0;
  }
  return mr_quorum_index(r->prs, r->n_prs, vals) >= 1;
}

static void tick_leader(mr_raft *r) {
  r->heartbeat_elapsed++;
  r->election_elapsed++;
  if (r->election_elapsed >= r->cfg.election_tick) {
    r->election_elapsed = 0;
    if (r->cfg.check_quorum && !quorum_active(r)) {
      mr_become_follower(r, r->term, 0);
      return;
    }
    /* a snapshot unacknowledged for a whole round, with no word from the
     * host that it is still moving (mr_raft_snapshot_alive), is presumed
     * lost */
    for (uint8_t i = 0; i < r->n_prs; i++) {
      mr_progress *pr = &r->prs[i];
      if (pr->state != MR_PR_SNAPSHOT) continue;
      if (pr->snap_stale)
        mr_pr_become_probe(pr);
      else
        pr->snap_stale = 1;
    }
    r->transferee = 0; /* thesis §3.10: abort a transfer after a timeout */
  }
  if (r->heartbeat_elapsed >= r->cfg.heartbeat_tick) {
    r->heartbeat_elapsed = 0;
    mr_bcast_heartbeat(r, r->n_reqs > 0 ? r->read_seq : 0);
    for (uint8_t i = 0; i < r->n_prs; i++)
      if (r->prs[i].infl_count == 0) mr_pr_inflight_release(&r->prs[i]);
  }
}

/* A learner that heard no leader for an election timeout never campaigns,
 * which is what wakes a leader that stopped heartbeating (a quiescing
 * host): it may have missed the commit the leader sent last, or restarted
 * with an older one (commit is persisted lazily). So it tells the leader
 * and every voter what it has committed: true of any leader's log (Leader
 * Completeness), so no leader is misled, and the message itself wakes one.
 * A replica just removed does the same for a while (mr_raft.removed). */
static void nudge_leader(mr_raft *r) {
  /* To every voter, not only the leader it last heard (which may be gone):
   * (commit, term there) also lets a voter that missed the commit learn it
   * (learn_commit). */
  uint64_t commit_term = mr_log_term_or0(r, r->commit);
  for (uint8_t i = 0; i < r->n_prs; i++) {
    const mr_progress *pr = &r->prs[i];
    if (pr->id == r->cfg.id || (pr->id != r->lead && !mr_quorum_is_voter(pr->flags))) continue;
    mr_msg m = {.type = MR_MSG_APP_RESP,
                .to = pr->id,
                .term = r->term,
                .index = r->commit,
                .commit = commit_term ? r->commit : 0,
                .log_term = commit_term};
    mr_send(r, &m);
  }
}

/* A learner's nudge names its commit index and the term of the entry there.
 * That entry is committed, and so is every log prefix that holds it (Log
 * Matching), so a follower whose log has the same term there may commit up
 * to it, whatever the message's term. This is how a voter learns a commit
 * its leader never told it: after a leader demotes itself or the other
 * voter and is lost (or steps down), the remaining voter may still count the
 * demoted one (it has not applied the change), whose longer log denies it
 * the vote, while the learners know the change committed (simulated runs
 * deadlocked so). Followers only: a (pre)candidate applying a change in the
 * middle of its election could win one it may no longer run. */
static void learn_commit(mr_raft *r, const mr_msg *m) {
  if (r->role != MR_FOLLOWER || m->type != MR_MSG_APP_RESP || m->reject || m->commit == 0) return;
  if (m->commit <= r->commit || !mr_log_match_term(r, m->commit, m->log_term)) return;
  mr_log_commit_to(r, m->commit);
}

void mr_raft_tick(mr_raft *r) {
  if (r->role == MR_LEADER) {
    tick_leader(r);
    return;
  }
  if (r->election_elapsed < UINT32_MAX) r->election_elapsed++;
  if (r->election_elapsed < r->randomized_timeout) return;
  if (mr_self_promotable(r)) {
    r->election_elapsed = 0;
    mr_raft_campaign(r);
    return;
  }
  /* A replica that cannot campaign keeps counting (etcd's tickElection):
   * past the timeout it no longer honours the leader it stopped hearing,
   * so it answers vote requests. A learner must: it may have been promoted
   * without knowing it, and a candidate may need its vote (etcd raft.go's
   * note on learners voting). It nudges once per timeout, and so does a
   * replica just removed, for a few timeouts: voters that have not learned
   * its removal committed may still count it, in the joint configuration,
   * and need the commit to move on (learn_commit). */
  if (r->role != MR_FOLLOWER ||
      (r->election_elapsed - r->randomized_timeout) % r->randomized_timeout != 0)
    return;
  if (mr_is_learner(r)) {
    nudge_leader(r);
  } else if (r->removed && r->removed_nudges > 0) {
    r->removed_nudges--;
    nudge_leader(r);
  }
}

/* ---- step ----------------------------------------------------------------- */

static int is_leader_msg(int type) {
  return type == MR_MSG_APP || type == MR_MSG_HEARTBEAT || type == MR_MSG_SNAP;
}

static void handle_vote_request(mr_raft *r, const mr_msg *m) {
  int pre = m->type == MR_MSG_PREVOTE;
  /* we can vote if we already voted for it, or have no vote and no leader
   * this term, or (pre-vote) it is about a future term */
  int can_vote = r->vote == m->from || (r->vote == 0 && r->lead == 0) ||
                 (pre && m->term > r->term) ||
                 (!pre && r->role == MR_FOLLOWER && mr_bug(r, MR_BUG_VOTE_TWICE));
  int uptodate =
      mr_log_is_up_to_date(r, m->index, m->log_term) || mr_bug(r, MR_BUG_VOTE_NO_UPTODATE);
  mr_msg resp = {.type = pre ? MR_MSG_PREVOTE_RESP : MR_MSG_VOTE_RESP, .to = m->from};
  if (can_vote && uptodate) {
    resp.term = m->term; /* for a pre-vote: the future term it asked about */
    if (!pre) {
      RK_ASSERT(m->term == r->term);
      r->election_elapsed = 0;
      r->vote = m->from; /* one vote per term (§5.2), persisted before resp */
    }
  } else {
    resp.term = r->term;
    resp.reject = 1;
  }
  mr_send(r, &resp);
}

static void handle_vote_resp(mr_raft *r, const mr_msg *m) {
  int pre = m->type == MR_MSG_PREVOTE_RESP;
  if ((pre && r->role != MR_PRECANDIDATE) || (!pre && r->role != MR_CANDIDATE)) return;
  record_vote(r, m->from, !m->reject);
  switch (mr_quorum_vote_result(r->prs, r->n_prs)) {
  case MR_VOTE_WON:
    if (pre)
      campaign(r, CAMPAIGN_ELECTION);
    else
      become_leader(r);
    break;
  case MR_VOTE_LOST: mr_become_follower(r, r->term, 0); break;
  default: break;
  }
}

static void step_leader(mr_raft *r, const mr_msg *m) {
  switch (m->type) {
  case MR_MSG_APP_RESP: mr_handle_append_resp(r, m); break;
  case MR_MSG_HEARTBEAT_RESP: mr_handle_heartbeat_resp(r, m); break;
  case MR_MSG_READ_INDEX:
    if (!mr_committed_term_is_current(r)) {
      mr_msg resp = {.type = MR_MSG_READ_INDEX_RESP, .to = m->from, .term = r->term};
      resp.ctx = m->ctx;
      resp.reject = 1;
      mr_send(r, &resp);
    } else {
      (void)mr_ro_request(r, m->ctx, m->from);
    }
    break;
  case MR_MSG_APP:
  case MR_MSG_HEARTBEAT:
  case MR_MSG_SNAP:
    /* another leader in our term: impossible for honest peers (§5.2) */
    r->counters.malformed++;
    break;
  default: break; /* stale responses, TIMEOUT_NOW to a leader, ... */
  }
}

static void step_follower(mr_raft *r, const mr_msg *m) {
  switch (m->type) {
  case MR_MSG_APP:
  case MR_MSG_HEARTBEAT:
  case MR_MSG_SNAP:
    r->election_elapsed = 0;
    r->lead = m->from;
    if (m->type == MR_MSG_APP)
      mr_handle_append(r, m);
    else if (m->type == MR_MSG_HEARTBEAT)
      mr_handle_heartbeat(r, m);
    else
      mr_handle_snapshot(r, m);
    break;
  case MR_MSG_TIMEOUT_NOW:
    if (m->from == r->lead) campaign(r, CAMPAIGN_TRANSFER); /* thesis §3.10 */
    break;
  case MR_MSG_READ_INDEX_RESP:
    if (!m->reject && m->from == r->lead) {
      if (!mr_ro_take_forwarded(r, m->ctx)) { /* not asked, or answered already */
        r->counters.malformed++;
        break;
      }
      int rc = mr_ro_add_read_state(r, m->ctx, m->index);
      RK_ASSERTF(rc == RK_OK, "out of memory recording a confirmed read");
    }
    break;
  default: break;
  }
}

int mr_raft_step(mr_raft *r, const mr_msg *m) {
  if (m->type == 0 || m->type >= MR_MSG_TYPE_MAX_) {
    r->counters.unknown_type++;
    return RK_EMALFORMED;
  }
  if (m->from == 0 || m->from == r->cfg.id || m->to != r->cfg.id) {
    r->counters.malformed++;
    return RK_EMALFORMED;
  }
  /* A term past MR_MAX_TERM is no real election's: taken, UINT64_MAX would
   * make the next campaign's term + 1 wrap. (A hostile member can still
   * push a group to MR_MAX_TERM itself, where its next campaign's term is
   * refused by the others: the group stops electing, nothing crashes.) */
  if (m->term == 0 || m->term > MR_MAX_TERM) {
    r->counters.malformed++;
    return RK_EMALFORMED;
  }
  /* Members only. A replica that is not (yet) in our configuration may still
   * lead us in a term >= ours: it won that term's election (Election
   * Safety), and a new replica learns its group exactly that way. */
  if (!mr_pr_find(r, m->from) && !(is_leader_msg(m->type) && m->term >= r->term)) {
    r->counters.not_member++;
    return RK_EINVAL;
  }
  learn_commit(r, m);
  int vote_req = m->type == MR_MSG_VOTE || m->type == MR_MSG_PREVOTE;
  if (vote_req && r->removed) r->removed_nudges = MR_REMOVED_NUDGES; /* still counted */
  if (m->term > r->term) {
    if (vote_req && !m->transfer && r->cfg.check_quorum && r->lead != 0 &&
        r->election_elapsed < r->cfg.election_tick) {
      /* §6 / thesis §4.2.3: we heard from a live leader within the minimum
       * election timeout; this candidate would only disrupt it */
      return RK_OK;
    }
    if (m->type == MR_MSG_PREVOTE || (m->type == MR_MSG_PREVOTE_RESP && !m->reject)) {
      /* pre-votes never move terms */
    } else if (is_leader_msg(m->type)) {
      mr_become_follower(r, m->term, m->from);
    } else {
      mr_become_follower(r, m->term, 0);
    }
  } else if (m->term < r->term) {
    r->counters.stale_term++;
    if ((r->cfg.check_quorum || r->cfg.pre_vote) &&
        (m->type == MR_MSG_APP || m->type == MR_MSG_HEARTBEAT)) {
      /* a stale leader (e.g. back from a partition) learns our term */
      mr_msg resp = {.type = MR_MSG_APP_RESP, .to = m->from, .term = r->term};
      mr_send(r, &resp);
    } else if (m->type == MR_MSG_PREVOTE) {
      mr_msg resp = {.type = MR_MSG_PREVOTE_RESP, .to = m->from, .term = r->term, .reject = 1};
      mr_send(r, &resp);
    }
    return RK_OK;
  }
  if (vote_req) {
    handle_vote_request(r, m);
    return RK_OK;
  }
  switch (r->role) {
  case MR_LEADER: step_leader(r, m); break;
  case MR_PRECANDIDATE:
  case MR_CANDIDATE:
    if (is_leader_msg(m->type) && m->term == r->term) {
      mr_become_follower(r, m->term, m->from); /* §5.2: a leader exists */
      step_follower(r, m);
    } else if (m->type == MR_MSG_VOTE_RESP || m->type == MR_MSG_PREVOTE_RESP) {
      handle_vote_resp(r, m);
    }
    break;
  case MR_FOLLOWER: step_follower(r, m); break;
  default: RK_UNREACHABLE();
  }
  return RK_OK;
}

/* ---- client inputs ---------------------------------------------------------- */

int mr_raft_propose(mr_raft *r, const void *data, uint32_t len, uint64_t *index,
                    uint64_t *lead_hint) {
  if (lead_hint) *lead_hint = r->lead;
  if (r->role != MR_LEADER) return RK_ENOTLEADER;
  if (r->transferee != 0) return RK_ETRANSFERRING;
  if (len > r->cfg.max_entry_bytes) return RK_ETOOLARGE;
  /* Charged with its framing too, so the cap bounds what one Ready can
   * hand the host to persist, however small the entries. */
  uint64_t cost = mr_uncommitted_cost(len);
  if (r->cfg.max_uncommitted_bytes != 0 && cost > r->cfg.max_uncommitted_bytes)
    return RK_ETOOLARGE; /* would never fit: not worth a retry */
  if (r->cfg.max_uncommitted_bytes != 0 && len > 0 &&
      r->uncommitted_bytes + cost > r->cfg.max_uncommitted_bytes)
    return RK_EUNCOMMITTEDFULL;
  uint64_t before = mr_log_last(r);
  int rc = mr_log_append_new(r, RK_ENTRY_NORMAL, data, len);
  if (rc != RK_OK) return rc;
  RK_ASSERT(mr_log_last(r) == before + 1);
  r->uncommitted_bytes += cost;
  if (index) *index = mr_log_last(r);
  mr_bcast_append(r);
  return RK_OK;
}

int mr_raft_read_index(mr_raft *r, uint64_t ctx) {
  if (r->role != MR_LEADER) {
    if (r->lead == 0 || r->role != MR_FOLLOWER) return RK_ENOTLEADER;
    if (mr_ro_forwarded(r, ctx) != RK_OK) return RK_ENOMEM;
    mr_msg m = {.type = MR_MSG_READ_INDEX, .to = r->lead, .term = r->term, .ctx = ctx};
    mr_send(r, &m);
    return RK_OK;
  }
  if (!mr_committed_term_is_current(r)) return RK_EAGAIN; /* no-op not committed */
  return mr_ro_request(r, ctx, r->cfg.id);
}

int mr_raft_transfer_leader(mr_raft *r, uint64_t to) {
  if (r->role != MR_LEADER) return RK_ENOTLEADER;
  if (to == r->cfg.id) {
    r->transferee = 0;
    return RK_OK;
  }
  mr_progress *pr = mr_pr_find(r, to);
  if (!pr || !mr_quorum_is_voter(pr->flags)) return RK_EINVAL;
  if (r->transferee == to) return RK_OK;
  r->transferee = to;
  r->election_elapsed = 0; /* the abort timer */
  if (pr->match == mr_log_last(r))
    mr_send_timeout_now(r, to);
  else
    mr_send_append_all(r, pr, 1); /* catch it up first */
  return RK_OK;
}

int mr_raft_propose_conf_change(mr_raft *r, const mr_conf_change *cc, uint64_t *index) {
  if (r->role != MR_LEADER) return RK_ENOTLEADER;
  if (r->transferee != 0) return RK_ETRANSFERRING;
  if (r->pending_conf_index > r->applied) return RK_ECONFPENDING;
  mr_conf cur, next;
  mr_conf_from_prs(r, &cur);
  if (mr_conf_apply_change(&cur, cc, &next) != RK_OK) return RK_EINVAL;
  uint8_t buf[MR_CC_MAX_BYTES];
  size_t n = mr_cc_encode(cc, buf, sizeof buf);
  int rc = mr_log_append_new(r, RK_ENTRY_CONF_CHANGE, buf, (uint32_t)n);
  if (rc != RK_OK) return rc;
  r->pending_conf_index = mr_log_last(r);
  RK_ASSERT(r->pending_conf_index > r->applied);
  if (index) *index = r->pending_conf_index;
  mr_bcast_append(r);
  return RK_OK;
}

void mr_raft_report_snapshot(mr_raft *r, uint64_t to, int failed) {
  if (r->role != MR_LEADER) return;
  mr_progress *pr = mr_pr_find(r, to);
  if (!pr || pr->state != MR_PR_SNAPSHOT) return;
  if (failed) pr->pending_snap = 0;
  mr_pr_become_probe(pr);
  pr->probe_sent = 1; /* wait for the next heartbeat response */
}

void mr_raft_snapshot_alive(mr_raft *r, uint64_t to) {
  if (r->role != MR_LEADER) return;
  mr_progress *pr = mr_pr_find(r, to);
  if (pr && pr->state == MR_PR_SNAPSHOT) pr->snap_stale = 0;
}

void mr_raft_report_unreachable(mr_raft *r, uint64_t to) {
  if (r->role != MR_LEADER) return;
  mr_progress *pr = mr_pr_find(r, to);
  if (pr && pr->state == MR_PR_REPLICATE) mr_pr_become_probe(pr);
}

/* ---- applying configuration changes (called from advance) ------------------- */

static void after_conf_switch(mr_raft *r) {
  if (r->role != MR_LEADER) return;
  if (!mr_is_voter(r, r->cfg.id)) {
    /* removed or demoted and no longer in any voter set: stop leading.
     * Voters that have not learned the change committed may still count
     * this replica in the old (or joint) configuration and need its vote,
     * which an uncommitted entry of its own can deny them; as a learner,
     * or a replica just removed, it then tells them the commit
     * (nudge_leader, learn_commit). */
    mr_become_follower(r, r->term, 0);
    return;
  }
  if (r->transferee && !mr_is_voter(r, r->transferee)) r->transferee = 0;
  mr_update_self_match(r);
  (void)mr_maybe_commit(r);
  mr_bcast_append(r);
}

/* After a configuration switch: was this replica removed by it (or added
 * back)? A later change that leaves it out again changes nothing. */
static void note_removal(mr_raft *r, int was_member) {
  if (mr_pr_find(r, r->cfg.id) != NULL) {
    r->removed = 0;
    r->removed_nudges = 0;
  } else if (was_member) {
    r->removed = 1;
    r->removed_nudges = MR_REMOVED_NUDGES;
  }
}

void mr_apply_conf_entry(mr_raft *r, const rk_entry *e);
void mr_apply_conf_entry(mr_raft *r, const rk_entry *e) {
  mr_conf_change cc;
  mr_conf cur, next;
  if (mr_cc_decode(e->data, e->len, &cc) != RK_OK) {
    r->counters.bad_conf_change++;
    return;
  }
  mr_conf_from_prs(r, &cur);
  if (mr_conf_apply_change(&cur, &cc, &next) != RK_OK) {
    r->counters.bad_conf_change++;
    return;
  }
  int was_member = mr_pr_find(r, r->cfg.id) != NULL;
  int rc = mr_conf_switch(r, &next);
  RK_ASSERTF(rc == RK_OK, "out of memory switching configuration");
  note_removal(r, was_member);
  after_conf_switch(r);
}

void mr_after_advance(mr_raft *r);
void mr_after_advance(mr_raft *r) {
  if (r->role != MR_LEADER) return;
  mr_update_self_match(r);
  if (mr_maybe_commit(r)) mr_bcast_append(r);
  /* An applied configuration change may have shrunk the quorum: reads
   * pending under the old one are judged by the new (a leader left as
   * the only voter has nobody to answer another round). */
  mr_ro_advance(r);
  /* joint consensus with auto leave: propose the leave once the enter applied */
  if (r->auto_leave && r->pending_conf_index <= r->applied && r->transferee == 0) {
    mr_conf_change leave = {.transition = MR_CC_AUTO, .n = 0};
    int rc = mr_raft_propose_conf_change(r, &leave, NULL);
    RK_ASSERTF(rc == RK_OK, "auto leave failed: %d", rc);
  }
}

/* ---- init / free ------------------------------------------------------------- */

int mr_raft_init(mr_raft **out, const mr_config *cfg, const mr_storage *storage,
                 const mr_boot *boot, rk_rand *rng) {
  *out = NULL;
  if (cfg->id == 0 || cfg->heartbeat_tick == 0 || cfg->election_tick <= cfg->heartbeat_tick ||
      cfg->max_inflight_msgs == 0 || cfg->max_inflight_msgs > 1024 || cfg->max_msg_bytes == 0 ||
      cfg->max_committed_bytes == 0 || !storage || !storage->ops || !rng)
    return RK_EINVAL;
  if (cfg->max_unstable_bytes != 0 &&
      (cfg->max_unstable_bytes < cfg->max_msg_bytes ||
       cfg->max_unstable_bytes < MR_ENTRY_OVERHEAD ||
       cfg->max_unstable_bytes - MR_ENTRY_OVERHEAD < cfg->max_entry_bytes))
    return RK_EINVAL; /* a message of a leader like us would be cut short */
  if (mr_conf_validate(&boot->conf) != RK_OK) return RK_EINVAL;
  uint64_t first = storage->ops->first_index(storage->ctx);
  uint64_t last = storage->ops->last_index(storage->ctx);
  if (first == 0 || last + 1 < first) return RK_EINVAL;
  /* persisted state from our own disk must be coherent */
  if (boot->hs.commit > last || boot->applied > boot->hs.commit || boot->applied + 1 < first)
    return RK_EINVAL;
  if (boot->hs.vote != 0 && boot->hs.term == 0) return RK_EINVAL;
  if (boot->hs.term > MR_MAX_TERM) return RK_EINVAL;
  uint64_t last_term = 0;
  if (storage->ops->term(storage->ctx, last, &last_term) != RK_OK && last > 0) return RK_EINVAL;
  if (last_term > boot->hs.term) return RK_EINVAL; /* entries from a term we never saw */
  mr_raft *r = calloc(1, sizeof *r);
  if (!r) return RK_ENOMEM;
  r->cfg = *cfg;
  r->storage = *storage;
  r->rng = rng;
  r->term = boot->hs.term;
  r->vote = boot->hs.vote;
  r->commit = boot->hs.commit;
  r->applied = boot->applied;
  r->prev_hs = boot->hs;
  r->unstable_off = last + 1;
  if (mr_conf_switch(r, &boot->conf) != RK_OK) {
    free(r);
    return RK_ENOMEM;
  }
  /* Restarted after its removal applied: as if it had just applied it. */
  note_removal(r, boot->conf.n > 0);
  r->role = MR_FOLLOWER;
  reset_randomized_timeout(r);
  mr_raft_check_invariants(r);
  *out = r;
  return RK_OK;
}

void mr_raft_free(mr_raft *r) {
  if (!r) return;
  rk_entry_vec_free(&r->unstable);
  if (r->unstable_snap) {
    mr_snapshot_free(r->unstable_snap);
    free(r->unstable_snap);
  }
  for (uint8_t i = 0; i < r->n_prs; i++) mr_pr_inflight_release(&r->prs[i]);
  free(r->prs);
  for (uint32_t i = 0; i < r->n_out; i++) mr_msg_free(&r->out[i]);
  free(r->out);
  free(r->reqs);
  free(r->reads);
  free(r->fwd);
  free(r);
}

/* ---- accessors ------------------------------------------------------------- */

uint64_t mr_raft_id(const mr_raft *r) { return r->cfg.id; }
mr_role mr_raft_role(const mr_raft *r) { return (mr_role)r->role; }
uint64_t mr_raft_term(const mr_raft *r) { return r->term; }
uint64_t mr_raft_vote(const mr_raft *r) { return r->vote; }
uint64_t mr_raft_lead(const mr_raft *r) { return r->lead; }
uint64_t mr_raft_commit(const mr_raft *r) { return r->commit; }
uint64_t mr_raft_applied(const mr_raft *r) { return r->applied; }
uint32_t mr_raft_pending_reads(const mr_raft *r) { return r->n_reqs + r->n_reads; }
uint64_t mr_raft_last_index(const mr_raft *r) { return mr_log_last(r); }
uint64_t mr_raft_first_index(const mr_raft *r) { return mr_log_first(r); }
const mr_snapshot *mr_raft_pending_snapshot(const mr_raft *r) { return r->unstable_snap; }
int mr_raft_term_at(const mr_raft *r, uint64_t i, uint64_t *term) {
  return mr_log_term(r, i, term);
}
void mr_raft_conf(const mr_raft *r, mr_conf *out) { mr_conf_from_prs(r, out); }
const mr_counters *mr_raft_counters(const mr_raft *r) { return &r->counters; }
uint64_t mr_raft_transferee(const mr_raft *r) { return r->transferee; }

int mr_raft_progress(const mr_raft *r, uint64_t id, uint64_t *match, uint64_t *next, int *state,
                     uint32_t *inflight) {
  if (r->role != MR_LEADER) return RK_ENOTLEADER;
  const mr_progress *pr = mr_pr_find(r, id);
  if (!pr) return RK_ENOTFOUND;
  if (match) *match = pr->match;
  if (next) *next = pr->next;
  if (state) *state = pr->state;
  if (inflight) *inflight = pr->infl_count;
  return RK_OK;
}

size_t mr_raft_bytes_at_rest(const mr_raft *r) {
  size_t b = sizeof *r + r->n_prs * sizeof(mr_progress);
  for (uint8_t i = 0; i < r->n_prs; i++)
    if (r->prs[i].ring) b += r->cfg.max_inflight_msgs * sizeof(mr_inflight);
  b += r->unstable.cap * sizeof(rk_entry) + r->cap_out * sizeof(mr_msg);
  b += r->cap_reqs * sizeof(mr_read_req) + r->cap_reads * sizeof(mr_read_state);
  b += r->cap_fwd * sizeof *r->fwd;
  if (r->unstable_snap) b += sizeof(mr_snapshot) + r->unstable_snap->len;
  return b;
}

void mr_raft_check_invariants(const mr_raft *r) {
  RK_ASSERT(r->role <= MR_LEADER);
  RK_ASSERT(r->applied <= r->commit);
  uint64_t last = mr_log_last(r), first = mr_log_first(r);
  RK_ASSERTF(r->commit <= last, "commit %llu > last %llu", (unsigned long long)r->commit,
             (unsigned long long)last);
  RK_ASSERT(first >= 1 && first <= last + 1);
  RK_ASSERT(r->unstable_off >= 1 && r->unstable_off <= last + 1);
  if (r->unstable_snap) RK_ASSERT(r->unstable_off == r->unstable_snap->index + 1);
  RK_ASSERT(r->applied + 1 >= first || r->unstable_snap);
  for (size_t i = 1; i < r->unstable.len; i++) {
    RK_ASSERT(r->unstable.v[i].index == r->unstable.v[i - 1].index + 1);
    RK_ASSERT(r->unstable.v[i].term >= r->unstable.v[i - 1].term);
  }
  if (r->unstable.len > 0) RK_ASSERT(r->unstable.v[0].index == r->unstable_off);
  RK_ASSERT(mr_log_last_term(r) <= r->term);
  RK_ASSERT(r->vote == 0 || r->term > 0);
  RK_ASSERT(r->n_prs <= MR_MAX_REPLICAS);
  RK_ASSERT(r->randomized_timeout >= r->cfg.election_tick);
  RK_ASSERT(r->randomized_timeout < 2 * r->cfg.election_tick);
  RK_ASSERT(r->n_out <= r->cap_out);
  RK_ASSERT(r->n_reqs <= r->cap_reqs && r->n_reads <= r->cap_reads);
  RK_ASSERT(r->n_fwd <= r->cap_fwd && r->n_fwd <= MR_MAX_FWD_READS);
  mr_conf c;
  mr_conf_from_prs(r, &c);
  RK_ASSERT(mr_conf_validate(&c) == RK_OK);
  for (uint8_t i = 0; i < r->n_prs; i++) mr_pr_check(r, &r->prs[i]);
  switch (r->role) {
  case MR_LEADER:
    RK_ASSERT(r->lead == r->cfg.id);
    RK_ASSERT(r->vote == r->cfg.id || r->term == 0);
    RK_ASSERT(mr_pr_find(r, r->cfg.id) != NULL);
    RK_ASSERT(r->transferee != r->cfg.id);
    RK_ASSERT(r->unstable_snap == NULL);
    for (uint32_t i = 1; i < r->n_reqs; i++) RK_ASSERT(r->reqs[i - 1].seq < r->reqs[i].seq);
    break;
  case MR_CANDIDATE:
    RK_ASSERT(r->vote == r->cfg.id);
    RK_ASSERT(r->lead == 0);
    break;
  case MR_PRECANDIDATE: RK_ASSERT(r->lead == 0); break;
  default:
    RK_ASSERT(r->n_reqs == 0);
    RK_ASSERT(r->transferee == 0);
    break;
  }
}
