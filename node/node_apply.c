/* node_apply.c — the replicated key-value state machine of a node.
 *
 * One host turn's committed entries of every range become ONE RocksDB
 * WriteBatch, which also records every touched range's applied index; only
 * after it commits are the clients whose writes applied answered. A CAS
 * reads the value as of the entries before it: an overlay of this round's
 * writes in front of the store (the batch itself is not readable).
 */
#include "node/node_int.h"

#include "common/rk_assert.h"
#include "common/rk_err.h"
#include "common/rk_hash.h"
#include "common/rk_log.h"
#include "kv/kvcmd.h"

#include <stdlib.h>
#include <string.h>

/* This round's writes, by key: open addressing, sized per round. */
typedef struct ov_slot {
  const uint8_t *key;
  uint32_t klen;
  const uint8_t *val;
  uint32_t vlen;
  uint8_t present; /* 0: deleted in this round */
  uint8_t used;
} ov_slot;

typedef struct overlay {
  ov_slot *s;
  size_t cap;
} overlay;

static uint64_t key_hash(const uint8_t *k, uint32_t n) { return rk_fnv1a(RK_FNV_INIT, k, n); }

static ov_slot *ov_find(overlay *o, const uint8_t *k, uint32_t n) {
  size_t i = (size_t)key_hash(k, n) & (o->cap - 1);
  for (;; i = (i + 1) & (o->cap - 1)) {
    ov_slot *s = &o->s[i];
    if (!s->used || (s->klen == n && memcmp(s->key, k, n) == 0)) return s;
  }
}

/* What a result for one applied entry: answered after the batch commits. */
typedef struct applied_result {
  node_range *r;
  uint64_t index, term;
  uint8_t swapped;
  int code;
} applied_result;

static void apply_cmd(node *n, overlay *ov, const kv_cmd *c, uint8_t *swapped) {
  ov_slot *s = ov_find(ov, c->key, c->klen);
  if (c->op == KV_CAS) {
    const uint8_t *cur = NULL;
    size_t curlen = 0;
    void *owned = NULL;
    int present;
    if (s->used) {
      present = s->present;
      cur = s->val;
      curlen = s->vlen;
    } else {
      int rc = eng_state_get(n->state, c->key, c->klen, &owned, &curlen);
      if (rc != RK_OK && rc != RK_ENOTFOUND)
        node_storage_fault(n, 0, "reading a key for a compare-and-set", rc);
      present = rc == RK_OK;
      cur = owned;
    }
    int match = c->expect_absent ? !present
                                 : present && curlen == c->elen &&
                                       (c->elen == 0 || memcmp(cur, c->expected, c->elen) == 0);
    free(owned);
    *swapped = (uint8_t)match;
    if (!match) return;
  }
  s->used = 1;
  s->key = c->key;
  s->klen = c->klen;
  if (c->op == KV_DEL) {
    s->present = 0;
    s->val = NULL;
    s->vlen = 0;
    eng_state_batch_delete(n->batch, c->key, c->klen);
  } else {
    s->present = 1;
    s->val = c->value;
    s->vlen = c->vlen;
    eng_state_batch_put(n->batch, c->key, c->klen, c->value, c->vlen);
  }
}

static void respond_write(node *n, node_range *r, const node_prop *p, int code, uint8_t swapped) {
  if (p->conn == 0) return; /* its client left (node_on_client_closed) */
  Rangekv__ClientResponse resp;
  rangekv__client_response__init(&resp);
  resp.id = p->req_id;
  resp.code = code;
  resp.swapped = swapped != 0;
  resp.range_id = r->desc.id;
  if (code != RK_OK) resp.error = node_pb_str(rk_strerror(code));
  node_respond(n, p->conn, &resp);
}

/* Answers every write proposed at or before `index` of range r. */
static void settle_props(node *n, node_range *r, uint64_t index, uint64_t term, uint8_t swapped) {
  size_t k = 0;
  while (k < r->nprops && r->props[k].index <= index) {
    const node_prop *p = &r->props[k];
    /* Our entry is at (p->index, p->term). Another term there means a new
     * leader overwrote it: it can never commit (Log Matching). */
    int ok = p->index == index && p->term == term;
    respond_write(n, r, p, ok ? RK_OK : RK_EPROPOSALDROPPED, ok ? swapped : 0);
    r->ops++;
    k++;
  }
  if (k > 0) {
    memmove(r->props, r->props + k, (r->nprops - k) * sizeof *r->props);
    r->nprops -= k;
  }
}

/* The state machine jumped to a snapshot (installed at persist,
 * node_snap_install.c): writes this replica proposed at or below its index may or
 * may not be in it. */
