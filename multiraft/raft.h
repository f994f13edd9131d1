/* raft.h — one Raft group as a pure state machine (prefix mr_).
 *
 * The core does no I/O, reads no clock, owns no thread and draws randomness
 * only from the rk_rand handed to mr_raft_init (shared by pointer among the
 * groups of a node). It is driven by five kinds of input and produces one kind
 * of output (the shape of etcd-raft's RawNode and canonical/raft's raft_io):
 *
 *   inputs                                   output
 *   ------------------------------------     ------------------------------
 *   mr_raft_tick()          logical time      mr_raft_has_ready()
 *   mr_raft_step(msg)       a peer message    mr_raft_ready(&rd)  -> batch
 *   mr_raft_propose(...)    a client command  ... host persists, sends, applies
 *   mr_raft_read_index(ctx) a read barrier    mr_raft_advance(&rd)
 *   mr_raft_transfer_leader / mr_raft_propose_conf_change / mr_raft_campaign
 *
 * Host loop contract (ARCHITECTURE.md "One node = one event loop"):
 *   1. if mr_raft_has_ready(r): mr_raft_ready(r, &rd)
 *   2. send every rd.msgs[i] with must_persist == 0 (may go out at once)
 *   3. if rd.snapshot.index != 0: install it in the log storage (the storage
 *      then reports first_index = snapshot.index + 1, term(snapshot.index) =
 *      snapshot.term) and hand snapshot.data to the state machine
 *   4. append rd.entries to the log storage; an append starting at index i
 *      REPLACES every stored entry >= i (a new leader's suffix wins)
 *   5. persist rd.hs if rd.hs_changed; make 3-5 durable (one fsync)
 *   6. send every rd.msgs[i] with must_persist == 1 (votes, follower acks)
 *   7. apply rd.committed in order (they may include entries of step 4)
 *   8. mr_raft_advance(r, &rd): the core learns 3-7 happened, frees rd.
 * At most one Ready is outstanding per group. Between ready and advance the
 * host MAY keep calling tick/step/propose/read_index (e.g. while the fsync is
 * in flight); mr_raft_has_ready() returns 0 until the advance.
 *
 * Ownership, in one sentence: everything reachable from an mr_ready (entry
 * payloads, messages and their entries, the snapshot data, read states) is
 * owned by the mr_ready, stays valid until mr_raft_advance() or
 * mr_ready_free() on it, and never aliases the core's own memory; the host may
 * steal a buffer (e.g. a message's entries for zero-copy encoding) by taking
 * the pointer and zeroing the field. Inputs (msg in mr_raft_step, data in
 * mr_raft_propose, the snapshot in a message) are only borrowed for the call:
 * the core copies what it keeps.
 *
 * Peer input is untrusted: unknown message types, senders not in the
 * configuration, stale terms, indices beyond the log, malformed snapshots and
 * oversized entries are ignored or rejected and counted in mr_counters, never
 * asserted. RK_ASSERT guards only our own invariants.
 */
#ifndef MR_RAFT_H
#define MR_RAFT_H

#include <stddef.h>
#include <stdint.h>

#include "common/rk_entry.h"
#include "common/rk_rand.h"

/* ---- configuration (membership) ------------------------------------------
 * A configuration is a small set of replicas, each with role flags. It is
 * "joint" (C_old,new, thesis §4.3) while any replica carries MR_VOTER_OUT:
 * the outgoing voter set is {MR_VOTER_OUT}, the incoming one {MR_VOTER_IN};
 * decisions then need a majority of BOTH. Outside a joint configuration no
 * replica has MR_VOTER_OUT or MR_LEARNER_NEXT. */
#define MR_MAX_REPLICAS 8
/* The highest term a message or a boot state may carry: far beyond any real
 * run (one election a nanosecond for a century is under 2^62), and far
 * enough from UINT64_MAX that term + 1 never wraps. mr_raft_step refuses a
 * higher one as malformed. */
