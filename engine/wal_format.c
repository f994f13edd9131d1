/* engine/wal_format.c — the WAL's on-disk format. docs/wal.md carries the
 * same tables; change both together (and bump WAL_SEG_VERSION).
 *
 * All integers are little-endian. XXH3 is XXH3-64 (xxhash >= 0.8).
 *
 * A WAL directory holds segment files named %016llx.wal (hex sequence
 * number, contiguous, starting at 1), and spare files %016llx.spare (purged
 * segments kept for reuse, and prefilled ones; their content is garbage).
 * A new segment is either a fresh file preallocated to segment_bytes
 * (fallocate: unused space reads as zeros) or a spare given a new header
 * and name ("recycled": unused space holds stale batches of its old life).
 *
 * SEGMENT HEADER (64 bytes, offset 0)
 *   off  size  field
 *    0     8   magic "RKWALSEG"
 *    8     4   format version (2; version 1 is still read)
 *   12     4   header length (64)
 *   16     8   segment sequence number (== the file name)
 *   24     8   cluster id
 *   32     8   node id
 *   40     8   v2: salt, random, new for every life of the file (the checksum
 *              seed of its batches). v1: segment_bytes at creation
 *   48     8   v2: bits 0-62 the lowest batch sequence number this segment
 *              can hold (the next batch's number when it was prepared); bit
 *              63 set if the file is recycled. v1: 0.
 *   56     8   XXH3 of bytes [0, 56)
 *
 * BATCHES follow back to back from offset 64. A batch never spans segments.
 * After the last batch of a fresh segment the bytes are zero; in a recycled
 * one they are stale: batches with lower sequence numbers whose checksums
 * were seeded with another salt, and pieces of them.
 * BATCH HEADER (32 bytes)
 *   off  size  field
 *    0     4   magic 0x42574B52 (bytes "RKWB")
 *    4     4   payload length P (bytes of records after this header)
 *    8     8   batch sequence number (global, +1 per batch, across segments)
 *   16     4   record count
 *   20     4   flags, 0
 *   24     8   checksum: XXH3_64bits_withSeed(payload, P,
 *                              XXH3_64bits_withSeed(header[0, 24), 24, S))
 *              with S the segment header's salt (v2) or 0 (v1)
 *   32     P   records
 *
 * RECORDS (packed, no padding; first byte is the kind)
 *   ENTRY (kind 1): 32 + L bytes
 *    0     1   kind = 1
 *    1     1   entry type (rk_entry_type)
 *    2     2   reserved, 0
 *    4     4   payload length L
 *    8     8   group id
 *   16     8   index
 *   24     8   term
 *   32     L   payload
 *   HARD STATE (kind 2): 40 bytes
 *    0     1   kind = 2
 *    1     7   reserved, 0
 *    8     8   group id
 *   16     8   term
 *   24     8   vote
 *   32     8   commit
 *   COMPACTION MARK (kind 3): 32 bytes
 *    0     1   kind = 3
 *    1     1   flags: 1 = RESTATE (replay first empties the group's log at
 *              this index: written by a rewrite, followed in the same
 *              batch by the group's hard state and retained entries, and
 *              by eng_wal_reset, e.g. for a snapshot install)
 *    2     6   reserved, 0
 *    8     8   group id
 *   16     8   first index kept (entries below are gone)
 *   24     8   term of (first index kept - 1), 0 if unknown
 *
 * Replay semantics: records apply in log order. An ENTRY at index i for a
 * group discards that group's entries >= i first (suffix overwrite). A
 * COMPACTION MARK drops entries below its index (a RESTATE mark empties the
 * group's log at its index). The last HARD STATE wins.
 */
#include "engine/wal_int.h"

#include "common/rk_assert.h"
#include "common/rk_clock.h"
#include "common/rk_err.h"

#include <string.h>
#include <sys/random.h>
#include <unistd.h>
#include <xxhash.h>

