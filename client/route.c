/* client/route.c — the client's copy of the range table: built from an
 * OP_RANGES answer, checked to tile the key space, searched by key. Pure
 * code (no I/O), unit-tested on its own. */
#include "client/rkc_int.h"

#include "common/rk_err.h"

#include <stdlib.h>
#include <string.h>

int rkc_key_cmp(const void *a, size_t alen, const void *b, size_t blen) {
  size_t m = alen < blen ? alen : blen;
  int c = m ? memcmp(a, b, m) : 0;
  if (c != 0) return c < 0 ? -1 : 1;
  return alen < blen ? -1 : alen > blen;
}

void rkc_ranges_free(rkc_ranges *t) {
  if (t == NULL) return;
  for (size_t i = 0; i < t->n; i++) {
    free(t->v[i].start);
    free(t->v[i].end);
  }
  free(t->v);
  free(t->nodes);
  memset(t, 0, sizeof *t);
}

static uint8_t *dup_bytes(const uint8_t *p, size_t n) {
  uint8_t *d = malloc(n + 1);
  if (d == NULL) return NULL;
  if (n) memcpy(d, p, n);
  d[n] = 0;
  return d;
}

static int cmp_range(const void *a, const void *b) {
  const rkc_range *x = a, *y = b;
  return rkc_key_cmp(x->start, x->start_len, y->start, y->start_len);
}

static void copy_str(char *dst, size_t cap, const char *src) {
  if (src == NULL) src = "";
  size_t n = strlen(src);
  if (n >= cap) n = cap - 1;
  memcpy(dst, src, n);
  dst[n] = 0;
}

int rkc_ranges_from_proto(rkc_ranges *t, const Rangekv__ClientResponse *r) {
  memset(t, 0, sizeof *t);
  if (r->n_ranges == 0) return RK_ECORRUPT;
  t->v = calloc(r->n_ranges, sizeof *t->v);
  t->nodes = calloc(r->n_nodes ? r->n_nodes : 1, sizeof *t->nodes);
  if (t->v == NULL || t->nodes == NULL) goto nomem;
  for (size_t i = 0; i < r->n_ranges; i++) {
    const Rangekv__RangeInfo *ri = r->ranges[i];
    rkc_range *d = &t->v[t->n];
    if (ri->start_key.len > RKC_KEY_MAX || ri->end_key.len > RKC_KEY_MAX ||
        ri->n_replica_nodes > RKC_MAX_REPLICAS) {
      rkc_ranges_free(t);
      return RK_ECORRUPT;
    }
    d->start = dup_bytes(ri->start_key.data, ri->start_key.len);
    d->end = dup_bytes(ri->end_key.data, ri->end_key.len);
    t->n++;
    if (d->start == NULL || d->end == NULL) goto nomem;
    d->id = ri->range_id;
    d->start_len = ri->start_key.len;
    d->end_len = ri->end_key.len;
    d->n_replicas = (uint32_t)ri->n_replica_nodes;
    for (size_t k = 0; k < ri->n_replica_nodes; k++) d->replicas[k] = ri->replica_nodes[k];
    d->leader = ri->leader_node;
    d->term = ri->term;
    d->commit = ri->commit;
    d->applied = ri->applied;
    d->quiesced = ri->quiesced;
  }
  for (size_t i = 0; i < r->n_nodes; i++) {
    const Rangekv__NodeInfo *ni = r->nodes[i];
    rkc_node *n = &t->nodes[t->n_nodes++];
    n->id = ni->node_id;
    copy_str(n->client_addr, sizeof n->client_addr, ni->client_addr);
    copy_str(n->peer_addr, sizeof n->peer_addr, ni->peer_addr);
    copy_str(n->zone, sizeof n->zone, ni->zone);
    n->live = ni->live;
  }
  qsort(t->v, t->n, sizeof *t->v, cmp_range);
  if (rkc_ranges_check(t) != RK_OK) {
    rkc_ranges_free(t);
    return RK_ECORRUPT;
  }
  return RK_OK;
nomem:
  rkc_ranges_free(t);
  return RK_ENOMEM;
}

