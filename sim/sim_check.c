/* sim_check.c — the invariants, checked after every event.
 *
 * The simulator sees every node's Raft state and every node's disk, so it can
 * check the protocol's safety properties directly rather than infer them
 * from client outcomes. Per group it keeps:
 *   leader_of_term[t]    the node that led term t           Election Safety
 *   lm: (i, t) -> (hash of entry, term at i-1)                Log Matching
 *       (two logs holding (i, t) agree on the entry and on the term before it,
 *        hence by induction on the whole prefix — Raft §5.3)
 *   committed_term[i], committed_at[i]   the entry committed at i, and the
 *       term in which it was first seen committed          Leader Completeness
 *   applied_hash[i]      what was applied at i         State Machine Safety
 *   state_hash[i]        the store's digest after applying i  (and what a
 *                        snapshot at i must restore)         Snapshot Safety
 * and per node+group (sim_ck_ng): the highest term the node sent on the wire
 * (a restart must not come back with a lower term: it would mean the node
 * acted on state it had not persisted), its latest granted votes (one
 * candidate per term), and the highest committed entry of its leader's term
 * its durable log held when counted (it must keep it).
 *
 * Checked where it can change, which is equivalent to "after every event":
 *   entries written to a disk        -> Log Matching            (written)
 *   after each event, every touched replica:                   (replica)
 *     term never decreases; at most one leader per term; a new leader holds
 *     every entry committed in an earlier term; a commit index advance is
 *     covered by a quorum of DURABLE logs (match indices that only count
 *     persisted entries) and never changes an entry already committed
 *   entries written, snapshot installed, crash -> committed entries kept
 *   a vote granted on the wire       -> one vote per term      (voted)
 *   an entry applied                 -> exactly once, in order; same entry
 *                                       and same resulting state   (applied)
 *   a snapshot restored              -> committed, and the appliers' state
 *                                                               (restored)
 *   end of the liveness phase        -> every acknowledged write is applied
 *                                       on every replica; replicas converge
 */
#include "sim/sim_int.h"

#include "common/rk_assert.h"
#include "common/rk_err.h"

#include <stdlib.h>
#include <string.h>

/* ---- small containers ---------------------------------------------------- */

static uint64_t u64v_get(const sim_u64v *v, uint64_t i) { return i < v->len ? v->v[i] : 0; }

static void u64v_set(sim_u64v *v, uint64_t i, uint64_t x) {
  if (i >= v->cap) {
    size_t nc = v->cap ? v->cap : 64;
    while (nc <= i) nc *= 2;
    v->v = realloc(v->v, nc * sizeof *v->v);
    RK_ASSERT(v->v != NULL);
    memset(v->v + v->cap, 0, (nc - v->cap) * sizeof *v->v);
    v->cap = nc;
  }
  if (i >= v->len) v->len = i + 1;
  v->v[i] = x;
}

void sim_check_init_group(sim_group *g) {
  memset(&g->leader_of_term, 0, sizeof g->leader_of_term);
  g->lm = NULL;
  g->lm_cap = g->lm_len = 0;
  memset(&g->committed_term, 0, sizeof g->committed_term);
  memset(&g->committed_at, 0, sizeof g->committed_at);
  memset(&g->applied_hash, 0, sizeof g->applied_hash);
  memset(&g->state_hash, 0, sizeof g->state_hash);
  g->max_acked = 0;
}

void sim_check_free_group(sim_group *g) {
  free(g->leader_of_term.v);
  free(g->lm);
  free(g->committed_term.v);
  free(g->committed_at.v);
  free(g->applied_hash.v);
  free(g->state_hash.v);
  sim_check_init_group(g);
}

void sim_check_free_node(sim_node *nd) {
  free(nd->ck);
  nd->ck = NULL;
  nd->nck = 0;
}

uint64_t sim_entry_hash(const rk_entry *e) {
  uint64_t h = sim_fnv(SIM_FNV_INIT, &e->type, sizeof e->type);
  h = sim_fnv(h, &e->term, sizeof e->term);
  if (e->len) h = sim_fnv(h, e->data, e->len);
  return h | 1; /* never 0: 0 means "nothing recorded" */
}

static uint64_t lm_slot(uint64_t index, uint64_t term, size_t cap) {
  uint64_t x =
      index * 0x9e3779b97f4a7c15ull ^ (term + 0x632be59bd9b4e019ull) * 0xbf58476d1ce4e5b9ull;
  x ^= x >> 29;
  return x & (cap - 1);
}