static void settle_by_snapshot(node *n, node_range *r, uint64_t index) {
  uint64_t applied = 0;
  int rc = eng_state_applied(n->state, r->desc.id, &applied);
  if (rc != RK_OK)
    RK_ERROR("node", "range %llu: reading its applied index: %s", (unsigned long long)r->desc.id,
             rk_strerror(rc));
  else
    RK_ASSERTF(applied >= index, "range %llu: snapshot %llu installed before apply",
               (unsigned long long)r->desc.id, (unsigned long long)index);
  size_t k = 0;
  while (k < r->nprops && r->props[k].index <= index) {
    if (r->props[k].conn)
      node_respond_error(n, r->props[k].conn, r->props[k].req_id, RK_ETIMEOUT,
                         "outcome unknown: the replica was caught up by a snapshot", r);
    k++;
  }
  if (k > 0) {
    memmove(r->props, r->props + k, (r->nprops - k) * sizeof *r->props);
    r->nprops -= k;
  }
}

void node_apply(void *ctx, const mr_host_apply *a, size_t na) {
  node *n = ctx;
  size_t total = 0;
  for (size_t i = 0; i < na; i++) total += a[i].committed->len;
  overlay ov = {.cap = 16};
  while (ov.cap < 2 * total) ov.cap *= 2;
  ov.s = calloc(ov.cap, sizeof *ov.s);
  applied_result *res = calloc(total ? total : 1, sizeof *res);
  RK_ASSERTF(ov.s && res, "out of memory");
  eng_state_batch_clear(n->batch);
  size_t nres = 0;
  for (size_t i = 0; i < na; i++) {
    RK_ASSERT(a[i].group >= 1 && a[i].group <= n->table.n);
    node_range *r = &n->ranges[a[i].group - 1];
    RK_ASSERT(r->local);
    if (a[i].snap != NULL) settle_by_snapshot(n, r, a[i].snap->index);
    const rk_entry_vec *ev = a[i].committed;
    for (size_t k = 0; k < ev->len; k++) {
      const rk_entry *e = &ev->v[k];
      applied_result *ar = &res[nres++];
      *ar = (applied_result){.r = r, .index = e->index, .term = e->term};
      if (e->type != RK_ENTRY_NORMAL || e->len == 0) continue; /* no-op, conf change */
      kv_cmd c;
      if (kv_cmd_decode(e->data, e->len, &c) != RK_OK ||
          !range_desc_contains(&r->desc, c.key, c.klen)) {
        /* Every replica skips it alike: decoding and the span are the same
         * everywhere. (The proposer checks both; this guards the log.) */
        RK_WARN("node", "range %llu entry %llu is not a command of this range: skipped",
                (unsigned long long)r->desc.id, (unsigned long long)e->index);
        continue;
      }
      apply_cmd(n, &ov, &c, &ar->swapped);
    }
    if (ev->len > 0) eng_state_batch_set_applied(n->batch, r->desc.id, ev->v[ev->len - 1].index);
  }
  int rc = eng_state_commit(n->state, n->batch);
  if (rc != RK_OK) {
    /* The Raft log still holds these entries; a restart replays them. */
    RK_ERROR("node", "state store commit failed: %s; stopping", rk_strerror(rc));
    n->fatal = rc;
  } else {
    n->applied_entries += nres;
    for (size_t k = 0; k < nres; k++)
      settle_props(n, res[k].r, res[k].index, res[k].term, res[k].swapped);
  }
  free(res);
  free(ov.s);
}

/* ---- reads ------------------------------------------------------------------------ */

static void serve_get(node *n, node_range *r, const node_read *rd) {
  Rangekv__ClientResponse resp;
  rangekv__client_response__init(&resp);
  resp.id = rd->req_id;
  resp.range_id = r->desc.id;
  void *val = NULL;
  size_t len = 0;
  int rc = eng_state_get(n->state, rd->key, rd->klen, &val, &len);
  if (rc == RK_OK) {
    resp.found = 1;
    resp.value.data = val;
    resp.value.len = len;
  } else if (rc != RK_ENOTFOUND) {
    resp.code = rc;
    resp.error = node_pb_str(rk_strerror(rc));
  }
  node_respond(n, rd->conn, &resp);
  free(val);
}

/* memcmp order with length as the tie-break; len 0 means +infinity when
 * inf_if_empty (the end of a span). */
static int bound_cmp(const uint8_t *a, size_t alen, int a_inf, const uint8_t *b, size_t blen,
                     int b_inf) {
  if (a_inf || b_inf) return a_inf - b_inf;
  size_t m = alen < blen ? alen : blen;
  int c = m ? memcmp(a, b, m) : 0;
  if (c != 0) return c;
  return (alen > blen) - (alen < blen);
}