int rkc_ranges_copy(rkc_ranges *dst, const rkc_ranges *src) {
  memset(dst, 0, sizeof *dst);
  dst->v = calloc(src->n ? src->n : 1, sizeof *dst->v);
  dst->nodes = calloc(src->n_nodes ? src->n_nodes : 1, sizeof *dst->nodes);
  if (dst->v == NULL || dst->nodes == NULL) goto nomem;
  for (size_t i = 0; i < src->n; i++) {
    dst->v[i] = src->v[i];
    dst->v[i].start = dup_bytes(src->v[i].start, src->v[i].start_len);
    dst->v[i].end = dup_bytes(src->v[i].end, src->v[i].end_len);
    dst->n++;
    if (dst->v[i].start == NULL || dst->v[i].end == NULL) goto nomem;
  }
  if (src->n_nodes) memcpy(dst->nodes, src->nodes, src->n_nodes * sizeof *src->nodes);
  dst->n_nodes = src->n_nodes;
  return RK_OK;
nomem:
  rkc_ranges_free(dst);
  return RK_ENOMEM;
}

int rkc_ranges_check(const rkc_ranges *t) {
  if (t->n == 0 || t->v[0].start_len != 0) return RK_ECORRUPT;
  for (size_t i = 0; i < t->n; i++) {
    const rkc_range *d = &t->v[i];
    if (d->id == 0 || d->n_replicas == 0) return RK_ECORRUPT;
    int last = i + 1 == t->n;
    if (last) {
      if (d->end_len != 0) return RK_ECORRUPT; /* does not reach +infinity */
    } else {
      const rkc_range *nx = &t->v[i + 1];
      /* Non-empty span that ends exactly where the next one starts. */
      if (d->end_len == 0) return RK_ECORRUPT;
      if (rkc_key_cmp(d->end, d->end_len, nx->start, nx->start_len) != 0) return RK_ECORRUPT;
      if (rkc_key_cmp(d->start, d->start_len, d->end, d->end_len) >= 0) return RK_ECORRUPT;
    }
  }
  return RK_OK;
}

size_t rkc_ranges_index(const rkc_ranges *t, const void *key, size_t klen) {
  /* The last range whose start <= key. v[0].start is "" so one exists. */
  size_t lo = 0, hi = t->n;
  while (hi - lo > 1) {
    size_t mid = lo + (hi - lo) / 2;
    if (rkc_key_cmp(t->v[mid].start, t->v[mid].start_len, key, klen) <= 0)
      lo = mid;
    else
      hi = mid;
  }
  return lo;
}

const rkc_range *rkc_ranges_lookup(const rkc_ranges *t, const void *key, size_t klen) {
  if (t == NULL || t->n == 0) return NULL;
  size_t i = rkc_ranges_index(t, key, klen);
  const rkc_range *d = &t->v[i];
  if (rkc_key_cmp(d->start, d->start_len, key, klen) > 0) return NULL;
  if (d->end_len && rkc_key_cmp(key, klen, d->end, d->end_len) >= 0) return NULL;
  return d;
}

const rkc_node *rkc_ranges_node(const rkc_ranges *t, uint32_t id) {
  for (size_t i = 0; i < t->n_nodes; i++)
    if (t->nodes[i].id == id) return &t->nodes[i];
  return NULL;
}

rkc_class rkc_classify(int code) {
  switch (code) {
  case RK_OK: return RKC_DONE;
  case RK_ENOTLEADER:
  case RK_EWRONGNODE: return RKC_REDIRECT;
  case RK_EUNKNOWNRANGE:
  case RK_ERANGEMOVED: return RKC_REFRESH;
  case RK_ETRANSFERRING:
  case RK_EUNCOMMITTEDFULL:
  case RK_ECONFPENDING:
  case RK_EAGAIN: return RKC_RETRY;
  case RK_ETOOLARGE:
  case RK_EINVAL:
  case RK_EMALFORMED:
  case RK_EUNSUPPORTED:
  case RK_EWRONGCLUSTER: return RKC_FINAL;
  default: return RKC_UNKNOWN; /* RK_ETIMEOUT, RK_EPROPOSALDROPPED, anything else */
  }
}

int rkc_parse_endpoints(const char *list, char (*addrs)[RKC_ADDR_MAX], size_t cap, size_t *n) {
  *n = 0;
  if (list == NULL || *list == '\0') return RK_EINVAL;
  const char *p = list;
  for (;;) {
    const char *e = strchr(p, ',');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    if (len == 0 || len >= RKC_ADDR_MAX || *n >= cap) return RK_EINVAL;
    const char *colon = memrchr(p, ':', len);
    if (colon == NULL || colon == p || colon + 1 == p + len) return RK_EINVAL;
    for (const char *q = colon + 1; q < p + len; q++)
      if (*q < '0' || *q > '9') return RK_EINVAL;
    memcpy(addrs[*n], p, len);
    addrs[*n][len] = 0;
    (*n)++;
    if (e == NULL) break;
    p = e + 1;
  }
  return RK_OK;
}
