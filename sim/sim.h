/* sim.h — the deterministic simulator: public entry points.
 *
 * `rangekv sim` (cmd/cmd_sim.c) and the tests drive the simulator through
 * this header only. One run = one seed: N simulated nodes, each a small host
 * of many Raft groups (sim_node.h), a simulated network (sim_net.h), disk
 * (sim_disk.h) and clock, simulated clients writing a history
 * (sim/history.h), and invariant checks after every event (sim_check.c).
 * A run has two phases:
 *   safety    `steps` events with the selected faults injected;
 *   liveness  faults stop (partitions heal, crashed nodes restart, the network
 *             calms down, disks stop stalling); within `liveness_us` of
 *             simulated time every group must elect a leader and commit, every
 *             client must get one more write acknowledged, and every replica
 *             must converge; then the history is checked for
 *             linearizability.
 * Everything is a function of (opts, seed): the same inputs give the same
 * trace byte for byte, hence the same trace_hash.
 */
#ifndef SIM_SIM_H
#define SIM_SIM_H

#include "sim/history.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Fault classes (--faults). */
#define SIM_FAULTS(X)                                                                              \
  X(LOSS, "loss", "drop messages")                                                                 \
  X(DUP, "dup", "duplicate messages")                                                              \
  X(REORDER, "reorder", "delay some messages so later ones overtake them")                         \
  X(PARTITION, "partition", "symmetric partitions, then heal")                                     \
  X(ONEWAY, "oneway", "one-way link cuts, then heal")                                              \
  X(CRASH, "crash", "crash nodes (losing unsynced writes), restart later")                         \
  X(TORN, "torn", "a crash may tear the last unsynced write")                                      \
  X(STALL, "stall", "fsync stalls on a node's disk")                                               \
  X(CLOCK, "clock", "clock offset and drift changes, within the bound")                            \
  X(INSTALL, "install", "a snapshot's writes land late, after later persist batches")              \
  X(EIO, "eio", "a node's next fsync fails: the node stops, and restarts later")                   \
  X(CONF, "conf", "membership changes: demote a voter, promote a learner, or both (joint)")

enum {
#define SIM_F_BIT_(name, str, doc) SIM_FB_##name,
  SIM_FAULTS(SIM_F_BIT_)
#undef SIM_F_BIT_
      SIM_FB_COUNT_
};
#define SIM_F(name) (1u << SIM_FB_##name)
#define SIM_F_ALL   ((1u << SIM_FB_COUNT_) - 1u)

/* "all", "none", or a comma list of names. Returns 0, or -1 (and *bad points
 * at the unknown name) on error. */
int sim_faults_parse(const char *s, uint32_t *out, const char **bad);
/* Comma list ("none" for 0) into buf. */
void sim_faults_format(uint32_t f, char *buf, size_t n);

/* Planted bugs of the simulated host (the node's part: apply, snapshots),
 * above the core's MR_BUG_* bits, for the checkers' own tests. */
enum {
  SIM_BUG_APPLY_TWICE = 1u << 16, /* the first entry of each apply round is applied again */
  SIM_BUG_SNAP_BEHIND = 1u << 17, /* a snapshot is labelled one index below its image */
  SIM_BUG_FORGET_VOTE = 1u << 18, /* a restarted replica forgets the vote it persisted */
  SIM_BUG_EIO_IGNORED = 1u << 19, /* a failed fsync is reported as done (fsyncgate) */
  SIM_BUGS_HOST =
      SIM_BUG_APPLY_TWICE | SIM_BUG_SNAP_BEHIND | SIM_BUG_FORGET_VOTE | SIM_BUG_EIO_IGNORED,
};

/* The names --bugs takes (sim_bugs_parse), for usage texts. */
#define SIM_BUG_NAMES                                                                              \
  "commit-old-term, vote-no-uptodate, ack-before-persist, vote-twice, truncate-matching, "         \
  "apply-twice, snap-behind, forget-vote, eio-ignored"

/* A shape of the run the seed picks unless an option forces it. */
enum { SIM_PER_SEED = 0, SIM_NEVER = 1, SIM_ALWAYS = 2 };

