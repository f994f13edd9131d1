/* node_snap.c — range snapshots between nodes.
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

#include "common/rk_assert.h"
#include "common/rk_clock.h"
#include "common/rk_err.h"
#include "common/rk_log.h"
#include "kv/kvcmd.h"
#include "node/codec.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

static void installer_stop(node *n);

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
static uint8_t *pack_descriptor(uint64_t range_id, uint64_t stream, uint32_t chunks,
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
  out->data = pack_descriptor(id, t->stream, 0, &out->len);
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
}

static void tx_end(node *n, node_snap_tx *t, int failed, const char *why) {
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
  while (eng_state_iter_valid(t->it) && im.len < n->snap_chunk_bytes) {
    size_t kl = 0, vl = 0;
    const void *k = eng_state_iter_key(t->it, &kl);
    const void *v = eng_state_iter_value(t->it, &vl);
    image_add(&im, k, kl, v, vl);
    eng_state_iter_next(t->it);
  }
  t->keys += im.n;
  size_t ilen = 0;
  uint8_t *img = image_pack(&im, t->group, &ilen);
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
  s.data = pack_descriptor(t->group, t->stream, t->seq, &s.len);
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

/* Sends what the window allows of stream t. 1 if it ended (t is gone). */
static int tx_step(node *n, node_snap_tx *t) {
  /* A few chunks per loop iteration at most: reading and packing one costs
   * milliseconds that every other range on this node waits through. */
  for (int k = 0; k < NODE_SNAP_CHUNKS_PER_PUMP &&
                  tp_net_peer_queued_bytes(n->net, t->to_node) < NODE_SNAP_WINDOW;
       k++) {
    if (!eng_state_iter_valid(t->it)) {
      int rc = eng_state_iter_status(t->it);
      if (rc == RK_OK) rc = send_final(n, t);
      if (rc != RK_OK) {
        tx_end(n, t, 1, rk_strerror(rc));
        return 1;
      }
      n->snapshots_sent++;
      RK_INFO("node",
              "range %llu: snapshot at %llu (term %llu) sent to node %u: %llu keys, %llu bytes "
              "in %u chunks, %.1f ms",
              (unsigned long long)t->group, (unsigned long long)t->index,
              (unsigned long long)t->term, t->to_node, (unsigned long long)t->keys,
              (unsigned long long)t->bytes, t->seq, (double)(rk_clock_mono_ns() - t->t0_ns) / 1e6);
      tx_end(n, t, 0, NULL);
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
      tx_end(n, t, 1, "over the snapshot limit");
      return 1;
    }
    int rc = len <= TP_FRAME_DEFAULT_MAX_PAYLOAD
                 ? tp_net_send_peer(n->net, t->to_node, TP_FRAME_SNAP_CHUNK, chunk, (uint32_t)len)
                 : RK_ETOOLARGE;
    free(chunk);
    if (rc != RK_OK) {
      tx_end(n, t, 1, rc == RK_EAGAIN ? "the peer's queue refused a chunk" : rk_strerror(rc));
      return 1;
    }
    t->seq++;
    t->progress_ms = node_now_ms();
    /* A big image takes longer than the core's election-timeout rounds:
     * without this it would presume the snapshot lost while it streams,
     * probe, and open a second stream of the whole image the moment this
     * one ends. */
    mr_raft_snapshot_alive(mr_host_group_raft(n->host, t->group), t->to);
  }
  if (node_now_ms() - t->progress_ms > NODE_SNAP_IDLE_MS) {
    tx_end(n, t, 1, "the peer read nothing for 10 s");
    return 1;
  }
  return 0;
}

