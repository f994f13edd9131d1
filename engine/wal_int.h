/* engine/wal_int.h — private structures of the WAL, shared by its files:
 *   wal_format.c   on-disk encoding (the byte table lives there)
 *   wal_segment.c  segment files: naming, listing, async preparation
 *   wal_index.c    per-group index, the global entry cache
 *   wal.c          append, group commit, io_uring submission and completion
 *   wal_open.c     open (probe, lock, recover), close, stats, invariants, hooks
 *   wal_read.c     per-group log view (first/last/term/entries)
 *   wal_recover.c  recovery scan, torn-tail cut, corruption report
 *   wal_purge.c    compaction marks, purge, laggard rewrite
 */
#ifndef ENG_WAL_INT_H
#define ENG_WAL_INT_H

#include "engine/wal.h"

#include <liburing.h>
#include <stdint.h>

/* ---- on-disk format (wal_format.c) -------------------------------------- */
#define WAL_SEG_MAGIC       "RKWALSEG"
#define WAL_SEG_VERSION     2u /* written; 1 is still read */
#define WAL_SEG_HDR         64u
#define WAL_BATCH_MAGIC     0x42574B52u /* bytes "RKWB" */
#define WAL_BATCH_HDR       32u
#define WAL_REC_ENTRY       1u
#define WAL_REC_HARD_STATE  2u
#define WAL_REC_COMPACT     3u
#define WAL_REC_ENTRY_HDR   32u
#define WAL_REC_HS_LEN      40u
#define WAL_REC_COMPACT_LEN 32u
#define WAL_MIN_SEGMENT     (16u * 1024u)
#define WAL_MAX_SEGMENT     (UINT64_C(1) << 32) /* offsets are u32 */

typedef struct wal_seg_hdr {
  uint64_t seq, cluster_id, node_id;
  uint64_t segment_bytes; /* v1 only (informational) */
  uint64_t salt;          /* v2: random, new for every life of the file */
  uint32_t version;
  uint64_t min_bseq; /* v2: no batch of this segment's life has a lower seq */
  int recycled;      /* v2: bytes after the last batch are stale, not zero */
} wal_seg_hdr;
#define WAL_SEG_RECYCLED_BIT (UINT64_C(1) << 63)

typedef struct wal_batch_hdr {
  uint32_t payload_len;
  uint64_t seq;
  uint32_t nrec;
  uint64_t checksum;
} wal_batch_hdr;

/* A decoded record; for entries `data` points into the decoded buffer. */
typedef struct wal_rec {
  uint32_t kind;
  uint64_t group;
  rk_entry e;       /* WAL_REC_ENTRY */
  rk_hard_state hs; /* WAL_REC_HARD_STATE */
  uint64_t index;   /* WAL_REC_COMPACT: first index kept */
  uint64_t prev_term;
  uint32_t flags; /* WAL_REC_COMPACT: WAL_MARK_RESTATE */
  uint32_t size;  /* encoded bytes */
} wal_rec;

void wal_put_u32(uint8_t *p, uint32_t v);
void wal_put_u64(uint8_t *p, uint64_t v);
uint32_t wal_get_u32(const uint8_t *p);
uint64_t wal_get_u64(const uint8_t *p);

void wal_seg_hdr_encode(uint8_t out[WAL_SEG_HDR], const wal_seg_hdr *h);
/* RK_OK, RK_ECORRUPT (bad magic/checksum), RK_EUNSUPPORTED (version). */
int wal_seg_hdr_decode(const uint8_t in[WAL_SEG_HDR], wal_seg_hdr *h);

/* The seed that ties a batch's checksum to one life of one segment file:
 * its random salt (v2), so neither a batch left over from a recycled file's
 * earlier life nor bytes a client wrote that imitate a batch ever verify;
 * 0 for v1 segments. */
static inline uint64_t wal_seg_mix(const wal_seg_hdr *h) { return h->version >= 2 ? h->salt : 0; }
/* A fresh non-zero salt (getrandom; a clock-and-pid mix if that fails). */
uint64_t wal_new_salt(void);

/* Fills header fields (magic, len, seq, nrec, checksum) of a batch whose
 * payload is buf[WAL_BATCH_HDR, WAL_BATCH_HDR + payload_len), for a segment
 * whose checksum seed is `mix` (wal_seg_mix). */
