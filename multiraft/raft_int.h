/* raft_int.h — private state of the Raft core, shared by its files:
 *
 *   raft.c       roles, terms, elections, step dispatch, tick, proposals
 *   replicate.c  AppendEntries / InstallSnapshot on both sides, commit rule
 *   log.c        the core's view of the log: durable storage + unstable tail
 *   progress.c   per-follower progress states and the in-flight window
 *   quorum.c     majority math for single and joint configurations
 *   confchange.c configuration values, changes, their encoding, switching
 *   readonly.c   ReadIndex: pending requests, heartbeat rounds, read states
 *   ready.c      Ready / Advance, outgoing message queue, invariants
 *
 * Memory budget per group at rest (3 replicas, nothing pending): the struct
 * below plus one mr_progress per replica. Every other buffer (unstable
 * entries, outbox, in-flight rings, read queues) is allocated on demand and
 * released when it drains, so an idle group holds no other heap.
 */
#ifndef MR_RAFT_INT_H
#define MR_RAFT_INT_H

#include "multiraft/raft.h"

#include "common/rk_assert.h"
#include "common/rk_err.h"

/* Progress states of a follower at the leader (etcd's tracker, thesis §3.5
 * and §10.2.1):
 *
 *   PROBE --append ack--> REPLICATE --reject/unreachable--> PROBE
 *     |                                                     ^
 *     +--needed entries compacted--> SNAPSHOT --acked/failed-+
 *
 * PROBE: one AppendEntries in flight at a time (probe_sent) until the match
 * point is found. REPLICATE: optimistic next, pipelined up to the in-flight
 * window. SNAPSHOT: nothing is sent until the snapshot is acknowledged. */
enum { MR_PR_PROBE = 0, MR_PR_REPLICATE = 1, MR_PR_SNAPSHOT = 2 };

enum { MR_VOTE_NONE = 0, MR_VOTE_GRANTED = 1, MR_VOTE_REJECTED = 2 };

typedef struct mr_inflight {
  uint64_t last;  /* last index carried by the message */
  uint64_t bytes; /* payload bytes it carried */
} mr_inflight;

typedef struct mr_progress {
  uint64_t id;
  uint64_t match;        /* highest index known replicated (leader only) */
  uint64_t next;         /* next index to send (leader only) */
  uint64_t pending_snap; /* SNAPSHOT: index of the snapshot sent */
  uint64_t read_ack;     /* highest heartbeat read round acknowledged */
  mr_inflight *ring;     /* REPLICATE: lazily allocated window */
  uint64_t infl_bytes;
  uint16_t infl_head;
  uint16_t infl_count;
  uint8_t flags; /* MR_VOTER_IN | MR_VOTER_OUT | MR_LEARNER | MR_LEARNER_NEXT */
  uint8_t state; /* MR_PR_* */
  uint8_t vote;  /* MR_VOTE_* during an election */
  uint8_t probe_sent : 1;
  uint8_t recent_active : 1; /* heard from within this election timeout */
  uint8_t snap_stale : 1;    /* SNAPSHOT for a whole CheckQuorum round */
} mr_progress;

typedef struct mr_read_req {
  uint64_t ctx;
  uint64_t index; /* the leader's commit when the request arrived */
  uint64_t seq;   /* heartbeat round that must be acknowledged by a quorum */
  uint64_t from;  /* requester (self or a follower that forwarded it) */
} mr_read_req;

/* Election timeouts in which a replica just removed from its group still
 * nudges the voters (mr_raft.removed_nudges). */
#define MR_REMOVED_NUDGES 8u

struct mr_raft {
  mr_config cfg;
  mr_storage storage;
  rk_rand *rng;

  /* persistent (hard) state, Raft Fig. 2 */
  uint64_t term;
  uint64_t vote;
  uint64_t commit;
  /* volatile */
  uint64_t applied;
  uint64_t lead;
  uint64_t transferee;         /* leader: transfer target, 0 = none */
  uint64_t pending_conf_index; /* leader: last conf change (or no-op) index */
  uint64_t uncommitted_bytes;  /* leader: proposal bytes not yet applied */
  uint64_t read_seq;           /* leader: last heartbeat read round */
  rk_hard_state prev_hs;       /* as of the last Ready */

