/* host.c — many Raft groups on one node. See host.h for the model.
 *
 * Group lifecycle (flags):
 *
 *            create       leader idle + every live follower matched + a live majority
 *   (none) ---------> ACTIVE  ------------------------------------------> QUIESCED
 *                      ^   ^          follower: quiesce heartbeat, caught up  |
 *                      |   +-----------------------------------------------+  |
 *                      |     wake: proposal, read, conf change, campaign,     |
 *                      |     any message (a quiesce-ack response excepted),   |
 *                      |     the leader's node declared down, a leader left   |
 *                      |     without a live majority (it steps down), a       |
 *                      |     lagging follower's node back                     |
 *                      +------------------------------------------------------+
 *
 * Orthogonal flags: DIRTY (in h->dirty: maybe has a Ready), IN_FLIGHT (a
 * Ready is out, waiting for its persist batch; no new Ready until advance).
 *
 *   transition             function
 *   ACTIVE -> QUIESCED     host_quiesce()         (leader: maybe_quiesce_leader,
 *                                                  follower: recv_heartbeat)
 *   QUIESCED -> ACTIVE     host_wake()
 *   DIRTY set              host_mark_dirty()      (tick, step, propose, advance)
 *   IN_FLIGHT set/cleared  host_collect() / host_complete()
 */
#include "multiraft/host.h"

#include "common/rk_assert.h"
#include "common/rk_err.h"
#include "common/rk_log.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

enum {
  HG_QUIESCED = 1u << 0,
  HG_DIRTY = 1u << 1,
  HG_IN_FLIGHT = 1u << 2,
  HG_LEADS = 1u << 3, /* led at the last note_leadership */
};

#define HG_NOT_ACTIVE UINT32_MAX
#define HOST_MAX_NODE (1u << 20)

/* One replica on this node. Sized for 10^5 per node: no buffers, no timers. */
typedef struct host_group {
  uint64_t id;
  mr_raft *r;
  mr_storage st;
  uint32_t active_idx;   /* position in h->active, HG_NOT_ACTIVE if quiesced */
  uint32_t idle_ticks;   /* ticks since the last proposal, read or commit */
  uint32_t listed_node;  /* follower: the peer whose quiesced_led lists us (0 = none) */
  uint64_t compact_hint; /* follower: the largest mr_host_hb.compact heard */
  uint8_t flags;
  uint8_t last_role;
} host_group;

/* A growable array; the element type is fixed by the macro user. */
#define HOST_VEC(T)                                                                                \
  struct {                                                                                         \
    T *v;                                                                                          \
    size_t len, cap;                                                                               \
  }

static int vec_reserve_(void **v, size_t *cap, size_t need, size_t elem) {
  if (need <= *cap) return RK_OK;
  size_t ncap = *cap ? *cap * 2 : 16;
  while (ncap < need) ncap *= 2;
  void *nv = realloc(*v, ncap * elem);
  if (nv == NULL) return RK_ENOMEM;
  *v = nv;
  *cap = ncap;
  return RK_OK;
}
/* Pushes x; aborts on allocation failure (the host's buffers are bounded by
 * one turn's output, and a node out of memory mid-turn cannot continue
 * consistently). */
#define VEC_PUSH(vec, x)                                                                           \
  do {                                                                                             \
    RK_ASSERTF(vec_reserve_((void **)&(vec).v, &(vec).cap, (vec).len + 1, sizeof *(vec).v) ==      \
                   RK_OK,                                                                          \
               "out of memory");                                                                   \
    (vec).v[(vec).len++] = (x);                                                                    \
  } while (0)

typedef struct host_peer {
  uint32_t node;
  uint8_t live;
  uint8_t must_send;   /* a frame goes out this turn even if empty (liveness) */
  uint64_t last_heard; /* host tick of the last frame from this node */
  HOST_VEC(mr_host_gmsg) msgs;
  HOST_VEC(mr_host_hb) hbs;
  HOST_VEC(mr_host_hb) hb_resps;
  /* Groups that quiesced as followers of a leader on this node: woken, and
   * only they, when this node is declared down. May hold stale ids (groups
   * that woke since); they are re-checked on use and compacted. */
  HOST_VEC(uint64_t) quiesced_led;
} host_peer;

typedef struct host_pending {
  host_group *g; /* NULL if the group was destroyed meanwhile */
  mr_ready rd;
} host_pending;

/* A hard state whose only change is the commit index: written with the
 * batch, but its Ready did not wait for it (see host_collect). */
typedef struct host_commit_only {
  uint64_t group;
  rk_hard_state hs;
} host_commit_only;

typedef struct host_batch {
  uint64_t id;
  int done;
  int rc;
  HOST_VEC(host_pending) items; /* Readys waiting for this batch */
  HOST_VEC(host_commit_only) commit_only;
  HOST_VEC(mr_host_write) writes; /* items' writes, then commit_only's */
  rk_entry_vec no_entries;        /* what commit-only writes point at */
} host_batch;

struct mr_host {
  mr_host_config cfg;
  mr_host_io io;
  rk_rand *rng;
  uint64_t tick;
  int stopped;
  /* group index: open addressing, linear probing, backward-shift delete */
  host_group **slots;
  size_t nslots, ngroups;
  HOST_VEC(host_group *) active;
  HOST_VEC(host_group *) dirty;
  /* peers by node id */
  host_peer **peers;
  size_t npeers_cap;
  HOST_VEC(uint32_t) peer_list; /* node ids in the order they were added */
  /* persist batches in flight, oldest first */
  HOST_VEC(host_batch *) batches;
  uint64_t next_batch;
  /* this turn's snapshot batches, between collect and issue */
  HOST_VEC(host_batch *) snap_batches;
  /* completion scratch, reused every turn */
  HOST_VEC(host_pending) done;
  HOST_VEC(mr_host_apply) applies;
  mr_host_stats st;
};

/* ---- group index ------------------------------------------------------------ */

static size_t slot_of(const mr_host *h, uint64_t id) {
  uint64_t x = id * 0x9e3779b97f4a7c15ull;
  x ^= x >> 29;
  return (size_t)(x & (h->nslots - 1));
}

static host_group *index_get(const mr_host *h, uint64_t id) {
  for (size_t i = slot_of(h, id);; i = (i + 1) & (h->nslots - 1)) {
    host_group *g = h->slots[i];
    if (g == NULL) return NULL;
    if (g->id == id) return g;
  }
}

