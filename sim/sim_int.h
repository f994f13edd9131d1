/* sim_int.h — the simulator's internals, shared by sim_world.c (event loop,
 * faults, phases), sim_node.c (the simulated host), sim_client.c (workload
 * and history), sim_check.c (invariants) and sim_scenario.c.
 *
 * Object map:
 *   sim_world
 *     heap            every pending event, ordered (time, source, seq)
 *     net             zone latencies, loss/dup/reorder, partitions
 *     nodes[N]        sim_node: clock, disk (survives crashes), and while up,
 *                     one sim_replica per hosted group (lost on crash)
 *     groups[G]       placement (which nodes host the group) and the
 *                     checker's per-group records
 *     clients[C]      one outstanding operation each
 *     trace, hist     what happened, what the clients saw
 */
#ifndef SIM_INT_H
#define SIM_INT_H

#include "sim/history.h"
#include "sim/lincheck.h"
#include "sim/sim.h"
#include "sim/sim_disk.h"
#include "sim/sim_heap.h"
#include "sim/sim_kv.h"
#include "sim/sim_net.h"
#include "sim/sim_trace.h"

#include "common/rk_rand.h"
#include "multiraft/host.h"
#include "multiraft/raft.h"

#include <stdint.h>

/* Event kinds. The numbering is part of the trace (it is printed by name). */
typedef enum sim_ev_kind {
  SIM_EV_TICK = 1,       /* node: tick every group; a = incarnation */
  SIM_EV_MSG,            /* node: deliver ptr (sim_frame) */
  SIM_EV_SYNC,           /* node: fsync done; a = incarnation, b = barrier */
  SIM_EV_CRASH,          /* node */
  SIM_EV_RESTART,        /* node */
  SIM_EV_FAULT,          /* world: inject the next random fault */
  SIM_EV_HEAL,           /* world: heal partitions */
  SIM_EV_STALL_END,      /* node: disk stall over */
  SIM_EV_CLIENT_NEXT,    /* client: start the next operation */
  SIM_EV_REQ,            /* node: client request arrives; ptr = sim_req */
  SIM_EV_REPLY,          /* client: reply arrives; ptr = sim_reply */
  SIM_EV_CLIENT_TIMEOUT, /* client: a = op number */
  SIM_EV_CLIENT_RETRY,   /* client: retry op a after a refusal */
  SIM_EV_ISOLATE,        /* world: cut every link of node (a new leader) */
  SIM_EV_INSTALL,        /* node: a deferred snapshot install lands; a = incarnation, b = batch */
} sim_ev_kind;

const char *sim_ev_name(uint32_t kind);

/* ---- client requests and replies ------------------------------------------ */

typedef struct sim_req {
  uint32_t client;
  uint64_t opno;
  uint8_t op; /* SIM_OP_* */
  uint64_t group;
  char key[32];
  char value[32];
  char expected[32];
  int has_expected;
} sim_req;

enum { SIM_R_OK = 1, SIM_R_REFUSED, SIM_R_DOWN };

typedef struct sim_reply {
  uint32_t client;
  uint64_t opno;
  int status;     /* SIM_R_* */
  int found;      /* get: value present */
  int swapped;    /* cas */
  uint32_t hint;  /* refusal: leader node + 1, 0 = unknown */
  char value[32]; /* get */
} sim_reply;

typedef struct sim_pending {
  uint32_t client;
  uint64_t opno;
  uint8_t op;
  uint64_t read_index; /* gets: 0 until the ReadIndex answer arrives */
  char key[32];
} sim_pending;

/* ---- nodes and replicas ---------------------------------------------------- */

/* One host frame on the simulated wire (a deep copy of mr_host_frame: the
 * host lends its frame only for the duration of the send call). Node fields
 * are simulator node indexes; the host's node ids are index + 1. */
typedef struct sim_frame {
  uint32_t from_node, to_node;
  mr_host_gmsg *msgs;
  size_t n_msgs;
  mr_host_hb *hbs;
  size_t n_hbs;
  mr_host_hb *hb_resps;
  size_t n_hb_resps;
} sim_frame;

typedef struct sim_store_ctx {
  sim_disk *disk;
  uint32_t slot;
} sim_store_ctx;

/* A configuration's voters, as the checker counts quorums (both sets when
 * joint; nout = 0 otherwise). */
typedef struct sim_voters {
  uint64_t in[MR_MAX_REPLICAS], out[MR_MAX_REPLICAS];
  uint32_t nin, nout;
} sim_voters;