static sim_lm_slot *lm_find(sim_group *g, uint64_t index, uint64_t term, int insert) {
  if (insert && (g->lm_len + 1) * 2 > g->lm_cap) {
    size_t nc = g->lm_cap ? g->lm_cap * 2 : 16; /* small: 10^4 groups per run */
    sim_lm_slot *nv = calloc(nc, sizeof *nv);
    RK_ASSERT(nv != NULL);
    for (size_t i = 0; i < g->lm_cap; i++) {
      if (g->lm[i].term == 0) continue;
      uint64_t s = lm_slot(g->lm[i].index, g->lm[i].term, nc);
      while (nv[s].term != 0) s = (s + 1) & (nc - 1);
      nv[s] = g->lm[i];
    }
    free(g->lm);
    g->lm = nv;
    g->lm_cap = nc;
  }
  if (g->lm_cap == 0) return NULL;
  uint64_t s = lm_slot(index, term, g->lm_cap);
  while (g->lm[s].term != 0) {
    if (g->lm[s].index == index && g->lm[s].term == term) return &g->lm[s];
    s = (s + 1) & (g->lm_cap - 1);
  }
  if (!insert) return NULL;
  g->lm[s].index = index;
  g->lm[s].term = term;
  g->lm_len++;
  return &g->lm[s];
}

static sim_group *group_of(sim_world *w, uint64_t id) {
  RK_ASSERT(id < w->ngroups);
  return &w->groups[id];
}

static void voters_now(const sim_replica *r, sim_voters *v) {
  sim_rep_voters(r, v->in, &v->nin, v->out, &v->nout);
}

/* The node's record for `group`, created zeroed. */
static sim_ck_ng *ck_of(sim_world *w, uint32_t node, uint64_t group) {
  sim_node *nd = &w->nodes[node];
  if (group >= nd->nck) {
    size_t nn = (size_t)group + 1;
    nd->ck = realloc(nd->ck, nn * sizeof *nd->ck);
    RK_ASSERT(nd->ck != NULL);
    memset(nd->ck + nd->nck, 0, (nn - nd->nck) * sizeof *nd->ck);
    nd->nck = nn;
  }
  return &nd->ck[group];
}

static void held_lost(sim_world *w, uint32_t node, uint64_t group, const sim_ck_ng *ck,
                      const char *how) {
  sim_violation(w, "committed-entry-kept",
                "group %llu: n%u held committed entry %llu (term %llu) durably, then %s",
                (unsigned long long)group, node, (unsigned long long)ck->held_index,
                (unsigned long long)ck->held_term, how);
}

/* ---- hooks --------------------------------------------------------------------- */

void sim_check_written(sim_world *w, uint32_t node, sim_replica *r, const rk_entry *e, size_t n,
                       uint64_t prev_term) {
  sim_group *g = group_of(w, r->group);
  /* An append replaces the log from its first index on. */
  const sim_ck_ng *ck = ck_of(w, node, r->group);
  if (n > 0 && ck->held_index >= e[0].index) {
    uint64_t k = ck->held_index - e[0].index;
    if (k >= n)
      held_lost(w, node, r->group, ck, "cut its log back to a shorter one");
    else if (e[k].term != ck->held_term)
      held_lost(w, node, r->group, ck, "overwrote it");
  }
  for (size_t k = 0; k < n && !w->stopped; k++) {
    uint64_t pt = k == 0 ? prev_term : e[k - 1].term;
    uint64_t h = sim_entry_hash(&e[k]);
    sim_lm_slot *s = lm_find(g, e[k].index, e[k].term, 0);
    if (s == NULL) {
      s = lm_find(g, e[k].index, e[k].term, 1);
      RK_ASSERT(s != NULL);
      s->hash = h;
      s->prev_term = pt;
      continue;
    }
    if (s->hash != h)
      sim_violation(w, "log-matching",
                    "group %llu: n%u wrote a different entry at index %llu term %llu",
                    (unsigned long long)r->group, node, (unsigned long long)e[k].index,
                    (unsigned long long)e[k].term);
    else if (s->prev_term != pt)
      sim_violation(w, "log-matching",
                    "group %llu: n%u has (%llu, term %llu) after term %llu, another log after "
                    "term %llu",
                    (unsigned long long)r->group, node, (unsigned long long)e[k].index,
                    (unsigned long long)e[k].term, (unsigned long long)pt,
                    (unsigned long long)s->prev_term);
  }
}