int node_snap_pump(node *n) {
  for (uint32_t i = 0; i < n->ntx;) {
    node_snap_tx *t = &n->tx[i];
    if (t->to_node == 0) {
      if (node_now_ms() - t->created_ms > SNAP_UNBOUND_MS)
        tx_end(n, t, 1, "the core never sent it");
      else
        i++;
      continue;
    }
    mr_raft *core = mr_host_group_raft(n->host, t->group);
    if (core == NULL || mr_raft_role(core) != MR_LEADER || mr_raft_term(core) != t->msg_term) {
      tx_end(n, t, 1, "no longer the leader of its term");
      continue;
    }
    if (!tp_net_peer_connected(n->net, t->to_node)) {
      tx_end(n, t, 1, "the peer is not connected");
      continue;
    }
    /* One stream at a time per peer: a later one waits its turn. */
    int waits = 0;
    for (uint32_t j = 0; j < i; j++) waits |= n->tx[j].to_node == t->to_node;
    if (waits || !tx_step(n, t)) i++;
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
static int image_check(const range_desc *d, const uint8_t *data, size_t len, uint8_t *last,
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
  int rc = image_check(d, s->data, s->len, last, &llen, NULL, NULL);
  free(last);
  return rc;
}

/* ---- receiving -------------------------------------------------------------------------- */

/* fsync of a directory: the names made in it become durable. */
static int sync_dir(const char *path) {
  int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return rk_err_from_errno(errno);
  int rc = fsync(fd) == 0 ? RK_OK : rk_err_from_errno(errno);
  close(fd);
  return rc;
}

static void staged_path(const node *n, uint64_t file, char *out, size_t cap) {
  int w = snprintf(out, cap, "%s/snap/%016llx.sst", n->cfg.data_dir, (unsigned long long)file);
  RK_ASSERTF(w > 0 && (size_t)w < cap, "staging path too long");
}

static void staged_unlink(const node *n, uint64_t file) {
  char path[4096];
  staged_path(n, file, path, sizeof path);
  if (unlink(path) != 0 && errno != ENOENT)
    RK_WARN("node", "cannot remove staged snapshot %s: %s", path, strerror(errno));
}

/* Drops what peer x staged, file and all. */
static void rx_reset(node *n, node_snap_rx *x) {
  RK_ASSERT(n->rx_bytes >= x->len);
  n->rx_bytes -= x->len;
  if (x->sst != NULL) {
    eng_state_sst_free(x->sst);
    staged_unlink(n, x->file);
  }
  free(x->last_key);
  memset(x, 0, sizeof *x);
}

/* Opens peer x's staged file: a tombstone over the range's span first, so
 * that once ingested the file replaces everything the range held. */
static int rx_open(node *n, node_snap_rx *x, const range_desc *d) {
  do x->file = n->next_file++;
  while (x->file == 0);
  char path[4096];
  staged_path(n, x->file, path, sizeof path);
  int rc = eng_state_sst_open(n->state, path, &x->sst);
  if (rc != RK_OK) {
    (void)unlink(path); /* RocksDB may have created it */
    return rc;
  }
  return eng_state_sst_delete_range(x->sst, d->start, d->start_len, d->end_len ? d->end : NULL,
                                    d->end_len);
}

/* Tells peer `to` that its stream was dropped here (best effort: a lost
 * abort leaves the sender to its own limits). */
static void send_abort(node *n, uint32_t to, uint64_t stream, uint64_t range, const char *why) {
  if (n->net == NULL) return;
  Rangekv__SnapChunk a;
  rangekv__snap_chunk__init(&a);
  a.stream = stream;
  a.range_id = range;
  a.abort = 1;
  a.reason = node_pb_str(why);
  uint8_t buf[256];
  size_t len = rangekv__snap_chunk__get_packed_size(&a);
  RK_ASSERT(len <= sizeof buf);
  rangekv__snap_chunk__pack(&a, buf);
  (void)tp_net_send_peer(n->net, to, TP_FRAME_SNAP_CHUNK, buf, (uint32_t)len);
}

/* Peer `from` dropped our stream c->stream: it ends here too. */
static void on_abort(node *n, uint32_t from, const Rangekv__SnapChunk *c) {
  for (uint32_t i = 0; i < n->ntx; i++) {
    node_snap_tx *t = &n->tx[i];
    if (t->to_node != from || t->stream != c->stream) continue;
    char why[160];
    snprintf(why, sizeof why, "the peer dropped it (%.100s)",
             c->reason != NULL && c->reason[0] ? c->reason : "no reason given");
    tx_end(n, t, 1, why);
    return;
  }
}

int node_snap_on_chunk(node *n, uint32_t from, const uint8_t *payload, size_t len) {
  if (from == 0 || from > NODE_MAX_NODES) return RK_EMALFORMED;
  Rangekv__SnapChunk *c = rangekv__snap_chunk__unpack(NULL, len, payload);
  if (c == NULL) {
    RK_WARN("node", "snapshot chunk from node %u does not parse: dropped", from);
    return RK_EMALFORMED;
  }
  if (c->abort) {
    on_abort(n, from, c);
    rangekv__snap_chunk__free_unpacked(c, NULL);
    return RK_OK;
  }
  node_snap_rx *x = &n->rx[from];
  if (c->seq == 0) {
    if (x->stream != 0) n->snapshots_dropped++; /* a new stream replaces an unfinished one */
    rx_reset(n, x);
    x->stream = c->stream;
    x->range = c->range_id;
  }
  const char *why = NULL;
  if (c->stream == 0 || c->stream != x->stream || c->range_id != x->range || c->seq != x->next_seq)
    why = "a chunk out of sequence";
  else if (c->range_id < 1 || c->range_id > n->table.n || !n->ranges[c->range_id - 1].local)
    why = "a range this node does not hold";
  else if (c->image.len > n->snap_max_bytes - x->len)
    why = "over the snapshot limit";
  else if (c->image.len > 2 * n->snap_max_bytes - n->rx_bytes)
    why = "over the node's staging limit (two snapshots)";
  int malformed = 0;
  if (why == NULL) {
    const range_desc *d = &n->ranges[c->range_id - 1].desc;
    if (x->sst == NULL && rx_open(n, x, d) != RK_OK) why = "the staged file cannot be written";
    /* Checked and staged a piece at a time, so the loop never parses a
     * whole image at once and a bad stream is dropped at its first bad
     * chunk. */
    if (why == NULL && x->last_key == NULL) x->last_key = malloc(KV_MAX_KEY);
    RK_ASSERTF(why != NULL || x->last_key != NULL, "out of memory");
    int rc = why == NULL ? image_check(d, c->image.data, c->image.len, x->last_key, &x->last_klen,
                                       x->sst, &x->keys)
                         : RK_OK;
    if (rc == RK_EMALFORMED) {
      why = "a malformed image (keys outside the range, out of order, or too big)";
      malformed = 1;
    } else if (rc != RK_OK) {
      why = "the staged file cannot be written";
    }
  }
  if (why != NULL) {
    if (x->stream != 0) {
      n->snapshots_dropped++;
      RK_WARN("node", "snapshot stream from node %u for range %llu dropped: %s", from,
              (unsigned long long)x->range, why);
    }
    /* Else the sender streams the rest, up to the whole image, into a
     * stream we no longer stage, and its core waits for it. */
    if (c->stream != 0 && n->rx_aborted[from] != c->stream) {
      n->rx_aborted[from] = c->stream;
      n->snap_aborts_sent++;
      send_abort(n, from, c->stream, c->range_id, why);
    }
    rx_reset(n, x);
    rangekv__snap_chunk__free_unpacked(c, NULL);
    return malformed ? RK_EMALFORMED : RK_OK;
  }
  x->len += c->image.len;
  n->rx_bytes += c->image.len;
  x->next_seq++;
  x->last_ms = node_now_ms();
  rangekv__snap_chunk__free_unpacked(c, NULL);
  return RK_OK;
}

/* Moves peer x's staged stream to the sealed list, for the snapshot at
 * index; x is left empty. */
static int rx_seal(node *n, node_snap_rx *x, uint64_t index) {
  if (n->nsealed == NODE_SNAP_MAX_SEALED) return RK_EUNAVAILABLE;
  n->sealed[n->nsealed++] = (node_snap_sealed){.range = x->range,
                                               .index = index,
                                               .file = x->file,
                                               .bytes = x->len,
                                               .keys = x->keys,
                                               .sst = x->sst};
  x->sst = NULL;
  x->len = 0; /* its bytes stay counted in rx_bytes, as the sealed file's */
  rx_reset(n, x);
  return RK_OK;
}

int node_snap_assemble(node *n, uint32_t from, mr_host_gmsg *gm) {
  if (from == 0 || from > NODE_MAX_NODES) return RK_EMALFORMED;
  mr_snapshot *s = gm->msg.snap;
  Rangekv__RangeSnapshot *d = rangekv__range_snapshot__unpack(NULL, s->len, s->data);
  if (d == NULL) return RK_EMALFORMED;
  int rc = RK_OK;
  node_snap_rx *x = &n->rx[from];
  const char *why = "without its chunks";
  if (d->n_kvs != 0 || d->range_id != gm->group || d->stream == 0 ||
      node_snap_check(&n->ranges[gm->group - 1].desc, s, 0) != RK_OK) {
    rc = RK_EMALFORMED;
  } else if (d->chunks == 0) {
    /* An empty range: nothing staged; file 0 says so. */
    free(s->data);
    s->data = pack_descriptor(gm->group, 0, 0, &s->len);
  } else if (x->stream != d->stream || x->range != gm->group || x->next_seq != d->chunks) {
    rc = RK_EUNAVAILABLE;
  } else if ((rc = rx_seal(n, x, s->index)) != RK_OK) {
    why = "too many staged snapshots wait for an install";
  } else {
    /* From here on the data names the staged file, not the peer's stream. */
    free(s->data);
    s->data = pack_descriptor(gm->group, n->sealed[n->nsealed - 1].file, d->chunks, &s->len);
  }
  if (rc != RK_OK && x->stream == d->stream) rx_reset(n, x);
  if (rc == RK_EUNAVAILABLE) {
    n->snapshots_dropped++;
    RK_WARN("node", "range %llu: InstallSnapshot from node %u %s (%u chunks): dropped",
            (unsigned long long)gm->group, from, why, d->chunks);
  }
  rangekv__range_snapshot__free_unpacked(d, NULL);
  return rc;
}

void node_snap_peer_up(node *n, uint32_t peer) {
  if (peer == 0 || peer > NODE_MAX_NODES) return;
  if (n->rx[peer].stream != 0) n->snapshots_dropped++;
  rx_reset(n, &n->rx[peer]);
  /* The connection our streams to it were on is gone, with whatever of
   * them it had not delivered. */
  for (uint32_t i = 0; i < n->ntx;)
    if (n->tx[i].to_node == peer)
      tx_end(n, &n->tx[i], 1, "the connection to the peer was replaced");
    else
      i++;
}

/* Takes sealed[i] out of the list: dropped (writer freed, file removed,
 * bytes uncounted) or handed to an install (drop = 0). */
static void sealed_remove(node *n, uint32_t i, int drop) {
  RK_ASSERT(i < n->nsealed && n->rx_bytes >= n->sealed[i].bytes);
  if (drop) {
    n->rx_bytes -= n->sealed[i].bytes;
    eng_state_sst_free(n->sealed[i].sst);
    staged_unlink(n, n->sealed[i].file);
  }
  n->sealed[i] = n->sealed[--n->nsealed];
}

/* The staged file a core's snapshot names (0: none, an empty range). */
static uint64_t staged_file_of(const mr_snapshot *s) {
  Rangekv__RangeSnapshot *d = rangekv__range_snapshot__unpack(NULL, s->len, s->data);
  RK_ASSERTF(d != NULL, "a snapshot's data is the descriptor node_snap_assemble made");
  uint64_t file = d->stream;
  rangekv__range_snapshot__free_unpacked(d, NULL);
  return file;
}

void node_snap_settle(node *n) {
  for (uint32_t i = n->nsealed; i-- > 0;) {
    const node_snap_sealed *f = &n->sealed[i];
    mr_raft *core = n->host ? mr_host_group_raft(n->host, f->range) : NULL;
    const mr_snapshot *p = core ? mr_raft_pending_snapshot(core) : NULL;
    if (p != NULL && p->index == f->index && staged_file_of(p) == f->file) continue;
    RK_INFO("node", "range %llu: staged snapshot at %llu not taken by the core: removed",
            (unsigned long long)f->range, (unsigned long long)f->index);
    sealed_remove(n, i, 1);
  }
}

void node_snap_tick(node *n) {
  uint64_t now = node_now_ms();
  for (uint32_t p = 1; p <= NODE_MAX_NODES; p++) {
    node_snap_rx *x = &n->rx[p];
    if (x->stream == 0 || now - x->last_ms <= NODE_SNAP_IDLE_MS) continue;
    n->snapshots_dropped++;
    RK_WARN("node", "snapshot stream from node %u for range %llu idle for 10 s: dropped", p,
            (unsigned long long)x->range);
    rx_reset(n, x);
  }
  node_snap_settle(n);
}

void node_snap_free(node *n) {
  installer_stop(n);
  while (n->ntx > 0) tx_end(n, &n->tx[n->ntx - 1], 0, NULL);
  for (uint32_t i = 0; i <= NODE_MAX_NODES; i++) rx_reset(n, &n->rx[i]);
  while (n->nsealed > 0) sealed_remove(n, n->nsealed - 1, 1);
}

int node_snap_staging_open(node *n) {
  char path[4096];
  snprintf(path, sizeof path, "%s/snap", n->cfg.data_dir);
  if (mkdir(path, 0755) != 0) {
    if (errno != EEXIST) return rk_err_from_errno(errno);
  } else {
    /* The new directory's name must be durable before an intent record
     * names a file in it. */
    int rc = sync_dir(n->cfg.data_dir);
    if (rc != RK_OK) return rc;
  }
  DIR *dir = opendir(path);
  if (dir == NULL) return rk_err_from_errno(errno);
  /* Every install a crash interrupted was finished by now (reconcile):
   * what is left is staging of a previous run. */
  for (struct dirent *e; (e = readdir(dir)) != NULL;) {
    if (e->d_name[0] == '.') continue;
    char f[4096 + 256];
    snprintf(f, sizeof f, "%s/%s", path, e->d_name);
    if (unlink(f) != 0) RK_WARN("node", "cannot remove %s: %s", f, strerror(errno));
  }
  closedir(dir);
  n->next_file = rk_rand_u64(&n->rng);
  return RK_OK;
}

static int commit_synced(node *n, eng_state_batch *b) {
  int rc = eng_state_commit(n->state, b);
  return rc == RK_OK ? eng_state_sync(n->state) : rc;
}

/* The end of an install with a staged file, also its redo at start: the
 * file's tombstone and keys replace the range's data in one ingestion,
 * then the applied index and the mark go with the intent's removal.
 * Ingesting again is right only because nothing writes into the range's
 * span between the intent and its removal: the range's Ready is in this
 * unfinished persist batch, so the host hands it nothing to apply
 * (multiraft/host.c, HG_IN_FLIGHT), and a redo runs before its core exists. */
static int finish_install(node *n, uint64_t range, uint64_t index, uint64_t term, uint64_t file) {
  char path[4096];
  staged_path(n, file, path, sizeof path);
  int rc = eng_state_ingest(n->state, path);
  if (rc != RK_OK) return rc;
  if (n->crash_after_snapshot_ingest) {
    RK_ERROR("node", "range %llu: test crash point snapshot-ingest reached: exiting",
             (unsigned long long)range);
    _exit(NODE_TEST_CRASH_EXIT);
  }
  eng_state_batch *b = eng_state_batch_new(n->state);
  if (b == NULL) return RK_ENOMEM;
  eng_state_batch_set_applied(b, range, index);
  eng_state_batch_set_snap_mark(b, range, index, term);
  eng_state_batch_clear_snap_intent(b, range);
  rc = commit_synced(n, b);
  eng_state_batch_free(b);
  if (rc == RK_OK) staged_unlink(n, file);
  return rc;
}

/* Installing, step 1 (the worker thread): the range's data becomes the
 * image, and its applied index and snapshot mark the snapshot's, durably.
 * With a staged file: an intent record first (so a crash part way is
 * finished at start), then finish_install. An empty range: one batch.
 * Touches only the state store (thread-safe), the staging directory and
 * the job. */
static int install_state(node *n, node_snap_install_one *one) {
  const range_desc *d = &one->r->desc;
  const mr_snapshot *s = one->snap;
  uint64_t t0 = rk_clock_mono_ns();
  eng_state_batch *b = eng_state_batch_new(n->state);
  RK_ASSERTF(b != NULL, "out of memory");
  int rc = RK_OK;
  if (one->staged.file == 0) {
    eng_state_batch_delete_range(b, d->start, d->start_len, d->end_len ? d->end : NULL, d->end_len);
    eng_state_batch_set_applied(b, d->id, s->index);
    eng_state_batch_set_snap_mark(b, d->id, s->index, s->term);
    rc = commit_synced(n, b);
  } else {
    /* The file's index, filter and footer, then its sync and its name's:
     * it must be whole and durable before the intent names it. */
    rc = eng_state_sst_finish(one->staged.sst);
    eng_state_sst_free(one->staged.sst);
    one->staged.sst = NULL;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/snap", n->cfg.data_dir);
    if (rc == RK_OK) rc = sync_dir(dir);
    eng_state_batch_set_snap_intent(b, d->id, s->index, s->term, one->staged.file);
    if (rc == RK_OK) rc = commit_synced(n, b);
    if (rc == RK_OK) rc = finish_install(n, d->id, s->index, s->term, one->staged.file);
  }
  eng_state_batch_free(b);
  one->ns = rk_clock_mono_ns() - t0;
  return rc;
}

/* Installing, step 2 (the loop): only now, with the image durable, may the
 * log forget what it replaces. */
static int install_log(node *n, const node_snap_install_one *one) {
  const uint64_t id = one->r->desc.id;
  const mr_snapshot *s = one->snap;
  if (n->crash_after_snapshot_state) {
    RK_ERROR("node", "range %llu: test crash point snapshot-state reached: exiting",
             (unsigned long long)id);
    _exit(NODE_TEST_CRASH_EXIT);
  }
  int rc = eng_wal_reset(n->wal, id, s->index + 1, s->term);
  if (rc != RK_OK) return rc;
  n->snapshots_installed++;
  RK_INFO("node",
          "range %llu: installed the snapshot at %llu (term %llu): %llu keys, %llu bytes, in "
          "%.1f ms",
          (unsigned long long)id, (unsigned long long)s->index, (unsigned long long)s->term,
          (unsigned long long)one->staged.keys, (unsigned long long)one->staged.bytes,
          (double)one->ns / 1e6);
  return RK_OK;
}

/* The installer thread: takes jobs in order, runs step 1 of each snapshot,
 * and hands the job back to the loop (eventfd) for step 2 and the WAL. */
static void *installer_main(void *arg) {
  node *n = arg;
  node_snap_installer *in = &n->installer;
  pthread_mutex_lock(&in->mu);
  for (;;) {
    while (in->todo == NULL && !in->stop) pthread_cond_wait(&in->cv, &in->mu);
    if (in->stop) break;
    node_snap_job *j = in->todo;
    pthread_mutex_unlock(&in->mu);
    for (size_t i = 0; i < j->n && j->rc == RK_OK; i++) j->rc = install_state(n, &j->one[i]);
    pthread_mutex_lock(&in->mu);
    in->todo = j->next;
    j->next = NULL;
    node_snap_job **tail = &in->done;
    while (*tail) tail = &(*tail)->next;
    *tail = j;
    uint64_t one = 1;
    ssize_t wr = write(in->efd, &one, sizeof one);
    (void)wr; /* the counter cannot overflow; a failed write only delays */
  }
  pthread_mutex_unlock(&in->mu);
  return NULL;
}

/* Frees a job, and the staging its snapshots held (files an install did
 * not reach stay for the next start to remove). Loop thread. */
static void job_free(node *n, node_snap_job *j) {
  for (size_t i = 0; i < j->n; i++) {
    eng_state_sst_free(j->one[i].staged.sst);
    RK_ASSERT(n->rx_bytes >= j->one[i].staged.bytes);
    n->rx_bytes -= j->one[i].staged.bytes;
  }
  free(j->w);
  free(j);
}

static void on_installed(void *ctx) {
  node *n = ctx;
  node_snap_installer *in = &n->installer;
  uint64_t cnt = 0;
  ssize_t rd = read(in->efd, &cnt, sizeof cnt);
  (void)rd;
  pthread_mutex_lock(&in->mu);
  node_snap_job *done = in->done;
  in->done = NULL;
  pthread_mutex_unlock(&in->mu);
  while (done != NULL) {
    node_snap_job *j = done;
    done = j->next;
    int rc = j->rc;
    for (size_t i = 0; i < j->n && rc == RK_OK; i++) rc = install_log(n, &j->one[i]);
    if (rc != RK_OK)
      RK_ERROR("node", "installing a snapshot failed: %s", rk_strerror(rc));
    else
      node_persist_add(j->p, j->w, j->nw);
    node_persist_release(j->p, rc); /* a failure is fatal for the host: the node stops */
    job_free(n, j);
  }
}

int node_snap_persist(node *n, node_persist *p, mr_host_write *w, size_t nw) {
  node_snap_installer *in = &n->installer;
  if (!in->started) {
    int rc = tp_net_watch_fd(n->net, in->efd, on_installed, n);
    if (rc == RK_OK && pthread_create(&in->thread, NULL, installer_main, n) != 0) {
      tp_net_unwatch_fd(n->net, in->efd);
      rc = RK_ENOMEM;
    }
    if (rc != RK_OK) {
      free(w);
      return rc;
    }
    in->started = 1;
  }
  node_snap_job *j = calloc(1, sizeof *j + nw * sizeof j->one[0]);
  if (j == NULL) {
    free(w);
    return RK_ENOMEM;
  }
  j->p = p;
  j->w = w;
  j->nw = nw;
  for (size_t i = 0; i < nw; i++) {
    RK_ASSERT(w[i].snap != NULL);
    node_snap_install_one *one = &j->one[j->n++];
    *one = (node_snap_install_one){.r = &n->ranges[w[i].group - 1], .snap = w[i].snap};
    one->staged.file = staged_file_of(w[i].snap);
    if (one->staged.file == 0) continue;
    /* The job takes the staged file: no tick may remove it now. */
    uint32_t k = 0;
    while (k < n->nsealed && n->sealed[k].file != one->staged.file) k++;
    RK_ASSERTF(k < n->nsealed && n->sealed[k].range == w[i].group &&
                   n->sealed[k].index == w[i].snap->index,
               "range %llu: the snapshot at %llu to install has no staged file",
               (unsigned long long)w[i].group, (unsigned long long)w[i].snap->index);
    one->staged = n->sealed[k];
    sealed_remove(n, k, 0);
  }
  pthread_mutex_lock(&in->mu);
  node_snap_job **tail = &in->todo;
  while (*tail) tail = &(*tail)->next;
  *tail = j;
  pthread_cond_signal(&in->cv);
  pthread_mutex_unlock(&in->mu);
  return RK_OK;
}

int node_snap_installer_init(node *n) {
  node_snap_installer *in = &n->installer;
  memset(in, 0, sizeof *in);
  in->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (in->efd < 0) return rk_err_from_errno(errno);
  pthread_mutex_init(&in->mu, NULL);
  pthread_cond_init(&in->cv, NULL);
  in->inited = 1;
  return RK_OK;
}

static void free_jobs(node *n, node_snap_job *j) {
  while (j != NULL) {
    node_snap_job *next = j->next;
    job_free(n, j);
    j = next;
  }
}

/* Stops the installer after the job it runs, if any, and frees every job:
 * their batches never complete, the node is going away. */
static void installer_stop(node *n) {
  node_snap_installer *in = &n->installer;
  if (!in->inited) return;
  if (in->started) {
    pthread_mutex_lock(&in->mu);
    in->stop = 1;
    pthread_cond_signal(&in->cv);
    pthread_mutex_unlock(&in->mu);
    pthread_join(in->thread, NULL);
    (void)tp_net_unwatch_fd(n->net, in->efd);
  }
  free_jobs(n, in->todo);
  free_jobs(n, in->done);
  close(in->efd);
  pthread_mutex_destroy(&in->mu);
  pthread_cond_destroy(&in->cv);
  in->inited = 0;
}

void node_boot_hard_state(rk_hard_state *hs, int found, uint64_t applied, uint64_t snap_term) {
  /* An installed snapshot's entry term can be newer than the hard state
   * the WAL holds when a crash came after the state store's part and
   * before the WAL batch with the new hard state (possible only if the
   * InstallSnapshot was the first message of its term this replica saw).
   * No vote in that term was ever sent (votes wait for durability), so the
   * term can be taken, with no vote. */
  if (snap_term > hs->term) {
    hs->term = snap_term;
    hs->vote = 0;
    found = 1;
  }
  /* The host applies a Ready whose only change is the commit index
   * without waiting for that hard state to be durable (raft.h, must_sync),
   * so a crash can leave the state store ahead of the WAL's commit. What
   * was applied was committed: raise the commit to it. (With no hard state
   * and no snapshot, the WAL lost the range: the core refuses to start.) */
  if (found && applied > hs->commit) hs->commit = applied;
}

/* Finishes an install a crash interrupted after its intent record. */
static int redo_install(node *n, uint64_t id) {
  uint64_t index = 0, term = 0, file = 0;
  int rc = eng_state_snap_intent(n->state, id, &index, &term, &file);
  if (rc == RK_ENOTFOUND) return RK_OK;
  if (rc != RK_OK) {
    RK_ERROR("node", "range %llu: snapshot intent: %s", (unsigned long long)id, rk_strerror(rc));
    return rc;
  }
  char path[4096];
  staged_path(n, file, path, sizeof path);
  if (access(path, F_OK) != 0) {
    RK_ERROR("node",
             "range %llu: a snapshot install (index %llu) was interrupted and its staged file %s "
             "is gone (%s): the range's data cannot be rebuilt here",
             (unsigned long long)id, (unsigned long long)index, path, strerror(errno));
    return RK_ECORRUPT;
  }
  RK_WARN("node",
          "range %llu: finishing the install of the snapshot at %llu (term %llu) a crash "
          "interrupted, from %s",
          (unsigned long long)id, (unsigned long long)index, (unsigned long long)term, path);
  rc = finish_install(n, id, index, term, file);
  if (rc != RK_OK)
    RK_ERROR("node", "range %llu: finishing the install: %s", (unsigned long long)id,
             rk_strerror(rc));
  return rc;
}

int node_snap_reconcile(node *n, node_range *r, uint64_t *snap_term) {
  const uint64_t id = r->desc.id;
  *snap_term = 0;
  uint64_t index = 0, term = 0, t = 0;
  int rc = redo_install(n, id);
  if (rc != RK_OK) return rc;
  rc = eng_state_snap_mark(n->state, id, &index, &term);
  if (rc == RK_ENOTFOUND) return RK_OK;
  if (rc != RK_OK) {
    RK_ERROR("node", "range %llu: snapshot mark: %s", (unsigned long long)id, rk_strerror(rc));
    return rc;
  }
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