#define MR_MAX_TERM (UINT64_C(1) << 62)
/* What the byte limits of mr_config charge an entry beyond its payload (its
 * framing in a WAL record is about that), so each bounds entries by count
 * too, however small they are: max_msg_bytes, max_committed_bytes,
 * max_unstable_bytes, max_uncommitted_bytes (there an empty entry is free). */
#define MR_ENTRY_OVERHEAD 64u

enum {
  MR_VOTER_IN = 1u << 0,     /* voter of the (incoming) configuration */
  MR_VOTER_OUT = 1u << 1,    /* voter of the outgoing configuration (joint only) */
  MR_LEARNER = 1u << 2,      /* receives the log, never votes, never counts */
  MR_LEARNER_NEXT = 1u << 3, /* joint only: becomes a learner when leaving
                                (a voter being demoted; still MR_VOTER_OUT) */
};

typedef struct mr_conf_replica {
  uint64_t id; /* replica id, never 0 */
  uint8_t flags;
} mr_conf_replica;

typedef struct mr_conf {
  uint8_t n;          /* replicas in r[] */
  uint8_t auto_leave; /* joint only: leader proposes the leave by itself */
  mr_conf_replica r[MR_MAX_REPLICAS];
} mr_conf;

/* ---- configuration changes ---------------------------------------------- */
typedef enum mr_cc_op {
  MR_CC_ADD_VOTER = 1,   /* add, or promote a learner */
  MR_CC_ADD_LEARNER = 2, /* add, or demote a voter */
  MR_CC_REMOVE = 3,
} mr_cc_op;

typedef enum mr_cc_transition {
  /* One voter changes: a single-server change applied directly (thesis §4.1);
   * more than one: joint consensus with automatic leave. */
  MR_CC_AUTO = 0,
  MR_CC_JOINT_IMPLICIT = 1, /* always joint, leave proposed automatically */
  MR_CC_JOINT_EXPLICIT = 2, /* always joint, the host proposes the leave */
} mr_cc_transition;

typedef struct mr_cc_single {
  uint8_t op; /* mr_cc_op */
  uint64_t id;
} mr_cc_single;

/* n == 0 means "leave the joint configuration". */
typedef struct mr_conf_change {
  uint8_t transition; /* mr_cc_transition */
  uint8_t n;
  mr_cc_single changes[MR_MAX_REPLICAS];
} mr_conf_change;

/* ---- snapshots -----------------------------------------------------------
 * The application's state at `index` (whose entry had `term`), with the
 * configuration in force at that index. data is opaque to the core. */
typedef struct mr_snapshot {
  uint64_t index; /* 0 = no snapshot */
  uint64_t term;
  mr_conf conf;
  uint32_t len;
  uint8_t *data; /* owned by the struct that holds this snapshot */
} mr_snapshot;

/* ---- log storage ---------------------------------------------------------
 * The durable log as the core reads it (written by the host between ready and
 * advance). Implemented by the WAL's per-group view in a node and by
 * multiraft/memlog.h in tests. The log holds entries [first_index, last_index];
 * term(first_index - 1) must return the term of the last compacted entry (the
 * snapshot's), so that an empty log after a snapshot still answers for its
 * boundary. Returns: RK_OK; RK_ECOMPACTED for i < first_index - 1;
 * RK_EUNAVAILABLE for i > last_index. Any other code is a fatal storage fault
 * (the core asserts: a node with a broken log must stop). */
typedef struct mr_storage_ops {
  uint64_t (*first_index)(void *ctx);
  uint64_t (*last_index)(void *ctx); /* first_index - 1 when empty */
  int (*term)(void *ctx, uint64_t i, uint64_t *term);
  /* Appends copies of entries [lo, hi) to out, stopping before the entry that
   * would make the payload bytes exceed max_bytes, but always at least one. */
  int (*entries)(void *ctx, uint64_t lo, uint64_t hi, uint64_t max_bytes, rk_entry_vec *out);
  /* The latest snapshot the application made, for a follower that needs
   * compacted entries. out->data becomes the caller's (malloc'd; free()).
   * RK_EUNAVAILABLE if none is ready yet (the core retries later). */
  int (*snapshot)(void *ctx, mr_snapshot *out);
} mr_storage_ops;