typedef struct sim_replica {
  uint64_t group;
  uint32_t slot; /* disk slot of the group's log */
  mr_raft *raft;
  sim_store_ctx store; /* the core reads the log through this */
  sim_kv kv;
  uint64_t applied;
  int dirty; /* touched since the last check (then in the node's dirty list) */
  sim_pending *pend;
  size_t npend, cappend;
  /* what the trace printed last, to print state changes only */
  uint64_t shown_term, shown_commit, shown_applied, shown_last;
  int shown_role;
  /* checker: the last commit seen, the term seen, the voters seen */
  uint64_t ck_commit, ck_term;
  int ck_leader;
  sim_voters ck_voters;
} sim_replica;

/* A u64 vector (ids, counters). */
typedef struct sim_u64v {
  uint64_t *v;
  size_t len, cap;
} sim_u64v;
void sim_u64v_push(sim_u64v *v, uint64_t x);

typedef struct sim_world sim_world;
typedef struct sim_host_ctx {
  sim_world *w;
  uint32_t node;
} sim_host_ctx;
/* What the checker holds one node to, per group; survives crashes (it is
 * what the node promised, not what it remembers). */
typedef struct sim_ck_ng {
  uint64_t term_floor; /* highest term the node put on the wire */
  /* Its latest granted votes: term, candidate node + 1. Several, because
   * vote answers of different Readies may leave in one flush in any order. */
  uint64_t vote_term[4], vote_for[4];
  /* A committed entry of the leader's term that the node's durable log held
   * when that leader counted it for the commit: no log of a node that has
   * adopted that term can lose it again (0 = none yet). */
  uint64_t held_index, held_term;
} sim_ck_ng;

typedef struct sim_install {
  uint64_t batch;
  mr_host_write *w; /* the snapshot groups' writes (the host's pointers) */
  size_t n;
} sim_install;

typedef struct sim_node {
  uint32_t id;
  int up;
  uint64_t incarnation;
  int64_t clock_offset_us; /* local = global * (1 + drift) + offset */
  int64_t drift_ppm;
  sim_disk disk;
  uint64_t stall_until;
  uint64_t slow_sync_us; /* scenarios: every fsync takes this long (0 = random) */
  int eio_next;          /* fault eio: the next fsync to complete fails */
  int io_failed;         /* an fsync failed: the node stops after this event */
  mr_host *host;         /* while up: the real multi-Raft host (multiraft/host.h) */
  sim_host_ctx hctx;     /* the host's io context */
  sim_replica *reps;     /* per hosted group, while up */
  size_t nreps;
  int32_t *rep_index; /* [group id] -> index in reps, -1 = not hosted */
  uint64_t nrep_index;
  sim_u64v dirty; /* indexes into reps[] touched since the last check */
  /* Group commit: at most one fsync in flight; the host's persist batches
   * that arrive meanwhile gather in `open` and share the next fsync. */
  int syncing;
  uint64_t barrier;
  sim_u64v syncing_ids, open_ids; /* host persist batch ids */
  /* Persist batches whose snapshot writes land late (fault class install,
   * like a node's installer thread): the writes wait here, the batch joins
   * the open list when they land, while later batches go ahead. */
  struct sim_install *installs;
  size_t ninstalls, capinstalls;
  /* Groups this node hosts and the configuration each starts from when it
   * has no snapshot (initial members: the initial config; joiners: empty). */
  uint64_t *hosted;
  mr_conf *bootconf;
  size_t nhosted;
  rk_rand rng;   /* this incarnation's raft randomness */
  sim_ck_ng *ck; /* [group id] what the checker holds this node to */
  size_t nck;
} sim_node;

/* ---- groups and the checker's per-group records ----------------------------- */

typedef struct sim_lm_slot {
  uint64_t index, term; /* key; term 0 = empty */
  uint64_t hash, prev_term;
} sim_lm_slot;

typedef struct sim_group {
  uint64_t id;
  uint32_t nrep;
  uint32_t node[8];        /* hosting nodes (initial placement) */
  sim_u64v leader_of_term; /* [term] = leader node + 1 */
  sim_lm_slot *lm;         /* Log Matching: (index, term) -> (hash, prev term) */
  size_t lm_cap, lm_len;
  sim_u64v committed_term; /* [index] term of the committed entry (0 unknown) */
  sim_u64v committed_at;   /* [index] term in which it was first seen committed */
  sim_u64v applied_hash;   /* [index] hash of the entry applied there */
  sim_u64v state_hash;     /* [index] sim_kv_state() after applying it */
  uint64_t max_acked;      /* highest index acknowledged to a client */
} sim_group;

/* ---- clients --------------------------------------------------------------- */

typedef struct sim_client {
  uint32_t id;
  int busy;
  uint64_t opno;    /* current / last op number */
  uint64_t nwrites; /* for unique values "c<id>-<n>" */
  sim_req req;
  uint64_t call;
  int maybe;       /* some attempt may have been proposed */
  uint32_t target; /* node the current attempt went to */
  uint32_t attempts;
  uint32_t *hint; /* per group: believed leader node */
  int probe_done; /* liveness: one write acknowledged after faults stopped */
  uint32_t pin;   /* scenarios: node + 1 this client always talks to, 0 = follow hints */
} sim_client;

