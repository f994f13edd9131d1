/* node_snap_rx.c — range snapshots, the receiving side: chunks checked and
 * staged on disk as SST files, sealed on the InstallSnapshot, and removed
 * when no core holds them (node_snap.c's header comment, "RECEIVING").
 */
#include "node/node_int.h"
#include "node/node_snap_int.h"

#include "common/rk_assert.h"
#include "common/rk_err.h"
#include "common/rk_log.h"
#include "kv/kvcmd.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* fsync of a directory: the names made in it become durable. */
int node_snap_sync_dir(const char *path) {
  int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return rk_err_from_errno(errno);
  int rc = fsync(fd) == 0 ? RK_OK : rk_err_from_errno(errno);
  close(fd);
  return rc;
}

void node_snap_staged_path(const node *n, uint64_t file, char *out, size_t cap) {
  int w = snprintf(out, cap, "%s/snap/%016llx.sst", n->cfg.data_dir, (unsigned long long)file);
  RK_ASSERTF(w > 0 && (size_t)w < cap, "staging path too long");
}

void node_snap_staged_unlink(const node *n, uint64_t file) {
  char path[4096];
  node_snap_staged_path(n, file, path, sizeof path);
  if (unlink(path) != 0 && errno != ENOENT)
    RK_WARN("node", "cannot remove staged snapshot %s: %s", path, strerror(errno));
}