static int index_grow(mr_host *h) {
  size_t n = h->nslots ? h->nslots * 2 : 1024;
  host_group **old = h->slots;
  size_t oldn = h->nslots;
  h->slots = calloc(n, sizeof *h->slots);
  if (h->slots == NULL) {
    h->slots = old;
    return RK_ENOMEM;
  }
  h->nslots = n;
  for (size_t i = 0; i < oldn; i++) {
    if (old[i] == NULL) continue;
    size_t j = slot_of(h, old[i]->id);
    while (h->slots[j] != NULL) j = (j + 1) & (n - 1);
    h->slots[j] = old[i];
  }
  free(old);
  return RK_OK;
}

static int index_put(mr_host *h, host_group *g) {
  if ((h->ngroups + 1) * 2 > h->nslots) {
    int rc = index_grow(h);
    if (rc != RK_OK) return rc;
  }
  size_t i = slot_of(h, g->id);
  while (h->slots[i] != NULL) {
    RK_ASSERT(h->slots[i]->id != g->id);
    i = (i + 1) & (h->nslots - 1);
  }
  h->slots[i] = g;
  h->ngroups++;
  return RK_OK;
}

static void index_del(mr_host *h, uint64_t id) {
  size_t mask = h->nslots - 1, i = slot_of(h, id);
  while (h->slots[i] != NULL && h->slots[i]->id != id) i = (i + 1) & mask;
  RK_ASSERT(h->slots[i] != NULL);
  h->slots[i] = NULL;
  h->ngroups--;
  /* Backward-shift: move later members of the probe run into the hole. */
  for (size_t j = (i + 1) & mask; h->slots[j] != NULL; j = (j + 1) & mask) {
    size_t home = slot_of(h, h->slots[j]->id);
    /* j's entry may fill the hole at i if its home is not in (i, j]. */
    int movable = (i <= j) ? (home <= i || home > j) : (home <= i && home > j);
    if (movable) {
      h->slots[i] = h->slots[j];
      h->slots[j] = NULL;
      i = j;
    }
  }
}

/* ---- sets ------------------------------------------------------------------- */

static void host_mark_dirty(mr_host *h, host_group *g) {
  if (g->flags & HG_DIRTY) return;
  g->flags |= HG_DIRTY;
  VEC_PUSH(h->dirty, g);
}

static void active_add(mr_host *h, host_group *g) {
  RK_ASSERT(g->active_idx == HG_NOT_ACTIVE);
  g->active_idx = (uint32_t)h->active.len;
  VEC_PUSH(h->active, g);
}

static void active_remove(mr_host *h, host_group *g) {
  RK_ASSERT(g->active_idx != HG_NOT_ACTIVE && h->active.v[g->active_idx] == g);
  host_group *last = h->active.v[h->active.len - 1];
  h->active.v[g->active_idx] = last;
  last->active_idx = g->active_idx;
  h->active.len--;
  g->active_idx = HG_NOT_ACTIVE;
}

/* Wakes a quiesced group; `activity` also restarts its idle count (client
 * work does; a peer's message alone does not, or heartbeat responses would
 * keep every leader from ever quiescing). */
static void host_wake(mr_host *h, host_group *g, int activity) {
  if (activity) g->idle_ticks = 0;
  if (!(g->flags & HG_QUIESCED)) return;
  g->idle_ticks = 0;
  g->flags &= (uint8_t)~HG_QUIESCED;
  active_add(h, g);
  RK_DEBUG("host", "group %llu wakes", (unsigned long long)g->id);
}

/* ---- peers ------------------------------------------------------------------- */

static host_peer *peer_get(const mr_host *h, uint32_t node) {
  return node < h->npeers_cap ? h->peers[node] : NULL;
}

int mr_host_add_node(mr_host *h, uint32_t node) {
  if (node == 0 || node >= HOST_MAX_NODE || node == h->cfg.node_id) return RK_EINVAL;
  if (peer_get(h, node) != NULL) return RK_OK;
  if (node >= h->npeers_cap) {
    size_t ncap = h->npeers_cap ? h->npeers_cap : 16;
    while (ncap <= node) ncap *= 2;
    host_peer **np = realloc(h->peers, ncap * sizeof *np);
    if (np == NULL) return RK_ENOMEM;
    memset(np + h->npeers_cap, 0, (ncap - h->npeers_cap) * sizeof *np);
    h->peers = np;
    h->npeers_cap = ncap;
  }
  host_peer *p = calloc(1, sizeof *p);
  if (p == NULL) return RK_ENOMEM;
  p->node = node;
  p->live = 1;
  p->last_heard = h->tick;
  h->peers[node] = p;
  VEC_PUSH(h->peer_list, node);
  return RK_OK;
}

/* The peer a replica lives on, created on first use. */
static host_peer *peer_for_replica(mr_host *h, uint64_t replica) {
  uint32_t node = mr_host_replica_node(replica);
  RK_ASSERTF(node != h->cfg.node_id, "message to a replica on this node");
  host_peer *p = peer_get(h, node);
  if (p == NULL) {
    RK_ASSERTF(mr_host_add_node(h, node) == RK_OK, "node %u", node);
    p = peer_get(h, node);
  }
  return p;
}

/* Drops stale ids from a peer's quiesced_led list (groups that woke, were
 * destroyed, or are listed under another leader's node since). A group is
 * listed under at most one peer at a time (listed_node), so the list never
 * holds duplicates and stays within the number of groups. */
static void peer_compact_quiesced(mr_host *h, host_peer *p) {
  size_t k = 0;
  for (size_t i = 0; i < p->quiesced_led.len; i++) {
    host_group *g = index_get(h, p->quiesced_led.v[i]);
    if (g == NULL || g->listed_node != p->node) continue;
    if ((g->flags & HG_QUIESCED) && mr_host_replica_node(mr_raft_lead(g->r)) == p->node)
      p->quiesced_led.v[k++] = p->quiesced_led.v[i];
    else
      g->listed_node = 0;
  }
  p->quiesced_led.len = k;
}

/* ---- quiescence -------------------------------------------------------------- */

static void host_quiesce(mr_host *h, host_group *g) {
  RK_ASSERT(!(g->flags & HG_QUIESCED));
  active_remove(h, g);
  g->flags |= HG_QUIESCED;
  if (mr_raft_role(g->r) != MR_LEADER) {
    host_peer *p = peer_for_replica(h, mr_raft_lead(g->r));
    if (g->listed_node == p->node) return; /* already listed there */
    if (g->listed_node != 0) {
      /* Listed under a former leader's node: that entry goes stale. */
      host_peer *old = peer_get(h, g->listed_node);
      g->listed_node = 0;
      if (old && old->quiesced_led.len >= 2 * h->ngroups + 64) peer_compact_quiesced(h, old);
    }
    if (p->quiesced_led.len >= 2 * h->ngroups + 64) peer_compact_quiesced(h, p);
    VEC_PUSH(p->quiesced_led, g->id);
    g->listed_node = p->node;
  }
}

