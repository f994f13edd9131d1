/* node_snap.c — range snapshots between nodes: the sending side and the
 * checks here; receiving in node_snap_rx.c, installing and start-up in
 * node_snap_install.c (what they share: node_snap_int.h).
 *
 * A replica whose leader compacted entries it still needs (node.c,
 * node_compact: past a replica more than --compact-lag-entries behind) gets
 * the range's data instead.
 *
 * SENDING. The leader's storage `snapshot` op (node_snap_build) opens a
 * stream: a state-store iterator over the range's span, a consistent view
 * as of the applied index (apply is synchronous in the loop), and returns a
 * snapshot whose data only names the stream. When the core's
 * InstallSnapshot reaches io_send, the node keeps it (node_snap_send); the
 * pump (node_snap_pump, every loop iteration) reads the image in pieces of
 * about 1 MiB, each a SNAP_CHUNK frame, keeping at most NODE_SNAP_WINDOW
 * bytes queued towards the peer so Raft frames for other ranges interleave,
 * and sends the InstallSnapshot last, naming the stream and its chunk
 * count. At most NODE_SNAP_MAX_STREAMS streams run at once, one per range,
 * one at a time per peer. A stream that loses its peer or its leadership is
 * abandoned and reported to the core (mr_host_report_snapshot).
 *
 * RECEIVING. Chunks from a peer are checked as they come and staged on
 * disk as one RocksDB SST file per stream (<data-dir>/snap/<n>.sst): first
 * a tombstone over the range's span, then the image's pairs in key order
 * (node_snap_on_chunk); a chunk out of sequence, a bad key or a reconnect
 * drops the stream and its file, and the sender is told (a SNAP_CHUNK with
 * abort set, once per stream), so it stops instead of streaming the rest
 * of the image into nothing. The InstallSnapshot is checked against
 * the node's own descriptor of the range (node_snap_check), the stream is
 * sealed and the snapshot's data becomes a descriptor naming its file
 * (node_snap_assemble) before any Raft core sees it; an incomplete stream
 * drops the frame, and the leader tries again. A sealed file no core holds
 * as its pending snapshot (refused, or replaced by a newer one) goes at
 * once (node_snap_settle).
 *
 * INSTALLING happens in persist, before the WAL batch that holds the rest
 * of the Ready, on an installer thread (step 1) and the loop (step 2):
 *   1. the file is completed (index, filter, footer) and synced, and its
 *      name; a synced intent record (index, term, file); the file is ingested
 *      (its tombstone hides every older key of the span, its pairs become
 *      the range's data, at once); then, synced, the applied index and the
 *      snapshot mark (index, term) with the intent's removal. An empty
 *      range needs no file: one synced batch deletes its span and sets
 *      both.
 *   2. eng_wal_reset(range, index + 1, term): the range's log becomes empty
 *      at index + 1, durable with that batch, ahead of its entries.
 * A crash inside 1 leaves the intent: at start (node_snap_reconcile) the
 * file is ingested again (an ingestion copies the file; the staged one
 * stays until the intent is gone) and step 1 is finished. A crash between
 * 1 and 2 leaves the state store ahead of the WAL: at start a range whose
 * WAL does not hold (index, term) is reset the same way before its Raft
 * core is created, so a restart never replays entries the snapshot
 * replaced.
 *
 * SIZE. An image may carry up to NODE_SNAP_MAX_BYTES, and a node stages at
 * most two images' worth over all peers. node_compact compacts past a
 * lagging replica only while the range is well below that (node_snap_fits).
 * A range found too big is not tried again for
 * NODE_SNAP_TOO_BIG_BACKOFF_MS. Streams and staging that make no progress
 * for NODE_SNAP_IDLE_MS are dropped.
 */
#include "node/node_int.h"
#include "node/node_snap_int.h"

#include "common/rk_assert.h"
#include "common/rk_clock.h"
#include "common/rk_err.h"
#include "common/rk_log.h"
#include "kv/kvcmd.h"
#include "node/codec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A stream not handed over by io_send within this is dropped. */
#define SNAP_UNBOUND_MS 5000u

void node_desc_conf(const range_desc *d, mr_conf *out) {
  memset(out, 0, sizeof *out);
  out->n = d->n_replicas;
  for (uint8_t k = 0; k < d->n_replicas; k++)
    out->r[k] = (mr_conf_replica){mr_host_replica_id(d->replicas[k], 1), MR_VOTER_IN};
}