  /* log: entries < unstable_off are durable in storage; the unstable tail and
   * a snapshot received but not yet installed wait for the next Ready. */
  uint64_t unstable_off;
  rk_entry_vec unstable;
  mr_snapshot *unstable_snap;

  /* configuration + progress, one slot per replica of the configuration */
  mr_progress *prs;
  uint8_t n_prs;
  uint8_t auto_leave;

  uint8_t role;              /* mr_role */
  uint8_t ready_outstanding; /* a Ready was handed out, no advance yet */
  uint32_t election_elapsed;
  uint32_t heartbeat_elapsed;
  uint32_t randomized_timeout;
  /* A replica removed from its configuration (it applied that, or booted
   * so) tells the voters its commit (raft.c:nudge_leader) for this many
   * more timeouts, then goes quiet: bounded, as nothing but the host's
   * cleanup ends a removed one. A vote request, from a voter that still
   * counts it, starts the count again. */
  uint8_t removed;
  uint32_t removed_nudges;

  /* outgoing messages, moved into the next Ready */
  mr_msg *out;
  uint32_t n_out, cap_out;
  /* leader: pending ReadIndex requests in seq order */
  mr_read_req *reqs;
  uint32_t n_reqs, cap_reqs;
  /* confirmed reads waiting for applied >= index */
  mr_read_state *reads;
  uint32_t n_reads, cap_reads;
  /* follower: contexts of the ReadIndex requests it forwarded in this term,
   * oldest first; only their answers become read states */
  uint64_t *fwd;
  uint32_t n_fwd, cap_fwd;

  mr_counters counters;
};

static inline int mr_bug(const mr_raft *r, uint32_t bug) {
#ifdef RK_TEST_HOOKS
  return (r->cfg.test_bugs & bug) != 0;
#else
  (void)r;
  (void)bug;
  return 0;
#endif
}

/* ---- log.c ---- */
uint64_t mr_log_first(const mr_raft *r);
uint64_t mr_log_last(const mr_raft *r);
uint64_t mr_log_last_term(const mr_raft *r);
int mr_log_term(const mr_raft *r, uint64_t i, uint64_t *term);
/* Term of i, or 0 when i is outside the log (compacted or beyond). */
uint64_t mr_log_term_or0(const mr_raft *r, uint64_t i);
int mr_log_match_term(const mr_raft *r, uint64_t i, uint64_t term);
int mr_log_is_up_to_date(const mr_raft *r, uint64_t last_index, uint64_t last_term);
/* Copies entries [lo, hi) into out: at least one, then while their payload
 * plus MR_ENTRY_OVERHEAD each stays within max_bytes. */
int mr_log_entries(const mr_raft *r, uint64_t lo, uint64_t hi, uint64_t max_bytes,
                   rk_entry_vec *out);
/* Largest i <= index with term(i) <= term (the conflict hint, thesis §5.3
 * "fast back-off"); stops at the first compacted index. */
uint64_t mr_log_find_conflict_by_term(const mr_raft *r, uint64_t index, uint64_t term);
/* Leader append of one new entry; returns RK_OK or RK_ENOMEM. */
int mr_log_append_new(mr_raft *r, uint32_t type, const void *data, uint32_t len);
/* Follower: entries[0].index > commit; replaces the unstable suffix. */
int mr_log_truncate_and_append(mr_raft *r, const rk_entry *ents, size_t n);
void mr_log_commit_to(mr_raft *r, uint64_t index);
/* Entries [.. index] (of term `term`) reached storage. */
void mr_log_stable_to(mr_raft *r, uint64_t index, uint64_t term);
void mr_log_restore(mr_raft *r, const mr_snapshot *s, mr_snapshot *owned);
void mr_snapshot_free(mr_snapshot *s);
int mr_snapshot_copy(mr_snapshot *dst, const mr_snapshot *src);

