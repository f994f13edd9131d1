/* host.h — many Raft groups on one node (prefix mr_host_).
 *
 * The host owns every replica on a node and turns thousands of per-group
 * Raft cores into a few node-level actions per event-loop turn:
 *
 *   - ONE persist call (one WAL batch, one fsync) for every group's Ready
 *     (a Ready that installs a snapshot gets a persist call of its own, so
 *     the install holds back no other group);
 *   - ONE frame per destination node, carrying every group's messages and
 *     the coalesced heartbeats (group, from, to, term, commit, ctx) in place
 *     of per-group heartbeat messages;
 *   - ONE apply call with every group's committed entries.
 *
 * Idle groups cost nothing: only groups in the ACTIVE set are ticked. A
 * leader whose group is idle and fully replicated QUIESCES it: it sends one
 * last heartbeat with the quiesce flag and stops ticking; each follower that
 * is caught up quiesces too. A quiesced group wakes on a proposal, a read, a
 * conf change, or any message for it — except a heartbeat response that
 * asks for nothing (the follower's "quiesced too", or a same-term answer
 * without a read round arriving after the leader quiesced: see resp_wakes
 * in host.c). Replicas on nodes declared down are left out of the quiesce
 * condition; when such a node is heard from again, leaders whose replicas
 * there lag wake and catch them up. One that matched but restarted with an
 * older commit (followers persist it lazily) wakes its leader itself: an
 * awake follower that hears nothing campaigns; a learner never campaigns,
 * so it nudges the leader instead (raft.c, nudge_leader). A quiesced
 * follower's leader lease is
 * node liveness (its core is not ticked): it grants (pre-)votes once the
 * leader's node has been silent for over half the liveness timeout.
 *
 * Node-level liveness replaces per-group timers while quiesced: every host
 * tick sends one frame (empty if there is nothing else) to every peer node,
 * and a node not heard from for liveness_ticks is declared down, which wakes
 * ONLY the quiesced groups whose leader is on that node (CockroachDB learned
 * that waking every range on a node failure "can bring a cluster to its
 * knees"), and steps down the leaders on this node left without a live
 * majority (a quiesced one is not ticked, so CheckQuorum could not).
 *
 * Replica ids encode their node: node = replica_id >> 32, so routing needs
 * no per-group table (mr_host_replica_id builds one; the low 32 bits tell
 * incarnations apart when a node hosts a group again after removal).
 *
 * Determinism: the host holds no clock and no randomness of its own (the
 * rk_rand is handed to every core); groups are visited in active-set and
 * dirty-set order, both functions of the input order only.
 *
 * Loop contract (one thread):
 *   on timer:          mr_host_tick(h)
 *   on a frame:        mr_host_receive(h, &frame)
 *   on client work:    mr_host_propose / mr_host_read / mr_host_conf_change
 *   on WAL completion: mr_host_persisted(h, batch, rc)
 *   then, whenever mr_host_has_work(h):  mr_host_turn(h)
 */
#ifndef MR_HOST_H
#define MR_HOST_H

#include <stddef.h>
#include <stdint.h>

#include "multiraft/raft.h"

static inline uint64_t mr_host_replica_id(uint32_t node, uint32_t incarnation) {
  return ((uint64_t)node << 32) | incarnation;
}
static inline uint32_t mr_host_replica_node(uint64_t replica_id) {
  return (uint32_t)(replica_id >> 32);
}

/* ---- what travels between hosts ------------------------------------------ */

/* One coalesced heartbeat or heartbeat response. quiesce on a heartbeat: the
 * leader is going quiet; on a response: the follower quiesced too (a quiesced
 * leader is not woken by it). */
typedef struct mr_host_hb {
  uint64_t group;
  uint64_t from, to; /* replica ids */
  uint64_t term;
  uint64_t commit; /* heartbeats only */
  uint64_t ctx;    /* ReadIndex round, 0 if none */
  /* Heartbeats only: every replica of the group holds the log up to this
   * index (the leader's least match), so no replica will ever need entries
   * at or below it from anyone: the log may be compacted up to it (see
   * mr_host_compact_hint). 0 = unknown. */
  uint64_t compact;
  uint8_t quiesce;
} mr_host_hb;

typedef struct mr_host_gmsg {
  uint64_t group;
  mr_msg msg;
} mr_host_gmsg;