typedef struct mr_storage {
  const mr_storage_ops *ops;
  void *ctx;
} mr_storage;

/* ---- messages ------------------------------------------------------------
 * A plain, self-contained struct; transport/ maps it to protobuf. */
typedef enum mr_msg_type {
  MR_MSG_APP = 1,         /* AppendEntries: index/log_term = prev, entries, commit */
  MR_MSG_APP_RESP,        /* index = last matching index, or reject + hints */
  MR_MSG_VOTE,            /* RequestVote: index/log_term = candidate's last */
  MR_MSG_VOTE_RESP,       /* reject = 0: granted */
  MR_MSG_PREVOTE,         /* term = candidate's term + 1, no one bumps terms */
  MR_MSG_PREVOTE_RESP,    /* term = the pre-vote's term if granted */
  MR_MSG_HEARTBEAT,       /* term, commit, ctx only (coalescable by the host) */
  MR_MSG_HEARTBEAT_RESP,  /* term, ctx only (coalescable) */
  MR_MSG_SNAP,            /* InstallSnapshot: snap */
  MR_MSG_TIMEOUT_NOW,     /* leadership transfer: campaign now */
  MR_MSG_READ_INDEX,      /* follower -> leader: ctx */
  MR_MSG_READ_INDEX_RESP, /* leader -> follower: ctx, index; reject = refused */
  MR_MSG_TYPE_MAX_
} mr_msg_type;

typedef struct mr_msg {
  uint8_t type; /* mr_msg_type; anything else is counted and dropped */
  uint8_t reject;
  uint8_t must_persist; /* 1: send only after this Ready's entries and hard
                           state are durable (vote responses and requests,
                           append responses); 0: may be sent at once */
  uint8_t transfer;     /* MR_MSG_VOTE caused by TimeoutNow: overrides the
                           leader lease of CheckQuorum */
  uint64_t from, to;
  uint64_t term;
  uint64_t log_term; /* APP: prev term; VOTE: last term; APP_RESP reject: hint term */
  uint64_t index;    /* APP: prev index; VOTE: last index; APP_RESP: match
                        or (reject) the rejected prev index; READ_INDEX_RESP */
  uint64_t commit;
  uint64_t reject_hint; /* APP_RESP reject: the follower's conflict index */
  uint64_t ctx;         /* HEARTBEAT(_RESP): read round; READ_INDEX(_RESP): request */
  rk_entry_vec entries; /* APP: owned by the message */
  mr_snapshot *snap;    /* SNAP: owned by the message (data too), else NULL */
} mr_msg;

/* Frees what a message owns (entries, snapshot) and zeroes it. */
void mr_msg_free(mr_msg *m);
const char *mr_msg_type_name(int type);

/* ---- the Ready batch ---------------------------------------------------- */
typedef struct mr_read_state {
  uint64_t ctx;   /* the caller's read_index ctx */
  uint64_t index; /* read at or after this applied index; applied >= index */
} mr_read_state;

typedef enum mr_role {
  MR_FOLLOWER = 0,
  MR_PRECANDIDATE,
  MR_CANDIDATE,
  MR_LEADER,
} mr_role;

typedef struct mr_ready {
  rk_hard_state hs; /* the whole hard state, valid always */
  int hs_changed;   /* persist hs only if set */
  /* Entries, a snapshot, or a new term or vote: make them durable before
   * sending the must_persist messages and before advance. Zero when the
   * only change is the commit index: write hs, but there is no need to wait
   * for it (etcd's MustSync) — a lost commit index is learned again. */
  int must_sync;
  mr_snapshot snapshot; /* index == 0: none; install before entries */
  rk_entry_vec entries; /* to append durably (copies) */
  mr_msg *msgs;         /* to send, see must_persist */
  size_t n_msgs;
  rk_entry_vec committed; /* to apply, in order, after persisting */
  mr_read_state *reads;   /* ReadIndex results; applied >= index already */
  size_t n_reads;
  /* soft state, informational */
  uint8_t role; /* mr_role */
  uint64_t lead;
} mr_ready;