/* ---- progress.c ---- */
void mr_pr_reset(mr_progress *pr, uint64_t next);
void mr_pr_become_probe(mr_progress *pr);
void mr_pr_become_replicate(mr_progress *pr);
void mr_pr_become_snapshot(mr_progress *pr, uint64_t snap_index);
int mr_pr_maybe_update(mr_progress *pr, uint64_t n);
int mr_pr_maybe_decr_to(mr_progress *pr, uint64_t rejected, uint64_t match_hint);
int mr_pr_is_paused(const mr_raft *r, const mr_progress *pr);
int mr_pr_inflight_full(const mr_raft *r, const mr_progress *pr);
int mr_pr_inflight_add(mr_raft *r, mr_progress *pr, uint64_t last, uint64_t bytes);
void mr_pr_inflight_free_le(mr_progress *pr, uint32_t cap, uint64_t index);
void mr_pr_inflight_free_first(mr_progress *pr, uint32_t cap);
void mr_pr_inflight_release(mr_progress *pr);
mr_progress *mr_pr_find(const mr_raft *r, uint64_t id);
void mr_pr_check(const mr_raft *r, const mr_progress *pr);

/* ---- quorum.c ---- */
enum { MR_VOTE_PENDING = 0, MR_VOTE_WON = 1, MR_VOTE_LOST = 2 };
/* The largest value v such that a majority of each voter set (both in a
 * joint configuration) has vals[i] >= v. UINT64_MAX if no voters. */
uint64_t mr_quorum_index(const mr_progress *prs, size_t n, const uint64_t *vals);
int mr_quorum_vote_result(const mr_progress *prs, size_t n);
int mr_quorum_is_voter(uint8_t flags);

/* ---- confchange.c ---- */
/* Switches the progress array to configuration c (keeps existing progress). */
int mr_conf_switch(mr_raft *r, const mr_conf *c);
void mr_conf_from_prs(const mr_raft *r, mr_conf *out);

/* ---- readonly.c ---- */
int mr_ro_request(mr_raft *r, uint64_t ctx, uint64_t from);
void mr_ro_on_heartbeat_resp(mr_raft *r, mr_progress *pr, uint64_t ctx);
void mr_ro_advance(mr_raft *r);
/* What a proposal of len bytes counts against max_uncommitted_bytes: its
 * payload and framing; an empty one (never refused) nothing. Released when
 * an entry of the leader's own term applies. */
static inline uint64_t mr_uncommitted_cost(uint32_t len) {
  return len ? (uint64_t)len + MR_ENTRY_OVERHEAD : 0;
}

int mr_ro_add_read_state(mr_raft *r, uint64_t ctx, uint64_t index);
void mr_ro_drop_pending(mr_raft *r);
/* Forwarded requests a follower remembers: answers to more, or to ones it
 * never sent, are not taken (a peer could otherwise grow the read states
 * without bound). An old request forgotten this way times out at its
 * caller. */
#define MR_MAX_FWD_READS 1024u
/* Follower: remembers a forwarded request's ctx (at most MR_MAX_FWD_READS,
 * the oldest forgotten first); RK_OK or RK_ENOMEM. */
int mr_ro_forwarded(mr_raft *r, uint64_t ctx);
/* Takes ctx off the forwarded list: 1 if it was on it. */
int mr_ro_take_forwarded(mr_raft *r, uint64_t ctx);
void mr_ro_drop_forwarded(mr_raft *r);
size_t mr_ro_ready_count(const mr_raft *r);

/* ---- ready.c ---- */
/* Queues m (moved: entries/snap now owned by the queue). Sets from and the
 * must_persist flag by type. */
void mr_send(mr_raft *r, mr_msg *m);

/* ---- raft.c ---- */
void mr_become_follower(mr_raft *r, uint64_t term, uint64_t lead);
int mr_is_voter(const mr_raft *r, uint64_t id);
int mr_self_promotable(const mr_raft *r);
uint64_t mr_committed_term_is_current(const mr_raft *r);
void mr_bcast_heartbeat(mr_raft *r, uint64_t ctx);

/* ---- replicate.c ---- */
int mr_send_append(mr_raft *r, mr_progress *pr, int send_if_empty);
void mr_send_append_all(mr_raft *r, mr_progress *pr, int send_if_empty);
void mr_bcast_append(mr_raft *r);
int mr_maybe_commit(mr_raft *r);
void mr_update_self_match(mr_raft *r);
void mr_handle_append(mr_raft *r, const mr_msg *m);
void mr_handle_heartbeat(mr_raft *r, const mr_msg *m);
void mr_handle_snapshot(mr_raft *r, const mr_msg *m);
void mr_handle_append_resp(mr_raft *r, const mr_msg *m);
void mr_handle_heartbeat_resp(mr_raft *r, const mr_msg *m);
void mr_send_timeout_now(mr_raft *r, uint64_t to);

#endif