typedef struct sim_opts {
  uint64_t seed;
  uint32_t nodes;    /* 3..SIM_MAX_NODES */
  uint32_t groups;   /* Raft groups, 3 replicas each (fewer if nodes < 3) */
  uint32_t zones;    /* node i is in zone i % zones */
  uint32_t replicas; /* per group (default 3, at most nodes) */
  uint64_t steps;    /* events in the safety phase */
  uint32_t faults;   /* SIM_F_* */
  uint32_t clients;
  uint32_t keys_per_group;
  /* Raft timing: one tick every tick_us of a node's local clock. */
  uint64_t tick_us;
  uint32_t election_ticks, heartbeat_ticks;
  int prevote, check_quorum;
  uint32_t bugs;          /* planted MR_BUG_* and SIM_BUG_* bits (RK_TEST_HOOKS builds) */
  uint64_t max_msg_bytes; /* AppendEntries payload cap; 0 = drawn per seed */
  uint32_t max_inflight;  /* AppendEntries window; 0 = drawn per seed */
  /* Followers' cap on unpersisted entries (mr_config.max_unstable_bytes),
   * SIM_PER_SEED (the default), SIM_NEVER or SIM_ALWAYS: the least
   * mr_raft_init allows, which cuts AppendEntries whenever a follower's
   * pipeline runs ahead of its disk. */
  int unstable_cap;
  /* Groups of one voter and the rest learners (every third group, from
   * group 0), SIM_PER_SEED (the default), SIM_NEVER or SIM_ALWAYS: the lone
   * voter wins an election in the Ready that raises its term. */
  int lone_voters;
  double p_isolate_leader; /* chance a new leader is cut off early (with partition faults) */
  int lying_fsync;         /* test-only: fsync reports success without making anything durable */
  uint64_t op_timeout_us;  /* client gives up (outcome null) */
  uint64_t liveness_us;    /* bound of the liveness phase */
  uint64_t sync_min_us, sync_max_us; /* fsync latency range */
  uint64_t max_clock_offset_us;      /* the configured clock bound */
  int break_clock_bound;             /* clock faults exceed the bound on purpose */
  FILE *trace;                       /* optional: every trace line is written here */
  FILE *report;                      /* violation reports (default stderr) */
  const char *history_path;          /* optional: JSON Lines history written here */
  int check_lin;                     /* run the linearizability checker at the end */
  uint64_t lin_max_states;           /* its per-key search budget; 0 = its default. A key
                                        left undecided fails the run like a violation */
  /* Idle measurement (--idle): no clients and no faults; once every group
   * has a leader and every replica is quiesced (within liveness_us), the
   * run measures idle_us of simulated time and stops. With idle_crash =
   * node + 1, that node crashes when the window opens (targeted wake-up). */
  int idle;
  uint64_t idle_us;
  uint32_t idle_crash;
  int no_quiesce; /* hosts never quiesce groups (the comparison baseline) */
} sim_opts;

void sim_opts_default(sim_opts *o);

/* --stats: what the hosts cost, over the measured window (idle runs: from
 * the moment every group settled; otherwise the whole run). */
typedef struct sim_stats {
  uint32_t groups;
  uint64_t window_us;
  uint64_t frames;     /* node-to-node frames sent, empty liveness frames included */
  uint32_t node_pairs; /* unordered pairs of nodes */
  uint64_t hb_entries; /* coalesced heartbeat and response entries */
  uint64_t wal_syncs;  /* simulated fsyncs, all nodes */
  uint64_t entries;    /* log entries written, all nodes */
  uint32_t quiesced;   /* groups whose every up replica is quiesced, at the end */
  uint32_t settled;    /* idle: every group had a leader and quiesced before the window */
  uint32_t awake;      /* groups ticked (awake on some node) during the window */
  uint32_t campaigned; /* groups in which a replica became (pre)candidate in the window */
  /* idle_crash only */
  uint32_t led_by_crashed;  /* groups the crashed node led when it crashed */
  uint32_t woke_not_led;    /* awake or campaigned groups it did not lead */
  uint32_t releaded;        /* of those it led: groups with a new leader */
  uint64_t max_releader_us; /* slowest of them, from the crash */
} sim_stats;

/* X per simulated second over the window. */
double sim_stats_per_sec(const sim_stats *s, uint64_t x);
/* The issue-6 line: "stats: groups=G sim_seconds=T node_pair_msgs_per_sec=X
 * heartbeat_entries_per_sec=Y quiesced=Q wal_syncs=S entries=E". */
void sim_stats_print(FILE *out, const sim_stats *s);

typedef struct sim_result {
  uint64_t events;
  uint64_t trace_hash;
  uint64_t sim_us; /* simulated time at the end */
  int violation;   /* 0 or 1 */
  uint64_t violation_event;
  char invariant[48]; /* "election-safety", "log-matching", ... */
  char detail[512];
  /* workload */
  uint64_t ops, ops_ok, ops_fail, ops_unknown;
  uint64_t commits; /* entries applied, all replicas */
  uint64_t crashes, partitions, stalls, elections;
  uint64_t io_errors;       /* failed fsyncs (each stopped its node: counted in crashes too) */
  uint64_t conf_changes;    /* membership changes proposed (fault class conf) */
  uint64_t appends_dropped; /* AppendEntries followers dropped at the unstable cap */
  sim_stats st;
} sim_result;

/* One seed. Returns 0 if no invariant was violated, 1 otherwise (details in
 * *r, and printed to opts->report with the last trace lines). */
int sim_run(const sim_opts *o, sim_result *r);

/* Planted bugs by name ("commit-old-term", "vote-no-uptodate",
 * "ack-before-persist", comma separated). Returns 0 or -1. */
int sim_bugs_parse(const char *s, uint32_t *out, const char **bad);

/* ---- evidence scenarios (sim_scenario.c) -----------------------------------
 * Scripted runs on the same simulator that print a readable transcript and
 * end with one "PASS name: what was shown" or "FAIL name: why" line per
 * claim. */
void sim_scenario_list(FILE *out);
/* 0 every claim passed, 1 a claim failed, 2 unknown name or not runnable yet
 * (needs leases). */
int sim_scenario_run(const char *name, FILE *out);

#endif