/* Scans [max(key, range start), min(end, range end)) up to limit; an empty
 * end means the end of the key space. */
static void serve_scan(node *n, node_range *r, const node_read *rd) {
  const range_desc *d = &r->desc;
  const uint8_t *lo = rd->key;
  size_t lolen = rd->klen;
  if (bound_cmp(lo, lolen, 0, d->start, d->start_len, 0) < 0) {
    lo = d->start;
    lolen = d->start_len;
  }
  const uint8_t *hi = rd->end;
  size_t hilen = rd->elen;
  int hi_inf = hilen == 0;
  if (bound_cmp(d->end, d->end_len, d->end_len == 0, hi, hilen, hi_inf) < 0) {
    hi = d->end;
    hilen = d->end_len;
    hi_inf = d->end_len == 0;
  }
  int empty = !hi_inf && bound_cmp(lo, lolen, 0, hi, hilen, 0) >= 0;
  Rangekv__ClientResponse resp;
  rangekv__client_response__init(&resp);
  resp.id = rd->req_id;
  resp.range_id = d->id;
  uint32_t limit = rd->limit && rd->limit < NODE_SCAN_MAX_ROWS ? rd->limit : NODE_SCAN_MAX_ROWS;
  Rangekv__KeyValue *kvs = calloc(limit, sizeof *kvs);
  Rangekv__KeyValue **kvp = calloc(limit, sizeof *kvp);
  void **bufs = calloc(limit, sizeof *bufs);
  RK_ASSERTF(kvs && kvp && bufs, "out of memory");
  eng_state_iter *it =
      empty ? NULL
            : eng_state_iter_new(n->state, lo, lolen, hi_inf ? NULL : hi, hi_inf ? 0 : hilen);
  size_t cnt = 0, bytes = 0;
  while (it && eng_state_iter_valid(it)) {
    size_t kl = 0, vl = 0;
    const void *k = eng_state_iter_key(it, &kl);
    const void *v = eng_state_iter_value(it, &vl);
    if (cnt == limit || (cnt > 0 && bytes + kl + vl > NODE_SCAN_MAX_BYTES)) {
      resp.more = 1;
      break;
    }
    bytes += kl + vl;
    uint8_t *b = malloc(kl + vl + 1);
    RK_ASSERTF(b != NULL, "out of memory");
    memcpy(b, k, kl);
    if (vl) memcpy(b + kl, v, vl);
    bufs[cnt] = b;
    rangekv__key_value__init(&kvs[cnt]);
    kvs[cnt].key.data = b;
    kvs[cnt].key.len = kl;
    kvs[cnt].value.data = b + kl;
    kvs[cnt].value.len = vl;
    kvp[cnt] = &kvs[cnt];
    cnt++;
    eng_state_iter_next(it);
  }
  if (it) {
    int rc = eng_state_iter_status(it);
    if (rc != RK_OK) {
      resp.code = rc;
      resp.error = node_pb_str(rk_strerror(rc));
    }
    eng_state_iter_free(it);
  }
  resp.n_kvs = cnt;
  resp.kvs = kvp;
  node_respond(n, rd->conn, &resp);
  for (size_t i = 0; i < cnt; i++) free(bufs[i]);
  free(bufs);
  free(kvp);
  free(kvs);
}

void node_read_ready(void *ctx, uint64_t group, uint64_t read_ctx, uint64_t index) {
  node *n = ctx;
  /* After a failed apply the store lacks a round: serve nothing from it. */
  if (n->fatal || group < 1 || group > n->table.n) return;
  node_range *r = &n->ranges[group - 1];
  /* The host hands out a confirmed read only once its index is applied
   * (and the state store commits each apply round before that): serving
   * it earlier would be a stale read. */
  const mr_raft *core = mr_host_group_raft(n->host, group);
  RK_ASSERTF(core != NULL && mr_raft_applied(core) >= index,
             "range %llu: read at %llu served before it is applied", (unsigned long long)group,
             (unsigned long long)index);
  for (size_t i = 0; i < r->nreads; i++) {
    node_read *rd = &r->reads[i];
    if (rd->ctx != read_ctx) continue;
    if (rd->op == RANGEKV__CLIENT_OP__OP_SCAN)
      serve_scan(n, r, rd);
    else
      serve_get(n, r, rd);
    r->ops++;
    free(rd->key);
    free(rd->end);
    r->reads[i] = r->reads[--r->nreads];
    return;
  }
}