void sim_check_sent(sim_world *w, uint32_t node, uint64_t group, uint64_t term) {
  sim_ck_ng *ck = ck_of(w, node, group);
  if (term > ck->term_floor) ck->term_floor = term;
}

void sim_check_voted(sim_world *w, uint32_t node, uint64_t group, uint64_t term, uint32_t cand) {
  sim_ck_ng *ck = ck_of(w, node, group);
  size_t oldest = 0;
  for (size_t i = 0; i < 4; i++) {
    if (ck->vote_term[i] == term && ck->vote_for[i] != cand + 1u) {
      sim_violation(w, "vote-once",
                    "group %llu: n%u granted its term-%llu vote to n%u, having granted it to "
                    "n%llu",
                    (unsigned long long)group, node, (unsigned long long)term, cand,
                    (unsigned long long)(ck->vote_for[i] - 1));
      return;
    }
    if (ck->vote_term[i] == term) return;
    if (ck->vote_term[i] < ck->vote_term[oldest]) oldest = i;
  }
  if (term < ck->vote_term[oldest]) return; /* older than every vote kept */
  ck->vote_term[oldest] = term;
  ck->vote_for[oldest] = cand + 1u;
}

void sim_check_restarted(sim_world *w, uint32_t node, sim_replica *r) {
  uint64_t t = sim_rep_term(r);
  uint64_t floor = ck_of(w, node, r->group)->term_floor;
  if (t < floor)
    sim_violation(w, "term-monotonic",
                  "group %llu: n%u restarted at term %llu but had sent messages at term %llu "
                  "(acted on a term it had not persisted)",
                  (unsigned long long)r->group, node, (unsigned long long)t,
                  (unsigned long long)floor);
  r->ck_term = t;
  r->ck_commit = sim_rep_commit(r);
  r->ck_leader = 0;
  voters_now(r, &r->ck_voters);
}

/* Largest index committed in a term < t (0 if none). */
static uint64_t committed_before(const sim_group *g, uint64_t t) {
  for (uint64_t i = g->committed_term.len; i-- > 1;) {
    uint64_t at = u64v_get(&g->committed_at, i);
    if (at != 0 && at < t) return i;
  }
  return 0;
}

static void check_leader_complete(sim_world *w, uint32_t node, sim_replica *r, uint64_t term) {
  sim_group *g = group_of(w, r->group);
  uint64_t m = committed_before(g, term);
  if (m == 0) return;
  uint64_t have = 0;
  int rc = mr_raft_term_at(r->raft, m, &have);
  if (rc == RK_ECOMPACTED) return; /* covered by a snapshot of committed state */
  if (have != u64v_get(&g->committed_term, m))
    sim_violation(w, "leader-completeness",
                  "group %llu: n%u leads term %llu without entry %llu (term %llu) committed in "
                  "term %llu; its log has term %llu there (last index %llu)",
                  (unsigned long long)r->group, node, (unsigned long long)term,
                  (unsigned long long)m, (unsigned long long)u64v_get(&g->committed_term, m),
                  (unsigned long long)u64v_get(&g->committed_at, m), (unsigned long long)have,
                  (unsigned long long)mr_raft_last_index(r->raft));
}

/* Is (index, term) on the durable log of `node`? */
static int view_has(sim_world *w, uint64_t group, uint32_t node, uint64_t index, uint64_t term,
                    int durable) {
  if (node >= w->nnodes) return 0;
  sim_node *nd = &w->nodes[node];
  int slot = sim_disk_find(&nd->disk, group);
  if (slot < 0) return 0;
  const sim_log_view *v = sim_disk_view(&nd->disk, (uint32_t)slot, durable);
  if (index <= v->snap.index) return 1; /* inside a snapshot */
  return sim_view_term(v, index) == term;
}

static int durable_has(sim_world *w, uint64_t group, uint32_t node, uint64_t index, uint64_t term) {
  return view_has(w, group, node, index, term, 1);
}