/* A leader's least match over every replica of its configuration (itself
 * included): all of them hold the log up to there. 0 if not leader. */
static uint64_t leader_min_match(const mr_raft *r) {
  if (mr_raft_role(r) != MR_LEADER) return 0;
  mr_conf c;
  mr_raft_conf(r, &c);
  uint64_t least = UINT64_MAX;
  for (uint8_t i = 0; i < c.n; i++) {
    uint64_t match = 0, next = 0;
    int state = 0;
    uint32_t inflight = 0;
    if (mr_raft_progress(r, c.r[i].id, &match, &next, &state, &inflight) != RK_OK) return 0;
    if (match < least) least = match;
  }
  return least == UINT64_MAX ? 0 : least;
}

/* Whether the node of a replica is live (this node always is). */
static int replica_live(const mr_host *h, uint64_t replica) {
  uint32_t node = mr_host_replica_node(replica);
  const host_peer *p = peer_get(h, node);
  return node == h->cfg.node_id || (p != NULL && p->live);
}

/* Whether the voters of configuration c on live nodes (this one included)
 * are a majority of each of its voter sets. */
static int live_quorum(const mr_host *h, const mr_conf *c) {
  unsigned in = 0, in_live = 0, out = 0, out_live = 0;
  for (uint8_t i = 0; i < c->n; i++) {
    unsigned live = (unsigned)replica_live(h, c->r[i].id);
    if (c->r[i].flags & MR_VOTER_IN) {
      in++;
      in_live += live;
    }
    if (c->r[i].flags & MR_VOTER_OUT) {
      out++;
      out_live += live;
    }
  }
  return 2 * in_live > in && (out == 0 || 2 * out_live > out);
}

/* A leader quiesces an idle group whose every live replica holds the whole
 * log, committed and applied, with nothing pending (CockroachDB's
 * conditions). Replicas on nodes declared down are left out, as
 * CockroachDB does, so a node failure does not keep the groups it followed
 * awake for as long as it is down: such a replica, when its node returns,
 * starts awake, finds no heartbeat, and its campaign message wakes us. But
 * never without a live majority: such a leader stays awake, so CheckQuorum
 * deposes it (node_down steps it down anyway; this keeps the rule local). */
static int leader_may_quiesce(const mr_host *h, const host_group *g) {
  const mr_raft *r = g->r;
  if (g->flags & HG_IN_FLIGHT) return 0;
  /* Reads still in the core (a Ready in flight is excluded above): a
   * quiesced leader would stop the heartbeat rounds that confirm them. */
  if (g->idle_ticks < h->cfg.quiesce_after || mr_raft_pending_reads(r) != 0) return 0;
  if (mr_raft_transferee(r) != 0) return 0;
  uint64_t last = mr_raft_last_index(r);
  if (mr_raft_commit(r) != last || mr_raft_applied(r) != last) return 0;
  mr_conf c;
  mr_raft_conf(r, &c);
  if (mr_conf_is_joint(&c) || !live_quorum(h, &c)) return 0;
  for (uint8_t i = 0; i < c.n; i++) {
    if (c.r[i].id == mr_raft_id(r) || !replica_live(h, c.r[i].id)) continue;
    uint64_t match = 0, next = 0;
    int state = 0;
    uint32_t inflight = 0;
    if (mr_raft_progress(r, c.r[i].id, &match, &next, &state, &inflight) != RK_OK) return 0;
    if (match != last) return 0;
  }
  return 1;
}

static void maybe_quiesce_leader(mr_host *h, host_group *g) {
  if (!leader_may_quiesce(h, g)) return;
  mr_conf c;
  mr_raft_conf(g->r, &c);
  uint64_t self = mr_raft_id(g->r);
  for (uint8_t i = 0; i < c.n; i++) {
    if (c.r[i].id == self || !replica_live(h, c.r[i].id)) continue;
    mr_host_hb hb = {.group = g->id,
                     .from = self,
                     .to = c.r[i].id,
                     .term = mr_raft_term(g->r),
                     .commit = mr_raft_commit(g->r),
                     .ctx = 0,
                     .compact = leader_min_match(g->r),
                     .quiesce = 1};
    VEC_PUSH(peer_for_replica(h, hb.to)->hbs, hb);
  }
  host_quiesce(h, g);
}

/* ---- liveness ------------------------------------------------------------------ */

/* The lowest replica id among g's voters whose node is this one or live. */
static uint64_t first_live_voter(const mr_host *h, const mr_raft *r) {
  mr_conf c;
  mr_raft_conf(r, &c);
  uint64_t best = 0;
  for (uint8_t i = 0; i < c.n; i++) {
    if (!(c.r[i].flags & MR_VOTER_IN)) continue;
    uint32_t node = mr_host_replica_node(c.r[i].id);
    const host_peer *p = peer_get(h, node);
    if (node != h->cfg.node_id && (p == NULL || !p->live)) continue;
    if (best == 0 || c.r[i].id < best) best = c.r[i].id;
  }
  return best;
}

/* Leaders left without a live majority step down at once. A quiesced
 * leader is not ticked, so CheckQuorum cannot depose it: a node cut off from
 * the others went on leading the quiesced ranges it led until a proposal
 * woke one, and each such proposal then waited out the client's request
 * timeout (one range at a time) while the majority side had long elected
 * a new leader. An awake leader would be deposed by CheckQuorum too, but
 * only within two election timeouts; liveness has already shown what
 * CheckQuorum would find (no frame at all from those nodes for
 * liveness_ticks). Stepping down is always safe. Not with check_quorum
 * off: that configuration keeps a leader until a higher term deposes it
 * (the simulator's partition scenario relies on it). One scan per
 * liveness change, as in node_up. */
static void step_down_leaders_without_quorum(mr_host *h) {
  if (!h->cfg.raft.check_quorum) return; /* configured off: leaders stay */
  for (size_t s = 0; s < h->nslots; s++) {
    host_group *g = h->slots[s];
    if (g == NULL || mr_raft_role(g->r) != MR_LEADER) continue;
    mr_conf c;
    mr_raft_conf(g->r, &c);
    if (live_quorum(h, &c)) continue;
    host_wake(h, g, 0);
    mr_raft_step_down(g->r);
    host_mark_dirty(h, g);
    h->st.quorum_stepdowns++;
  }
}