uint64_t wal_new_salt(void) {
  uint64_t v = 0;
  if (getrandom(&v, sizeof v, 0) != (ssize_t)sizeof v)
    v = XXH3_64bits_withSeed(&v, sizeof v, rk_clock_mono_ns() ^ ((uint64_t)getpid() << 32));
  return v ? v : 1;
}

void wal_put_u32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
void wal_put_u64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
uint32_t wal_get_u32(const uint8_t *p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}
uint64_t wal_get_u64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

void wal_seg_hdr_encode(uint8_t out[WAL_SEG_HDR], const wal_seg_hdr *h) {
  memset(out, 0, WAL_SEG_HDR);
  memcpy(out, WAL_SEG_MAGIC, 8);
  RK_ASSERT(h->version >= 1 && h->version <= WAL_SEG_VERSION);
  RK_ASSERT(h->version >= 2 || (h->min_bseq == 0 && !h->recycled));
  wal_put_u32(out + 8, h->version);
  wal_put_u32(out + 12, WAL_SEG_HDR);
  wal_put_u64(out + 16, h->seq);
  wal_put_u64(out + 24, h->cluster_id);
  wal_put_u64(out + 32, h->node_id);
  wal_put_u64(out + 40, h->version >= 2 ? h->salt : h->segment_bytes);
  RK_ASSERT(h->min_bseq < WAL_SEG_RECYCLED_BIT);
  wal_put_u64(out + 48, h->min_bseq | (h->recycled ? WAL_SEG_RECYCLED_BIT : 0));
  wal_put_u64(out + 56, XXH3_64bits(out, 56));
}

int wal_seg_hdr_decode(const uint8_t in[WAL_SEG_HDR], wal_seg_hdr *h) {
  if (memcmp(in, WAL_SEG_MAGIC, 8) != 0) return RK_ECORRUPT;
  if (wal_get_u64(in + 56) != XXH3_64bits(in, 56)) return RK_ECORRUPT;
  uint32_t version = wal_get_u32(in + 8);
  if (version < 1 || version > WAL_SEG_VERSION || wal_get_u32(in + 12) != WAL_SEG_HDR)
    return RK_EUNSUPPORTED;
  h->version = version;
  h->seq = wal_get_u64(in + 16);
  h->cluster_id = wal_get_u64(in + 24);
  h->node_id = wal_get_u64(in + 32);
  h->segment_bytes = version == 1 ? wal_get_u64(in + 40) : 0;
  h->salt = version >= 2 ? wal_get_u64(in + 40) : 0;
  uint64_t b = wal_get_u64(in + 48);
  if (version == 1 && b != 0) return RK_ECORRUPT;
  h->min_bseq = b & ~WAL_SEG_RECYCLED_BIT;
  h->recycled = (b & WAL_SEG_RECYCLED_BIT) != 0;
  return RK_OK;
}

void wal_batch_seal(uint8_t *buf, uint32_t payload_len, uint64_t seq, uint32_t nrec, uint64_t mix) {
  wal_put_u32(buf, WAL_BATCH_MAGIC);
  wal_put_u32(buf + 4, payload_len);
  wal_put_u64(buf + 8, seq);
  wal_put_u32(buf + 16, nrec);
  wal_put_u32(buf + 20, 0);
  uint64_t seed = XXH3_64bits_withSeed(buf, 24, mix);
  wal_put_u64(buf + 24, XXH3_64bits_withSeed(buf + WAL_BATCH_HDR, payload_len, seed));
}

int wal_batch_hdr_decode(const uint8_t *p, wal_batch_hdr *h) {
  if (wal_get_u32(p) != WAL_BATCH_MAGIC) return RK_ECORRUPT;
  if (wal_get_u32(p + 20) != 0) return RK_ECORRUPT;
  h->payload_len = wal_get_u32(p + 4);
  h->seq = wal_get_u64(p + 8);
  h->nrec = wal_get_u32(p + 16);
  h->checksum = wal_get_u64(p + 24);
  return RK_OK;
}