/* Everything one node sends another in one turn. Borrowed by send and
 * receive for the duration of the call: encode or copy what you keep. */
typedef struct mr_host_frame {
  uint32_t from_node, to_node;
  const mr_host_gmsg *msgs;
  size_t n_msgs;
  const mr_host_hb *hbs;
  size_t n_hbs;
  const mr_host_hb *hb_resps;
  size_t n_hb_resps;
} mr_host_frame;

/* ---- the I/O seam ----------------------------------------------------------- */

/* One group's share of a persist batch. Pointers are valid until the batch
 * completes (mr_host_persisted). Apply in this order: snapshot (replaces the
 * log), entries (an append at index i replaces stored entries >= i), hs. */
typedef struct mr_host_write {
  uint64_t group;
  const mr_snapshot *snap;     /* NULL if none */
  const rk_entry_vec *entries; /* may be empty */
  const rk_hard_state *hs;     /* NULL if unchanged */
} mr_host_write;

typedef struct mr_host_apply {
  uint64_t group;
  const rk_entry_vec *committed; /* in index order; includes conf changes and no-ops */
  const mr_snapshot *snap;       /* non-NULL: restore the state machine first */
} mr_host_apply;

typedef struct mr_host_io {
  void *ctx;
  /* The log storage the core of `group` reads (the WAL's per-group view, a
   * simulated disk, a memlog). Called once at group creation. */
  int (*storage)(void *ctx, uint64_t group, mr_storage *out);
  /* Make every write durable, as one batch; call mr_host_persisted(h, batch,
   * rc) when done (from inside this call or later). rc != RK_OK is fatal for
   * the host: nothing of the batch is assumed durable. sync == 0: the batch
   * holds only commit-index updates (hard states whose term and vote did
   * not change) and nothing waits for them: the io may write them lazily,
   * with the next synced batch (or lose them in a crash: a commit index is
   * learned again), and report the batch at once. Their order relative to
   * later batches of the same group must be kept. Batches may complete in
   * any order (a node installing a snapshot finishes that batch late): a
   * group has a Ready in at most one unfinished batch, and a write with a
   * snapshot is alone in its batch. */
  void (*persist)(void *ctx, uint64_t batch, const mr_host_write *w, size_t n, int sync);
  /* One frame to one node. */
  void (*send)(void *ctx, const mr_host_frame *f);
  /* Committed entries of every group whose persist completed, in one call. */
  void (*apply)(void *ctx, const mr_host_apply *a, size_t n);
  /* ReadIndex results: the state machine of `group` has applied >= index,
   * so a read registered under ctx may be served. Optional (NULL). */
  void (*read_ready)(void *ctx, uint64_t group, uint64_t read_ctx, uint64_t index);
} mr_host_io;

typedef struct mr_host_config {
  uint32_t node_id;        /* this node, never 0 */
  mr_config raft;          /* template for every group (id is set per group) */
  uint8_t quiesce;         /* enable quiescence */
  uint32_t quiesce_after;  /* idle ticks before a leader quiesces */
  uint32_t liveness_ticks; /* a peer silent this long is down; 0 = raft.election_tick,
                              else at least that (RK_EINVAL) */
} mr_host_config;

void mr_host_config_default(mr_host_config *cfg, uint32_t node_id);

typedef struct mr_host mr_host;

int mr_host_new(mr_host **out, const mr_host_config *cfg, const mr_host_io *io, rk_rand *rng);
void mr_host_free(mr_host *h);

/* Peer nodes receive a frame every tick (node liveness). */
int mr_host_add_node(mr_host *h, uint32_t node);

/* ---- groups ------------------------------------------------------------------ */
/* Creates the replica `replica_id` (on this node) of `group` from its
 * persisted state. RK_EEXIST, RK_EINVAL (replica not on this node), RK_ENOMEM. */
int mr_host_create_group(mr_host *h, uint64_t group, uint64_t replica_id, const mr_boot *boot);
/* Destroys a group and drops its outstanding Ready (not applied). */
int mr_host_destroy_group(mr_host *h, uint64_t group);
/* NULL if unknown. O(1). */
mr_raft *mr_host_group_raft(mr_host *h, uint64_t group);
int mr_host_group_quiesced(mr_host *h, uint64_t group);
/* The io's word on an InstallSnapshot it carries itself (streamed, not in a
 * frame): failed = 1 when it was abandoned, so the leader probes again now
 * rather than after an election timeout; 0 when it was all sent. Ignored
 * unless the group leads and waits on that replica's snapshot. */