void wal_batch_seal(uint8_t *buf, uint32_t payload_len, uint64_t seq, uint32_t nrec, uint64_t mix);
/* Parses a header (no checksum check). RK_ECORRUPT on bad magic / flags. */
int wal_batch_hdr_decode(const uint8_t *p, wal_batch_hdr *h);
/* 1 if the checksum of the batch at p (header + payload in memory) matches. */
int wal_batch_verify(const uint8_t *p, const wal_batch_hdr *h, uint64_t mix);

size_t wal_rec_entry_size(uint32_t len);
void wal_rec_entry_encode(uint8_t *p, uint64_t group, const rk_entry *e);
void wal_rec_hs_encode(uint8_t *p, uint64_t group, const rk_hard_state *hs);
#define WAL_MARK_RESTATE 1u
void wal_rec_compact_encode(uint8_t *p, uint64_t group, uint64_t index, uint64_t prev_term,
                            uint8_t flags);
/* Decodes one record from p[0, avail). RK_ECORRUPT if it overruns or the
 * kind is unknown. */
int wal_rec_decode(const uint8_t *p, size_t avail, wal_rec *r);

/* ---- in-memory index (wal_index.c) ---------------------------------------- */

/* Where one entry lives. 48 bytes per retained entry. */
typedef struct wal_loc {
  uint64_t term;
  uint64_t bseq; /* batch holding it; durable once <= w->durable_bseq */
  uint64_t seg;  /* segment sequence number */
  uint32_t off;  /* offset of the entry record header in the segment */
  uint32_t len;  /* payload bytes */
  uint64_t cref; /* payload copy in the entry cache: wal_cache_get(); 0 = none */
  uint32_t type;
} wal_loc;

typedef struct wal_group {
  uint64_t id;
  uint64_t first;     /* first index; entries [first, first + n) */
  uint64_t prev_term; /* term of first - 1 (0 when unknown) */
  int prev_known;     /* 1 when prev_term is meaningful */
  wal_loc *locs;      /* ring: entry first + k at locs[(head + k) % cap] */
  size_t head, n, cap;
  int touched; /* has entries, a mark, or a hard state */
  int has_hs;
  rk_hard_state hs;
  uint64_t hs_seg;
  int has_mark;
  uint64_t mark_seg;
  uint64_t mark_first, mark_prev_term; /* the latest mark's boundary */
  int mark_prev_known;
} wal_group;

/* Durability callbacks run between reaps of at most this many: a big
 * batch's callbacks (thousands after a slow flush) must not hold back the
 * batch after it, whose write may already have completed. */
#define WAL_FIRE_SLICE 256u

/* Entry cache: payload copies packed back to back into chunks; the chunks
 * form a FIFO (chunk sequence numbers increase by one). A cached entry's
 * wal_loc.cref is (chunk seq << 32 | offset); it is valid while that chunk is
 * live (seq >= ix->chunk_first), so evicting a chunk is O(1) and touches no
 * entry. Payloads are appended in batch order, so a chunk's newest batch
 * (max_bseq) tells whether anything in it is still undurable (pinned). */
#define WAL_CACHE_CHUNK (1u << 20)
#define WAL_CACHE_POOL  8u /* free chunks kept for reuse (no malloc, no page faults) */

typedef struct wal_cache_chunk {
  uint8_t *mem;
  uint32_t cap, used;
  uint64_t max_bseq; /* newest batch with a payload in this chunk */
} wal_cache_chunk;

typedef struct wal_index {
  wal_group **slots; /* open addressing on group id */
  size_t nslots, ngroups;
  /* entry cache: ring of live chunks, oldest first */
  wal_cache_chunk *chunks;
  size_t chead, cn, ccap;
  uint64_t chunk_first; /* sequence number of the oldest live chunk (>= 1) */
  int tail_open;        /* the newest live chunk still takes payloads */
  uint8_t *pool[WAL_CACHE_POOL];
  size_t npool;
  uint64_t cache_bytes; /* payload bytes held by live chunks (dead ones too) */
  uint64_t cache_budget;
  uint64_t hits, misses;
} wal_index;