static void node_down(mr_host *h, host_peer *p) {
  p->live = 0;
  h->st.nodes_down++;
  uint64_t before = h->st.quorum_stepdowns;
  step_down_leaders_without_quorum(h);
  RK_INFO("host",
          "node %u is down: waking the groups it led; %" PRIu64
          " leaders without a live majority step down",
          p->node, h->st.quorum_stepdowns - before);
  for (size_t i = 0; i < p->quiesced_led.len; i++) {
    host_group *g = index_get(h, p->quiesced_led.v[i]);
    if (g == NULL || g->listed_node != p->node) continue;
    g->listed_node = 0;
    if (!(g->flags & HG_QUIESCED)) continue;
    if (mr_host_replica_node(mr_raft_lead(g->r)) != p->node) continue;
    host_wake(h, g, 0);
    host_mark_dirty(h, g);
    h->st.liveness_wakes++;
    /* Its leader is gone: stop honouring its lease, and let exactly one
     * survivor (the live voter with the lowest replica id, the same choice
     * on every node that sees the same liveness) campaign at once instead of
     * every follower waiting out a randomized election timeout. */
    mr_raft_forget_leader(g->r);
    if (first_live_voter(h, g->r) == mr_raft_id(g->r)) mr_raft_campaign(g->r);
  }
  p->quiesced_led.len = 0;
}

/* A peer declared down is heard from again. Leaders that quiesced without
 * its replicas (leader_may_quiesce leaves down nodes out) wake if one of
 * them lags, so it is caught up; otherwise nothing would ever reach it (it
 * may itself sit quiesced under a leader of an older term). One scan of the
 * groups per liveness change, CockroachDB's "unquiesce lagging followers
 * when their node becomes live". */
static void node_up(mr_host *h, host_peer *p) {
  p->live = 1;
  RK_INFO("host", "node %u is live again", p->node);
  for (size_t s = 0; s < h->nslots; s++) {
    host_group *g = h->slots[s];
    if (g == NULL || !(g->flags & HG_QUIESCED) || mr_raft_role(g->r) != MR_LEADER) continue;
    uint64_t last = mr_raft_last_index(g->r);
    mr_conf c;
    mr_raft_conf(g->r, &c);
    for (uint8_t i = 0; i < c.n; i++) {
      if (mr_host_replica_node(c.r[i].id) != p->node) continue;
      /* Only groups whose replica there lags: waking every group on a
       * flap would storm. One that matched our log but restarted with an
       * older commit (followers persist it lazily) wakes us itself: a
       * voter campaigns, a learner nudges (raft.c, nudge_leader). */
      uint64_t match = 0, next = 0;
      int state = 0;
      uint32_t inflight = 0;
      if (mr_raft_progress(g->r, c.r[i].id, &match, &next, &state, &inflight) == RK_OK &&
          match == last)
        continue;
      host_wake(h, g, 0);
      host_mark_dirty(h, g);
      h->st.liveness_wakes++;
      break;
    }
  }
}

/* ---- lifecycle --------------------------------------------------------------------- */

void mr_host_config_default(mr_host_config *cfg, uint32_t node_id) {
  memset(cfg, 0, sizeof *cfg);
  cfg->node_id = node_id;
  mr_config_default(&cfg->raft, mr_host_replica_id(node_id, 1));
  cfg->quiesce = 1;
  /* CockroachDB waits 6 ticks: quiescing costs a heartbeat round, so a group
   * with a trickle of traffic should not flap in and out every tick. */
  cfg->quiesce_after = 6;
  cfg->liveness_ticks = 0;
}

int mr_host_new(mr_host **out, const mr_host_config *cfg, const mr_host_io *io, rk_rand *rng) {
  if (cfg->node_id == 0 || cfg->node_id >= HOST_MAX_NODE) return RK_EINVAL;
  if (io->storage == NULL || io->persist == NULL || io->send == NULL || io->apply == NULL)
    return RK_EINVAL;
  /* Declaring a peer down steps leaders down (CheckQuorum's rule): never
   * on a shorter silence than CheckQuorum's own. */
  if (cfg->liveness_ticks != 0 && cfg->liveness_ticks < cfg->raft.election_tick) return RK_EINVAL;
  mr_host *h = calloc(1, sizeof *h);
  if (h == NULL) return RK_ENOMEM;
  h->cfg = *cfg;
  if (h->cfg.liveness_ticks == 0) h->cfg.liveness_ticks = cfg->raft.election_tick;
  h->io = *io;
  h->rng = rng;
  h->next_batch = 1;
  if (index_grow(h) != RK_OK) {
    free(h);
    return RK_ENOMEM;
  }
  *out = h;
  return RK_OK;
}

static void batch_free(host_batch *b) {
  for (size_t i = 0; i < b->items.len; i++) mr_ready_free(&b->items.v[i].rd);
  free(b->items.v);
  free(b->commit_only.v);
  free(b->writes.v);
  free(b);
}

void mr_host_free(mr_host *h) {
  if (h == NULL) return;
  for (size_t i = 0; i < h->batches.len; i++) batch_free(h->batches.v[i]);
  free(h->batches.v);
  free(h->snap_batches.v);
  for (size_t i = 0; i < h->nslots; i++) {
    if (h->slots[i] == NULL) continue;
    mr_raft_free(h->slots[i]->r);
    free(h->slots[i]);
  }
  free(h->slots);
  for (size_t i = 0; i < h->peer_list.len; i++) {
    host_peer *p = h->peers[h->peer_list.v[i]];
    free(p->msgs.v);
    free(p->hbs.v);
    free(p->hb_resps.v);
    free(p->quiesced_led.v);
    free(p);
  }
  free(h->peers);
  free(h->peer_list.v);
  free(h->active.v);
  free(h->dirty.v);
  free(h->done.v);
  free(h->applies.v);
  free(h);
}