void mr_host_report_snapshot(mr_host *h, uint64_t group, uint64_t to, int failed);
/* The highest index every replica of the group is known to hold: on the
 * leader its least match (itself included), on a follower the largest such
 * index a leader has told it. Entries up to it are never needed again by
 * any replica, so a node may drop them from its log once they are applied
 * and durable in its state machine — no snapshot is ever needed for them.
 * Monotonic (an index below every replica's match is committed, and
 * committed entries are never truncated). 0 if unknown or no such group. */
uint64_t mr_host_compact_hint(mr_host *h, uint64_t group);
/* The active (ticked) set: ids of groups 0 <= i < mr_host_active_count(h).
 * The order changes as groups quiesce and wake. */
size_t mr_host_active_count(const mr_host *h);
uint64_t mr_host_active_group(const mr_host *h, size_t i);

/* ---- inputs -------------------------------------------------------------------- */
void mr_host_tick(mr_host *h);
/* Steps every message and heartbeat of the frame into its group. */
void mr_host_receive(mr_host *h, const mr_host_frame *f);
/* RK_EUNKNOWNRANGE, or what mr_raft_propose returns. Wakes the group. */
int mr_host_propose(mr_host *h, uint64_t group, const void *data, uint32_t len, uint64_t *index,
                    uint64_t *lead_hint);
/* Starts a ReadIndex barrier; the result arrives through io->read_ready. */
int mr_host_read(mr_host *h, uint64_t group, uint64_t read_ctx);
int mr_host_conf_change(mr_host *h, uint64_t group, const mr_conf_change *cc, uint64_t *index);
/* Wakes a group and starts an election at once (tests, leadership moves). */
int mr_host_campaign(mr_host *h, uint64_t group);
/* The io finished persist batch `batch`. */
void mr_host_persisted(mr_host *h, uint64_t batch, int rc);

/* ---- the turn ------------------------------------------------------------------ */
int mr_host_has_work(const mr_host *h);
/* Collects Readys, issues one persist (plus one per Ready that installs a
 * snapshot), processes completed batches (sends
 * one frame per node, one apply, advances). RK_OK, or RK_ESTOPPED after a
 * persist failure (the node must stop: nothing more is sent or applied). */
int mr_host_turn(mr_host *h);

/* ---- observing ------------------------------------------------------------------- */
typedef struct mr_host_stats {
  uint64_t groups, active, quiesced;
  uint64_t ticks;
  uint64_t turns;
  uint64_t frames_sent;     /* node-to-node frames, empty ones included */
  uint64_t msgs_sent;       /* non-heartbeat group messages */
  uint64_t hbs_sent;        /* coalesced heartbeat + response entries */
  uint64_t persist_batches; /* persist calls (= WAL syncs) */
  uint64_t entries_persisted;
  uint64_t applies;          /* apply calls */
  uint64_t campaigns;        /* groups that became (pre)candidates */
  uint64_t liveness_wakes;   /* groups woken by a liveness change: their leader's node went
                               down, or a lagging follower's node came back */
  uint64_t quorum_stepdowns; /* leaders stepped down: no live majority left */
  uint64_t nodes_down;       /* peer down transitions */
  uint64_t unknown_group;    /* messages for groups not on this node (dropped) */
  uint64_t misaddressed;     /* from/to not on the frame's nodes: forged or misrouted */
} mr_host_stats;

void mr_host_stats_get(const mr_host *h, mr_host_stats *out);
/* Bytes one idle (quiesced, 3-replica) group costs this host: the host's
 * record, its index slot and the core at rest. */
size_t mr_host_bytes_per_idle_group(const mr_host *h, uint64_t group);
/* True if node `node` is considered live (heard from within liveness_ticks). */
int mr_host_node_live(const mr_host *h, uint32_t node);
/* RK_ASSERTs the host's own invariants (sets agree with flags, index agrees
 * with groups) and every group's core. */
void mr_host_check_invariants(const mr_host *h);

#endif
