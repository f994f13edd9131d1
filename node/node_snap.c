/* node_snap.c — range snapshots between nodes.
 *
 * A replica whose leader compacted entries it still needs (node.c,
 * node_compact: past a replica more than --compact-lag-entries behind) gets
 * the range's data instead. The leader's storage `snapshot` op packs every
 * user key of the range's span, as of its applied index, into a
 * RangeSnapshot (proto/rangekv.proto) that travels inside the
 * InstallSnapshot message. Apply is synchronous in the loop, so the state
 * store holds exactly the applied index's state when the op runs.
 *
 * The receiver checks the data against its own descriptor of the range
 * before any Raft core sees it (node_snap_check; a bad one drops the
 * frame). The core then hands the snapshot to persist, where the node
 * installs it before the WAL batch that holds the rest of the Ready:
 *   1. one state-store batch: delete the range's keys, write the image, set
 *      applied = index and the snapshot mark (index, term); commit; sync;
 *   2. eng_wal_reset(range, index + 1, term): the range's log becomes empty
 *      at index + 1, durable with that batch, ahead of its entries.
 * A crash between 1 and 2 leaves the state store ahead of the WAL. At start
 * (node_snap_reconcile) a range whose WAL does not hold (index, term) is
 * reset the same way before its Raft core is created, so a restart never
 * replays entries the snapshot replaced.
 *
 * Size: a snapshot travels in one frame, so a range over NODE_SNAP_MAX_BYTES
 * cannot send one (counted and logged), and node_compact never compacts past
 * a lagging replica of such a range (node_snap_fits). Streaming larger
 * snapshots in chunks is the next step.
 */
#include "node/node_int.h"

#include "common/rk_assert.h"
#include "common/rk_err.h"
#include "common/rk_log.h"
#include "kv/kvcmd.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Per key-value: protobuf tags and length varints, generously. */
#define SNAP_KV_OVERHEAD 16u

void node_range_conf(const node_range *r, mr_conf *out) {
  memset(out, 0, sizeof *out);
  out->n = r->desc.n_replicas;
  for (uint8_t k = 0; k < r->desc.n_replicas; k++)
    out->r[k] = (mr_conf_replica){mr_host_replica_id(r->desc.replicas[k], 1), MR_VOTER_IN};
}

static eng_state_iter *span_iter(node *n, const range_desc *d) {
  return eng_state_iter_new(n->state, d->start, d->start_len, d->end_len ? d->end : NULL,
                            d->end_len);
}

/* Bytes of the range's image, counted up to just past `limit`. */
static uint64_t span_bytes(node *n, const range_desc *d, uint64_t limit) {
  eng_state_iter *it = span_iter(n, d);
  RK_ASSERTF(it != NULL, "out of memory");
  uint64_t total = 0;
  for (; eng_state_iter_valid(it) && total <= limit; eng_state_iter_next(it)) {
    size_t kl = 0, vl = 0;
    (void)eng_state_iter_key(it, &kl);
    (void)eng_state_iter_value(it, &vl);
    total += kl + vl + SNAP_KV_OVERHEAD;
  }
  eng_state_iter_free(it);
  return total;
}

int node_snap_fits(node *n, node_range *r) {
  uint64_t applied = 0;
  if (eng_state_applied(n->state, r->desc.id, &applied) != RK_OK) return 0;
  if (r->fits_known && r->fits_at == applied) return r->fits;
  r->fits = span_bytes(n, &r->desc, NODE_SNAP_MAX_BYTES) <= NODE_SNAP_MAX_BYTES;
  r->fits_at = applied;
  r->fits_known = 1;
  return r->fits;
}

/* The image is gathered into one arena (key and value bytes back to back)
 * and packed once its size is known. */
typedef struct snap_image {
  uint8_t *bytes;
  size_t len, cap;
  size_t *kl, *vl; /* per pair */
  size_t n, capn;
} snap_image;

static void image_add(snap_image *im, const void *k, size_t kl, const void *v, size_t vl) {
  while (im->len + kl + vl > im->cap) {
    im->cap = im->cap ? 2 * im->cap : 1u << 16;
    im->bytes = realloc(im->bytes, im->cap);
    RK_ASSERTF(im->bytes != NULL, "out of memory");
  }
  if (im->n == im->capn) {
    im->capn = im->capn ? 2 * im->capn : 256;
    im->kl = realloc(im->kl, im->capn * sizeof *im->kl);
    im->vl = realloc(im->vl, im->capn * sizeof *im->vl);
    RK_ASSERTF(im->kl && im->vl, "out of memory");
  }
  memcpy(im->bytes + im->len, k, kl);
  if (vl) memcpy(im->bytes + im->len + kl, v, vl);
  im->len += kl + vl;
  im->kl[im->n] = kl;
  im->vl[im->n] = vl;
  im->n++;
}

static void image_free(snap_image *im) {
  free(im->bytes);
  free(im->kl);
  free(im->vl);
}