void node_range_conf(const node_range *r, mr_conf *out) { node_desc_conf(&r->desc, out); }

static eng_state_iter *span_iter(node *n, const range_desc *d) {
  return eng_state_iter_new(n->state, d->start, d->start_len, d->end_len ? d->end : NULL,
                            d->end_len);
}

int node_snap_fits(node *n, node_range *r) {
  const range_desc *d = &r->desc;
  uint64_t bytes = 0;
  if (eng_state_approx_bytes(n->state, d->start, d->start_len, d->end_len ? d->end : NULL,
                             d->end_len, &bytes) != RK_OK)
    return 0;
  /* On-disk bytes are compressed (LZ4/ZSTD) and memtables are not
   * counted: an eighth of the limit leaves room for both, and for growth
   * while the replica lags. */
  return bytes <= n->snap_max_bytes / 8;
}

uint64_t node_snap_streaming_at(const node *n, uint64_t group) {
  uint64_t at = UINT64_MAX;
  for (uint32_t i = 0; i < n->ntx; i++)
    if (n->tx[i].group == group && n->tx[i].index < at) at = n->tx[i].index;
  return at;
}

/* ---- sending ------------------------------------------------------------------------ */

/* A packed RangeSnapshot: range_id, stream and chunks, no kvs. */
uint8_t *node_snap_pack_descriptor(uint64_t range_id, uint64_t stream, uint32_t chunks,
                                   uint32_t *len) {
  Rangekv__RangeSnapshot rs;
  rangekv__range_snapshot__init(&rs);
  rs.range_id = range_id;
  rs.stream = stream;
  rs.chunks = chunks;
  size_t l = rangekv__range_snapshot__get_packed_size(&rs);
  uint8_t *out = malloc(l ? l : 1);
  RK_ASSERTF(out != NULL, "out of memory");
  RK_ASSERT(rangekv__range_snapshot__pack(&rs, out) == l);
  *len = (uint32_t)l;
  return out;
}

static node_snap_tx *tx_of_group(node *n, uint64_t group) {
  for (uint32_t i = 0; i < n->ntx; i++)
    if (n->tx[i].group == group) return &n->tx[i];
  return NULL;
}

int node_snap_build(node *n, node_range *r, mr_snapshot *out) {
  const uint64_t id = r->desc.id;
  if (tx_of_group(n, id) != NULL || n->ntx == NODE_SNAP_MAX_STREAMS) return RK_EUNAVAILABLE;
  if (node_now_ms() < r->snap_refused_until_ms) return RK_EUNAVAILABLE;
  uint64_t applied = 0, term = 0;
  if (eng_state_applied(n->state, id, &applied) != RK_OK || applied == 0) return RK_EUNAVAILABLE;
  /* Compaction never passes applied, so the WAL knows its term. */
  int rc = eng_wal_term(n->wal, id, applied, &term);
  if (rc != RK_OK) {
    RK_ERROR("node", "range %llu: no term for applied index %llu: %s", (unsigned long long)id,
             (unsigned long long)applied, rk_strerror(rc));
    return RK_EUNAVAILABLE;
  }
  eng_state_iter *it = span_iter(n, &r->desc);
  if (it == NULL) return RK_EUNAVAILABLE;
  node_snap_tx *t = &n->tx[n->ntx++];
  memset(t, 0, sizeof *t);
  do t->stream = rk_rand_u64(&n->rng);
  while (t->stream == 0);
  t->group = id;
  t->index = applied;
  t->term = term;
  node_range_conf(r, &t->conf);
  t->it = it;
  t->created_ms = t->progress_ms = node_now_ms();
  t->t0_ns = rk_clock_mono_ns();
  memset(out, 0, sizeof *out);
  out->index = applied;
  out->term = term;
  out->conf = t->conf;
  out->data = node_snap_pack_descriptor(id, t->stream, 0, &out->len);
  return RK_OK;
}