int mr_host_create_group(mr_host *h, uint64_t group, uint64_t replica_id, const mr_boot *boot) {
  if (mr_host_replica_node(replica_id) != h->cfg.node_id) return RK_EINVAL;
  if (index_get(h, group) != NULL) return RK_EEXIST;
  host_group *g = calloc(1, sizeof *g);
  if (g == NULL) return RK_ENOMEM;
  g->id = group;
  g->active_idx = HG_NOT_ACTIVE;
  g->last_role = MR_FOLLOWER;
  int rc = h->io.storage(h->io.ctx, group, &g->st);
  if (rc != RK_OK) goto free_group;
  mr_config rc_cfg = h->cfg.raft;
  rc_cfg.id = replica_id;
  rc = mr_raft_init(&g->r, &rc_cfg, &g->st, boot, h->rng);
  if (rc != RK_OK) goto free_group;
  rc = index_put(h, g);
  if (rc != RK_OK) goto free_raft;
  /* Make sure every replica's node gets liveness frames. */
  for (uint8_t i = 0; i < boot->conf.n; i++) {
    uint32_t node = mr_host_replica_node(boot->conf.r[i].id);
    if (node != h->cfg.node_id) (void)mr_host_add_node(h, node);
  }
  /* New groups start awake: they must elect or find their leader. */
  active_add(h, g);
  host_mark_dirty(h, g);
  return RK_OK;
free_raft:
  mr_raft_free(g->r);
free_group:
  free(g);
  return rc;
}

int mr_host_destroy_group(mr_host *h, uint64_t group) {
  host_group *g = index_get(h, group);
  if (g == NULL) return RK_EUNKNOWNRANGE;
  if (g->active_idx != HG_NOT_ACTIVE) active_remove(h, g);
  if (g->flags & HG_DIRTY) {
    for (size_t i = 0; i < h->dirty.len; i++) {
      if (h->dirty.v[i] != g) continue;
      h->dirty.v[i] = h->dirty.v[--h->dirty.len];
      break;
    }
  }
  /* A Ready in flight still backs the persist call's pointers: orphan it; the
   * batch frees it on completion. */
  for (size_t b = 0; b < h->batches.len; b++) {
    host_batch *hb = h->batches.v[b];
    for (size_t i = 0; i < hb->items.len; i++)
      if (hb->items.v[i].g == g) hb->items.v[i].g = NULL;
  }
  /* Also a Ready being completed right now (destroyed from inside the apply
   * or read_ready callback): the turn must not advance freed memory. */
  for (size_t i = 0; i < h->done.len; i++)
    if (h->done.v[i].g == g) h->done.v[i].g = NULL;
  index_del(h, group);
  mr_raft_free(g->r);
  free(g);
  return RK_OK;
}

mr_raft *mr_host_group_raft(mr_host *h, uint64_t group) {
  host_group *g = index_get(h, group);
  return g ? g->r : NULL;
}

uint64_t mr_host_compact_hint(mr_host *h, uint64_t group) {
  host_group *g = index_get(h, group);
  if (g == NULL) return 0;
  uint64_t lead = leader_min_match(g->r);
  return lead > g->compact_hint ? lead : g->compact_hint;
}

int mr_host_group_quiesced(mr_host *h, uint64_t group) {
  host_group *g = index_get(h, group);
  return g != NULL && (g->flags & HG_QUIESCED) != 0;
}

size_t mr_host_active_count(const mr_host *h) { return h->active.len; }

uint64_t mr_host_active_group(const mr_host *h, size_t i) {
  RK_ASSERT(i < h->active.len);
  return h->active.v[i]->id;
}

/* ---- inputs ----------------------------------------------------------------------- */

void mr_host_tick(mr_host *h) {
  h->tick++;
  h->st.ticks++;
  /* Backwards: a leader that quiesces swaps the last active group into its
   * slot, which this order has already visited. */
  for (size_t i = h->active.len; i-- > 0;) {
    host_group *g = h->active.v[i];
    mr_raft_tick(g->r);
    if (g->idle_ticks < UINT32_MAX) g->idle_ticks++;
    host_mark_dirty(h, g);
    if (h->cfg.quiesce && mr_raft_role(g->r) == MR_LEADER) maybe_quiesce_leader(h, g);
  }
  for (size_t i = 0; i < h->peer_list.len; i++) {
    host_peer *p = h->peers[h->peer_list.v[i]];
    p->must_send = 1;
    if (p->live && h->tick - p->last_heard > h->cfg.liveness_ticks) node_down(h, p);
  }
}

static void recv_heartbeat(mr_host *h, host_group *g, const mr_host_hb *hb) {
  mr_msg m = {.type = MR_MSG_HEARTBEAT,
              .from = hb->from,
              .to = hb->to,
              .term = hb->term,
              .commit = hb->commit,
              .ctx = hb->ctx};
  if (!hb->quiesce) host_wake(h, g, 0);
  (void)mr_raft_step(g->r, &m);
  host_mark_dirty(h, g);
  /* Only from the leader we now follow in its term (a stale or deposed
   * leader's hint was true when sent, but there is no need to trust it). */
  if (hb->compact > g->compact_hint && mr_raft_term(g->r) == hb->term &&
      mr_raft_lead(g->r) == hb->from)
    g->compact_hint = hb->compact;
  if (!hb->quiesce || (g->flags & HG_QUIESCED)) return;
  /* Quiesce only in step with the leader: same term, same leader, and our
   * log ends exactly at its commit. Otherwise stay awake. In the same term
   * this cannot happen (the leader quiesced only with our whole log matched,
   * see resp_wakes); in another term our response carries it and wakes the
   * leader, and an awake follower that hears nothing more campaigns, which
   * wakes the leader too. */
  const mr_raft *r = g->r;
  if (mr_raft_role(r) == MR_FOLLOWER && mr_raft_term(r) == hb->term &&
      mr_raft_lead(r) == hb->from && mr_raft_last_index(r) == hb->commit &&
      mr_raft_commit(r) == hb->commit)
    host_quiesce(h, g);
}

/* A quiesced follower's core is not ticked, so its leader lease (election
 * ticks since it last heard from the leader) is frozen, and it would refuse
 * (pre-)votes forever. Its real lease is node liveness: a (pre-)vote request
 * while the leader's node has been silent for over half the liveness
 * timeout means the candidate's node already declared it down a tick or so
 * before we would; forget the leader so the vote is judged on the log alone.
 * (Liveness, not safety: granting a vote never breaks Raft's guarantees.) */
static void vote_lease_check(mr_host *h, host_group *g, const mr_msg *m) {
  if (m->type != MR_MSG_PREVOTE && m->type != MR_MSG_VOTE) return;
  uint64_t lead = mr_raft_lead(g->r);
  if (lead == 0 || mr_raft_role(g->r) != MR_FOLLOWER) return;
  const host_peer *p = peer_get(h, mr_host_replica_node(lead));
  if (p == NULL || !p->live || h->tick - p->last_heard > h->cfg.liveness_ticks / 2)
    mr_raft_forget_leader(g->r);
}

/* Whether a heartbeat response wakes its (maybe quiesced) leader. Not a
 * follower's "I quiesced too"; and not a plain same-term answer without a
 * read: the leader quiesced only once every follower matched its whole log,
 * so such an answer (typically to a heartbeat sent just before quiescing,
 * still in flight then) asks for nothing. A higher term or a read round
 * does wake it. */