/* Frees what rd owns without advancing (e.g. destroying the group). */
void mr_ready_free(mr_ready *rd);

/* ---- config and init ------------------------------------------------------ */
enum {
  MR_BUG_COMMIT_OLD_TERM = 1u << 0,    /* commit by counting old-term replicas */
  MR_BUG_VOTE_NO_UPTODATE = 1u << 1,   /* grant votes without §5.4.1 check */
  MR_BUG_ACK_BEFORE_PERSIST = 1u << 2, /* follower acks sendable before durable */
  MR_BUG_VOTE_TWICE = 1u << 3,         /* grant a second candidate the same term */
  MR_BUG_TRUNCATE_MATCHING = 1u << 4,  /* rewrite a matching append, dropping what follows */
};

typedef struct mr_config {
  uint64_t id;                    /* this replica, never 0 */
  uint32_t election_tick;         /* timeout = election_tick + [0, election_tick) */
  uint32_t heartbeat_tick;        /* < election_tick */
  uint8_t pre_vote;               /* thesis §9.6 */
  uint8_t check_quorum;           /* leader steps down without a quorum; lease */
  uint32_t max_inflight_msgs;     /* per-follower pipeline window, 1..1024 */
  uint64_t max_inflight_bytes;    /* per-follower pipeline: payload + MR_ENTRY_OVERHEAD
                                     each, 0 = no limit */
  uint64_t max_msg_bytes;         /* per AppendEntries: payload + MR_ENTRY_OVERHEAD
                                     each (>= 1 entry) */
  uint64_t max_uncommitted_bytes; /* leader cap on unapplied proposals (payload +
                                     MR_ENTRY_OVERHEAD each), 0 = none */
  uint64_t max_entry_bytes;       /* larger entries (proposed or received) refused */
  uint64_t max_committed_bytes;   /* per Ready.committed: payload + MR_ENTRY_OVERHEAD
                                     each (>= 1 entry) */
  /* Follower cap on entries received but not yet persisted, each counted
   * as its payload + MR_ENTRY_OVERHEAD, so no peer can grow one Ready past
   * what the host can persist at once. Of an AppendEntries that would hold
   * more, the follower takes the prefix that fits and acknowledges only
   * that (counted in unstable_full; the leader sends the rest). Once the
   * tail is persisted any one entry fits, since mr_raft_init requires at
   * least max_entry_bytes + MR_ENTRY_OVERHEAD, and so does a whole message
   * of a leader with our max_msg_bytes, which it also requires. Followers
   * of a leader whose in-flight window (max_inflight_bytes, framing
   * counted) is under the cap seldom reach it. 0 = no limit. */
  uint64_t max_unstable_bytes;
#ifdef RK_TEST_HOOKS
  uint32_t test_bugs; /* MR_BUG_* planted bugs for checker tests; 0 in production */
#endif
} mr_config;

/* Fills sane defaults (election 10, heartbeat 1, pre-vote and check-quorum on,
 * 256 in-flight msgs / 4 MiB, 1 MiB msgs, 64 MiB uncommitted, 8 MiB entries). */
void mr_config_default(mr_config *cfg, uint64_t id);

/* What the host persisted: the hard state, the configuration in force at
 * `applied` (the state machine's durable applied index, >= the log's
 * snapshot index). Conf changes in (applied, commit] are re-applied on their
 * way through Ready.committed. A brand-new replica joining a group passes an
 * empty conf (n = 0) and zeroes; it learns the group from its leader. */
typedef struct mr_boot {
  rk_hard_state hs;
  mr_conf conf;
  uint64_t applied;
} mr_boot;

typedef struct mr_raft mr_raft;

/* Returns RK_OK, RK_EINVAL (inconsistent persisted state or config) or
 * RK_ENOMEM. cfg and boot are copied; storage and rng are borrowed and must
 * outlive the group (rng may be shared among all groups of a thread). */
