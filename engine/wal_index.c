/* engine/wal_index.c — per-group in-memory index and the global entry cache.
 *
 * Memory budget: one wal_group (~150 bytes) per group ever written, plus one
 * wal_loc (48 bytes) per retained entry, plus the cache (payload copies,
 * bounded by cache_bytes except for entries not yet durable, which are
 * pinned: their bytes are only in the batch buffer and the cache until the
 * batch completes).
 *
 * Each group keeps its retained entries as a ring of wal_loc indexed by
 * index - first. Segment numbers in that ring never decrease with the index
 * (later indexes were written later, and a rewrite moves the whole live
 * suffix), so the group's oldest needed segment is that of its first entry.
 *
 * Cache: payload copies are appended back to back into 1 MiB chunks (an
 * arena per chunk: no malloc or free per entry). Chunks form a FIFO in
 * insertion order; eviction drops the oldest whole chunk, in O(1), and stops
 * at the first chunk holding a payload that is not yet durable. An entry
 * refers to its copy by (chunk sequence, offset), valid while that chunk is
 * live, so neither eviction nor compaction nor overwrite touches the other
 * entries; a compacted or overwritten payload's bytes stay in its chunk until
 * the chunk goes (they count in cache_bytes until then). Evicted chunks are
 * kept in a small pool and reused: steady-state appends never fault in fresh
 * pages.
 */
#include "engine/wal_int.h"

#include "common/rk_assert.h"
#include "common/rk_err.h"

#include <stdlib.h>
#include <string.h>

static uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= UINT64_C(0xff51afd7ed558ccd);
  x ^= x >> 33;
  return x;
}

int wal_index_init(wal_index *ix, uint64_t cache_budget) {
  memset(ix, 0, sizeof *ix);
  ix->nslots = 1024;
  ix->slots = calloc(ix->nslots, sizeof *ix->slots);
  if (ix->slots == NULL) return RK_ENOMEM;
  ix->cache_budget = cache_budget;
  return RK_OK;
}

static void group_free(wal_group *g) {
  free(g->locs);
  free(g);
}

void wal_index_free(wal_index *ix) {
  for (size_t i = 0; i < ix->nslots; i++)
    if (ix->slots[i]) group_free(ix->slots[i]);
  free(ix->slots);
  for (size_t k = 0; k < ix->cn; k++) free(ix->chunks[(ix->chead + k) % ix->ccap].mem);
  free(ix->chunks);
  for (size_t k = 0; k < ix->npool; k++) free(ix->pool[k]);
  memset(ix, 0, sizeof *ix);
}

wal_group *wal_index_find(const wal_index *ix, uint64_t id) {
  size_t mask = ix->nslots - 1;
  for (size_t i = mix(id) & mask;; i = (i + 1) & mask) {
    wal_group *g = ix->slots[i];
    if (g == NULL) return NULL;
    if (g->id == id) return g;
  }
}

static int grow_slots(wal_index *ix) {
  size_t n = ix->nslots * 2;
  wal_group **s = calloc(n, sizeof *s);
  if (s == NULL) return RK_ENOMEM;
  for (size_t i = 0; i < ix->nslots; i++) {
    wal_group *g = ix->slots[i];
    if (!g) continue;
    size_t j = mix(g->id) & (n - 1);
    while (s[j]) j = (j + 1) & (n - 1);
    s[j] = g;
  }
  free(ix->slots);
  ix->slots = s;
  ix->nslots = n;
  return RK_OK;
}

wal_group *wal_index_get(wal_index *ix, uint64_t id) {
  wal_group *g = wal_index_find(ix, id);
  if (g) return g;
  if ((ix->ngroups + 1) * 2 > ix->nslots && grow_slots(ix) != RK_OK) return NULL;
  g = calloc(1, sizeof *g);
  if (g == NULL) return NULL;
  g->id = id;
  g->first = 1;
  g->prev_known = 1; /* term(0) == 0 */
  size_t mask = ix->nslots - 1;
  size_t i = mix(id) & mask;
  while (ix->slots[i]) i = (i + 1) & mask;
  ix->slots[i] = g;
  ix->ngroups++;
  return g;
}

wal_loc *wal_group_loc(const wal_group *g, uint64_t index) {
  if (g->n == 0 || index < g->first || index > wal_group_last(g)) return NULL;
  return &g->locs[(g->head + (index - g->first)) % g->cap];
}

int wal_group_check_append(const wal_group *g, uint64_t index) {
  if (index == 0) return RK_EINVAL;
  if (!g || !g->touched || (g->n == 0 && !g->has_mark && g->first == 1)) return RK_OK;
  if (g->n == 0 && !g->has_mark) return RK_OK; /* only a hard state so far */
  if (index < g->first || index > g->first + g->n) return RK_EINVAL;
  return RK_OK;
}

/* The k-th retained entry (k < n): never NULL, unlike wal_group_loc(). */
static wal_loc *loc_at(const wal_group *g, size_t k) {
  RK_ASSERT(k < g->n && g->cap > 0);
  return &g->locs[(g->head + k) % g->cap];
}