static int resp_wakes(const host_group *g, const mr_host_hb *hb) {
  if (hb->quiesce) return 0;
  if (!(g->flags & HG_QUIESCED)) return 1;
  return mr_raft_role(g->r) != MR_LEADER || hb->term != mr_raft_term(g->r) || hb->ctx != 0;
}

/* A message in a frame from node N must come from a replica on N and go to a
 * replica on this node: anything else is forged or misrouted, and would
 * otherwise let a peer pose as a leader living elsewhere. */
static int frame_addressed(mr_host *h, const mr_host_frame *f, uint64_t from, uint64_t to) {
  if (mr_host_replica_node(from) == f->from_node && mr_host_replica_node(to) == h->cfg.node_id)
    return 1;
  h->st.misaddressed++;
  return 0;
}

void mr_host_receive(mr_host *h, const mr_host_frame *f) {
  if (f->to_node != h->cfg.node_id) {
    h->st.unknown_group++;
    return;
  }
  host_peer *p = peer_get(h, f->from_node);
  if (p == NULL && mr_host_add_node(h, f->from_node) == RK_OK) p = peer_get(h, f->from_node);
  if (p == NULL) {
    h->st.unknown_group++; /* a node id we cannot track: drop its frame */
    return;
  }
  p->last_heard = h->tick;
  if (!p->live) node_up(h, p);
  for (size_t i = 0; i < f->n_msgs; i++) {
    if (!frame_addressed(h, f, f->msgs[i].msg.from, f->msgs[i].msg.to)) continue;
    host_group *g = index_get(h, f->msgs[i].group);
    if (g == NULL) {
      h->st.unknown_group++;
      continue;
    }
    if (g->flags & HG_QUIESCED) vote_lease_check(h, g, &f->msgs[i].msg);
    host_wake(h, g, 0);
    (void)mr_raft_step(g->r, &f->msgs[i].msg);
    host_mark_dirty(h, g);
  }
  for (size_t i = 0; i < f->n_hbs; i++) {
    if (!frame_addressed(h, f, f->hbs[i].from, f->hbs[i].to)) continue;
    host_group *g = index_get(h, f->hbs[i].group);
    if (g == NULL) {
      h->st.unknown_group++;
      continue;
    }
    recv_heartbeat(h, g, &f->hbs[i]);
  }
  for (size_t i = 0; i < f->n_hb_resps; i++) {
    const mr_host_hb *hb = &f->hb_resps[i];
    if (!frame_addressed(h, f, hb->from, hb->to)) continue;
    host_group *g = index_get(h, hb->group);
    if (g == NULL) {
      h->st.unknown_group++;
      continue;
    }
    if (resp_wakes(g, hb)) host_wake(h, g, 0);
    mr_msg m = {.type = MR_MSG_HEARTBEAT_RESP,
                .from = hb->from,
                .to = hb->to,
                .term = hb->term,
                .ctx = hb->ctx};
    (void)mr_raft_step(g->r, &m);
    host_mark_dirty(h, g);
  }
}

int mr_host_propose(mr_host *h, uint64_t group, const void *data, uint32_t len, uint64_t *index,
                    uint64_t *lead_hint) {
  host_group *g = index_get(h, group);
  if (g == NULL) return RK_EUNKNOWNRANGE;
  host_wake(h, g, 1);
  host_mark_dirty(h, g);
  return mr_raft_propose(g->r, data, len, index, lead_hint);
}

void mr_host_report_snapshot(mr_host *h, uint64_t group, uint64_t to, int failed) {
  host_group *g = index_get(h, group);
  if (g == NULL) return;
  host_wake(h, g, 1);
  host_mark_dirty(h, g);
  mr_raft_report_snapshot(g->r, to, failed);
}

int mr_host_read(mr_host *h, uint64_t group, uint64_t read_ctx) {
  host_group *g = index_get(h, group);
  if (g == NULL) return RK_EUNKNOWNRANGE;
  host_wake(h, g, 1);
  host_mark_dirty(h, g);
  return mr_raft_read_index(g->r, read_ctx);
}

int mr_host_conf_change(mr_host *h, uint64_t group, const mr_conf_change *cc, uint64_t *index) {
  host_group *g = index_get(h, group);
  if (g == NULL) return RK_EUNKNOWNRANGE;
  host_wake(h, g, 1);
  host_mark_dirty(h, g);
  return mr_raft_propose_conf_change(g->r, cc, index);
}

int mr_host_campaign(mr_host *h, uint64_t group) {
  host_group *g = index_get(h, group);
  if (g == NULL) return RK_EUNKNOWNRANGE;
  host_wake(h, g, 1);
  mr_raft_campaign(g->r);
  host_mark_dirty(h, g);
  return RK_OK;
}

void mr_host_persisted(mr_host *h, uint64_t batch, int rc) {
  for (size_t i = 0; i < h->batches.len; i++) {
    host_batch *b = h->batches.v[i];
    if (b->id != batch) continue;
    RK_ASSERTF(!b->done, "batch %llu completed twice", (unsigned long long)batch);
    b->done = 1;
    b->rc = rc;
    return;
  }
  RK_ASSERTF(0, "unknown persist batch %llu", (unsigned long long)batch);
}

/* ---- the turn ------------------------------------------------------------------------ */

/* Queues rd's messages with must_persist == want for sending this turn. */
static void queue_msgs(mr_host *h, host_group *g, const mr_ready *rd, int want) {
  /* The compact hint is the same for every heartbeat of this Ready: work it
   * out once, on the first (it walks the configuration's progress). */
  uint64_t compact = UINT64_MAX;
  for (size_t i = 0; i < rd->n_msgs; i++) {
    const mr_msg *m = &rd->msgs[i];
    if ((int)m->must_persist != want) continue;
    host_peer *p = peer_for_replica(h, m->to);
    /* The core's own heartbeat from the tick that quiesced the group
     * repeats the quiesce heartbeat already queued: drop it. */
    if (m->type == MR_MSG_HEARTBEAT && (g->flags & HG_QUIESCED) && m->ctx == 0) continue;
    if (m->type == MR_MSG_HEARTBEAT || m->type == MR_MSG_HEARTBEAT_RESP) {
      mr_host_hb hb = {.group = g->id,
                       .from = m->from,
                       .to = m->to,
                       .term = m->term,
                       .commit = m->commit,
                       .ctx = m->ctx,
                       .compact = 0,
                       .quiesce = (uint8_t)((g->flags & HG_QUIESCED) != 0)};
      if (m->type == MR_MSG_HEARTBEAT) {
        if (compact == UINT64_MAX) compact = leader_min_match(g->r);
        hb.compact = compact;
        VEC_PUSH(p->hbs, hb);
      } else {
        VEC_PUSH(p->hb_resps, hb);
      }
    } else {
      /* Shallow: the payloads stay owned by rd until advance, which comes
       * after this turn's flush. */
      mr_host_gmsg gm = {.group = g->id, .msg = *m};
      VEC_PUSH(p->msgs, gm);
    }
  }
}