int mr_raft_init(mr_raft **out, const mr_config *cfg, const mr_storage *storage,
                 const mr_boot *boot, rk_rand *rng);
void mr_raft_free(mr_raft *r);

/* ---- inputs --------------------------------------------------------------- */
void mr_raft_tick(mr_raft *r);
/* RK_OK, or the reason the message was dropped (RK_EMALFORMED, RK_EINVAL...;
 * already counted; the host need not act on it). m is borrowed. */
int mr_raft_step(mr_raft *r, const mr_msg *m);
/* Appends a command at the leader. RK_ENOTLEADER (*lead_hint = known leader
 * or 0), RK_ETRANSFERRING, RK_EUNCOMMITTEDFULL, RK_ETOOLARGE. On RK_OK,
 * *index (if non-NULL) is the entry's index. lead_hint may be NULL. */
int mr_raft_propose(mr_raft *r, const void *data, uint32_t len, uint64_t *index,
                    uint64_t *lead_hint);
/* Starts a linearizable read barrier (thesis §6.4). On a leader: RK_EAGAIN
 * until its no-op committed; otherwise confirmed by a quorum heartbeat round
 * and reported as (ctx, index) in a Ready once applied >= index. On a follower
 * with a known leader the request is forwarded; RK_ENOTLEADER if none known.
 * Pending requests are dropped silently when leadership changes (the host
 * times them out). */
int mr_raft_read_index(mr_raft *r, uint64_t ctx);
/* Leadership transfer (thesis §3.10) to voter `to`: RK_ENOTLEADER, RK_EINVAL
 * (not a voter). Aborted after an election timeout. */
int mr_raft_transfer_leader(mr_raft *r, uint64_t to);
/* Proposes a membership change: RK_ENOTLEADER, RK_ETRANSFERRING,
 * RK_ECONFPENDING (one already in flight), RK_EINVAL (not applicable to the
 * current configuration). The change takes effect when applied. */
int mr_raft_propose_conf_change(mr_raft *r, const mr_conf_change *cc, uint64_t *index);
/* Starts an election now (tests, host wake-up). No-op for non-voters. */
void mr_raft_campaign(mr_raft *r);
/* A follower stops believing in its leader (the host learned the leader's
 * node is down): it then grants (pre-)votes at once instead of waiting out
 * the leader's lease. No-op unless a follower (etcd's ForgetLeader). */
void mr_raft_forget_leader(mr_raft *r);
/* A leader steps down, keeping its term (what CheckQuorum does after an
 * election timeout without a quorum; the host calls it sooner, once node
 * liveness shows no live majority). No-op unless the leader. */
void mr_raft_step_down(mr_raft *r);
/* Host feedback: a snapshot send failed, or a peer is unreachable. */
void mr_raft_report_snapshot(mr_raft *r, uint64_t to, int failed);
/* Host feedback: the snapshot to `to` is still moving (the host streams it
 * itself and just sent more of it), so it is not presumed lost at the next
 * election timeout. Ignored unless leading and waiting on that snapshot. */
void mr_raft_snapshot_alive(mr_raft *r, uint64_t to);
void mr_raft_report_unreachable(mr_raft *r, uint64_t to);

/* ---- output ---------------------------------------------------------------- */
int mr_raft_has_ready(const mr_raft *r);
/* Requires has_ready. Fills *rd (see ownership above). RK_OK or RK_ENOMEM. */
int mr_raft_ready(mr_raft *r, mr_ready *rd);
/* The host persisted, sent and applied rd; frees rd's contents. */
void mr_raft_advance(mr_raft *r, mr_ready *rd);

