/* sim_disk.h — one simulated node's disk: the Raft log and hard state of
 * every group the node hosts, with real fsync semantics.
 *
 * Model (SQLite test6.c / TigerBeetle testing/storage.zig in spirit):
 *  - Every write (append entries for a group, set a group's hard state,
 *    install a snapshot, compact a prefix) is applied at once to the node's
 *    CURRENT view (what reads see: the page cache) and queued as unsynced.
 *  - sim_disk_sync_begin() closes a barrier over every write queued so far;
 *    sim_disk_sync_done() (called by the simulator when the simulated fsync
 *    latency has elapsed) makes exactly those writes DURABLE, in order.
 *  - Writes are grouped in RECORDS (sim_disk_record_begin/end): a record is
 *    what one checksum protects in a WAL, here everything one group's Ready
 *    writes (snapshot + entries + hard state). A write outside a record is a
 *    record by itself.
 *  - sim_disk_crash() is power loss: a random prefix of the unsynced records
 *    may have reached the platter, the last of them possibly torn. A torn
 *    record is rejected whole by its checksum, except a record made only of
 *    appended entries, of which a prefix of whole entries survives (per-entry
 *    checksums). Everything after is lost. The current view is then reset to
 *    the durable one.
 *  Writes of all groups share one queue, as they share one WAL in a node.
 *
 * Per-group log layout (both views):
 *    snap.index, snap.term        last compacted / snapshotted entry
 *    ents[0..n)                   entries snap.index+1 .. snap.index+n
 *    hs                           term, vote, commit
 *
 * Ownership: the disk copies everything handed to it; pointers it returns
 * stay valid until the next write to the same group or a crash.
 */
#ifndef SIM_DISK_H
#define SIM_DISK_H

#include "common/rk_entry.h"
#include "common/rk_rand.h"

#include <stddef.h>
#include <stdint.h>

typedef struct sim_blob {
  uint8_t *p;
  size_t len;
} sim_blob;

typedef struct sim_snap {
  uint64_t index, term;
  sim_blob meta; /* opaque to the disk: the membership config, encoded by the host */
  sim_blob data; /* opaque: the state machine image */
} sim_snap;

typedef struct sim_log_view {
  sim_snap snap;
  rk_entry_vec ents;
  rk_hard_state hs;
} sim_log_view;

typedef struct sim_glog {
  uint64_t group;
  sim_log_view cur; /* what the node reads */
  sim_log_view dur; /* what survives a crash */
} sim_glog;

enum { SIM_W_APPEND = 1, SIM_W_HARDSTATE, SIM_W_SNAPSHOT, SIM_W_COMPACT };

typedef struct sim_write {
  uint64_t seq;
  uint64_t rec;      /* record id: the seq of the record's first write */
  uint32_t slot;     /* index into logs[] */
  uint32_t kind;     /* SIM_W_* */
  rk_entry_vec ents; /* APPEND: entries (contiguous, first may truncate) */
  rk_hard_state hs;  /* HARDSTATE */
  sim_snap snap;     /* SNAPSHOT */
  uint64_t index;    /* COMPACT: drop entries <= index (term = snap.term) */
  uint64_t term;
} sim_write;

typedef struct sim_disk_stats {
  uint64_t writes, syncs, entries_written, torn, lost_writes;
} sim_disk_stats;

typedef struct sim_disk {
  sim_glog *logs;
  size_t nlogs, caplogs;
  uint32_t *ix; /* group id -> slot + 1, open addressing (0 = empty) */
  size_t ixcap;
  sim_write *q; /* unsynced writes, oldest first */
  size_t qlen, qcap;
  uint64_t next_seq; /* seq of the next write */
  uint64_t cur_rec;  /* open record, 0 = none */
  sim_disk_stats stats;
} sim_disk;

void sim_disk_init(sim_disk *d);
void sim_disk_free(sim_disk *d);

/* Returns the slot of `group`, creating an empty log if absent. Slots are
 * assigned in creation order, so iteration order is deterministic. */
uint32_t sim_disk_group(sim_disk *d, uint64_t group);
/* Slot of `group` or -1. */
int sim_disk_find(const sim_disk *d, uint64_t group);

/* Group the following writes into one record (atomic under a crash). */
void sim_disk_record_begin(sim_disk *d);
void sim_disk_record_end(sim_disk *d);

/* Writes (applied to the current view at once, durable after a sync). */
/* Append: ents[0].index may be <= last index: the suffix from there is
 * replaced (a new leader overwriting). ents must be contiguous. */
void sim_disk_append(sim_disk *d, uint32_t slot, const rk_entry *ents, size_t n);
void sim_disk_set_hardstate(sim_disk *d, uint32_t slot, const rk_hard_state *hs);
/* Replace the whole log by a snapshot (InstallSnapshot on a follower). */
void sim_disk_install_snapshot(sim_disk *d, uint32_t slot, const sim_snap *s);
/* Compaction after a local snapshot: record snapshot s (index <= last) and
 * drop entries <= s->index. */
void sim_disk_compact(sim_disk *d, uint32_t slot, const sim_snap *s);

/* Bootstrap (before the node ever runs): both views start from snapshot s
 * and hard state hs, durable from the start, nothing queued. */
void sim_disk_bootstrap(sim_disk *d, uint32_t slot, const sim_snap *s, const rk_hard_state *hs);

/* Sync: the barrier is the seq of the last write so far (0 = nothing). */
uint64_t sim_disk_sync_begin(sim_disk *d);
/* Makes every write with seq <= barrier durable. */
void sim_disk_sync_done(sim_disk *d, uint64_t barrier);
/* Unsynced writes queued. */
size_t sim_disk_unsynced(const sim_disk *d);
/* Power loss. torn != 0 allows a partially written last write. */
void sim_disk_crash(sim_disk *d, rk_rand *rng, int torn);

/* Reads (current view unless `durable`). */
const sim_log_view *sim_disk_view(const sim_disk *d, uint32_t slot, int durable);
uint64_t sim_view_first(const sim_log_view *v); /* snap.index + 1 */
uint64_t sim_view_last(const sim_log_view *v);  /* snap.index + n */
/* Term of index i: snap.term for snap.index, 0 if i is below the snapshot or
 * past the end (callers distinguish with first/last). */
uint64_t sim_view_term(const sim_log_view *v, uint64_t i);
const rk_entry *sim_view_entry(const sim_log_view *v, uint64_t i);

void sim_snap_copy(sim_snap *dst, const sim_snap *src);
void sim_snap_free(sim_snap *s);
void sim_blob_set(sim_blob *b, const void *p, size_t len);

#endif
