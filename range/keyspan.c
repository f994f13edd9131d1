#include "range/keyspan.h"

#include "common/rk_assert.h"
#include "common/rk_err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int range_key_cmp(const void *a, size_t alen, const void *b, size_t blen) {
  size_t n = alen < blen ? alen : blen;
  int c = n ? memcmp(a, b, n) : 0;
  if (c != 0) return c;
  return (alen > blen) - (alen < blen);
}

int range_desc_contains(const range_desc *d, const void *key, size_t klen) {
  if (range_key_cmp(key, klen, d->start, d->start_len) < 0) return 0;
  if (d->end_len != 0 && range_key_cmp(key, klen, d->end, d->end_len) >= 0) return 0;
  return 1;
}

int range_desc_covers_end(const range_desc *d, const void *end, size_t elen) {
  if (d->end_len == 0) return 1;
  return elen != 0 && range_key_cmp(end, elen, d->end, d->end_len) <= 0;
}

int range_desc_has_node(const range_desc *d, uint32_t node) {
  for (uint8_t i = 0; i < d->n_replicas; i++)
    if (d->replicas[i] == node) return 1;
  return 0;
}

/* Zone-alternating node order: one node from each zone in turn, zones in
 * order of first appearance, nodes by id within a zone. */
static void zone_order(const range_node *nodes, size_t n, uint32_t *out) {
  range_node *sorted = malloc(n * sizeof *sorted);
  RK_ASSERTF(sorted != NULL, "out of memory");
  memcpy(sorted, nodes, n * sizeof *sorted);
  for (size_t i = 1; i < n; i++) /* insertion sort by id: n is small */
    for (size_t j = i; j > 0 && sorted[j - 1].id > sorted[j].id; j--) {
      range_node t = sorted[j];
      sorted[j] = sorted[j - 1];
      sorted[j - 1] = t;
    }
  uint8_t *taken = calloc(n, 1);
  RK_ASSERTF(taken != NULL, "out of memory");
  size_t k = 0;
  while (k < n) {
    /* one pass: take the first untaken node of each zone not yet used in this pass */
    const char *used[RANGE_MAX_REPLICAS * 64];
    size_t nused = 0;
    for (size_t i = 0; i < n && k < n; i++) {
      if (taken[i]) continue;
      const char *z = sorted[i].zone ? sorted[i].zone : "";
      int seen = 0;
      for (size_t u = 0; u < nused; u++)
        if (strcmp(used[u], z) == 0) seen = 1;
      if (seen && nused < sizeof used / sizeof used[0]) continue;
      if (nused < sizeof used / sizeof used[0]) used[nused++] = z;
      taken[i] = 1;
      out[k++] = sorted[i].id;
    }
  }
  free(taken);
  free(sorted);
}

int range_table_bootstrap(range_table *t, uint32_t nranges, const range_node *nodes,
                          size_t nnodes) {
  memset(t, 0, sizeof *t);
  if (nranges < 1 || nranges > RANGE_MAX_RANGES || nnodes < 1) return RK_EINVAL;
  for (size_t i = 0; i < nnodes; i++) {
    if (nodes[i].id == 0) return RK_EINVAL;
    for (size_t j = 0; j < i; j++)
      if (nodes[i].id == nodes[j].id) return RK_EINVAL;
  }
  /* More than 65536 ranges cannot be cut at distinct 4-hex-digit prefixes. */
  if (nranges > 65536) return RK_EINVAL;
  t->v = calloc(nranges, sizeof *t->v);
  uint32_t *order = malloc(nnodes * sizeof *order);
  if (t->v == NULL || order == NULL) {
    free(t->v);
    free(order);
    t->v = NULL;
    return RK_ENOMEM;
  }
  zone_order(nodes, nnodes, order);
  size_t rf = nnodes < 3 ? nnodes : 3;
  for (uint32_t i = 0; i < nranges; i++) {
    range_desc *d = &t->v[i];
    d->id = i + 1;
    d->generation = 1;
    if (i > 0) {
      unsigned p = (unsigned)(((uint64_t)i * 65536u) / nranges) & 0xffffu;
      char buf[16];
      snprintf(buf, sizeof buf, "%04x", p);
      memcpy(d->start, buf, 4);
      d->start_len = 4;
    }
    d->n_replicas = (uint8_t)rf;
    for (size_t k = 0; k < rf; k++) d->replicas[k] = order[(i + k) % nnodes];
  }
  for (uint32_t i = 0; i + 1 < nranges; i++) {
    memcpy(t->v[i].end, t->v[i + 1].start, t->v[i + 1].start_len);
    t->v[i].end_len = t->v[i + 1].start_len;
  }
  free(order);
  t->n = nranges;
  return RK_OK;
}