void node_snap_send(node *n, uint32_t to_node, const mr_host_gmsg *gm) {
  node_snap_tx *t = tx_of_group(n, gm->group);
  const mr_snapshot *s = gm->msg.snap;
  if (t == NULL || t->to_node != 0 || s->index != t->index) {
    /* Not the stream the op opened (cannot happen while the core sends
     * what its storage made): dropped; the core tries again later. */
    RK_WARN("node", "range %llu: an InstallSnapshot with no stream of its own: dropped",
            (unsigned long long)gm->group);
    return;
  }
  t->to_node = to_node;
  t->from = gm->msg.from;
  t->to = gm->msg.to;
  t->msg_term = gm->msg.term;
  /* The pump sends one stream at a time per peer, in array order, and a
   * stream is built when the core asks for it but bound here, with its
   * group's next Ready (after a write in flight): one built earlier and
   * bound later must queue behind the streams bound before it, or it starts
   * in the middle of one of them, and the peer, which stages one stream per
   * sender, drops that one (and its range backs off). Bound streams come
   * last, in the order they were bound. */
  size_t at = (size_t)(t - n->tx);
  node_snap_tx bound = *t;
  memmove(t, t + 1, (n->ntx - at - 1) * sizeof *t);
  n->tx[n->ntx - 1] = bound;
}

void node_snap_tx_end(node *n, node_snap_tx *t, int failed, const char *why) {
  if (failed) {
    n->snapshots_dropped++;
    RK_WARN("node", "range %llu: snapshot stream to node %u abandoned after %u chunks: %s",
            (unsigned long long)t->group, t->to_node, t->seq, why);
    if (t->to_node && n->host) mr_host_report_snapshot(n->host, t->group, t->to, 1);
  }
  eng_state_iter_free(t->it);
  /* Order kept: streams to one peer go first come, first served. */
  size_t at = (size_t)(t - n->tx);
  memmove(t, t + 1, (n->ntx - at - 1) * sizeof *t);
  n->ntx--;
}

/* One chunk's image, gathered into an arena (key and value bytes back to
 * back: the iterator's pointers die when it moves) and packed at the end. */
typedef struct snap_image {
  uint8_t *bytes;
  size_t len, cap;
  size_t wire;     /* what the pairs pack to, at most (NODE_SNAP_PAIR_FRAMING each) */
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
  im->wire += kl + vl + NODE_SNAP_PAIR_FRAMING;
  im->kl[im->n] = kl;
  im->vl[im->n] = vl;
  im->n++;
}

/* Packs the image as a RangeSnapshot of range_id; frees the arena. */
static uint8_t *image_pack(snap_image *im, uint64_t range_id, size_t *len) {
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
  RK_ASSERT(rangekv__range_snapshot__pack(&rs, out) == *len);
  free(kvp);
  free(kvs);
  free(im->bytes);
  free(im->kl);
  free(im->vl);
  memset(im, 0, sizeof *im);
  return out;
}

/* Reads the next piece of the image (at least one pair) and packs it as a
 * SnapChunk frame payload. */
static uint8_t *next_chunk(node *n, node_snap_tx *t, size_t *len) {
  snap_image im;
  memset(&im, 0, sizeof im);
  while (eng_state_iter_valid(t->it) && im.wire < n->snap_chunk_bytes) {
    size_t kl = 0, vl = 0;
    const void *k = eng_state_iter_key(t->it, &kl);
    const void *v = eng_state_iter_value(t->it, &vl);
    image_add(&im, k, kl, v, vl);
    eng_state_iter_next(t->it);
  }
  t->keys += im.n;
  size_t ilen = 0;
  uint8_t *img = image_pack(&im, t->group, &ilen);
  /* What every receiver takes (node_snap_on_chunk). */
  RK_ASSERTF(ilen <= NODE_SNAP_CHUNK_MAX_IMAGE, "a chunk image of %zu bytes", ilen);
  t->bytes += ilen;
  Rangekv__SnapChunk c;
  rangekv__snap_chunk__init(&c);
  c.stream = t->stream;
  c.range_id = t->group;
  c.seq = t->seq;
  c.image.data = img;
  c.image.len = ilen;
  *len = rangekv__snap_chunk__get_packed_size(&c);
  uint8_t *out = malloc(*len);
  RK_ASSERTF(out != NULL, "out of memory");
  RK_ASSERT(rangekv__snap_chunk__pack(&c, out) == *len);
  free(img);
  return out;
}

/* The InstallSnapshot, last on the stream: its data names the stream and
 * how many chunks it had. */
