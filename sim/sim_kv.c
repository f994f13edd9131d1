/* sim_kv.c — see sim_kv.h. */
#include "sim/sim_kv.h"

#include "common/rk_assert.h"

#include <stdlib.h>
#include <string.h>

static uint8_t *put16(uint8_t *p, size_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
  return p + 2;
}
static size_t get16(const uint8_t *p) { return (size_t)p[0] | ((size_t)p[1] << 8); }

size_t sim_cmd_encode(const sim_cmd *c, uint8_t *buf, size_t cap) {
  size_t need = 15 + c->klen + 3 + (c->has_expected ? c->elen : 0) + 2 + c->vlen;
  if (need > cap || c->klen > 0xffff || c->elen > 0xffff || c->vlen > 0xffff) return 0;
  uint8_t *p = buf;
  *p++ = c->op;
  for (int i = 0; i < 4; i++) *p++ = (uint8_t)(c->client >> (8 * i));
  for (int i = 0; i < 8; i++) *p++ = (uint8_t)(c->opno >> (8 * i));
  p = put16(p, c->klen);
  memcpy(p, c->key, c->klen);
  p += c->klen;
  *p++ = (uint8_t)(c->has_expected ? 1 : 0);
  size_t el = c->has_expected ? c->elen : 0;
  p = put16(p, el);
  if (el) memcpy(p, c->expected, el);
  p += el;
  p = put16(p, c->vlen);
  if (c->vlen) memcpy(p, c->value, c->vlen);
  p += c->vlen;
  RK_ASSERT((size_t)(p - buf) == need);
  return need;
}

int sim_cmd_decode(const uint8_t *buf, size_t len, sim_cmd *out) {
  memset(out, 0, sizeof *out);
  if (len < 15) return -1;
  const uint8_t *p = buf, *end = buf + len;
  out->op = *p++;
  if (out->op < SIM_OP_PUT || out->op > SIM_OP_CAS) return -1;
  for (int i = 0; i < 4; i++) out->client |= (uint32_t)*p++ << (8 * i);
  for (int i = 0; i < 8; i++) out->opno |= (uint64_t)*p++ << (8 * i);
  out->klen = get16(p);
  p += 2;
  if ((size_t)(end - p) < out->klen + 3) return -1;
  out->key = (const char *)p;
  p += out->klen;
  out->has_expected = *p++;
  out->elen = get16(p);
  p += 2;
  if ((size_t)(end - p) < out->elen + 2) return -1;
  out->expected = (const char *)p;
  p += out->elen;
  out->vlen = get16(p);
  p += 2;
  if ((size_t)(end - p) != out->vlen) return -1;
  out->value = (const char *)p;
  return 0;
}

void sim_kv_init(sim_kv *kv) { memset(kv, 0, sizeof *kv); }

void sim_kv_free(sim_kv *kv) {
  for (size_t i = 0; i < kv->len; i++) {
    free(kv->v[i].key);
    free(kv->v[i].val);
  }
  free(kv->v);
  memset(kv, 0, sizeof *kv);
}

/* Binary search: index of key, or the insertion point with *found = 0. */
static size_t find(const sim_kv *kv, const char *key, size_t klen, int *found) {
  size_t lo = 0, hi = kv->len;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    const char *mk = kv->v[mid].key;
    size_t ml = strlen(mk);
    int c = memcmp(mk, key, ml < klen ? ml : klen);
    if (c == 0) c = ml < klen ? -1 : ml > klen ? 1 : 0;
    if (c == 0) {
      *found = 1;
      return mid;
    }
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  *found = 0;
  return lo;
}

static char *dupn(const char *s, size_t n) {
  char *d = malloc(n + 1);
  RK_ASSERT(d != NULL);
  memcpy(d, s, n);
  d[n] = 0;
  return d;
}

/* A pair's share of sim_kv_state (keys hold no NUL, so key NUL value is
 * unambiguous). */
static uint64_t pair_hash(const char *k, size_t kl, const char *v, size_t vl) {
  uint64_t h = sim_fnv(SIM_FNV_INIT, k, kl);
  h = sim_fnv(h, "", 1);
  return sim_fnv(h, v, vl);
}

static uint64_t stored_hash(const sim_kv_pair *p) {
  return pair_hash(p->key, strlen(p->key), p->val, strlen(p->val));
}