static int quorum_durable(sim_world *w, uint64_t group, const uint64_t *ids, uint32_t n,
                          uint64_t index, uint64_t term, uint32_t *have) {
  uint32_t c = 0;
  for (uint32_t i = 0; i < n; i++)
    c += (uint32_t)(ids[i] != 0 && durable_has(w, group, sim_rid_node(ids[i]), index, term));
  *have = c;
  return n == 0 || c >= n / 2 + 1;
}

/* Both majorities of v (one when not joint) hold (index, term) durably. If
 * not, *have of *of voters of the failing one do. */
static int quorums_durable(sim_world *w, uint64_t group, const sim_voters *v, uint64_t index,
                           uint64_t term, uint32_t *have, uint32_t *of) {
  if (v->nin == 0) return 0; /* no configuration: nothing commits */
  *of = v->nin;
  if (!quorum_durable(w, group, v->in, v->nin, index, term, have)) return 0;
  *of = v->nout;
  return quorum_durable(w, group, v->out, v->nout, index, term, have);
}

/* The leader of term `term` committed (index, term), counting the voters
 * whose durable log holds it. Each of them has adopted the term, so only a
 * leader of a later term can overwrite its log, and that leader holds the
 * entry (Leader Completeness): the entry stays on that node's durable log,
 * or under a snapshot, for good. (A node that holds a committed entry of an
 * older term may still lose it to a stale leader: Raft's Figure 8.) */
static void hold_to(sim_world *w, uint64_t group, const uint64_t *ids, uint32_t n, uint64_t index,
                    uint64_t term) {
  for (uint32_t i = 0; i < n; i++) {
    uint32_t node = ids[i] ? sim_rid_node(ids[i]) : UINT32_MAX;
    if (node >= w->nnodes || !durable_has(w, group, node, index, term)) continue;
    sim_ck_ng *ck = ck_of(w, node, group);
    /* Writes reach the durable log from the current view (at the next
     * fsync), and the write checks watch the current view: it must hold the
     * entry too, or a write already queued drops it. */
    if (!view_has(w, group, node, index, term, 0)) {
      sim_violation(w, "committed-entry-kept",
                    "group %llu: n%u holds committed entry %llu (term %llu) durably, but a write "
                    "it has queued drops it",
                    (unsigned long long)group, node, (unsigned long long)index,
                    (unsigned long long)term);
      return;
    }
    if (index > ck->held_index) {
      ck->held_index = index;
      ck->held_term = term;
    }
  }
}

static void check_commit(sim_world *w, uint32_t node, sim_replica *r, uint64_t commit,
                         uint64_t term) {
  sim_group *g = group_of(w, r->group);
  /* The node's log as its core sees it (entries not yet persisted included). */
  for (uint64_t i = r->ck_commit + 1; i <= commit && !w->stopped; i++) {
    uint64_t et = 0;
    if (mr_raft_term_at(r->raft, i, &et) != RK_OK || et == 0) continue; /* compacted */
    uint64_t known = u64v_get(&g->committed_term, i);
    if (known == 0) {
      u64v_set(&g->committed_term, i, et);
      u64v_set(&g->committed_at, i, term);
      /* A new commit: every leader of a later term must already hold it. */
      for (uint32_t n = 0; n < w->nnodes; n++) {
        sim_replica *o = w->nodes[n].up ? sim_node_replica(w, n, r->group) : NULL;
        if (o && sim_rep_role(o) == SIM_ROLE_LEADER && sim_rep_term(o) > term)
          check_leader_complete(w, n, o, sim_rep_term(o));
      }
    } else if (known != et) {
      sim_violation(w, "state-machine-safety",
                    "group %llu: n%u committed index %llu with term %llu, but term %llu was "
                    "committed there before",
                    (unsigned long long)r->group, node, (unsigned long long)i,
                    (unsigned long long)et, (unsigned long long)known);
      return;
    }
  }
  /* The quorum is the leader's to count, in the configuration it has
   * applied: a follower that applied a later one learns a commit that the
   * leader counted in the one before (a single change keeps their
   * majorities overlapping), so a follower's view proves nothing. */
  if (sim_rep_role(r) != SIM_ROLE_LEADER) return;
  uint64_t ct = 0;
  if (mr_raft_term_at(r->raft, commit, &ct) != RK_OK || ct == 0) return;
  /* The configuration the commit was counted in: the one in force now, or
   * the one before this event when the event also applied a configuration
   * change (a change takes effect when applied, so the entries up to and
   * including it are counted by the configuration before it). */
  sim_voters now;
  voters_now(r, &now);
  const sim_voters *by = &now;
  uint32_t have = 0, of = 0, h2 = 0, o2 = 0;
  if (!quorums_durable(w, r->group, &now, commit, ct, &have, &of)) {
    by = &r->ck_voters;
    if (!quorums_durable(w, r->group, by, commit, ct, &h2, &o2)) {
      sim_violation(w, "commit-quorum",
                    "group %llu: n%u advanced commit to %llu (term %llu) but only %u of %u "
                    "voters hold it durably%s",
                    (unsigned long long)r->group, node, (unsigned long long)commit,
                    (unsigned long long)ct, have, of, now.nout ? " (joint configuration)" : "");
      return;
    }
  }
  if (ct == term) {
    hold_to(w, r->group, by->in, by->nin, commit, ct);
    hold_to(w, r->group, by->out, by->nout, commit, ct);
  }
}