static uint8_t *image_pack(const snap_image *im, uint64_t range_id, size_t *len) {
  Rangekv__KeyValue *kvs = calloc(im->n ? im->n : 1, sizeof *kvs);
  Rangekv__KeyValue **kvp = calloc(im->n ? im->n : 1, sizeof *kvp);
  RK_ASSERTF(kvs && kvp, "out of memory");
  size_t off = 0;
  for (size_t i = 0; i < im->n; i++) {
    rangekv__key_value__init(&kvs[i]);
    kvs[i].key.data = im->bytes + off;
    kvs[i].key.len = im->kl[i];
    kvs[i].value.data = im->bytes + off + im->kl[i];
    kvs[i].value.len = im->vl[i];
    kvp[i] = &kvs[i];
    off += im->kl[i] + im->vl[i];
  }
  Rangekv__RangeSnapshot rs;
  rangekv__range_snapshot__init(&rs);
  rs.range_id = range_id;
  rs.n_kvs = im->n;
  rs.kvs = kvp;
  *len = rangekv__range_snapshot__get_packed_size(&rs);
  uint8_t *out = malloc(*len ? *len : 1);
  RK_ASSERTF(out != NULL, "out of memory");
  size_t packed = rangekv__range_snapshot__pack(&rs, out);
  RK_ASSERT(packed == *len);
  free(kvp);
  free(kvs);
  return out;
}

int node_snap_build(node *n, node_range *r, mr_snapshot *out) {
  const uint64_t id = r->desc.id;
  uint64_t applied = 0, term = 0;
  if (eng_state_applied(n->state, id, &applied) != RK_OK || applied == 0) return RK_EUNAVAILABLE;
  /* The core asks again at every chance; a range known too big at this
   * applied index is not scanned again until it changes. */
  if (r->fits_known && r->fits_at == applied && !r->fits) return RK_EUNAVAILABLE;
  /* Compaction never passes applied, so the WAL knows its term. */
  int rc = eng_wal_term(n->wal, id, applied, &term);
  RK_ASSERTF(rc == RK_OK, "range %llu: term of applied index %llu: %s", (unsigned long long)id,
             (unsigned long long)applied, rk_strerror(rc));
  snap_image im;
  memset(&im, 0, sizeof im);
  uint64_t est = 0;
  eng_state_iter *it = span_iter(n, &r->desc);
  RK_ASSERTF(it != NULL, "out of memory");
  for (; eng_state_iter_valid(it) && est <= NODE_SNAP_MAX_BYTES; eng_state_iter_next(it)) {
    size_t kl = 0, vl = 0;
    const void *k = eng_state_iter_key(it, &kl);
    const void *v = eng_state_iter_value(it, &vl);
    image_add(&im, k, kl, v, vl);
    est += kl + vl + SNAP_KV_OVERHEAD;
  }
  rc = eng_state_iter_status(it);
  eng_state_iter_free(it);
  r->fits_known = 1;
  r->fits_at = applied;
  r->fits = est <= NODE_SNAP_MAX_BYTES;
  if (rc != RK_OK || !r->fits) {
    if (rc != RK_OK)
      RK_ERROR("node", "range %llu: reading its data for a snapshot: %s", (unsigned long long)id,
               rk_strerror(rc));
    else
      RK_WARN("node",
              "range %llu holds over %u MiB: too big for a snapshot (one frame); a replica "
              "that needs one cannot catch up",
              (unsigned long long)id, NODE_SNAP_MAX_BYTES >> 20);
    n->snapshots_too_big += rc == RK_OK;
    image_free(&im);
    return RK_EUNAVAILABLE;
  }
  memset(out, 0, sizeof *out);
  out->index = applied;
  out->term = term;
  node_range_conf(r, &out->conf);
  size_t len = 0;
  out->data = image_pack(&im, id, &len);
  out->len = (uint32_t)len;
  image_free(&im);
  n->snapshots_sent++;
  RK_INFO("node", "range %llu: snapshot at %llu (term %llu): %zu keys, %zu bytes",
          (unsigned long long)id, (unsigned long long)applied, (unsigned long long)term, im.n, len);
  return RK_OK;
}

/* memcmp order, shorter first on a tie. */
static int key_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen) {
  size_t m = alen < blen ? alen : blen;
  int c = m ? memcmp(a, b, m) : 0;
  if (c != 0) return c;
  return (alen > blen) - (alen < blen);
}

int node_snap_check(const range_desc *d, const uint8_t *data, size_t len) {
  Rangekv__RangeSnapshot *rs = rangekv__range_snapshot__unpack(NULL, len, data);
  if (rs == NULL) return RK_EMALFORMED;
  int rc = rs->range_id == d->id ? RK_OK : RK_EMALFORMED;
  for (size_t i = 0; i < rs->n_kvs && rc == RK_OK; i++) {
    const ProtobufCBinaryData *k = &rs->kvs[i]->key, *v = &rs->kvs[i]->value;
    if (k->len == 0 || k->len > KV_MAX_KEY || v->len > KV_MAX_VALUE ||
        !range_desc_contains(d, k->data, k->len))
      rc = RK_EMALFORMED;
    else if (i > 0 &&
             key_cmp(rs->kvs[i - 1]->key.data, rs->kvs[i - 1]->key.len, k->data, k->len) >= 0)
      rc = RK_EMALFORMED; /* strictly increasing: no duplicates */
  }
  rangekv__range_snapshot__free_unpacked(rs, NULL);
  return rc;
}

