/* range/keyspan.h — the range table: which range holds a key, and where its
 * replicas live (prefix range_).
 *
 * Today the table is STATIC: written once at bootstrap, persisted on every
 * node (state store, ENG_RANGE_DESC), never changed (dynamic split and merge
 * come later and will bump `generation`).
 *
 * Bootstrap split: R ranges cut the key space at 4-hex-digit prefixes. Range
 * i (1-based) spans [start_i, start_{i+1}) with start_1 = "" and, for i > 1,
 * start_i = the lowercase 4-hex-digit string of floor((i-1) * 65536 / R); the
 * last range ends at +infinity (end_len = 0). Keys of random lowercase hex
 * spread evenly; any other key still falls in exactly one range.
 *
 * Placement: nodes are ordered so that consecutive nodes alternate zones
 * (one from each zone in turn); range i takes min(3, N) consecutive nodes
 * starting at position (i - 1) mod N, so replicas land in distinct zones
 * whenever there are at least 3 zones with balanced membership.
 *
 * Descriptor encoding (little-endian), stored per range:
 *   u8 version (1) | u64 id | u64 generation | u8 start_len | start bytes |
 *   u8 end_len | end bytes | u8 n_replicas | n x u32 node
 */
#ifndef RANGE_KEYSPAN_H
#define RANGE_KEYSPAN_H

#include <stddef.h>
#include <stdint.h>

#define RANGE_MAX_REPLICAS 7
#define RANGE_KEY_MAX      16 /* bootstrap boundaries are 4 bytes; room for later */
#define RANGE_MAX_RANGES   100000

typedef struct range_desc {
  uint64_t id;
  uint64_t generation;
  uint8_t start_len, end_len; /* end_len 0 = +infinity */
  uint8_t start[RANGE_KEY_MAX];
  uint8_t end[RANGE_KEY_MAX];
  uint8_t n_replicas;
  uint32_t replicas[RANGE_MAX_REPLICAS]; /* node ids */
} range_desc;

typedef struct range_table {
  range_desc *v; /* sorted by start key; v[k].id == k + 1 */
  size_t n;
} range_table;

typedef struct range_node {
  uint32_t id;
  const char *zone; /* NULL or "" = no zone label */
} range_node;

/* Builds the bootstrap table. RK_EINVAL (nranges out of [1, RANGE_MAX_RANGES],
 * no nodes, duplicate node ids), RK_ENOMEM. */
int range_table_bootstrap(range_table *t, uint32_t nranges, const range_node *nodes, size_t nnodes);
void range_table_free(range_table *t);
/* The range whose span holds key (always one). */
const range_desc *range_table_lookup(const range_table *t, const void *key, size_t klen);
/* By id, NULL if unknown. */
const range_desc *range_table_get(const range_table *t, uint64_t id);
/* Byte-wise key order (memcmp, a prefix sorts first): <0, 0, >0. */
int range_key_cmp(const void *a, size_t alen, const void *b, size_t blen);
/* 1 if key is inside d's span. */
int range_desc_contains(const range_desc *d, const void *key, size_t klen);
/* Whether an exclusive end (empty = the end of the key space) lies within
 * the range: a span [start, end) from a key it contains stays in it. */
int range_desc_covers_end(const range_desc *d, const void *end, size_t elen);
/* 1 if node holds a replica of d. */
int range_desc_has_node(const range_desc *d, uint32_t node);

#define RANGE_DESC_MAX_BYTES                                                                       \
  (1 + 8 + 8 + 1 + RANGE_KEY_MAX + 1 + RANGE_KEY_MAX + 1 + 4 * RANGE_MAX_REPLICAS)
/* Returns bytes written (<= cap, cap >= RANGE_DESC_MAX_BYTES). */
size_t range_desc_encode(const range_desc *d, uint8_t *buf, size_t cap);
/* RK_OK or RK_ECORRUPT (bad version, lengths, trailing bytes). */
int range_desc_decode(const uint8_t *buf, size_t len, range_desc *d);
/* Adopts a table rebuilt from decoded descriptors (sorted, checked for gaps
 * and overlaps). RK_ECORRUPT if they do not tile the key space. Takes v. */
int range_table_adopt(range_table *t, range_desc *v, size_t n);

#endif