/* ---- the world ---------------------------------------------------------------- */

enum { SIM_PHASE_SAFETY = 0, SIM_PHASE_LIVENESS, SIM_PHASE_DONE };

struct sim_world {
  sim_opts o;
  rk_rand rng; /* master; everything else is forked from it */
  rk_rand net_rng, disk_rng, fault_rng, work_rng;
  sim_heap heap;
  uint64_t now;
  uint64_t events;
  int phase;
  uint64_t liveness_start;
  sim_net net;
  uint32_t nnodes;
  sim_node nodes[SIM_MAX_NODES];
  uint32_t ngroups;
  sim_group *groups;
  uint32_t nclients;
  sim_client *clients;
  uint32_t keys; /* total keys: key k belongs to group k % ngroups */
  sim_trace trace;
  sim_hist hist;
  sim_result *res;
  int stopped;  /* a violation ended the run */
  int scripted; /* scenarios: no random faults, no automatic clients */
  int clients_on;
  int quiet_state;     /* print role/term changes only, not commit/applied */
  uint64_t snap_every; /* take a snapshot and compact every this many applied entries */
  int compact_by_hint; /* ... and only where every replica holds the log (mr_host_compact_hint) */
  uint64_t max_msg_bytes;
  uint32_t max_inflight;
  uint64_t max_unstable_bytes; /* the followers' cap, 0 = none */
  uint64_t snap_installs;      /* snapshots installed from the leader */
  uint8_t last_snap_voters;    /* voters in the last installed snapshot's config */
  uint64_t heal_at;            /* pending heal time (0 = none) */
  int isolating;               /* a leader isolation is scheduled or in force */
  uint32_t read_pct;           /* share of gets in the workload (< 100) */
  /* --stats counters, cumulative over the run (the disks count syncs) */
  uint64_t frames_sent, hb_entries;
  /* idle runs: the window being measured and, per group, what happened in it */
  uint64_t window_start;
  uint8_t *awake;      /* [group] some replica was ticked (awake) in the window */
  uint8_t *campaigned; /* [group] some replica became (pre)candidate in the window */
  uint8_t *led_down;   /* [group] the crashed node led it (idle_crash) */
  uint64_t *releader;  /* [group] us from the crash to a new leader, 0 = none yet */
  uint64_t crash_at;
  uint64_t idle_next_check;
  int log_level_was; /* rk_log's level before the run (restored by sim_world_free) */
};

/* sim_world.c */
void sim_world_init(sim_world *w, const sim_opts *o, sim_result *r);
void sim_world_free(sim_world *w);
void sim_world_start(sim_world *w); /* boot every node, schedule ticks/clients */
/* Processes one event; returns 0 when the heap is empty or the run stopped. */
int sim_world_step(sim_world *w);
void sim_schedule(sim_world *w, uint64_t at, uint32_t source, uint32_t kind, uint32_t node,
                  uint64_t a, uint64_t b, void *ptr);