void range_table_free(range_table *t) {
  free(t->v);
  memset(t, 0, sizeof *t);
}

const range_desc *range_table_lookup(const range_table *t, const void *key, size_t klen) {
  RK_ASSERT(t->n > 0);
  /* The last range whose start <= key. */
  size_t lo = 0, hi = t->n;
  while (hi - lo > 1) {
    size_t mid = lo + (hi - lo) / 2;
    if (range_key_cmp(t->v[mid].start, t->v[mid].start_len, key, klen) <= 0)
      lo = mid;
    else
      hi = mid;
  }
  RK_ASSERT(range_desc_contains(&t->v[lo], key, klen));
  return &t->v[lo];
}

const range_desc *range_table_get(const range_table *t, uint64_t id) {
  if (id < 1 || id > t->n) return NULL;
  RK_ASSERT(t->v[id - 1].id == id);
  return &t->v[id - 1];
}

static void put_u64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint64_t get_u64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

size_t range_desc_encode(const range_desc *d, uint8_t *buf, size_t cap) {
  RK_ASSERT(cap >= RANGE_DESC_MAX_BYTES);
  RK_ASSERT(d->start_len <= RANGE_KEY_MAX && d->end_len <= RANGE_KEY_MAX);
  RK_ASSERT(d->n_replicas <= RANGE_MAX_REPLICAS);
  size_t o = 0;
  buf[o++] = 1;
  put_u64(buf + o, d->id);
  o += 8;
  put_u64(buf + o, d->generation);
  o += 8;
  buf[o++] = d->start_len;
  memcpy(buf + o, d->start, d->start_len);
  o += d->start_len;
  buf[o++] = d->end_len;
  memcpy(buf + o, d->end, d->end_len);
  o += d->end_len;
  buf[o++] = d->n_replicas;
  for (uint8_t i = 0; i < d->n_replicas; i++) {
    for (int b = 0; b < 4; b++) buf[o + (size_t)b] = (uint8_t)(d->replicas[i] >> (8 * b));
    o += 4;
  }
  return o;
}

int range_desc_decode(const uint8_t *buf, size_t len, range_desc *d) {
  memset(d, 0, sizeof *d);
  size_t o = 0;
  if (len < 1 + 8 + 8 + 1 || buf[0] != 1) return RK_ECORRUPT;
  o = 1;
  d->id = get_u64(buf + o);
  o += 8;
  d->generation = get_u64(buf + o);
  o += 8;
  d->start_len = buf[o++];
  if (d->start_len > RANGE_KEY_MAX || o + d->start_len + 1 > len) return RK_ECORRUPT;
  memcpy(d->start, buf + o, d->start_len);
  o += d->start_len;
  d->end_len = buf[o++];
  if (d->end_len > RANGE_KEY_MAX || o + d->end_len + 1 > len) return RK_ECORRUPT;
  memcpy(d->end, buf + o, d->end_len);
  o += d->end_len;
  d->n_replicas = buf[o++];
  if (d->n_replicas == 0 || d->n_replicas > RANGE_MAX_REPLICAS) return RK_ECORRUPT;
  if (o + 4u * d->n_replicas != len) return RK_ECORRUPT;
  for (uint8_t i = 0; i < d->n_replicas; i++) {
    uint32_t v = 0;
    for (int b = 3; b >= 0; b--) v = (v << 8) | buf[o + (size_t)b];
    d->replicas[i] = v;
    o += 4;
  }
  if (d->id == 0) return RK_ECORRUPT;
  return RK_OK;
}

int range_table_adopt(range_table *t, range_desc *v, size_t n) {
  memset(t, 0, sizeof *t);
  if (n == 0) return RK_ECORRUPT;
  for (size_t i = 0; i < n; i++) {
    if (v[i].id != i + 1) return RK_ECORRUPT;
    if (i == 0 && v[i].start_len != 0) return RK_ECORRUPT;
    if (i + 1 == n && v[i].end_len != 0) return RK_ECORRUPT;
    if (i + 1 < n && range_key_cmp(v[i].end, v[i].end_len, v[i + 1].start, v[i + 1].start_len) != 0)
      return RK_ECORRUPT;
    if (i + 1 < n && range_key_cmp(v[i].start, v[i].start_len, v[i].end, v[i].end_len) >= 0)
      return RK_ECORRUPT;
  }
  t->v = v;
  t->n = n;
  return RK_OK;
}