static void set(sim_kv *kv, const char *k, size_t kl, const char *v, size_t vl) {
  int found;
  size_t i = find(kv, k, kl, &found);
  kv->sum += pair_hash(k, kl, v, vl);
  if (found) {
    kv->sum -= stored_hash(&kv->v[i]);
    free(kv->v[i].val);
    kv->v[i].val = dupn(v, vl);
    return;
  }
  if (kv->len == kv->cap) {
    kv->cap = kv->cap ? 2 * kv->cap : 16;
    kv->v = realloc(kv->v, kv->cap * sizeof *kv->v);
    RK_ASSERT(kv->v != NULL);
  }
  memmove(kv->v + i + 1, kv->v + i, (kv->len - i) * sizeof *kv->v);
  kv->v[i].key = dupn(k, kl);
  kv->v[i].val = dupn(v, vl);
  kv->len++;
}

static void del(sim_kv *kv, const char *k, size_t kl) {
  int found;
  size_t i = find(kv, k, kl, &found);
  if (!found) return;
  kv->sum -= stored_hash(&kv->v[i]);
  free(kv->v[i].key);
  free(kv->v[i].val);
  memmove(kv->v + i, kv->v + i + 1, (kv->len - i - 1) * sizeof *kv->v);
  kv->len--;
}

int sim_kv_apply(sim_kv *kv, const sim_cmd *c) {
  switch (c->op) {
  case SIM_OP_PUT: set(kv, c->key, c->klen, c->value, c->vlen); return 1;
  case SIM_OP_DELETE: {
    int found;
    find(kv, c->key, c->klen, &found);
    del(kv, c->key, c->klen);
    return found;
  }
  case SIM_OP_CAS: {
    int found;
    size_t i = find(kv, c->key, c->klen, &found);
    int match;
    if (!c->has_expected)
      match = !found;
    else
      match = found && strlen(kv->v[i].val) == c->elen &&
              memcmp(kv->v[i].val, c->expected, c->elen) == 0;
    if (match) set(kv, c->key, c->klen, c->value, c->vlen);
    return match;
  }
  default: RK_UNREACHABLE();
  }
}

const char *sim_kv_get(const sim_kv *kv, const char *key) {
  int found;
  size_t i = find(kv, key, strlen(key), &found);
  return found ? kv->v[i].val : NULL;
}

uint8_t *sim_kv_image(const sim_kv *kv, size_t *len) {
  size_t n = 4;
  for (size_t i = 0; i < kv->len; i++) n += 4 + strlen(kv->v[i].key) + strlen(kv->v[i].val);
  uint8_t *b = malloc(n), *p = b;
  RK_ASSERT(b != NULL);
  for (int i = 0; i < 4; i++) *p++ = (uint8_t)(kv->len >> (8 * i));
  for (size_t i = 0; i < kv->len; i++) {
    size_t kl = strlen(kv->v[i].key), vl = strlen(kv->v[i].val);
    p = put16(p, kl);
    memcpy(p, kv->v[i].key, kl);
    p += kl;
    p = put16(p, vl);
    memcpy(p, kv->v[i].val, vl);
    p += vl;
  }
  *len = n;
  return b;
}

int sim_kv_restore(sim_kv *kv, const uint8_t *p, size_t len) {
  sim_kv_free(kv);
  if (len == 0) return 0; /* empty image = empty store */
  if (len < 4) return -1;
  const uint8_t *end = p + len;
  size_t cnt = (size_t)p[0] | (size_t)p[1] << 8 | (size_t)p[2] << 16 | (size_t)p[3] << 24;
  p += 4;
  for (size_t i = 0; i < cnt; i++) {
    if (end - p < 2) return -1;
    size_t kl = get16(p);
    p += 2;
    if ((size_t)(end - p) < kl + 2) return -1;
    const char *k = (const char *)p;
    p += kl;
    size_t vl = get16(p);
    p += 2;
    if ((size_t)(end - p) < vl) return -1;
    set(kv, k, kl, (const char *)p, vl);
    p += vl;
  }
  return p == end ? 0 : -1;
}

uint64_t sim_kv_digest(const sim_kv *kv) {
  size_t n;
  uint8_t *img = sim_kv_image(kv, &n);
  uint64_t h = sim_fnv(SIM_FNV_INIT, img, n);
  free(img);
  return h;
}

uint64_t sim_kv_state(const sim_kv *kv) { return kv->sum; }
