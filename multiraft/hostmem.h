/* hostmem.h — an in-memory cluster of hosts (prefix mr_hm_), for host tests
 * and benchmarks: N hosts in one process, a memlog per replica as the
 * "disk" (persist completes synchronously unless deferred), and one FIFO of
 * deep-copied frames as the network. Deterministic: no clock, one seeded
 * generator shared by every core.
 *
 * It checks our own invariants as it runs (RK_ASSERT): one frame per
 * destination node per turn, no per-group heartbeat message on the wire,
 * entries applied in index order, and State Machine Safety (no two replicas
 * apply different entries at one index of a group).
 *
 * Placement: group g (1..groups) has min(3, n) replicas, on nodes
 * 1 + (g + k) % n for k = 0.., with replica id mr_host_replica_id(node, 1).
 */
#ifndef MR_HOSTMEM_H
#define MR_HOSTMEM_H

#include "multiraft/host.h"
#include "multiraft/memlog.h"

#define MR_HM_MAX_NODES 8

typedef struct mr_hm_cluster mr_hm_cluster;

typedef struct mr_hm_node {
  uint32_t id;
  mr_host *h;
  mr_hm_cluster *c;
  mr_memlog *logs;   /* [groups + 1], by group id */
  uint64_t *applied; /* [groups + 1] */
  int crashed;       /* no ticks, no turns, frames to and from it dropped */
  int isolated;      /* ticks and turns, but frames to and from it dropped
                        (mr_hm_applied_everywhere then waits for it too) */
  int deaf;          /* frames to it dropped, its own delivered (one-way cut) */
  int persist_fail;  /* persist completes with RK_EIO */
  int defer_persist; /* persist batches wait for mr_hm_complete_deferred */
  uint64_t turn;
  uint64_t sent_turn[MR_HM_MAX_NODES + 1];
  uint64_t read_ready;   /* ReadIndex results delivered */
  uint64_t lazy_batches; /* persist calls with sync == 0 (commit index only) */
  /* deferred persist batches */
  uint64_t deferred[16];
  const mr_host_write *deferred_w[16];
  size_t deferred_n[16], n_deferred;
} mr_hm_node;

struct mr_hm_cluster {
  int n;
  uint64_t groups;
  mr_hm_node node[MR_HM_MAX_NODES + 1];
  rk_rand rng;
  struct mr_hm_frame *head, *tail;
  uint64_t frames_delivered;
  /* mr_host_check_invariants after every turn (O(groups)): on in tests, off
   * in benchmarks that measure the host's own cost. */
  int check_invariants;
  /* per group: hash of the entry applied at each index (0 = none yet) */
  uint64_t **applied_hash;
  uint64_t *applied_cap;
};

/* Tunables applied to every host's config before creation. */
typedef struct mr_hm_opts {
  int quiesce;
  uint32_t election_tick;  /* 0 = default */
  uint32_t liveness_ticks; /* 0 = the host's default (the election tick) */
  uint64_t seed;
} mr_hm_opts;

int mr_hm_new(mr_hm_cluster **out, int n, uint64_t groups, const mr_hm_opts *o);
void mr_hm_free(mr_hm_cluster *c);

/* One turn of one node (counted for the one-frame-per-turn check). */
int mr_hm_turn(mr_hm_node *nd);
/* Turns and deliveries until nothing moves. RK_OK or RK_ETIMEOUT after
 * max_rounds without settling. */
int mr_hm_settle(mr_hm_cluster *c, int max_rounds);
/* Ticks every live host once, then settles; `ticks` times. */
int mr_hm_tick_all(mr_hm_cluster *c, int ticks);
/* Node of the live replica leading g with the highest term; 0 if none. */
uint32_t mr_hm_leader_node(const mr_hm_cluster *c, uint64_t g);
uint32_t mr_hm_replica_node(const mr_hm_cluster *c, uint64_t g, int k);
int mr_hm_replicas(const mr_hm_cluster *c);
/* Campaigns replica (g % replicas) of every group, settles and ticks until
 * every group has a leader. RK_OK or RK_ETIMEOUT. */
int mr_hm_elect_all(mr_hm_cluster *c);
/* Proposes at g's leader. */
int mr_hm_propose(mr_hm_cluster *c, uint64_t g, const char *val);
/* 1 if every live replica of g applied index. */
int mr_hm_applied_everywhere(const mr_hm_cluster *c, uint64_t g, uint64_t index);
void mr_hm_complete_deferred(mr_hm_node *nd);
/* Completes only the k-th deferred batch (0 = the oldest still waiting). */
void mr_hm_complete_deferred_at(mr_hm_node *nd, size_t k);
mr_host_stats mr_hm_stats(const mr_hm_cluster *c, int node);

#endif