/* Leadership changes logged one by one per turn; the rest are counted in
 * one line, so a node that loses its peers with thousands of ranges does
 * not write thousands of lines (the totals are in the stats). */
#define HOST_LEADERSHIP_LINES 16

typedef struct leadership_log {
  size_t lines;       /* logged one by one this turn */
  size_t more_gained; /* beyond HOST_LEADERSHIP_LINES */
  size_t more_lost;
} leadership_log;

/* One info line per leadership change of g, what a failed run's log must
 * show. Checked on every dirty group, not with its Ready: a step-down that
 * keeps the term (CheckQuorum, no live majority) makes none. */
static void note_leadership(host_group *g, leadership_log *ll) {
  int leads = mr_raft_role(g->r) == MR_LEADER;
  if (leads == ((g->flags & HG_LEADS) != 0)) return;
  g->flags = (uint8_t)(g->flags ^ HG_LEADS);
  if (ll->lines == HOST_LEADERSHIP_LINES) {
    if (leads)
      ll->more_gained++;
    else
      ll->more_lost++;
    return;
  }
  ll->lines++;
  RK_INFO("host", "group %llu: %s at term %llu", (unsigned long long)g->id,
          leads ? "leads" : "no longer leads", (unsigned long long)mr_raft_term(g->r));
}

static void note_leadership_rest(const leadership_log *ll) {
  if (ll->more_gained + ll->more_lost == 0) return;
  RK_INFO("host", "and %zu more group(s) this turn: %zu now led here, %zu no longer",
          ll->more_gained + ll->more_lost, ll->more_gained, ll->more_lost);
}

static host_batch *batch_new(void) {
  host_batch *b = calloc(1, sizeof *b);
  RK_ASSERTF(b != NULL, "out of memory");
  return b;
}

/* The writes point into items[i].rd and commit_only[i]: built once those
 * arrays stopped moving. */
static void batch_build_writes(host_batch *b) {
  for (size_t i = 0; i < b->items.len; i++) {
    mr_ready *rd = &b->items.v[i].rd;
    mr_host_write w = {.group = b->items.v[i].g->id,
                       .snap = rd->snapshot.index ? &rd->snapshot : NULL,
                       .entries = &rd->entries,
                       .hs = rd->hs_changed ? &rd->hs : NULL};
    VEC_PUSH(b->writes, w);
  }
  for (size_t i = 0; i < b->commit_only.len; i++) {
    mr_host_write w = {.group = b->commit_only.v[i].group,
                       .snap = NULL,
                       .entries = &b->no_entries,
                       .hs = &b->commit_only.v[i].hs};
    VEC_PUSH(b->writes, w);
  }
}

/* Takes a Ready from every dirty group; returns the batch to persist (may be
 * empty). A Ready that must be durable first (entries, a snapshot, a new
 * term or vote: rd->must_sync) waits for the batch. One whose only change
 * is the commit index has its hard state written with the batch but
 * completes at once, as one with nothing to write does: nothing depends on
 * a commit index surviving a crash (it is learned again from the leader,
 * and what was applied is recorded by the state machine), so waiting for
 * an fsync would only add one to every write's latency (etcd's MustSync).
 *
 * A Ready that carries a snapshot gets a batch of its own instead (in
 * h->snap_batches): a node completes such a batch only once the install is
 * durable, off its loop, and a big one takes seconds. Every group in a
 * batch waits for all of it (HG_IN_FLIGHT: no new Ready, so no heartbeat
 * from a leader and no ack from a follower), so sharing the batch would
 * silence the node's other groups for the whole install. */
static host_batch *host_collect(mr_host *h) {
  host_batch *b = batch_new();
  leadership_log ll = {0};
  for (size_t i = 0; i < h->dirty.len; i++) {
    host_group *g = h->dirty.v[i];
    g->flags &= (uint8_t)~HG_DIRTY;
    note_leadership(g, &ll);
    if ((g->flags & HG_IN_FLIGHT) || !mr_raft_has_ready(g->r)) continue;
    host_pending pend = {.g = g};
    RK_ASSERTF(mr_raft_ready(g->r, &pend.rd) == RK_OK, "out of memory");
    mr_ready *rd = &pend.rd;
    if ((rd->role == MR_PRECANDIDATE || rd->role == MR_CANDIDATE) &&
        g->last_role != MR_PRECANDIDATE && g->last_role != MR_CANDIDATE)
      h->st.campaigns++;
    g->last_role = rd->role;
    if (rd->entries.len > 0 || rd->committed.len > 0) g->idle_ticks = 0;
    queue_msgs(h, g, rd, 0);
    if (rd->must_sync) {
      g->flags |= HG_IN_FLIGHT;
      h->st.entries_persisted += rd->entries.len;
      if (rd->snapshot.index != 0) {
        host_batch *sb = batch_new();
        VEC_PUSH(sb->items, pend);
        VEC_PUSH(h->snap_batches, sb);
      } else {
        VEC_PUSH(b->items, pend);
      }
      continue;
    }
    if (rd->hs_changed) {
      host_commit_only co = {.group = g->id, .hs = rd->hs};
      VEC_PUSH(b->commit_only, co);
    }
    VEC_PUSH(h->done, pend);
  }
  h->dirty.len = 0;
  note_leadership_rest(&ll);
  batch_build_writes(b);
  for (size_t i = 0; i < h->snap_batches.len; i++) batch_build_writes(h->snap_batches.v[i]);
  return b;
}

/* Hands b to the io as the next persist batch, or frees it if empty. */
static void host_issue(mr_host *h, host_batch *b) {
  if (b->writes.len == 0) {
    batch_free(b);
    return;
  }
  b->id = h->next_batch++;
  VEC_PUSH(h->batches, b); /* before persist: it may complete at once */
  h->st.persist_batches++;
  h->io.persist(h->io.ctx, b->id, b->writes.v, b->writes.len, b->items.len > 0);
}

