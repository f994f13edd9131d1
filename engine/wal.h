/* engine/wal.h — the node's shared write-ahead log (prefix eng_wal_).
 *
 * One log for every Raft group of a node: entries of any group and hard-state
 * updates are packed into batches; a batch is one io_uring write plus one
 * fdatasync (group commit). While one batch syncs, the next accumulates
 * (pipelined: at most one batch in flight). Purged segment files are
 * recycled (eng_wal_options.recycle_segments). The exact on-disk format is in
 * wal_format.c and docs/wal.md.
 *
 * THREADING. An eng_wal is owned by ONE thread (the node's event loop). No
 * function may be called concurrently on the same eng_wal. Callbacks run on
 * that thread, from inside eng_wal_process() / eng_wal_poll() / eng_wal_sync()
 * / eng_wal_close() — never from inside eng_wal_append() itself.
 *
 * EVENT-LOOP INTEGRATION (both styles are supported):
 *   - fd style: add eng_wal_fd() (the io_uring ring fd; readable when
 *     completions are pending) to your epoll set; use eng_wal_timeout_ns() as
 *     an upper bound for your epoll timeout (batch window, injected delays);
 *     call eng_wal_process() when the fd is readable or the timeout expired,
 *     and once per loop turn after appending (it submits due batches).
 *   - blocking style: eng_wal_poll(w, timeout_us) waits for a completion (or
 *     the batch window) for at most timeout_us, then does eng_wal_process().
 *
 * PER-GROUP LOG VIEW. eng_wal_first_index / last_index / term / entries are
 * the Raft core's log-storage interface; they see every appended entry at
 * once (even before it is durable: a leader may read its own unsynced tail).
 * Durability is only ever signalled by the append callback.
 *
 * FAILURES (fsyncgate). A failed write or fsync (EIO, ENOSPC, ...) is never
 * retried: every request waiting on an undurable batch gets the error (RK_EIO
 * or RK_ENOSPC) in its callback, and from then on the WAL is stopped —
 * appends, compaction, purge and reads return RK_ESTOPPED. The only way out is
 * eng_wal_close() and a fresh eng_wal_open() (which re-reads what is really on
 * disk).
 */
#ifndef ENG_WAL_H
#define ENG_WAL_H

#include "common/rk_entry.h"

#include <stddef.h>
#include <stdint.h>

typedef struct eng_wal eng_wal;

typedef struct eng_wal_options {
  const char *dir;          /* created if missing; one WAL per directory */
  uint64_t cluster_id;      /* identity written into every segment header; != 0 */
  uint64_t node_id;         /* != 0 */
  uint64_t segment_bytes;   /* preallocated size of a segment file (default 64 MiB) */
  uint32_t max_entry_bytes; /* larger payloads -> RK_ETOOLARGE (default 8 MiB) */
  uint64_t max_batch_bytes; /* a batch is sealed at this size (default 16 MiB); one
                               append must fit in one batch */
  uint64_t batch_window_us; /* 0 (default): a batch goes to disk as soon as the
                               previous one is durable; W > 0: an idle WAL also
                               waits up to W us for more appends */
  uint64_t cache_bytes;     /* global entry-cache budget (default 64 MiB) */
  /* Purge/rewrite policy (docs/wal.md, "Purge"): when more than
   * rewrite_after_segments segments are live, eng_wal_purge() rewrites forward
   * every group pinning a segment older than the newest half of them, if its
   * live bytes are <= rewrite_max_group_bytes. Defaults 8 and 1 MiB. */
  uint32_t rewrite_after_segments;
  uint64_t rewrite_max_group_bytes;
  /* Mid-log corruption found by recovery: 0 (default) -> eng_wal_open fails
   * with RK_ECORRUPT and writes nothing; 1 -> the log is cut at the corrupt
   * batch (it and everything after it are discarded) and opening proceeds. */
  int truncate_on_corruption;
  /* Segment recycling (docs/wal.md, "Recycling"): up to recycle_segments
   * purged segment files are kept as spares and reused for new segments
   * instead of fresh preallocated files (default 4; 0 = always delete).
   * Their blocks are already written, so an fdatasync into them commits no
   * extent conversion in the filesystem journal, and nothing is discarded.
   * prefill_segments (default 0, at most recycle_segments): at open, create
   * zero-filled spares until this many exist, so even the first segments
   * are written into allocated blocks (costs segment_bytes of writes each,
   * once). */
  uint32_t recycle_segments;
  uint32_t prefill_segments;
} eng_wal_options;

void eng_wal_options_default(eng_wal_options *o);

/* What recovery found. Filled by eng_wal_open() on success AND on failure. */
typedef struct eng_wal_recovery {
  uint64_t segments;     /* segment files scanned */
  uint64_t batches;      /* valid batches replayed */
  uint64_t entries;      /* entry records replayed */
  uint64_t hard_states;  /* hard-state records replayed */
  uint64_t bytes;        /* bytes of valid batches */
  uint64_t groups;       /* groups known after recovery */
  int torn_tail;         /* 1 if a torn final batch was cut off */
  uint64_t torn_segment; /* where (segment sequence number, byte offset) */
  uint64_t torn_offset;
  int corrupt; /* 1 if a bad batch before the tail was found */
  uint64_t corrupt_segment;
  uint64_t corrupt_offset;
  uint64_t elapsed_ns;
  char message[256]; /* human-readable explanation of any error or cut */
} eng_wal_recovery;