/* Records `node` as the leader of `term`; 0 (and a violation) if another
 * node led it. */
static int record_leader(sim_world *w, uint32_t node, uint64_t group, uint64_t term) {
  sim_group *g = group_of(w, group);
  uint64_t who = u64v_get(&g->leader_of_term, term);
  if (who == 0)
    u64v_set(&g->leader_of_term, term, node + 1u);
  else if (who != node + 1u) {
    sim_violation(w, "election-safety", "group %llu: term %llu has two leaders: n%llu and n%u",
                  (unsigned long long)group, (unsigned long long)term,
                  (unsigned long long)(who - 1), node);
    return 0;
  }
  return 1;
}

void sim_check_led(sim_world *w, uint32_t node, uint64_t group, uint64_t term) {
  (void)record_leader(w, node, group, term);
}

static int self_vote_durable(sim_world *w, uint32_t node, const sim_replica *r, uint64_t term) {
  sim_node *nd = &w->nodes[node];
  const sim_log_view *v = sim_disk_view(&nd->disk, r->slot, 1);
  return v->hs.term == term && v->hs.vote == SIM_RID(node);
}

void sim_check_replica(sim_world *w, uint32_t node, sim_replica *r) {
  if (w->stopped) return;
  uint64_t t = sim_rep_term(r);
  if (t < r->ck_term) {
    sim_violation(w, "term-monotonic", "group %llu: n%u term went from %llu to %llu",
                  (unsigned long long)r->group, node, (unsigned long long)r->ck_term,
                  (unsigned long long)t);
    return;
  }
  int leader = sim_rep_role(r) == SIM_ROLE_LEADER;
  /* Election Safety is about leaders that can act: one whose term and vote
   * for itself are durable, or that sent a leader's message (sim_check_led).
   * Until then it sends nothing (every message of the Ready that raised its
   * term waits for the fsync), and a crash before it makes the win void: the
   * node may then vote for another candidate in that term, as a lone voter
   * that wins by its own vote does. Leader Completeness holds even so. */
  if (leader && self_vote_durable(w, node, r, t) && !record_leader(w, node, r->group, t)) return;
  if (leader && (!r->ck_leader || r->ck_term != t)) check_leader_complete(w, node, r, t);
  r->ck_leader = leader;
  r->ck_term = t;
  uint64_t c = sim_rep_commit(r);
  if (c > r->ck_commit) {
    check_commit(w, node, r, c, t);
    r->ck_commit = c;
  }
  voters_now(r, &r->ck_voters);
}

void sim_check_applied(sim_world *w, uint32_t node, sim_replica *r, const rk_entry *e) {
  sim_group *g = group_of(w, r->group);
  RK_ASSERT(r->applied == e->index);
  uint64_t h = sim_entry_hash(e);
  uint64_t was = u64v_get(&g->applied_hash, e->index);
  if (was == 0)
    u64v_set(&g->applied_hash, e->index, h);
  else if (was != h) {
    sim_violation(w, "state-machine-safety",
                  "group %llu: n%u applied a different command at index %llu (term %llu)",
                  (unsigned long long)r->group, node, (unsigned long long)e->index,
                  (unsigned long long)e->term);
    return;
  }
  /* The same commands from the same state give the same state; a
   * difference means the replica started from a wrong one (a snapshot). The
   * state can be 0 (an empty store), so store it | 1 and compare likewise. */
  uint64_t st = sim_kv_state(&r->kv) | 1u;
  uint64_t had = u64v_get(&g->state_hash, e->index);
  if (had == 0)
    u64v_set(&g->state_hash, e->index, st);
  else if (had != st)
    sim_violation(w, "state-machine-safety",
                  "group %llu: n%u reached another state than its peers after applying index "
                  "%llu (term %llu)",
                  (unsigned long long)r->group, node, (unsigned long long)e->index,
                  (unsigned long long)e->term);
}