uint64_t wal_group_rewrite_bytes(const wal_group *g, uint64_t stop) {
  uint64_t bytes = WAL_REC_COMPACT_LEN + (g->has_hs ? WAL_REC_HS_LEN : 0);
  for (size_t k = 0; k < g->n && bytes <= stop; k++) bytes += wal_rec_entry_size(loc_at(g, k)->len);
  return bytes;
}

static int ensure_cap(wal_group *g, size_t need) {
  if (need <= g->cap) return RK_OK;
  size_t ncap = g->cap ? g->cap * 2 : 4;
  while (ncap < need) ncap *= 2;
  wal_loc *nl = malloc(ncap * sizeof *nl);
  if (nl == NULL) return RK_ENOMEM;
  if (g->n) { /* unwrap the ring: [head, cap) then [0, rest) */
    size_t first = g->cap - g->head < g->n ? g->cap - g->head : g->n;
    memcpy(nl, g->locs + g->head, first * sizeof *nl);
    memcpy(nl + first, g->locs, (g->n - first) * sizeof *nl);
  }
  free(g->locs);
  g->locs = nl;
  g->cap = ncap;
  g->head = 0;
  return RK_OK;
}

int wal_group_add(wal_group *g, uint64_t index, const wal_loc *loc) {
  RK_ASSERT(index >= 1);
  if (g->n == 0 || index < g->first || index > wal_group_last(g) + 1) {
    /* Empty log, or a start the overwrite rule allows only for empty/fresh
     * groups: restart the log at index. */
    if (ensure_cap(g, 1) != RK_OK) return RK_ENOMEM;
    if (g->n == 0 && index == g->first) {
      /* prev_term stays as the compaction mark said */
    } else if (g->has_mark && index == g->mark_first && g->mark_prev_known) {
      /* A rewrite from the latest mark's boundary (replay: after stale
       * entries of the run it replaces; see wal_group_remember_mark). */
      g->prev_term = g->mark_prev_term;
      g->prev_known = 1;
    } else {
      /* Before index 1 there is nothing: its term, 0, is always known. (A
       * replay meets this when a fresh group's log was overwritten from 1
       * and the purge dropped the segment with its first run: the stale
       * tail of that run comes first, then the rewrite from 1.) */
      g->prev_known = index == 1;
      g->prev_term = 0;
    }
    g->n = 0;
    g->head = 0;
    g->first = index;
  } else if (index <= wal_group_last(g)) {
    /* suffix overwrite: drop [index, last] (their payload copies stay in
     * their chunks until the chunks are evicted) */
    g->n = (size_t)(index - g->first);
  }
  if (ensure_cap(g, g->n + 1) != RK_OK) return RK_ENOMEM;
  wal_loc *l = &g->locs[(g->head + g->n) % g->cap];
  *l = *loc;
  l->cref = 0;
  g->n++;
  g->touched = 1;
  RK_ASSERT(wal_group_last(g) == index);
  return RK_OK;
}

/* The latest mark's boundary: the log starts at `index` and term(index - 1)
 * is prev_term when known. Replay can meet stale entries of a run that a
 * later record rewrites from exactly this index; wal_group_add then takes
 * term(index - 1) from here. */
void wal_group_remember_mark(wal_group *g, uint64_t index, uint64_t prev_term, int known) {
  g->mark_first = index;
  g->mark_prev_term = known ? prev_term : 0;
  g->mark_prev_known = known || index == 1;
}

void wal_group_reset(wal_group *g, uint64_t index, uint64_t prev_term) {
  g->n = 0;
  g->head = 0;
  g->first = index;
  g->prev_term = prev_term;
  g->prev_known = prev_term != 0 || index == 1;
  wal_group_remember_mark(g, index, prev_term, g->prev_known);
  g->touched = 1;
  g->has_mark = 1;
}

void wal_group_compact(wal_group *g, uint64_t index, uint64_t prev_term) {
  g->touched = 1;
  g->has_mark = 1;
  if (index <= g->first) {
    /* Nothing to drop; remember prev_term if it is the boundary's (replay
     * can meet a mark after the group's first surviving entry). */
    if (index == g->first && prev_term && !g->prev_known) {
      g->prev_term = prev_term;
      g->prev_known = 1;
    }
    if (index == g->first && g->prev_known)
      wal_group_remember_mark(g, index, g->prev_term, 1);
    else
      wal_group_remember_mark(g, index, prev_term, prev_term != 0);
    return;
  }
  uint64_t last = g->n ? wal_group_last(g) : g->first - 1;
  uint64_t pt = prev_term;
  int known = prev_term != 0;
  if (index - 1 <= last && index - 1 >= g->first) {
    pt = loc_at(g, (size_t)(index - 1 - g->first))->term;
    known = 1;
  }
  /* O(1) whatever the count: nothing per dropped entry is touched but the
   * boundary's term above (their payload copies stay in their chunks until
   * the chunks are evicted). A node compacts every group regularly;
   * touching each dropped wal_loc, written long ago and cold, cost ~6 ns an
   * entry (~0.6 ms for 100 groups' second of appends at 900,000/s, a stall
   * of the event loop). */
  uint64_t drop_to = index <= last + 1 ? index : last + 1;
  size_t dropped = (size_t)(drop_to - g->first);
  RK_ASSERT(dropped <= g->n);
  if (dropped) {
    g->head = (g->head + dropped) % g->cap;
    g->n -= dropped;
  }
  if (index > last + 1) {
    RK_ASSERT(g->n == 0);
    g->head = 0;
  }
  g->first = index;
  g->prev_term = pt;
  g->prev_known = known;
  wal_group_remember_mark(g, index, pt, known);
}