/* Opens (recovering) or creates the WAL in opt->dir. Probes io_uring first:
 * RK_EUNSUPPORTED if the kernel refuses it (message in rec->message).
 * Errors: RK_EWRONGCLUSTER / RK_EWRONGNODE (a segment header names another
 * identity; nothing is written), RK_ECORRUPT (rec says where), RK_EIO, ...
 * rec may be NULL. */
int eng_wal_open(const eng_wal_options *opt, eng_wal **out, eng_wal_recovery *rec);

/* Makes everything appended durable (callbacks fire), then frees. If the WAL
 * is stopped, pending callbacks have already fired with the error. */
void eng_wal_close(eng_wal *w);

/* ---- appending ----------------------------------------------------------- */

/* One group's part of an append: entries (contiguous, increasing indexes) and
 * optionally a new hard state. */
typedef struct eng_wal_write {
  uint64_t group;
  const rk_entry *entries;
  size_t n_entries;
  const rk_hard_state *hard_state; /* NULL: unchanged */
} eng_wal_write;

typedef struct eng_wal_append_req eng_wal_append_req;
/* status: RK_OK (durable), RK_EIO / RK_ENOSPC (not durable; WAL stopped),
 * RK_ESTOPPED (WAL had already stopped when the batch would have gone out). */
typedef void (*eng_wal_append_cb)(eng_wal_append_req *req, int status);

/* Caller-owned request. Set data as you like; the rest is private. */
struct eng_wal_append_req {
  void *data;
  eng_wal_append_cb cb;
  /* private */
  eng_wal_append_req *next_;
};

/* Appends writes[0..n) atomically (all in one batch) and returns at once.
 * Rules per group, checked for the whole request before anything changes:
 *   - entries of one write have contiguous increasing indexes;
 *   - the first index i satisfies first_index <= i <= last_index + 1; an i
 *     <= last_index overwrites: the group's entries >= i are discarded
 *     (Raft's suffix overwrite after a leader change). A group with no
 *     entries and no compaction mark accepts any i >= 1.
 *   - payload len <= max_entry_bytes; the whole request <= max_batch_bytes.
 * Violations: RK_EINVAL / RK_ETOOLARGE, nothing written, cb never called.
 * RK_ESTOPPED after a failure.
 * On RK_OK: cb(req, status) is called exactly once, later, when the batch is
 * durable (or failed). Ownership: writes, entries and payloads are copied
 * before this returns (the caller may free them); req must stay valid and
 * unmodified until its callback has run. */
int eng_wal_append(eng_wal *w, eng_wal_append_req *req, const eng_wal_write *writes, size_t n,
                   eng_wal_append_cb cb);

/* ---- event loop ------------------------------------------------------------ */

/* The io_uring ring fd (poll it for POLLIN). */
int eng_wal_fd(const eng_wal *w);
/* Nanoseconds until eng_wal_process() must run even if the fd stays quiet
 * (0 = now), or -1 when only the fd matters. */
int64_t eng_wal_timeout_ns(eng_wal *w);
/* Non-blocking: reaps completions, runs callbacks, submits due batches.
 * Returns RK_OK, or the stop error if the WAL is stopped. */
int eng_wal_process(eng_wal *w);
/* Waits up to timeout_us for something to do, then eng_wal_process(). */
int eng_wal_poll(eng_wal *w, uint64_t timeout_us);
/* Submits the accumulating batch now, ignoring the batch window. */
int eng_wal_flush(eng_wal *w);
/* Blocks until everything appended so far is durable (or the WAL stops).
 * Not from an append callback (asserted): callbacks run in log order, and
 * the ones queued behind the running callback cannot run until it returns.
 * Nor eng_wal_close(), which syncs. A callback may append, read, compact
 * and purge. */
int eng_wal_sync(eng_wal *w);
/* RK_OK while healthy; the error that stopped it otherwise. */
int eng_wal_stopped(const eng_wal *w);

/* ---- per-group log view (the Raft core's log storage interface) ---------- */

/* A group never seen has first = 1, last = 0. After compaction to i with no
 * entries left: first = i, last = i - 1. Unknown groups are not created. */
int eng_wal_first_index(eng_wal *w, uint64_t group, uint64_t *out);
int eng_wal_last_index(eng_wal *w, uint64_t group, uint64_t *out);
/* Term of entry i. i == first - 1 answers from the compaction mark when the
 * term is known (0 for a fresh group's index 0). RK_ECOMPACTED below that,
 * RK_EUNAVAILABLE above last. */
int eng_wal_term(eng_wal *w, uint64_t group, uint64_t i, uint64_t *out);
/* Appends copies of entries [lo, hi) to out, stopping once their payloads
 * exceed max_bytes (at least one entry is always returned). RK_ECOMPACTED if
 * lo < first, RK_EUNAVAILABLE if hi > last + 1, RK_EINVAL if lo > hi,
 * RK_ECORRUPT if the segment no longer holds what the index says. */