uint64_t sim_local_time(const sim_world *w, uint32_t node);
void sim_crash(sim_world *w, uint32_t node);
void sim_restart(sim_world *w, uint32_t node);
/* Records the first violation and stops the run. */
void sim_violation(sim_world *w, const char *invariant, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void sim_stop_faults(sim_world *w);
/* The node whose (up) replica leads group g in the highest term, or -1. */
int sim_group_leader(sim_world *w, uint32_t g);
/* The checker saw `node` become leader of a group in a new term. */
void sim_on_new_leader(sim_world *w, uint32_t node);

/* Roles as the checker sees them (the core's mr_role folded). */
enum {
  SIM_ROLE_FOLLOWER = 0,
  SIM_ROLE_CANDIDATE = 1,
  SIM_ROLE_LEADER = 2,
  SIM_ROLE_PRECANDIDATE = 3
};
/* Replica ids are the host's (node id << 32 | incarnation) with node id =
 * simulator node index + 1 and incarnation 1, in every group. */
#define SIM_RID(node) mr_host_replica_id((uint32_t)(node) + 1u, 1u)
/* The simulator node index of a replica id; UINT32_MAX for 0. */
static inline uint32_t sim_rid_node(uint64_t rid) { return mr_host_replica_node(rid) - 1u; }

/* A node whose fsync failed stops (sim_node_flush): it crashes now and
 * restarts at a random later time. */
void sim_io_failure_stop(sim_world *w, uint32_t node);

/* sim_node.c: the simulated host */
void sim_node_boot(sim_world *w, uint32_t node); /* create/recover replicas */
void sim_node_down(sim_world *w, uint32_t node); /* drop volatile state */
void sim_node_host(sim_world *w, uint32_t node, uint64_t group, const mr_conf *boot);
void sim_node_tick(sim_world *w, uint32_t node);
void sim_node_recv(sim_world *w, uint32_t node, const sim_frame *f);
void sim_node_sync_done(sim_world *w, uint32_t node, uint64_t barrier);
/* A deferred snapshot install of persist batch `batch` lands (install). */
void sim_node_install_done(sim_world *w, uint32_t node, uint64_t batch);
void sim_node_request(sim_world *w, uint32_t node, const sim_req *rq);
/* After every event on a node: persist/send/apply whatever the groups have. */
void sim_node_flush(sim_world *w, uint32_t node);
sim_replica *sim_node_replica(sim_world *w, uint32_t node, uint64_t group);
/* Raft state of a replica, for the checker and the trace. */
uint64_t sim_rep_term(const sim_replica *r);
int sim_rep_role(const sim_replica *r); /* SIM_ROLE_* */
uint64_t sim_rep_commit(const sim_replica *r);
uint64_t sim_rep_leader(const sim_replica *r); /* replica id or 0 */
/* Voter replica ids (node + 1) in the replica's current configuration; a
 * joint configuration fills both sets (n_out = 0 when not joint). */
void sim_rep_voters(const sim_replica *r, uint64_t *in, uint32_t *n_in, uint64_t *out,
                    uint32_t *n_out);
const char *sim_role_name(int role);
/* Frame helpers. */
void sim_frame_free(sim_frame *f);
/* One trace line per message and heartbeat of a delivered frame. */
void sim_frame_trace(sim_world *w, const sim_frame *f);
/* Client work through the host (scenarios). */
int sim_node_conf_change(sim_world *w, uint32_t node, uint64_t group, const mr_conf_change *cc,
                         uint64_t *index);
/* Marks a replica for the next flush/check. */
void sim_node_touch(sim_world *w, uint32_t node, sim_replica *r);
/* The replica's host keeps it quiesced (not ticked). */
int sim_rep_quiesced(sim_world *w, uint32_t node, const sim_replica *r);
/* Invariant check over every replica on a node (sim_check.c calls back). */
void sim_node_check(sim_world *w, uint32_t node);

/* sim_client.c */
void sim_clients_start(sim_world *w);
void sim_client_event(sim_world *w, const sim_event *e);
/* Called by a node when it answers a client. */
void sim_client_reply(sim_world *w, uint32_t from_node, const sim_reply *rp);
int sim_clients_all_probed(const sim_world *w);
/* Scenarios: client `c` (idle) starts one operation at `node` now. */
void sim_client_submit(sim_world *w, uint32_t c, uint32_t node, int pin, uint8_t op,
                       const char *key, const char *value, const char *expected);

/* sim_check.c */
void sim_check_init_group(sim_group *g);
void sim_check_free_group(sim_group *g);
/* Every hook returns nothing: a failure calls sim_violation(). */
void sim_check_replica(sim_world *w, uint32_t node, sim_replica *r);
void sim_check_written(sim_world *w, uint32_t node, sim_replica *r, const rk_entry *e, size_t n,
                       uint64_t prev_term);
/* After an entry's command reached r->kv (r->applied is e->index). */
void sim_check_applied(sim_world *w, uint32_t node, sim_replica *r, const rk_entry *e);
/* r->kv was just restored from a snapshot at (index, term). */
void sim_check_restored(sim_world *w, uint32_t node, sim_replica *r, uint64_t index, uint64_t term);
/* A snapshot at `index` is about to replace r's whole log. */
void sim_check_installing(sim_world *w, uint32_t node, sim_replica *r, uint64_t index);
void sim_check_sent(sim_world *w, uint32_t node, uint64_t group, uint64_t term);
/* The node sent a leader's message (append, snapshot, heartbeat) in `term`. */
void sim_check_led(sim_world *w, uint32_t node, uint64_t group, uint64_t term);
/* The node granted its vote in `term` to candidate node `cand`. */
void sim_check_voted(sim_world *w, uint32_t node, uint64_t group, uint64_t term, uint32_t cand);
void sim_check_restarted(sim_world *w, uint32_t node, sim_replica *r);
/* After power loss: every durable promise of the node still holds. */
void sim_check_crashed(sim_world *w, uint32_t node);
void sim_check_free_node(sim_node *nd);
void sim_check_acked(sim_world *w, uint64_t group, uint64_t index);
/* The end of the liveness phase: converged, nothing acknowledged lost. */
void sim_check_final(sim_world *w);
uint64_t sim_entry_hash(const rk_entry *e);

#endif
