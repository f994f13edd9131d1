/* harness.h — a small in-memory cluster of Raft cores for unit tests.
 *
 * Nodes are ids 1..n. Each has a durable mr_memlog (log, snapshot, hard
 * state) and a durable "state machine" (its applied entries and the
 * configuration at its applied index). Messages go through one FIFO network;
 * cut links drop them. Every Ready is processed the way the host will:
 * early messages, install snapshot, append, hard state, late messages,
 * apply, advance. crash() frees the core and keeps only the durable part;
 * restart() boots a core from it. After every step the harness checks the
 * core's invariants and State Machine Safety across all nodes (no two nodes
 * apply different entries at one index).
 *
 * Script vocabulary: h_elect, h_partition, h_isolate, h_heal, h_deliver_all,
 * h_tick_all, h_crash, h_restart, h_propose.
 */
#ifndef MR_TEST_HARNESS_H
#define MR_TEST_HARNESS_H

#include "multiraft/memlog.h"
#include "multiraft/raft.h"

#define H_MAX 8

typedef struct harness harness;
/* Returns 0 to drop the message, 1 to deliver it (it may be modified). */
typedef int (*h_filter_fn)(harness *h, mr_msg *m, void *arg);

typedef struct h_applied {
  uint64_t index, term;
  uint32_t len;
  uint8_t data[16]; /* first bytes only */
} h_applied;

typedef struct h_node {
  int exists;
  uint64_t id;
  mr_raft *r; /* NULL while crashed */
  mr_config cfg;
  mr_memlog log;
  /* durable state machine */
  uint64_t applied;
  mr_conf conf;
  h_applied *apps;
  size_t n_apps, cap_apps;
  mr_read_state reads[64];
  size_t n_reads;
} h_node;

struct harness {
  int n; /* highest id in use */
  h_node nodes[H_MAX + 1];
  rk_rand rng;
  mr_msg *q;
  size_t q_head, q_len, q_cap;
  uint8_t cut[H_MAX + 1][H_MAX + 1]; /* cut[a][b]: a -> b dropped */
  h_filter_fn filter;
  void *filter_arg;
  uint64_t sent[MR_MSG_TYPE_MAX_]; /* messages delivered, by type */
  /* the committed log as first applied by any node, for State Machine Safety */
  uint64_t *sm_term;
  size_t sm_cap;
  int sm_tolerate; /* count violations instead of failing (bug tests) */
  int sm_violations;
};

typedef struct h_opts {
  int pre_vote;
  int check_quorum;
  uint32_t max_inflight_msgs;
  uint64_t max_inflight_bytes;
  uint64_t max_msg_bytes;
  uint64_t max_uncommitted_bytes;
  uint64_t max_unstable_bytes; /* 0 = no limit (the default) */
  uint64_t max_entry_bytes;    /* 0 = mr_config_default's */
  uint32_t bugs;
  uint64_t seed;
} h_opts;

h_opts h_default_opts(void);
/* n voters 1..n, booted from a snapshot at (index 1, term 1). */
harness *h_new(int n, const h_opts *o);
void h_free(harness *h);
/* A brand-new empty replica `id` (no log, empty configuration). */
void h_add_node(harness *h, uint64_t id, const h_opts *o);
mr_raft *h_raft(harness *h, uint64_t id);

/* Runs Ready/Advance on every live node, then delivers messages one at a
 * time until the network is empty and nothing is ready. */
void h_deliver_all(harness *h);
/* Delivers at most `max` messages (after processing Readies). */
size_t h_deliver_some(harness *h, size_t max);
void h_process(harness *h, uint64_t id);
void h_tick(harness *h, uint64_t id, int n);
void h_tick_all(harness *h, int n);
/* Campaigns at id and delivers everything; returns 1 if id became leader. */
int h_elect(harness *h, uint64_t id);
/* Cut every link between the listed ids and the rest (ids end at 0). */
void h_partition(harness *h, const uint64_t *group);
void h_isolate(harness *h, uint64_t id);
void h_cut(harness *h, uint64_t a, uint64_t b); /* both directions */
void h_heal(harness *h);
void h_crash(harness *h, uint64_t id);
void h_restart(harness *h, uint64_t id);
int h_propose(harness *h, uint64_t id, const char *s);
void h_set_filter(harness *h, h_filter_fn f, void *arg);
/* From now on every message of this type is dropped (h_set_filter). */
void h_drop_type(harness *h, mr_msg_type type);
/* The live leader with the highest term, 0 if none. */
uint64_t h_leader(harness *h);
/* Drops every queued message. */
void h_drop_all(harness *h);
/* Term of entry i at node id (live or from its durable log), 0 if absent. */
uint64_t h_term_at(harness *h, uint64_t id, uint64_t i);
size_t h_queue_len(const harness *h);
const mr_msg *h_queue_at(const harness *h, size_t k);

#endif