int eng_wal_entries(eng_wal *w, uint64_t group, uint64_t lo, uint64_t hi, uint64_t max_bytes,
                    rk_entry_vec *out);
/* *found = 0 when no hard state was ever written for the group. */
int eng_wal_hard_state(eng_wal *w, uint64_t group, rk_hard_state *hs, int *found);
/* Calls fn for every known group (order unspecified); for the host at startup. */
void eng_wal_for_each_group(eng_wal *w, void (*fn)(void *ctx, uint64_t group), void *ctx);

/* ---- compaction and purge ---------------------------------------------- */

/* Group no longer needs entries < index (they are applied and durable in the
 * state store — see docs/wal.md "Purge" for the rule the host must follow).
 * index may exceed last + 1 (after a snapshot): the log becomes empty with
 * first = index; prev_term is then recorded as term(index - 1) (pass 0 when
 * compacting inside the log: the WAL knows the term). Recorded in the log
 * (durable with the next batch). */
int eng_wal_compact(eng_wal *w, uint64_t group, uint64_t index, uint64_t prev_term);

/* Discards ALL of the group's entries: the log becomes empty at `first`
 * with term(first - 1) = prev_term (0: unknown). For installing a snapshot
 * that does not match the log (first = snapshot.index + 1, prev_term =
 * snapshot.term) and for dropping a removed replica's log. Recorded in the
 * log as a RESTATE mark (durable with the next batch). */
int eng_wal_reset(eng_wal *w, uint64_t group, uint64_t first, uint64_t prev_term);

typedef struct eng_wal_purge_stats {
  uint64_t segments_deleted;
  uint64_t groups_rewritten;
  uint64_t entries_rewritten;
  uint64_t laggards_too_big; /* pinning groups left alone: compact them */
} eng_wal_purge_stats;

/* Deletes every segment no group needs; rewrites laggard groups forward per
 * the policy in eng_wal_options (their old segments go on a later purge, once
 * the rewrite is durable). st may be NULL. */
int eng_wal_purge(eng_wal *w, eng_wal_purge_stats *st);

/* ---- statistics ---------------------------------------------------------- */

typedef struct eng_wal_stats {
  uint64_t appends, entries, hard_states, batches, fsyncs, bytes_written;
  uint64_t segments_live, first_segment, active_segment, segments_deleted;
  uint64_t cache_bytes, cache_hits, cache_misses;
  uint64_t groups;
  uint64_t entries_rewritten;
  uint64_t short_writes;      /* writes the kernel completed partially (continued) */
  uint64_t segments_recycled; /* new segments made from spare files */
  uint64_t spares;            /* spare files held now */
} eng_wal_stats;

void eng_wal_get_stats(const eng_wal *w, eng_wal_stats *s);

/* ---- test hooks ------------------------------------------------------------ */
#ifdef RK_TEST_HOOKS
enum {
  ENG_WAL_CRASH_NONE = 0,
  /* At the batch with sequence crash_batch: write only crash_torn_bytes of
   * it (no fsync) and "die": no further I/O, no callbacks, appends refused.
   * eng_wal_close() then only frees memory, like a killed process. */
  ENG_WAL_CRASH_TORN_WRITE = 1,
  /* In eng_wal_purge(): die after deleting the first deletable segment. */
  ENG_WAL_CRASH_IN_PURGE = 2,
};

typedef struct eng_wal_hooks {
  uint64_t fsync_delay_us; /* durability reported no earlier than this after submit */
  int64_t fail_fsync_at;   /* -1: never; n: the n-th data fsync (0-based) fails */
  int64_t fail_write_at;   /* -1: never; n: the n-th batch write fails */
  int fail_errno;          /* errno injected (EIO when 0) */
  int64_t short_write_at;  /* -1: never; n: the n-th batch write reports half its bytes */
  int64_t fail_read_at;    /* -1: never; n: the n-th entry read from a segment fails */
  int64_t fail_submit_at;  /* -1: never; n: the n-th batch's io_uring_submit fails (EBUSY
                            * unless fail_errno), its SQEs left in the ring */
  int crash;               /* ENG_WAL_CRASH_* */
  uint64_t crash_batch;
  uint32_t crash_torn_bytes;
  int legacy_v1_segments; /* new segments are fresh, format version 1 (compat tests) */
} eng_wal_hooks;

void eng_wal_hooks_default(eng_wal_hooks *h);
/* What recovery syncs each kept segment with (default fdatasync); set
 * before eng_wal_open. Tests count the calls or fail them. */
extern int (*eng_wal_recovery_sync_)(int fd);
void eng_wal_set_hooks(eng_wal *w, const eng_wal_hooks *h);
/* Asserts every structural invariant (O(retained entries)); aborts on a bug. */
void eng_wal_check_invariants(const eng_wal *w);
/* Sequence number the next batch to be opened will carry. */
uint64_t eng_wal_next_batch_seq(const eng_wal *w);
#endif

#endif