static wal_cache_chunk *chunk_at(const wal_index *ix, size_t k) {
  return &ix->chunks[(ix->chead + k) % ix->ccap];
}

/* Opens a new newest chunk of at least `need` bytes. */
static int chunk_open(wal_index *ix, uint32_t need) {
  if (ix->cn == ix->ccap) {
    size_t ncap = ix->ccap ? ix->ccap * 2 : 16;
    wal_cache_chunk *nc = malloc(ncap * sizeof *nc);
    if (nc == NULL) return RK_ENOMEM;
    for (size_t k = 0; k < ix->cn; k++) nc[k] = *chunk_at(ix, k);
    free(ix->chunks);
    ix->chunks = nc;
    ix->ccap = ncap;
    ix->chead = 0;
  }
  uint32_t cap = need > WAL_CACHE_CHUNK ? need : WAL_CACHE_CHUNK;
  uint8_t *mem;
  if (cap == WAL_CACHE_CHUNK && ix->npool > 0) {
    mem = ix->pool[--ix->npool];
  } else {
    mem = malloc(cap);
    if (mem == NULL) return RK_ENOMEM;
  }
  if (ix->cn == 0 && ix->chunk_first == 0) ix->chunk_first = 1;
  *chunk_at(ix, ix->cn) = (wal_cache_chunk){.mem = mem, .cap = cap, .used = 0, .max_bseq = 0};
  ix->cn++;
  ix->tail_open = 1;
  return RK_OK;
}

static void chunk_evict_oldest(wal_index *ix) {
  RK_ASSERT(ix->cn > 0);
  wal_cache_chunk *c = chunk_at(ix, 0);
  ix->cache_bytes -= c->used;
  if (c->cap == WAL_CACHE_CHUNK && ix->npool < WAL_CACHE_POOL)
    ix->pool[ix->npool++] = c->mem;
  else
    free(c->mem);
  ix->chead = (ix->chead + 1) % ix->ccap;
  ix->cn--;
  ix->chunk_first++;
  if (ix->cn == 0) ix->tail_open = 0; /* the next payload opens a new chunk */
}

int wal_cache_put(wal_index *ix, wal_loc *loc, const uint8_t *data) {
  /* Always cached, even with a zero budget: an entry not yet durable can
   * only be read from here (trim evicts it once its batch is durable). */
  loc->cref = 0;
  if (loc->len == 0) return RK_OK;
  wal_cache_chunk *c = ix->cn ? chunk_at(ix, ix->cn - 1) : NULL;
  if (c == NULL || !ix->tail_open || c->cap - c->used < loc->len) {
    if (chunk_open(ix, loc->len) != RK_OK) return RK_ENOMEM;
    c = chunk_at(ix, ix->cn - 1);
  }
  RK_ASSERT(loc->bseq >= c->max_bseq); /* payloads arrive in batch order */
  memcpy(c->mem + c->used, data, loc->len);
  loc->cref = ((ix->chunk_first + ix->cn - 1) << 32) | c->used;
  c->used += loc->len;
  c->max_bseq = loc->bseq;
  ix->cache_bytes += loc->len;
  return RK_OK;
}

uint8_t *wal_cache_get(const wal_index *ix, const wal_loc *loc) {
  uint64_t seq = loc->cref >> 32;
  if (loc->cref == 0 || seq < ix->chunk_first) return NULL;
  RK_ASSERT(seq - ix->chunk_first < ix->cn);
  const wal_cache_chunk *c = chunk_at(ix, (size_t)(seq - ix->chunk_first));
  uint32_t off = (uint32_t)loc->cref;
  RK_ASSERT((uint64_t)off + loc->len <= c->used);
  return c->mem + off;
}

void wal_cache_trim(wal_index *ix, uint64_t durable_bseq) {
  while (ix->cn > 0 && ix->cache_bytes > ix->cache_budget &&
         chunk_at(ix, 0)->max_bseq <= durable_bseq)
    chunk_evict_oldest(ix);
}

uint64_t wal_group_min_seg(const wal_group *g) {
  uint64_t m = UINT64_MAX;
  if (g->n) m = g->locs[g->head].seg;
  if (g->has_hs && g->hs_seg < m) m = g->hs_seg;
  if (g->has_mark && g->mark_seg < m) m = g->mark_seg;
  return m;
}