/* ---- accessors --------------------------------------------------------------- */
typedef struct mr_counters {
  uint32_t unknown_type;    /* message type not in mr_msg_type */
  uint32_t not_member;      /* sender not in the configuration */
  uint32_t stale_term;      /* message from an older term */
  uint32_t bad_index;       /* indices beyond our log / inconsistent */
  uint32_t malformed;       /* structurally invalid (entries out of order...) */
  uint32_t malformed_snap;  /* snapshot with bad metadata */
  uint32_t oversized;       /* entry larger than max_entry_bytes */
  uint32_t bad_conf_change; /* committed conf change that does not apply */
  uint32_t unstable_full;   /* AppendEntries cut short or dropped: max_unstable_bytes */
} mr_counters;

uint64_t mr_raft_id(const mr_raft *r);
mr_role mr_raft_role(const mr_raft *r);
uint64_t mr_raft_term(const mr_raft *r);
uint64_t mr_raft_vote(const mr_raft *r);
uint64_t mr_raft_lead(const mr_raft *r);
uint64_t mr_raft_commit(const mr_raft *r);
uint64_t mr_raft_applied(const mr_raft *r);
/* ReadIndex work still held by the core: requests awaiting a quorum's
 * confirmation (a leader's, its followers' forwarded ones included) plus
 * confirmed reads awaiting their apply. */
uint32_t mr_raft_pending_reads(const mr_raft *r);
uint64_t mr_raft_last_index(const mr_raft *r);
uint64_t mr_raft_first_index(const mr_raft *r);
/* The snapshot the core accepted and has not yet seen installed
 * (mr_raft_advance), or NULL: the only one it will ever ask storage to
 * install. Valid until the next call into the core. */
const mr_snapshot *mr_raft_pending_snapshot(const mr_raft *r);
/* Term of entry i in the core's view of the log (unstable included); RK_OK,
 * RK_ECOMPACTED or RK_EUNAVAILABLE. */
int mr_raft_term_at(const mr_raft *r, uint64_t i, uint64_t *term);
/* Copies out the configuration in force (as of the last applied change, or
 * of an installed snapshot). The core stores it inside its progress array, so
 * there is no pointer to hand out. */
void mr_raft_conf(const mr_raft *r, mr_conf *out);
const mr_counters *mr_raft_counters(const mr_raft *r);
/* Leader only: a follower's (match, next, state) for tests and metrics;
 * RK_ENOTFOUND if not a member, RK_ENOTLEADER. state: 0 probe, 1 replicate,
 * 2 snapshot. */
int mr_raft_progress(const mr_raft *r, uint64_t id, uint64_t *match, uint64_t *next, int *state,
                     uint32_t *inflight);
uint64_t mr_raft_transferee(const mr_raft *r);
/* Heap + struct bytes this group holds right now (log entries excluded). */
size_t mr_raft_bytes_at_rest(const mr_raft *r);
/* Checks every internal invariant with RK_ASSERT (aborts on a bug). Cheap
 * enough for the simulator to call after every event. */
void mr_raft_check_invariants(const mr_raft *r);

/* ---- configuration helpers (multiraft/confchange.c) --------------------- */
int mr_conf_is_joint(const mr_conf *c);
/* Flags of id in c, 0 if absent. */
uint8_t mr_conf_flags(const mr_conf *c, uint64_t id);
/* Structural validity (ids non-zero and unique, flags coherent, at least one
 * voter unless empty). RK_OK or RK_EMALFORMED. */
int mr_conf_validate(const mr_conf *c);
/* next = cur with cc applied; RK_EINVAL if cc does not apply to cur. */
int mr_conf_apply_change(const mr_conf *cur, const mr_conf_change *cc, mr_conf *next);
/* Entry payload encoding of a conf change: [transition u8][n u8] then n times
 * [op u8][id u64 little-endian]. encode takes a change that
 * mr_conf_apply_change accepted (asserts otherwise) and returns the bytes
 * written (<= cap); decode validates untrusted bytes (RK_EMALFORMED). */
size_t mr_cc_encode(const mr_conf_change *cc, uint8_t *buf, size_t cap);
int mr_cc_decode(const uint8_t *buf, size_t len, mr_conf_change *cc);
#define MR_CC_MAX_BYTES (2 + 9 * MR_MAX_REPLICAS)

#endif