static int send_final(node *n, node_snap_tx *t) {
  mr_snapshot s = {.index = t->index, .term = t->term, .conf = t->conf};
  s.data = node_snap_pack_descriptor(t->group, t->stream, t->seq, &s.len);
  mr_host_gmsg gm;
  memset(&gm, 0, sizeof gm);
  gm.group = t->group;
  gm.msg.type = MR_MSG_SNAP;
  gm.msg.from = t->from;
  gm.msg.to = t->to;
  gm.msg.term = t->msg_term;
  gm.msg.snap = &s;
  mr_host_frame f = {.from_node = n->cfg.node_id, .to_node = t->to_node, .msgs = &gm, .n_msgs = 1};
  uint8_t *buf = NULL;
  size_t len = 0;
  int rc = node_codec_encode(&f, &buf, &len);
  free(s.data);
  if (rc != RK_OK) return rc;
  rc = len <= TP_FRAME_DEFAULT_MAX_PAYLOAD
           ? tp_net_send_peer(n->net, t->to_node, TP_FRAME_RAFT_BATCH, buf, (uint32_t)len)
           : RK_ETOOLARGE;
  free(buf);
  return rc;
}

/* Sends what the window allows of stream t, whose range core (leading) is
 * `core`. 1 if it ended (t is gone). */
static int tx_step(node *n, node_snap_tx *t, mr_raft *core) {
  /* A few chunks per loop iteration at most: reading and packing one costs
   * milliseconds that every other range on this node waits through. */
  for (int k = 0; k < NODE_SNAP_CHUNKS_PER_PUMP &&
                  tp_net_peer_queued_bytes(n->net, t->to_node) < NODE_SNAP_WINDOW;
       k++) {
    if (!eng_state_iter_valid(t->it)) {
      int rc = eng_state_iter_status(t->it);
      if (rc == RK_OK) rc = send_final(n, t);
      if (rc != RK_OK) {
        node_snap_tx_end(n, t, 1, rk_strerror(rc));
        return 1;
      }
      n->snapshots_sent++;
      n->ranges[t->group - 1].snap_abort_backoff_ms = 0;
      uint32_t d = n->tx_done_next++ % NODE_SNAP_DONE_KEPT;
      n->tx_done[d].peer = t->to_node;
      n->tx_done[d].stream = t->stream;
      n->tx_done[d].group = t->group;
      n->tx_done[d].to = t->to;
      RK_INFO("node",
              "range %llu: snapshot at %llu (term %llu) sent to node %u: %llu keys, %llu bytes "
              "in %u chunks, %.1f ms",
              (unsigned long long)t->group, (unsigned long long)t->index,
              (unsigned long long)t->term, t->to_node, (unsigned long long)t->keys,
              (unsigned long long)t->bytes, t->seq, (double)(rk_clock_mono_ns() - t->t0_ns) / 1e6);
      node_snap_tx_end(n, t, 0, NULL);
      return 1;
    }
    size_t len = 0;
    uint8_t *chunk = next_chunk(n, t, &len);
    if (t->bytes > n->snap_max_bytes) {
      free(chunk);
      n->snapshots_too_big++;
      node_range *r = &n->ranges[t->group - 1];
      r->snap_refused_until_ms = node_now_ms() + NODE_SNAP_TOO_BIG_BACKOFF_MS;
      RK_ERROR("node",
               "range %llu is over the snapshot limit (%llu MiB): its lagging replica cannot catch "
               "up; not trying again for %u s",
               (unsigned long long)t->group, (unsigned long long)(n->snap_max_bytes >> 20),
               NODE_SNAP_TOO_BIG_BACKOFF_MS / 1000);
      node_snap_tx_end(n, t, 1, "over the snapshot limit");
      return 1;
    }
    int rc = len <= TP_FRAME_DEFAULT_MAX_PAYLOAD
                 ? tp_net_send_peer(n->net, t->to_node, TP_FRAME_SNAP_CHUNK, chunk, (uint32_t)len)
                 : RK_ETOOLARGE;
    free(chunk);
    if (rc != RK_OK) {
      node_snap_tx_end(n, t, 1,
                       rc == RK_EAGAIN ? "the peer's queue refused a chunk" : rk_strerror(rc));
      return 1;
    }
    t->seq++;
    t->progress_ms = node_now_ms();
    /* A big image takes longer than the core's election-timeout rounds:
     * without this it would presume the snapshot lost while it streams,
     * probe, and open a second stream of the whole image the moment this
     * one ends. */
    mr_raft_snapshot_alive(core, t->to);
  }
  if (node_now_ms() - t->progress_ms > NODE_SNAP_IDLE_MS) {
    node_snap_tx_end(n, t, 1, "the peer read nothing for 10 s");
    return 1;
  }
  return 0;
}