static void flush_frames(mr_host *h) {
  for (size_t i = 0; i < h->peer_list.len; i++) {
    host_peer *p = h->peers[h->peer_list.v[i]];
    if (!p->must_send && p->msgs.len == 0 && p->hbs.len == 0 && p->hb_resps.len == 0) continue;
    mr_host_frame f = {.from_node = h->cfg.node_id,
                       .to_node = p->node,
                       .msgs = p->msgs.v,
                       .n_msgs = p->msgs.len,
                       .hbs = p->hbs.v,
                       .n_hbs = p->hbs.len,
                       .hb_resps = p->hb_resps.v,
                       .n_hb_resps = p->hb_resps.len};
    h->io.send(h->io.ctx, &f);
    h->st.frames_sent++;
    h->st.msgs_sent += p->msgs.len;
    h->st.hbs_sent += p->hbs.len + p->hb_resps.len;
    p->msgs.len = p->hbs.len = p->hb_resps.len = 0;
    p->must_send = 0;
  }
}

int mr_host_has_work(const mr_host *h) {
  if (h->stopped) return 0;
  if (h->dirty.len > 0 || h->done.len > 0) return 1;
  for (size_t i = 0; i < h->batches.len; i++)
    if (h->batches.v[i]->done) return 1;
  for (size_t i = 0; i < h->peer_list.len; i++) {
    const host_peer *p = h->peers[h->peer_list.v[i]];
    if (p->must_send || p->msgs.len || p->hbs.len || p->hb_resps.len) return 1;
  }
  return 0;
}

int mr_host_turn(mr_host *h) {
  if (h->stopped) return RK_ESTOPPED;
  h->st.turns++;
  host_issue(h, host_collect(h));
  for (size_t i = 0; i < h->snap_batches.len; i++) host_issue(h, h->snap_batches.v[i]);
  h->snap_batches.len = 0;
  /* Completed batches, in id order. One may complete before an older one
   * that is still being written (a node installs a snapshot off its loop):
   * a group with a Ready in a batch is in no other unfinished batch (it is
   * HG_IN_FLIGHT until this one completes), so a batch's durability is all
   * its own groups wait for, whatever an older batch is doing. */
  for (size_t i = 0; i < h->batches.len; i++) {
    const host_batch *db = h->batches.v[i];
    if (db->done && db->rc != RK_OK) {
      /* fsyncgate: a failed persist is never retried as if it were safe. */
      RK_ERROR("host", "persist batch %llu failed: %s; stopping", (unsigned long long)db->id,
               rk_strerror(db->rc));
      h->stopped = 1;
      return RK_ESTOPPED;
    }
  }
  size_t keep = 0;
  for (size_t k = 0; k < h->batches.len; k++) {
    host_batch *db = h->batches.v[k];
    if (!db->done) {
      h->batches.v[keep++] = db;
      continue;
    }
    for (size_t i = 0; i < db->items.len; i++) {
      VEC_PUSH(h->done, db->items.v[i]);
      memset(&db->items.v[i].rd, 0, sizeof db->items.v[i].rd); /* moved */
    }
    batch_free(db);
  }
  h->batches.len = keep;
  /* Messages that waited for durability, then one frame per node. */
  h->applies.len = 0;
  for (size_t i = 0; i < h->done.len; i++) {
    host_pending *pd = &h->done.v[i];
    if (pd->g == NULL) continue;
    queue_msgs(h, pd->g, &pd->rd, 1);
    if (pd->rd.committed.len > 0 || pd->rd.snapshot.index != 0) {
      mr_host_apply a = {.group = pd->g->id,
                         .committed = &pd->rd.committed,
                         .snap = pd->rd.snapshot.index ? &pd->rd.snapshot : NULL};
      VEC_PUSH(h->applies, a);
    }
  }
  flush_frames(h);
  if (h->applies.len > 0) {
    h->io.apply(h->io.ctx, h->applies.v, h->applies.len);
    h->st.applies++;
  }
  for (size_t i = 0; i < h->done.len; i++) {
    host_pending *pd = &h->done.v[i];
    host_group *g = pd->g;
    if (g == NULL) {
      mr_ready_free(&pd->rd);
      continue;
    }
    for (size_t k = 0; k < pd->rd.n_reads; k++) {
      if (h->io.read_ready)
        h->io.read_ready(h->io.ctx, g->id, pd->rd.reads[k].ctx, pd->rd.reads[k].index);
    }
    mr_raft_advance(g->r, &pd->rd);
    g->flags &= (uint8_t)~HG_IN_FLIGHT;
    host_mark_dirty(h, g);
  }
  h->done.len = 0;
  return RK_OK;
}

/* ---- observing ------------------------------------------------------------------------ */

void mr_host_stats_get(const mr_host *h, mr_host_stats *out) {
  *out = h->st;
  out->groups = h->ngroups;
  out->active = h->active.len;
  out->quiesced = h->ngroups - h->active.len;
}

size_t mr_host_bytes_per_idle_group(const mr_host *h, uint64_t group) {
  const host_group *g = index_get(h, group);
  if (g == NULL) return 0;
  /* The index keeps the load factor at or under 1/2: two slots per group. */
  return sizeof *g + 2 * sizeof(host_group *) + mr_raft_bytes_at_rest(g->r);
}

int mr_host_node_live(const mr_host *h, uint32_t node) {
  const host_peer *p = peer_get(h, node);
  return p != NULL && p->live;
}

void mr_host_check_invariants(const mr_host *h) {
  size_t seen = 0, quiesced = 0;
  for (size_t i = 0; i < h->nslots; i++) {
    const host_group *g = h->slots[i];
    if (g == NULL) continue;
    seen++;
    RK_ASSERT(index_get(h, g->id) == g);
    if (g->flags & HG_QUIESCED) {
      quiesced++;
      RK_ASSERT(g->active_idx == HG_NOT_ACTIVE);
      /* nothing would ever confirm or deliver them */
      RK_ASSERT(mr_raft_role(g->r) != MR_LEADER || mr_raft_pending_reads(g->r) == 0);
    } else {
      RK_ASSERT(g->active_idx < h->active.len && h->active.v[g->active_idx] == g);
    }
    mr_raft_check_invariants(g->r);
  }
  RK_ASSERT(seen == h->ngroups);
  RK_ASSERT(h->ngroups - quiesced == h->active.len);
  for (size_t i = 0; i < h->dirty.len; i++) RK_ASSERT(h->dirty.v[i]->flags & HG_DIRTY);
  for (size_t i = 1; i < h->batches.len; i++)
    RK_ASSERT(h->batches.v[i - 1]->id < h->batches.v[i]->id);
}