int wal_index_init(wal_index *ix, uint64_t cache_budget);
void wal_index_free(wal_index *ix);
wal_group *wal_index_find(const wal_index *ix, uint64_t id);
/* Finds or creates. NULL on ENOMEM. */
wal_group *wal_index_get(wal_index *ix, uint64_t id);
static inline uint64_t wal_group_last(const wal_group *g) { return g->first + g->n - 1; }
wal_loc *wal_group_loc(const wal_group *g, uint64_t index); /* NULL if not retained */
/* Validates the overwrite rule for entries starting at `index`. */
int wal_group_check_append(const wal_group *g, uint64_t index);
/* Adds entry `index` (overwriting >= index). Rule must have been checked.
 * RK_ENOMEM possible only before any change. */
int wal_group_add(wal_group *g, uint64_t index, const wal_loc *loc);
/* Empties the log: first = index, term(index - 1) = prev_term (0: unknown
 * unless index == 1). Replay of a RESTATE mark. */
void wal_group_reset(wal_group *g, uint64_t index, uint64_t prev_term);
/* Drops entries < index; index > last + 1 empties the log at first = index. */
void wal_group_compact(wal_group *g, uint64_t index, uint64_t prev_term);
/* Records the latest mark's boundary: the log starts at index and
 * term(index - 1) is prev_term when known. Replay uses it when stale entries
 * are followed by a rewrite from exactly that index (wal_group_add). The
 * compaction and reset above call it; so does the laggard rewrite. */
void wal_group_remember_mark(wal_group *g, uint64_t index, uint64_t prev_term, int known);
/* Copies payload into the cache for entry at loc, whose bseq must be the
 * newest batch (pinned until durable). RK_ENOMEM: the entry would be
 * unreadable until durable — callers stop. */
int wal_cache_put(wal_index *ix, wal_loc *loc, const uint8_t *data);
/* The cached payload of loc, or NULL. */
uint8_t *wal_cache_get(const wal_index *ix, const wal_loc *loc);
/* Evicts oldest chunks holding only durable payloads until within budget. */
void wal_cache_trim(wal_index *ix, uint64_t durable_bseq);
/* Oldest segment the group needs (UINT64_MAX when none). */
uint64_t wal_group_min_seg(const wal_group *g);
/* The bytes of records a rewrite of the group writes (its RESTATE mark, its
 * hard state, an entry record each), counting no further than just past
 * `stop`: the purge's laggard decision and the rewrite's reservation. */
uint64_t wal_group_rewrite_bytes(const wal_group *g, uint64_t stop);

/* ---- segments (wal_segment.c) ---------------------------------------------- */

/* QUEUED: asked for, its file not yet touched: one segment prepares at a
 * time, so a crash leaves at most the newest file half-made. */
enum { WAL_SEG_QUEUED = 0, WAL_SEG_PREPARING = 1, WAL_SEG_READY = 2 };

typedef struct wal_op {
  int kind; /* WAL_OP_* */
  void *owner;
} wal_op;

enum {
  WAL_OP_WRITE = 1,
  WAL_OP_FSYNC,
  WAL_OP_PREP_FALLOC,
  WAL_OP_PREP_HDR,
  WAL_OP_PREP_FSYNC,
  WAL_OP_PREP_DIRSYNC,
  WAL_OP_PREP_RENAME, /* a recycled spare takes the segment's name */
  WAL_OP_BACKGROUND,  /* directory fsync after purge: result only logged */
};

#define WAL_SEG_PREP_OPS 5

typedef struct wal_seg {
  uint64_t seq;
  int fd;
  int state;
  uint64_t mix;      /* checksum seed of its batches (wal_seg_mix) */
  uint64_t min_bseq; /* no batch of this life has a lower sequence (v1: 1) */
  int prep_pending;  /* prep CQEs outstanding */
  int prep_err;      /* first errno of the prep chain */
  uint8_t hdr[WAL_SEG_HDR];
  char spare_name[32], name[32]; /* recycling: renamed from, to (in dir) */
  wal_op ops[WAL_SEG_PREP_OPS];
} wal_seg;

/* ---- batches --------------------------------------------------------------- */

typedef struct wal_batch {
  uint8_t *buf; /* header + payload, contiguous */
  size_t len, cap;
  uint64_t seq;
  uint32_t nrec;
  uint64_t seg; /* placement, decided when the batch is opened */
  uint64_t off;
  size_t written;
  uint64_t open_ns, submit_ns, hold_until_ns;
  int write_done, fsync_done, fsync_res;
  eng_wal_append_req *reqs_head, *reqs_tail;
  uint64_t nentries, nhs;
  int internal; /* carries rewrite or compaction records */
  wal_op op_write, op_fsync;
  struct wal_batch *next;
} wal_batch;