/* A snapshot must be of committed state: its (index, term) the committed
 * entry there, its image the state every applier reached there. */
void sim_check_restored(sim_world *w, uint32_t node, sim_replica *r, uint64_t index,
                        uint64_t term) {
  sim_group *g = group_of(w, r->group);
  uint64_t ct = u64v_get(&g->committed_term, index);
  uint64_t had = u64v_get(&g->state_hash, index);
  if (ct != 0 && ct != term)
    sim_violation(w, "snapshot-safety",
                  "group %llu: n%u restored a snapshot at index %llu term %llu, where term %llu "
                  "was committed",
                  (unsigned long long)r->group, node, (unsigned long long)index,
                  (unsigned long long)term, (unsigned long long)ct);
  else if (had != 0 && had != (sim_kv_state(&r->kv) | 1u))
    sim_violation(w, "snapshot-safety",
                  "group %llu: n%u restored a snapshot at index %llu whose image is not the "
                  "state applied there",
                  (unsigned long long)r->group, node, (unsigned long long)index);
  else if (had == 0) /* nobody applied it yet: whoever does must agree */
    u64v_set(&g->state_hash, index, sim_kv_state(&r->kv) | 1u);
}

void sim_check_installing(sim_world *w, uint32_t node, sim_replica *r, uint64_t index) {
  const sim_ck_ng *ck = ck_of(w, node, r->group);
  if (index < ck->held_index)
    held_lost(w, node, r->group, ck, "replaced its log by an older snapshot");
}

void sim_check_crashed(sim_world *w, uint32_t node) {
  sim_node *nd = &w->nodes[node];
  for (uint64_t g = 0; g < nd->nck && !w->stopped; g++) {
    const sim_ck_ng *ck = &nd->ck[g];
    if (ck->held_index != 0 && !durable_has(w, g, node, ck->held_index, ck->held_term))
      held_lost(w, node, g, ck, "lost it in a crash");
  }
}

void sim_check_acked(sim_world *w, uint64_t group, uint64_t index) {
  sim_group *g = group_of(w, group);
  if (index > g->max_acked) g->max_acked = index;
}

void sim_check_final(sim_world *w) {
  for (uint32_t gi = 0; gi < w->ngroups && !w->stopped; gi++) {
    sim_group *g = &w->groups[gi];
    uint64_t applied = UINT64_MAX, digest = 0;
    uint32_t first = UINT32_MAX;
    /* The members: those of the leader's configuration (the liveness phase
     * ends with a leader in every group); a removed replica stays behind. */
    int l = sim_group_leader(w, gi);
    const sim_replica *lead = l < 0 ? NULL : sim_node_replica(w, (uint32_t)l, gi);
    mr_conf conf;
    if (lead) mr_raft_conf(lead->raft, &conf);
    for (uint32_t n = 0; n < w->nnodes; n++) {
      sim_replica *r = w->nodes[n].up ? sim_node_replica(w, n, gi) : NULL;
      if (r == NULL || (lead && mr_conf_flags(&conf, SIM_RID(n)) == 0)) continue;
      if (r->applied < g->max_acked) {
        sim_violation(w, "acked-write-lost",
                      "group %u: n%u applied only up to %llu after the liveness phase, but "
                      "index %llu was acknowledged to a client",
                      gi, n, (unsigned long long)r->applied, (unsigned long long)g->max_acked);
        return;
      }
      uint64_t d = sim_kv_digest(&r->kv);
      if (first == UINT32_MAX) {
        first = n;
        applied = r->applied;
        digest = d;
      } else if (r->applied != applied || d != digest) {
        sim_violation(w, "convergence",
                      "group %u: n%u applied %llu (digest %016llx), n%u applied %llu (digest "
                      "%016llx) after the liveness phase",
                      gi, first, (unsigned long long)applied, (unsigned long long)digest, n,
                      (unsigned long long)r->applied, (unsigned long long)d);
        return;
      }
    }
  }
}
