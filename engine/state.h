/* engine/state.h — the node's state store: RocksDB through its C API
 * (prefix eng_state_). Options and their reasons: docs/state.md.
 *
 * Column families:
 *   "default"  unused (RocksDB requires it)
 *   "user"     user data (the MVCC layer's keys, opaque here; at most 4096
 *              bytes each, asserted: an open span ends above them all)
 *   "range"    per-range state: applied index, descriptor, lease; key =
 *              range id (8 bytes, big-endian, so ranges sort) + 1 kind byte
 *   "node"     node identity (cluster id, node id), written once at creation
 *
 * APPLY ROUNDS. The node applies committed entries of every range once per
 * loop turn into ONE eng_state_batch, and records in that same batch the
 * applied index of every range it touched (eng_state_batch_set_applied).
 * eng_state_commit() writes it as one RocksDB WriteBatch: after any crash a
 * range's data and its applied index are from the same round, so replaying
 * the Raft log from applied + 1 is exact.
 *
 * DURABILITY. With sync_commits = 0 (default, the fast path) a commit is
 * atomic but not yet durable; eng_state_sync() makes every commit before it
 * durable (fsync of RocksDB's WAL). The Raft WAL may only be compacted for a
 * range up to an applied index that was committed BEFORE an eng_state_sync()
 * that returned RK_OK — see docs/state.md "Purge rule".
 *
 * THREADING: after open, every call but eng_state_close may run on several
 * threads at once (the struct is read-only; RocksDB is thread-safe), as
 * long as each batch and iterator stays on one thread. A node uses this
 * for snapshot installs off its loop (node/node_snap_install.c). RocksDB also runs
 * its own background flush/compaction threads.
 */
#ifndef ENG_STATE_H
#define ENG_STATE_H

#include <stddef.h>
#include <stdint.h>

typedef struct eng_state eng_state;
typedef struct eng_state_batch eng_state_batch;
typedef struct eng_state_iter eng_state_iter;

typedef struct eng_state_options {
  const char *dir;
  uint64_t cluster_id;        /* != 0 */
  uint64_t node_id;           /* != 0 */
  uint64_t block_cache_bytes; /* shared LRU block cache (default 256 MiB) */
  int sync_commits;           /* 1: every commit fsyncs (default 0) */
} eng_state_options;

void eng_state_options_default(eng_state_options *o);

/* Opens or creates. The identity is checked read-only first: a store of
 * another cluster or node -> RK_EWRONGCLUSTER / RK_EWRONGNODE, nothing
 * written. msg (may be NULL) receives a one-line explanation on error. */
int eng_state_open(const eng_state_options *o, eng_state **out, char *msg, size_t msgcap);
void eng_state_close(eng_state *s);

/* Range state kinds (the last key byte in the "range" family). */
typedef enum eng_range_kind {
  ENG_RANGE_APPLIED = 1,     /* value: applied index, 8 bytes little-endian */
  ENG_RANGE_DESC = 2,        /* value: the range descriptor (encoded by range/) */
  ENG_RANGE_LEASE = 3,       /* value: the lease (encoded by range/) */
  ENG_RANGE_SNAP = 4,        /* value: the last snapshot installed: index, term
                                (8 bytes little-endian each; node/node_snap_install.c) */
  ENG_RANGE_SNAP_INTENT = 5, /* value: a snapshot being installed: index, term
                                and its staged file's number (8 bytes
                                little-endian each; node/node_snap_install.c) */
} eng_range_kind;

/* ---- apply batches ----------------------------------------------------------- */

/* A batch belongs to one store (it names its column families). */
eng_state_batch *eng_state_batch_new(eng_state *s); /* NULL on ENOMEM */
void eng_state_batch_free(eng_state_batch *b);
void eng_state_batch_clear(eng_state_batch *b);
/* Buffers are copied; the caller keeps ownership. */
void eng_state_batch_put(eng_state_batch *b, const void *key, size_t klen, const void *val,
                         size_t vlen);
void eng_state_batch_delete(eng_state_batch *b, const void *key, size_t klen);
/* Deletes user keys in [start, end) (end NULL: to the end). */
void eng_state_batch_delete_range(eng_state_batch *b, const void *start, size_t slen,
                                  const void *end, size_t elen);
void eng_state_batch_set_applied(eng_state_batch *b, uint64_t range, uint64_t applied);
/* The last snapshot installed in range (ENG_RANGE_SNAP): index and term. */
void eng_state_batch_set_snap_mark(eng_state_batch *b, uint64_t range, uint64_t index,
                                   uint64_t term);
/* A snapshot install under way in range (ENG_RANGE_SNAP_INTENT). */
void eng_state_batch_set_snap_intent(eng_state_batch *b, uint64_t range, uint64_t index,
                                     uint64_t term, uint64_t file);
void eng_state_batch_clear_snap_intent(eng_state_batch *b, uint64_t range);
void eng_state_batch_range_put(eng_state_batch *b, uint64_t range, eng_range_kind kind,
                               const void *val, size_t vlen);