static void put_le64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
  return v;
}

int node_snap_install(node *n, node_range *r, const mr_snapshot *s) {
  const uint64_t id = r->desc.id;
  Rangekv__RangeSnapshot *rs = rangekv__range_snapshot__unpack(NULL, s->len, s->data);
  RK_ASSERTF(rs != NULL && rs->range_id == id, "range %llu: snapshot data was checked on receipt",
             (unsigned long long)id);
  eng_state_batch *b = eng_state_batch_new(n->state);
  RK_ASSERTF(b != NULL, "out of memory");
  /* Key by key rather than a range tombstone: the last range's span has no
   * end key to give DeleteRange. */
  eng_state_iter *it = span_iter(n, &r->desc);
  RK_ASSERTF(it != NULL, "out of memory");
  uint64_t dropped = 0;
  for (; eng_state_iter_valid(it); eng_state_iter_next(it), dropped++) {
    size_t kl = 0;
    const void *k = eng_state_iter_key(it, &kl);
    eng_state_batch_delete(b, k, kl);
  }
  int rc = eng_state_iter_status(it);
  eng_state_iter_free(it);
  for (size_t i = 0; i < rs->n_kvs && rc == RK_OK; i++)
    eng_state_batch_put(b, rs->kvs[i]->key.data, rs->kvs[i]->key.len, rs->kvs[i]->value.data,
                        rs->kvs[i]->value.len);
  uint8_t mark[16];
  put_le64(mark, s->index);
  put_le64(mark + 8, s->term);
  eng_state_batch_set_applied(b, id, s->index);
  eng_state_batch_range_put(b, id, ENG_RANGE_SNAP, mark, sizeof mark);
  if (rc == RK_OK) rc = eng_state_commit(n->state, b);
  if (rc == RK_OK) rc = eng_state_sync(n->state);
  eng_state_batch_free(b);
  size_t nkeys = rs->n_kvs;
  rangekv__range_snapshot__free_unpacked(rs, NULL);
  if (rc != RK_OK) {
    RK_ERROR("node", "range %llu: installing the snapshot at %llu failed: %s",
             (unsigned long long)id, (unsigned long long)s->index, rk_strerror(rc));
    return rc;
  }
  if (n->crash_after_snapshot_state) {
    RK_ERROR("node", "range %llu: test crash point snapshot-state reached: exiting",
             (unsigned long long)id);
    _exit(NODE_TEST_CRASH_EXIT);
  }
  /* Only now, with the image durable, may the log forget what it replaces. */
  rc = eng_wal_reset(n->wal, id, s->index + 1, s->term);
  if (rc != RK_OK) return rc;
  r->fits_known = 0;
  n->snapshots_installed++;
  RK_INFO("node", "range %llu: installed the snapshot at %llu (term %llu): %zu keys in, %llu out",
          (unsigned long long)id, (unsigned long long)s->index, (unsigned long long)s->term, nkeys,
          (unsigned long long)dropped);
  return RK_OK;
}

int node_snap_reconcile(node *n, node_range *r, uint64_t *snap_term) {
  const uint64_t id = r->desc.id;
  *snap_term = 0;
  void *v = NULL;
  size_t len = 0;
  int rc = eng_state_range_get(n->state, id, ENG_RANGE_SNAP, &v, &len);
  if (rc == RK_ENOTFOUND) return RK_OK;
  if (rc != RK_OK) return rc;
  if (len != 16) {
    free(v);
    RK_ERROR("node", "range %llu: snapshot mark is corrupt (%zu bytes)", (unsigned long long)id,
             len);
    return RK_ECORRUPT;
  }
  uint64_t index = get_le64(v), term = get_le64((const uint8_t *)v + 8), t = 0;
  free(v);
  *snap_term = term;
  rc = eng_wal_term(n->wal, id, index, &t);
  /* The log holds the snapshot's boundary (the reset landed, or its entries
   * match), or it was compacted past it after the reset: nothing to do. */
  if ((rc == RK_OK && t == term) || rc == RK_ECOMPACTED) return RK_OK;
  RK_WARN("node",
          "range %llu: the state store holds a snapshot at %llu (term %llu) the WAL does not: "
          "resetting the range's log there (a crash came between the two)",
          (unsigned long long)id, (unsigned long long)index, (unsigned long long)term);
  rc = eng_wal_reset(n->wal, id, index + 1, term);
  if (rc == RK_OK) rc = eng_wal_sync(n->wal);
  return rc;
}