/* Drops what peer x staged, file and all. */
void node_snap_rx_reset(node *n, node_snap_rx *x) {
  RK_ASSERT(n->rx_bytes >= x->len);
  n->rx_bytes -= x->len;
  if (x->sst != NULL) {
    eng_state_sst_free(x->sst);
    node_snap_staged_unlink(n, x->file);
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
  node_snap_staged_path(n, x->file, path, sizeof path);
  int rc = eng_state_sst_open(n->state, path, &x->sst);
  if (rc != RK_OK) {
    (void)unlink(path); /* RocksDB may have created it */
    return rc;
  }
  return eng_state_sst_delete_range(x->sst, d->start, d->start_len, d->end_len ? d->end : NULL,
                                    d->end_len);
}

/* Tells peer `from` that its stream c->stream was dropped here, once per
 * stream (best effort: an abort the queue refuses is tried again with the
 * stream's next chunk). */
static void send_abort(node *n, uint32_t from, const Rangekv__SnapChunk *c, const char *why) {
  if (c->stream == 0 || n->rx_aborted[from] == c->stream) return;
  Rangekv__SnapChunk a;
  rangekv__snap_chunk__init(&a);
  a.stream = c->stream;
  a.range_id = c->range_id;
  a.abort = 1;
  a.reason = node_pb_str(why);
  uint8_t buf[256];
  size_t len = rangekv__snap_chunk__get_packed_size(&a);
  RK_ASSERT(len <= sizeof buf);
  rangekv__snap_chunk__pack(&a, buf);
  if (n->net != NULL &&
      tp_net_send_peer(n->net, from, TP_FRAME_SNAP_CHUNK, buf, (uint32_t)len) != RK_OK)
    return;
  n->rx_aborted[from] = c->stream;
  n->snap_aborts_sent++;
}

/* The range waits before another stream: 1 s, doubling to 60 s while
 * receivers keep refusing it (a stream sent whole resets it). */
static void abort_backoff(node *n, uint64_t group) {
  node_range *r = &n->ranges[group - 1];
  r->snap_abort_backoff_ms = r->snap_abort_backoff_ms == 0 ? NODE_SNAP_ABORT_BACKOFF_MS
                             : 2 * r->snap_abort_backoff_ms > NODE_SNAP_TOO_BIG_BACKOFF_MS
                                 ? NODE_SNAP_TOO_BIG_BACKOFF_MS
                                 : 2 * r->snap_abort_backoff_ms;
  uint64_t until = node_now_ms() + r->snap_abort_backoff_ms;
  if (r->snap_refused_until_ms < until) r->snap_refused_until_ms = until;
}

/* Peer `from` dropped our stream c->stream: it ends here too. */
static void on_abort(node *n, uint32_t from, const Rangekv__SnapChunk *c) {
  for (uint32_t i = 0; i < n->ntx; i++) {
    node_snap_tx *t = &n->tx[i];
    if (t->to_node != from || t->stream != c->stream) continue;
    /* The peer's words go into our log: printable ASCII only. */
    char reason[101] = "no reason given";
    if (c->reason != NULL && c->reason[0]) {
      size_t k = 0;
      for (; c->reason[k] && k < sizeof reason - 1; k++)
        reason[k] = c->reason[k] >= 0x20 && c->reason[k] < 0x7f ? c->reason[k] : '?';
      reason[k] = '\0';
    }
    char why[160];
    snprintf(why, sizeof why, "the peer dropped it (%s)", reason);
    abort_backoff(n, t->group);
    node_snap_tx_end(n, t, 1, why);
    return;
  }
  for (uint32_t k = 0; k < NODE_SNAP_DONE_KEPT && c->stream != 0; k++) {
    if (n->tx_done[k].peer != from || n->tx_done[k].stream != c->stream) continue;
    /* Sent whole already: its InstallSnapshot will be refused, so the
     * core hears now rather than after its stale-snapshot round. */
    RK_WARN("node",
            "range %llu: snapshot stream to node %u dropped by the peer after it was sent "
            "whole",
            (unsigned long long)n->tx_done[k].group, from);
    n->snapshots_dropped++;
    abort_backoff(n, n->tx_done[k].group);
    if (n->host) mr_host_report_snapshot(n->host, n->tx_done[k].group, n->tx_done[k].to, 1);
    n->tx_done[k].stream = 0;
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
  if (c->seq != 0 && c->stream != x->stream) {
    /* A piece of a stream not staged here (dropped, or from before a
     * restart): refused, and the stream being staged is left alone. */
    send_abort(n, from, c, "a chunk of a stream not staged here");
    rangekv__snap_chunk__free_unpacked(c, NULL);
    return RK_OK;
  }
  if (c->seq == 0) {
    if (x->stream != 0) n->snapshots_dropped++; /* a new stream replaces an unfinished one */
    node_snap_rx_reset(n, x);
    x->stream = c->stream;
    x->range = c->range_id;
  }
  const char *why = NULL;
  int malformed = 0;
  if (c->stream == 0 || c->stream != x->stream || c->range_id != x->range || c->seq != x->next_seq)
    why = "a chunk out of sequence";
  else if (c->range_id < 1 || c->range_id > n->table.n || !n->ranges[c->range_id - 1].local)
    why = "a range this node does not hold";
  else if (c->image.len > n->snap_max_bytes - x->len)
    why = "over the snapshot limit";
  else if (c->image.len > 2 * n->snap_max_bytes - n->rx_bytes)
    why = "over the node's staging limit (two snapshots)";
  else if (c->seq == 0 && n->test_refuse_streams > 0 && n->test_refuse_streams--)
    why = "refused by the test hook RK_TEST_SNAP_REFUSE";
  if (why == NULL && c->image.len > NODE_SNAP_CHUNK_MAX_IMAGE) {
    why = "a chunk image bigger than any sender makes";
    malformed = 1;
  }
  if (why == NULL) {
    const range_desc *d = &n->ranges[c->range_id - 1].desc;
    if (x->sst == NULL && rx_open(n, x, d) != RK_OK) why = "the staged file cannot be written";
    /* Checked and staged a piece at a time, so the loop never parses a
     * whole image at once and a bad stream is dropped at its first bad
     * chunk. */
    if (why == NULL && x->last_key == NULL) x->last_key = malloc(KV_MAX_KEY);
    RK_ASSERTF(why != NULL || x->last_key != NULL, "out of memory");
    int rc = why == NULL ? node_snap_image_check(d, c->image.data, c->image.len, x->last_key,
                                                 &x->last_klen, x->sst, &x->keys)
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
    send_abort(n, from, c, why);
    node_snap_rx_reset(n, x);
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
  node_snap_rx_reset(n, x);
  return RK_OK;
}

int node_snap_assemble(node *n, uint32_t from, mr_host_gmsg *gm) {
  if (from == 0 || from > NODE_MAX_NODES) return RK_EMALFORMED;
  mr_snapshot *s = gm->msg.snap;
  if (s->len > NODE_SNAP_DESC_MAX) return RK_EMALFORMED; /* a descriptor carries no pairs */
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
    s->data = node_snap_pack_descriptor(gm->group, 0, 0, &s->len);
  } else if (x->stream != d->stream || x->range != gm->group || x->next_seq != d->chunks) {
    rc = RK_EUNAVAILABLE;
  } else if ((rc = rx_seal(n, x, s->index)) != RK_OK) {
    why = "too many staged snapshots wait for an install";
  } else {
    /* From here on the data names the staged file, not the peer's stream. */
    free(s->data);
    s->data =
        node_snap_pack_descriptor(gm->group, n->sealed[n->nsealed - 1].file, d->chunks, &s->len);
  }
  if (rc != RK_OK && x->stream == d->stream) node_snap_rx_reset(n, x);
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
  node_snap_rx_reset(n, &n->rx[peer]);
  /* The connection our streams to it were on is gone, with whatever of
   * them it had not delivered. */
  for (uint32_t i = 0; i < n->ntx;)
    if (n->tx[i].to_node == peer)
      node_snap_tx_end(n, &n->tx[i], 1, "the connection to the peer was replaced");
    else
      i++;
}

/* Takes sealed[i] out of the list: dropped (writer freed, file removed,
 * bytes uncounted) or handed to an install (drop = 0). */
void node_snap_sealed_remove(node *n, uint32_t i, int drop) {
  RK_ASSERT(i < n->nsealed && n->rx_bytes >= n->sealed[i].bytes);
  if (drop) {
    n->rx_bytes -= n->sealed[i].bytes;
    eng_state_sst_free(n->sealed[i].sst);
    node_snap_staged_unlink(n, n->sealed[i].file);
  }
  n->sealed[i] = n->sealed[--n->nsealed];
}

/* The staged file a core's snapshot names (0: none, an empty range). */
uint64_t node_snap_staged_file_of(const mr_snapshot *s) {
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
    if (p != NULL && p->index == f->index && node_snap_staged_file_of(p) == f->file) continue;
    RK_INFO("node", "range %llu: staged snapshot at %llu not taken by the core: removed",
            (unsigned long long)f->range, (unsigned long long)f->index);
    node_snap_sealed_remove(n, i, 1);
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
    node_snap_rx_reset(n, x);
  }
  node_snap_settle(n);
}

int node_snap_staging_open(node *n) {
  char path[4096];
  snprintf(path, sizeof path, "%s/snap", n->cfg.data_dir);
  if (mkdir(path, 0755) != 0) {
    if (errno != EEXIST) return rk_err_from_errno(errno);
  } else {
    /* The new directory's name must be durable before an intent record
     * names a file in it. */
    int rc = node_snap_sync_dir(n->cfg.data_dir);
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