/* Removes every range-state record of `range` (replica removed). */
void eng_state_batch_range_clear(eng_state_batch *b, uint64_t range);
/* Number of operations queued. */
int eng_state_batch_count(eng_state_batch *b);

/* Writes the batch atomically (and durably if sync_commits). The batch is
 * left as is (clear it to reuse). RK_EIO / RK_ENOSPC / RK_ECORRUPT. */
int eng_state_commit(eng_state *s, eng_state_batch *b);
/* Every commit made before this call is durable once it returns RK_OK.
 * After a commit or sync fails, every later commit, sync and ingest
 * returns that error without trying again (a later fsync could succeed
 * with the data already dropped). */
int eng_state_sync(eng_state *s);
#ifdef RK_TEST_HOOKS
/* The next eng_state_sync fails with RK_EIO, as a failed fsync would. */
void eng_state_test_fail_sync(eng_state *s);
#endif

/* ---- reads ---------------------------------------------------------------- */

/* *val is malloc'ed (caller frees). RK_ENOTFOUND when absent. */
int eng_state_get(eng_state *s, const void *key, size_t klen, void **val, size_t *vlen);
/* RocksDB's estimate of the on-disk (compressed) bytes of user keys in
 * [start, end) (end NULL: to the end); memtables are not counted. O(1)-ish:
 * from the SST index, no scan. */
int eng_state_approx_bytes(eng_state *s, const void *start, size_t slen, const void *end,
                           size_t elen, uint64_t *out);
/* The snapshot mark of range: RK_ENOTFOUND if none was ever installed,
 * RK_ECORRUPT if it is not 16 bytes. */
int eng_state_snap_mark(eng_state *s, uint64_t range, uint64_t *index, uint64_t *term);
/* The snapshot install under way in range: RK_ENOTFOUND if none,
 * RK_ECORRUPT if it is not 24 bytes. */
int eng_state_snap_intent(eng_state *s, uint64_t range, uint64_t *index, uint64_t *term,
                          uint64_t *file);
/* The applied index recorded for range (0 when none). */
int eng_state_applied(eng_state *s, uint64_t range, uint64_t *applied);
int eng_state_range_get(eng_state *s, uint64_t range, eng_range_kind kind, void **val,
                        size_t *vlen);

/* Iterates user keys in [start, end) in key order (end NULL: to the end).
 * The iterator sees a consistent snapshot of the moment it was created.
 * key/value pointers are valid until the next eng_state_iter_next/free. */
eng_state_iter *eng_state_iter_new(eng_state *s, const void *start, size_t slen, const void *end,
                                   size_t elen);
int eng_state_iter_valid(const eng_state_iter *it);
void eng_state_iter_next(eng_state_iter *it);
const void *eng_state_iter_key(const eng_state_iter *it, size_t *len);
const void *eng_state_iter_value(const eng_state_iter *it, size_t *len);
/* RK_OK, or the error that ended the iteration early. */
int eng_state_iter_status(const eng_state_iter *it);
void eng_state_iter_free(eng_state_iter *it);

/* ---- SST files (snapshot staging) ----------------------------------------- */

/* A sorted file of user keys, written outside the store and ingested
 * whole (RocksDB's SstFileWriter and IngestExternalFile). One thread. */
typedef struct eng_state_sst eng_state_sst;

/* Creates (or replaces) the file at path, shaped by the user family's
 * options (LZ4 at every level: it is written as data arrives). */
int eng_state_sst_open(eng_state *s, const char *path, eng_state_sst **out);
/* A tombstone over user keys [start, end) (end NULL: to the end). Once
 * ingested it hides every older key there but never the file's own puts
 * (RocksDB: a file's range deletions do not cover its point keys). */
int eng_state_sst_delete_range(eng_state_sst *w, const void *start, size_t slen, const void *end,
                               size_t elen);
/* Keys strictly increasing, or an error. */
int eng_state_sst_put(eng_state_sst *w, const void *key, size_t klen, const void *val, size_t vlen);
/* Writes the index and footer and syncs the file. Nothing may follow. */
int eng_state_sst_finish(eng_state_sst *w);
void eng_state_sst_free(eng_state_sst *w);
/* Ingests the finished file at path into the user family in one step: its
 * tombstones and keys become visible at once, newer than everything before,
 * and durable when this returns RK_OK (RocksDB syncs the file and its
 * MANIFEST). The file at path is copied, and stays as it was: it can be
 * ingested again. Writers wait while RocksDB assigns the file its place
 * and syncs its MANIFEST (and the copy); a memtable holding keys in the
 * file's span [start, end] (start NULL: not given) is flushed first, here,
 * so they do not also wait for a flush. Nothing may write into the span
 * until this returns. */
int eng_state_ingest(eng_state *s, const char *path, const void *start, size_t slen,
                     const void *end, size_t elen);
/* Ingestions that needed a second attempt (the pre-check missed an overlap,
 * or the first failed), since open. */
uint64_t eng_state_ingest_retries(eng_state *s);

#endif