/* ---- the WAL ------------------------------------------------------------------ */

struct eng_wal {
  eng_wal_options opt;
  char *dir;
  int dirfd;
  struct io_uring ring;
  int ring_ok;
  wal_index ix;

  /* segments: segs[k] holds sequence seg_first + k; contiguous */
  wal_seg **segs;
  size_t nsegs, segs_cap;
  uint64_t seg_first;

  /* spare files (wal_segment.c, "Recycling"), oldest first */
  uint64_t *spares;
  size_t nspares, spares_cap;
  uint64_t next_spare;
  int can_rename; /* the ring has IORING_OP_RENAMEAT: recycling possible */

  /* write cursor: where the next opened batch goes */
  uint64_t cur_seg, cur_off;
  uint64_t next_bseq;       /* sequence of the next batch opened */
  uint64_t durable_bseq;    /* every batch <= this is durable */
  uint64_t purge_cand_seg;  /* purge may delete segments below this ... */
  uint64_t purge_cand_bseq; /* ... once batches up to this one are durable */

  wal_batch *open;   /* accumulating (may be NULL) */
  wal_batch *sealed; /* FIFO waiting to be submitted */
  wal_batch *sealed_tail;
  wal_batch *inflight; /* at most one */
  wal_batch *free_batches;

  /* durable, callbacks not yet run: empty appends, and batches that became
   * durable while another batch's callbacks ran (fire_durable) */
  eng_wal_append_req *done_head, *done_tail;
  int firing; /* inside fire_durable: later batches' callbacks wait */
  wal_op op_bg;
  int64_t ops_out; /* SQEs submitted, CQEs not yet reaped */
  int stopped;     /* RK_OK or the error */
  int crashed;     /* test hook: simulated death */

  eng_wal_stats st;
#ifdef RK_TEST_HOOKS
  eng_wal_hooks hooks;
  uint64_t nfsync_seen, nwrite_seen, nshort_seen, nsubmit_seen, nread_seen;
#endif
};

/* wal_segment.c */
static inline int wal_cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}
/* 1 if name is 16 lowercase hex digits (a non-zero number) then suffix. */
int wal_parse_name(const char *name, const char *suffix, uint64_t *num);
int wal_seg_path(const eng_wal *w, uint64_t seq, char *buf, size_t cap);
wal_seg *wal_seg_get(const eng_wal *w, uint64_t seq); /* NULL if not live */
/* Creates segment seq (must be seg_first + nsegs) from a spare or a fresh
 * file and queues its preparation on the ring. */
int wal_seg_prepare(eng_wal *w, uint64_t seq);
/* Registers an existing, already valid segment file (recovery). */
int wal_seg_adopt(eng_wal *w, uint64_t seq, int fd, uint64_t mix, uint64_t min_bseq);
/* Finds the spare files left in the directory (keeping at most
 * recycle_segments of the right size), then creates zero-filled ones up to
 * prefill_segments. Synchronous; for open. */
int wal_spares_open(eng_wal *w);
void wal_seg_prep_complete(eng_wal *w, wal_seg *s, wal_op *op, int res);
void wal_seg_close_all(eng_wal *w);
/* Retires the oldest live segment: renamed to a spare while there is room
 * for one, else unlinked now and closed in a detached thread (the final
 * close of a big file frees its blocks: milliseconds). */
int wal_seg_delete_first(eng_wal *w);
/* Queues an fsync of the WAL directory on the ring (not waited for). */
void wal_dir_sync_async(eng_wal *w);

/* wal.c */
void wal_fail(eng_wal *w, int err);
/* Fails every waiting request with the stop error (never inside append). */
void wal_fire_failed(eng_wal *w);
/* Reserves room for `bytes` of records in the open batch, opening/sealing
 * batches as needed. Returns the batch or NULL (ENOMEM -> *err). */
wal_batch *wal_batch_reserve(eng_wal *w, size_t bytes, int *err);
/* Blocks until the ring produces a completion and processes it. */
int wal_wait_one(eng_wal *w);
int wal_check_invariants(const eng_wal *w);

/* wal_recover.c */
int wal_recover(eng_wal *w, eng_wal_recovery *rec);

/* wal_read.c */
int wal_read_payload(eng_wal *w, const wal_group *g, uint64_t index, const wal_loc *loc,
                     uint8_t *dst);

#endif