int node_snap_pump(node *n) {
  for (uint32_t i = 0; i < n->ntx;) {
    node_snap_tx *t = &n->tx[i];
    if (t->to_node == 0) {
      if (node_now_ms() - t->created_ms > SNAP_UNBOUND_MS)
        node_snap_tx_end(n, t, 1, "the core never sent it");
      else
        i++;
      continue;
    }
    mr_raft *core = mr_host_group_raft(n->host, t->group);
    if (core == NULL || mr_raft_role(core) != MR_LEADER || mr_raft_term(core) != t->msg_term) {
      node_snap_tx_end(n, t, 1, "no longer the leader of its term");
      continue;
    }
    if (!tp_net_peer_connected(n->net, t->to_node)) {
      node_snap_tx_end(n, t, 1, "the peer is not connected");
      continue;
    }
    /* One stream at a time per peer: a later one waits its turn. */
    int waits = 0;
    for (uint32_t j = 0; j < i; j++) waits |= n->tx[j].to_node == t->to_node;
    if (waits || !tx_step(n, t, core)) i++;
  }
  return n->ntx > 0;
}

/* ---- checking ---------------------------------------------------------------------------- */

static int conf_equal(const mr_conf *a, const mr_conf *b) {
  if (a->n != b->n || a->auto_leave != b->auto_leave) return 0;
  for (uint8_t k = 0; k < a->n; k++)
    if (a->r[k].id != b->r[k].id || a->r[k].flags != b->r[k].flags) return 0;
  return 1;
}

/* Checks one RangeSnapshot piece of range d: its id, no stream fields,
 * every key inside the span, sizes within the KV limits, keys strictly
 * increasing, also past *last (the previous piece's highest key, *llen = 0
 * for none), which it then updates (last holds KV_MAX_KEY bytes). Each
 * pair that passes goes to sink if there is one (*nkeys counts them); an
 * error there is returned as is. */
int node_snap_image_check(const range_desc *d, const uint8_t *data, size_t len, uint8_t *last,
                          size_t *llen, eng_state_sst *sink, uint64_t *nkeys) {
  Rangekv__RangeSnapshot *rs = rangekv__range_snapshot__unpack(NULL, len, data);
  if (rs == NULL) return RK_EMALFORMED;
  int rc = rs->range_id == d->id && rs->stream == 0 && rs->chunks == 0 ? RK_OK : RK_EMALFORMED;
  for (size_t i = 0; i < rs->n_kvs && rc == RK_OK; i++) {
    const ProtobufCBinaryData *k = &rs->kvs[i]->key, *v = &rs->kvs[i]->value;
    if (k->len == 0 || k->len > KV_MAX_KEY || v->len > KV_MAX_VALUE ||
        !range_desc_contains(d, k->data, k->len))
      rc = RK_EMALFORMED;
    else if (*llen > 0 && range_key_cmp(last, *llen, k->data, k->len) >= 0)
      rc = RK_EMALFORMED; /* strictly increasing: no duplicates */
    else {
      memcpy(last, k->data, k->len);
      *llen = k->len;
      if (sink != NULL) rc = eng_state_sst_put(sink, k->data, k->len, v->data, v->len);
      if (rc == RK_OK && nkeys != NULL) ++*nkeys;
    }
  }
  rangekv__range_snapshot__free_unpacked(rs, NULL);
  return rc;
}

int node_snap_check(const range_desc *d, const mr_snapshot *s, int check_data) {
  /* The install resets the log to index + 1, which must stay a valid index. */
  if (s->index == 0 || s->index >= UINT64_MAX - 1) return RK_EMALFORMED;
  /* Ranges are static: the configuration is the descriptor's replicas. */
  mr_conf want;
  node_desc_conf(d, &want);
  if (!conf_equal(&s->conf, &want)) return RK_EMALFORMED;
  if (!check_data) return RK_OK;
  uint8_t *last = malloc(KV_MAX_KEY);
  if (last == NULL) return RK_ENOMEM;
  size_t llen = 0;
  int rc = node_snap_image_check(d, s->data, s->len, last, &llen, NULL, NULL);
  free(last);
  return rc;
}

void node_snap_free(node *n) {
  node_snap_installer_stop(n);
  while (n->ntx > 0) node_snap_tx_end(n, &n->tx[n->ntx - 1], 0, NULL);
  for (uint32_t i = 0; i <= NODE_MAX_NODES; i++) node_snap_rx_reset(n, &n->rx[i]);
  while (n->nsealed > 0) node_snap_sealed_remove(n, n->nsealed - 1, 1);
}