int wal_batch_verify(const uint8_t *p, const wal_batch_hdr *h, uint64_t mix) {
  uint64_t seed = XXH3_64bits_withSeed(p, 24, mix);
  return XXH3_64bits_withSeed(p + WAL_BATCH_HDR, h->payload_len, seed) == h->checksum;
}

size_t wal_rec_entry_size(uint32_t len) { return (size_t)WAL_REC_ENTRY_HDR + len; }

void wal_rec_entry_encode(uint8_t *p, uint64_t group, const rk_entry *e) {
  RK_ASSERT(e->type <= 255);
  p[0] = WAL_REC_ENTRY;
  p[1] = (uint8_t)e->type;
  p[2] = p[3] = 0;
  wal_put_u32(p + 4, e->len);
  wal_put_u64(p + 8, group);
  wal_put_u64(p + 16, e->index);
  wal_put_u64(p + 24, e->term);
  if (e->len) memcpy(p + WAL_REC_ENTRY_HDR, e->data, e->len);
}

void wal_rec_hs_encode(uint8_t *p, uint64_t group, const rk_hard_state *hs) {
  memset(p, 0, 8);
  p[0] = WAL_REC_HARD_STATE;
  wal_put_u64(p + 8, group);
  wal_put_u64(p + 16, hs->term);
  wal_put_u64(p + 24, hs->vote);
  wal_put_u64(p + 32, hs->commit);
}

void wal_rec_compact_encode(uint8_t *p, uint64_t group, uint64_t index, uint64_t prev_term,
                            uint8_t flags) {
  memset(p, 0, 8);
  p[0] = WAL_REC_COMPACT;
  p[1] = flags;
  wal_put_u64(p + 8, group);
  wal_put_u64(p + 16, index);
  wal_put_u64(p + 24, prev_term);
}

int wal_rec_decode(const uint8_t *p, size_t avail, wal_rec *r) {
  memset(r, 0, sizeof *r);
  if (avail < 1) return RK_ECORRUPT;
  r->kind = p[0];
  switch (r->kind) {
  case WAL_REC_ENTRY: {
    if (avail < WAL_REC_ENTRY_HDR) return RK_ECORRUPT;
    uint32_t len = wal_get_u32(p + 4);
    if ((uint64_t)len > avail - WAL_REC_ENTRY_HDR) return RK_ECORRUPT;
    r->group = wal_get_u64(p + 8);
    r->e.type = p[1];
    r->e.len = len;
    r->e.index = wal_get_u64(p + 16);
    r->e.term = wal_get_u64(p + 24);
    r->e.data = len ? (uint8_t *)(uintptr_t)(p + WAL_REC_ENTRY_HDR) : NULL;
    r->size = (uint32_t)wal_rec_entry_size(len);
    if (r->e.index == 0) return RK_ECORRUPT;
    return RK_OK;
  }
  case WAL_REC_HARD_STATE:
    if (avail < WAL_REC_HS_LEN) return RK_ECORRUPT;
    r->group = wal_get_u64(p + 8);
    r->hs.term = wal_get_u64(p + 16);
    r->hs.vote = wal_get_u64(p + 24);
    r->hs.commit = wal_get_u64(p + 32);
    r->size = WAL_REC_HS_LEN;
    return RK_OK;
  case WAL_REC_COMPACT:
    if (avail < WAL_REC_COMPACT_LEN) return RK_ECORRUPT;
    r->group = wal_get_u64(p + 8);
    r->index = wal_get_u64(p + 16);
    r->prev_term = wal_get_u64(p + 24);
    r->flags = p[1];
    r->size = WAL_REC_COMPACT_LEN;
    if (r->index == 0 || (r->flags & ~WAL_MARK_RESTATE) != 0) return RK_ECORRUPT;
    return RK_OK;
  default: return RK_ECORRUPT;
  }
}
