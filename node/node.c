/* node.c — start-up, the event loop, and the host's I/O seam. See node.h.
 *
 * One loop iteration:
 *   tp_net_poll(timeout)   sockets, the tick timerfd, the WAL's ring fd and
 *                          the signalfd all wake the same epoll; their
 *                          callbacks step the host (receive, tick) or finish
 *                          WAL batches (mr_host_persisted)
 *   eng_wal_process()      reap completions, submit due batches
 *   mr_host_turn() ...     while the host has work: one persist (one more per
 *                          snapshot install), one frame per peer, one apply
 *                          round per turn
 * The epoll timeout is 0 while the host has work, else the WAL's own
 * deadline (batch window), else infinite: an idle node sleeps until a tick.
 */
#include "node/node_int.h"

#include "common/rk_assert.h"
#include "common/rk_clock.h"
#include "common/rk_err.h"
#include "common/rk_hash.h"
#include "common/rk_log.h"
#include "node/codec.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <unistd.h>

uint64_t node_now_ms(void) { return rk_clock_mono_ns() / 1000000u; }

void node_config_default(node_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->ranges = 64;
  cfg->tick_ms = 100;
  cfg->election_ticks = 10;
  cfg->quiesce = 1;
  cfg->request_timeout_ms = 5000;
  cfg->compact_entries = 10000;
  cfg->compact_lag_entries = 50000;
  cfg->peer_timeout_ms = 10000;
}

int node_parse_cluster(node_config *cfg, const char *list, char *err, size_t errcap) {
  cfg->n_cluster = 0;
  const char *p = list;
  while (p && *p) {
    const char *comma = strchr(p, ',');
    size_t len = comma ? (size_t)(comma - p) : strlen(p);
    char item[128];
    if (len == 0 || len >= sizeof item) {
      snprintf(err, errcap, "bad --initial-cluster item near '%.*s'", (int)(len > 40 ? 40 : len),
               p);
      return RK_EINVAL;
    }
    memcpy(item, p, len);
    item[len] = '\0';
    char *at = strchr(item, '@');
    char zone[32] = "";
    if (at != NULL) {
      if (at[1] == '\0' || strlen(at + 1) >= sizeof zone) {
        snprintf(err, errcap, "bad zone in --initial-cluster item '%s'", item);
        return RK_EINVAL;
      }
      snprintf(zone, sizeof zone, "%s", at + 1);
      *at = '\0';
    }
    char *eq = strchr(item, '=');
    char *end = NULL;
    unsigned long id = eq ? strtoul(item, &end, 10) : 0;
    if (!eq || end != eq || id == 0 || id > NODE_MAX_NODES || eq[1] == '\0' ||
        strlen(eq + 1) >= TP_ADDR_MAX || !strchr(eq + 1, ':')) {
      snprintf(err, errcap, "bad --initial-cluster item '%s' (want ID=HOST:PORT, ID 1..%d)", item,
               NODE_MAX_NODES);
      return RK_EINVAL;
    }
    for (uint32_t i = 0; i < cfg->n_cluster; i++) {
      if (cfg->cluster[i].id == id) {
        snprintf(err, errcap, "node id %lu appears twice in --initial-cluster", id);
        return RK_EINVAL;
      }
    }
    if (cfg->n_cluster == NODE_MAX_NODES) {
      snprintf(err, errcap, "more than %d nodes in --initial-cluster", NODE_MAX_NODES);
      return RK_EINVAL;
    }
    node_peer *np = &cfg->cluster[cfg->n_cluster++];
    np->id = (uint32_t)id;
    snprintf(np->addr, sizeof np->addr, "%s", eq + 1);
    snprintf(np->zone, sizeof np->zone, "%s", zone);
    p = comma ? comma + 1 : NULL;
  }
  if (cfg->n_cluster == 0) {
    snprintf(err, errcap, "--initial-cluster is empty");
    return RK_EINVAL;
  }
  return RK_OK;
}

uint64_t node_cluster_id_of(const node_config *cfg) {
  if (cfg->cluster_id != 0) return cfg->cluster_id;
  /* FNV-1a over the sorted "id=addr" list: every node started with the same
   * list derives the same id, whatever the order it was written in. */
  uint64_t h = RK_FNV_INIT;
  for (uint32_t id = 1; id <= NODE_MAX_NODES; id++) {
    for (uint32_t i = 0; i < cfg->n_cluster; i++) {
      if (cfg->cluster[i].id != id) continue;
      char item[128];
      int len = snprintf(item, sizeof item, "%u=%s;", id, cfg->cluster[i].addr);
      h = rk_fnv1a(h, item, (size_t)len);
    }
  }
  return h ? h : 1;
}

/* ---- the host's log storage: the WAL's per-group view ------------------------ */

_Noreturn void node_storage_fault(const node *n, uint64_t range, const char *what, int rc) {
  char where[48] = "";
  if (range != 0) snprintf(where, sizeof where, "range %llu: ", (unsigned long long)range);
  RK_ERROR("node", "%s%s failed: %s; node %u stops (exit %d)", where, what, rk_strerror(rc),
           n->cfg.node_id, NODE_EXIT_STORAGE);
  fflush(NULL);
  _exit(NODE_EXIT_STORAGE);
}

/* What the Raft core may be answered: anything else is a fault of the
 * disk or the store, and the node stops (a core would abort on it). */
static int st_answer(const node_range *r, const char *what, int rc) {
  if (rc != RK_OK && rc != RK_ECOMPACTED && rc != RK_EUNAVAILABLE)
    node_storage_fault(r->n, r->desc.id, what, rc);
  return rc;
}

static uint64_t st_first(void *ctx) {
  node_range *r = ctx;
  uint64_t v = 1;
  if (eng_wal_first_index(r->n->wal, r->desc.id, &v) != RK_OK)
    node_storage_fault(r->n, r->desc.id, "reading its log's first index", RK_ESTOPPED);
  return v;
}

static uint64_t st_last(void *ctx) {
  node_range *r = ctx;
  uint64_t v = 0;
  if (eng_wal_last_index(r->n->wal, r->desc.id, &v) != RK_OK)
    node_storage_fault(r->n, r->desc.id, "reading its log's last index", RK_ESTOPPED);
  return v;
}

static int st_term(void *ctx, uint64_t i, uint64_t *term) {
  node_range *r = ctx;
  return st_answer(r, "reading a term from its log", eng_wal_term(r->n->wal, r->desc.id, i, term));
}

static int st_entries(void *ctx, uint64_t lo, uint64_t hi, uint64_t max_bytes, rk_entry_vec *out) {
  node_range *r = ctx;
  return st_answer(r, "reading its log",
                   eng_wal_entries(r->n->wal, r->desc.id, lo, hi, max_bytes, out));
}

static int st_snapshot(void *ctx, mr_snapshot *out) {
  node_range *r = ctx;
  return node_snap_build(r->n, r, out);
}

static const mr_storage_ops node_storage_ops = {.first_index = st_first,
                                                .last_index = st_last,
                                                .term = st_term,
                                                .entries = st_entries,
                                                .snapshot = st_snapshot};

static int io_storage(void *ctx, uint64_t group, mr_storage *out) {
  node *n = ctx;
  if (group < 1 || group > n->table.n) return RK_EUNKNOWNRANGE;
  out->ops = &node_storage_ops;
  out->ctx = &n->ranges[group - 1];
  return RK_OK;
}

/* ---- persist: host batch -> WAL appends ----------------------------------------- */

/* A persist batch completes when its last part is durable: each WAL
 * chunk, an installer job, and the io_persist call itself hold one part. */
node_persist *node_persist_new(node *n, uint64_t batch) {
  node_persist *p = calloc(1, sizeof *p);
  RK_ASSERTF(p != NULL, "out of memory");
  p->n = n;
  p->batch = batch;
  p->remaining = 1;
  return p;
}

void node_persist_release(node_persist *p, int rc) {
  if (rc != RK_OK && p->rc == RK_OK) p->rc = rc;
  RK_ASSERT(p->remaining > 0);
  if (--p->remaining > 0) return;
  mr_host_persisted(p->n->host, p->batch, p->rc);
  free(p);
}

static void wal_done(eng_wal_append_req *req, int status) {
  node_wal_req *wr = req->data;
  node_persist *p = wr->p;
  free(wr);
  node_persist_release(p, status);
}

/* Commit-index updates nothing waits for (persist with sync == 0) are kept
 * per range and written just ahead of the next synced batch: an fsync of
 * their own would only delay that batch, since the WAL keeps one fsync in
 * flight. A crash may lose them; a commit index is learned again, and boot
 * raises it to the state store's applied index. */
typedef struct node_lazy_req {
  eng_wal_append_req req;
} node_lazy_req;

static void lazy_keep(node *n, const mr_host_write *w, size_t nw) {
  for (size_t i = 0; i < nw; i++) {
    RK_ASSERT(w[i].hs != NULL && w[i].entries->len == 0 && w[i].snap == NULL);
    node_range *r = &n->ranges[w[i].group - 1];
    if (!r->lazy_hs_set) {
      if (n->nlazy == n->caplazy) {
        n->caplazy = n->caplazy ? 2 * n->caplazy : 64;
        n->lazy = realloc(n->lazy, n->caplazy * sizeof *n->lazy);
        RK_ASSERTF(n->lazy != NULL, "out of memory");
      }
      n->lazy[n->nlazy++] = w[i].group;
      r->lazy_hs_set = 1;
    }
    r->lazy_hs = *w[i].hs;
  }
}

static void lazy_done(eng_wal_append_req *req, int status) {
  (void)status; /* a failure stops the WAL; the next synced batch reports it */
  free(req->data);
}

static void lazy_flush(node *n) {
  if (n->nlazy == 0) return;
  node_lazy_req *lr = calloc(1, sizeof *lr);
  eng_wal_write *ww = calloc(n->nlazy, sizeof *ww);
  RK_ASSERTF(lr && ww, "out of memory");
  lr->req.data = lr;
  for (size_t i = 0; i < n->nlazy; i++) {
    node_range *r = &n->ranges[n->lazy[i] - 1];
    ww[i].group = n->lazy[i];
    ww[i].hard_state = &r->lazy_hs;
    r->lazy_hs_set = 0;
  }
  int rc = eng_wal_append(n->wal, &lr->req, ww, n->nlazy, lazy_done); /* copies ww */
  if (rc != RK_OK) {
    RK_WARN("node", "WAL append of %zu commit updates refused: %s", n->nlazy, rk_strerror(rc));
    free(lr);
  }
  free(ww);
  n->nlazy = 0;
}

static void io_persist(void *ctx, uint64_t batch, const mr_host_write *w, size_t nw, int sync) {
  node *n = ctx;
  if (!sync) {
    lazy_keep(n, w, nw);
    mr_host_persisted(n->host, batch, RK_OK);
    return;
  }
  lazy_flush(n);
  node_persist *p = node_persist_new(n, batch);
  if (nw == 1 && w[0].snap != NULL) {
    /* A snapshot's write is alone in its batch (host.h): it waits for the
     * install, made durable in the state store off the loop (a big one
     * takes seconds), before its range's log is reset and the entries after
     * it and its hard state are appended. node_snap_persist takes the copy,
     * and the snapshot's staged file off the sealed list, now:
     * node_snap_settle removes any sealed file the core no longer holds as
     * pending, so the claim must not wait past this call. */
    mr_host_write *later = malloc(sizeof *later);
    RK_ASSERTF(later != NULL, "out of memory");
    *later = w[0];
    p->remaining++;
    int rc = node_snap_persist(n, p, later, 1);
    if (rc != RK_OK) node_persist_release(p, rc);
  } else {
    for (size_t i = 0; i < nw; i++)
      RK_ASSERTF(w[i].snap == NULL, "a snapshot shares persist batch %llu",
                 (unsigned long long)batch);
    node_persist_add(p, w, nw);
  }
  node_persist_release(p, RK_OK);
}

void node_persist_add(node_persist *p, const mr_host_write *w, size_t nw) {
  node *n = p->n;
  eng_wal_write *ww = calloc(nw ? nw : 1, sizeof *ww);
  RK_ASSERTF(ww != NULL, "out of memory");
  /* Chunks of at most half the WAL's batch limit (payload + record
   * overhead); a group's write over that goes alone in its chunk. One
   * group's write always fits a WAL batch: the leader refuses proposals
   * past NODE_MAX_UNCOMMITTED (RK_EUNCOMMITTEDFULL; payload and
   * MR_ENTRY_OVERHEAD each), and a follower drops an AppendEntries that
   * would leave more than max_unstable_bytes unpersisted (start_host). */
  const uint64_t limit = n->wal_batch_bytes / 2;
  size_t chunk_start = 0, nchunks = 0;
  uint64_t bytes = 0;
  size_t *starts = calloc(nw + 1, sizeof *starts);
  RK_ASSERTF(starts != NULL, "out of memory");
  for (size_t i = 0; i < nw; i++) {
    ww[i].group = w[i].group;
    ww[i].entries = w[i].entries->v;
    ww[i].n_entries = w[i].entries->len;
    ww[i].hard_state = w[i].hs;
    uint64_t b = w[i].entries->bytes + 64 * (w[i].entries->len + 1);
    if (i > chunk_start && bytes + b > limit) {
      starts[nchunks++] = chunk_start;
      chunk_start = i;
      bytes = 0;
    }
    bytes += b;
  }
  starts[nchunks++] = chunk_start;
  starts[nchunks] = nw;
  for (size_t c = 0; c < nchunks; c++) {
    node_wal_req *wr = calloc(1, sizeof *wr);
    RK_ASSERTF(wr != NULL, "out of memory");
    wr->p = p;
    wr->req.data = wr;
    p->remaining++;
    int rc = eng_wal_append(n->wal, &wr->req, ww + starts[c], starts[c + 1] - starts[c], wal_done);
    if (rc != RK_OK) {
      /* Nothing of this chunk was written and its callback never runs. */
      RK_ERROR("node", "WAL append refused: %s", rk_strerror(rc));
      free(wr);
      node_persist_release(p, rc);
    }
  }
  free(starts);
  free(ww);
}

/* ---- send: one RaftBatch frame per peer per turn ----------------------------- */

static void io_send(void *ctx, const mr_host_frame *f) {
  node *n = ctx;
  size_t nsnap = 0;
  for (size_t i = 0; i < f->n_msgs; i++) nsnap += f->msgs[i].msg.snap != NULL;
  if (nsnap > 0) {
    /* InstallSnapshots are streamed (node_snap.c), the rest framed. */
    mr_host_gmsg *rest = calloc(f->n_msgs, sizeof *rest);
    RK_ASSERTF(rest != NULL, "out of memory");
    size_t k = 0;
    for (size_t i = 0; i < f->n_msgs; i++) {
      if (f->msgs[i].msg.snap != NULL)
        node_snap_send(n, f->to_node, &f->msgs[i]);
      else
        rest[k++] = f->msgs[i]; /* shallow: borrowed for the call */
    }
    mr_host_frame g = *f;
    g.msgs = rest;
    g.n_msgs = k;
    io_send(ctx, &g);
    free(rest);
    return;
  }
  uint8_t *buf = NULL;
  size_t len = 0;
  if (node_codec_encode(f, &buf, &len) != RK_OK) {
    RK_WARN("node", "out of memory encoding a frame to node %u: dropped", f->to_node);
    return;
  }
  if (len > TP_FRAME_DEFAULT_MAX_PAYLOAD && f->n_msgs > 1) {
    /* Too big for one frame: halve the messages (heartbeats ride with the
     * first half) rather than lose everything, heartbeats included. */
    free(buf);
    size_t half = f->n_msgs / 2;
    mr_host_frame a = *f, b = *f;
    a.n_msgs = half;
    b.msgs = f->msgs + half;
    b.n_msgs = f->n_msgs - half;
    b.n_hbs = b.n_hb_resps = 0;
    io_send(ctx, &a);
    io_send(ctx, &b);
    return;
  }
  /* Dropped frames (peer down, queue full, one message over the limit) are
   * Raft's to tolerate: it resends. */
  if (len <= TP_FRAME_DEFAULT_MAX_PAYLOAD)
    (void)tp_net_send_peer(n->net, f->to_node, TP_FRAME_RAFT_BATCH, buf, (uint32_t)len);
  free(buf);
}

/* ---- transport callbacks ------------------------------------------------------------- */

static void on_peer_frame(void *ctx, uint32_t node_id, uint16_t type, const uint8_t *payload,
                          uint32_t len) {
  node *n = ctx;
  if (node_stopping(n)) return;
  if (type == TP_FRAME_SNAP_CHUNK) {
    /* node_snap_on_chunk logs what it drops and why. */
    if (node_snap_on_chunk(n, node_id, payload, len) != RK_OK) n->bad_frames++;
    return;
  }
  if (type != TP_FRAME_RAFT_BATCH) {
    n->bad_frames++;
    return;
  }
  node_codec_frame fr;
  if (node_codec_decode(payload, len, &fr) != RK_OK) {
    n->bad_frames++;
    RK_WARN("node", "malformed Raft batch from node %u dropped", node_id);
    return;
  }
  /* The transport authenticated the sender: a frame claiming another is bad. */
  if (fr.f.from_node != node_id || fr.f.to_node != n->cfg.node_id) {
    n->bad_frames++;
    node_codec_frame_free(&fr);
    return;
  }
  /* A snapshot gets its streamed image, which must be a clean image of a
   * range this node holds before a core accepts it: refused after
   * acceptance would be too late. */
  for (size_t i = 0; i < fr.f.n_msgs; i++) {
    mr_host_gmsg *gm = &fr.msgs[i];
    if (gm->msg.snap == NULL) continue;
    int rc = RK_EMALFORMED;
    if (gm->group >= 1 && gm->group <= n->table.n && n->ranges[gm->group - 1].local) {
      /* The image was checked chunk by chunk as it came; the rest here. */
      rc = node_snap_assemble(n, node_id, gm);
    }
    if (rc != RK_OK) {
      if (rc == RK_EMALFORMED) {
        n->bad_frames++;
        RK_WARN("node", "bad snapshot for range %llu from node %u: frame dropped",
                (unsigned long long)gm->group, node_id);
      }
      node_codec_frame_free(&fr);
      node_snap_settle(n); /* what this frame sealed, no core took */
      return;
    }
  }
  mr_host_receive(n->host, &fr.f);
  node_codec_frame_free(&fr);
  /* A core refuses a stale snapshot: its staged file goes at once. */
  if (n->nsealed > 0) node_snap_settle(n);
}

static void on_peer_up(void *ctx, uint32_t node_id, const char *client_addr) {
  node *n = ctx;
  if (node_id == 0 || node_id > NODE_MAX_NODES || client_addr == NULL || node_stopping(n)) return;
  snprintf(n->client_addr[node_id], TP_ADDR_MAX, "%s", client_addr);
  node_snap_peer_up(n, node_id);
  RK_INFO("node", "peer %u up (clients at %s)", node_id, client_addr);
}

/* Log compaction, every NODE_COMPACT_EVERY_TICKS ticks. A range's entries
 * up to min(applied, compact hint) are dropped once there are at least
 * cfg.compact_entries of them:
 *   - applied: the state store is synced first, so everything applied is
 *     durable there and a restart never needs to replay below it (the WAL
 *     is never purged past what the state store made durable);
 *   - the compact hint (mr_host_compact_hint): every replica holds the log
 *     up to it, so no replica will ever ask for those entries.
 * A replica more than cfg.compact_lag_entries behind applied (down, or far
 * behind) no longer holds the log back: entries up to applied - lag go, and
 * it catches up from a snapshot (node_snap.c) — unless the range is too big
 * for one, when it keeps holding the log back as before (the WAL's laggard
 * rewrite keeps old segments deletable). Then segments nothing needs are
 * retired. */
static void node_compact(node *n) {
  if (n->cfg.compact_entries == 0) return;
  int synced = 0;
  uint64_t compacted = 0;
  for (size_t i = 0; i < n->table.n; i++) {
    node_range *r = &n->ranges[i];
    if (!r->local) continue;
    mr_raft *core = mr_host_group_raft(n->host, r->desc.id);
    uint64_t first = 0;
    if (core == NULL || eng_wal_first_index(n->wal, r->desc.id, &first) != RK_OK) continue;
    uint64_t applied = mr_raft_applied(core), lag = n->cfg.compact_lag_entries;
    uint64_t upto = mr_host_compact_hint(n->host, r->desc.id);
    if (applied < upto) upto = applied;
    if (lag != 0 && applied - upto > lag && node_snap_fits(n, r)) upto = applied - lag;
    uint64_t streaming = node_snap_streaming_at(n, r->desc.id);
    if (upto > streaming) upto = streaming;
    if (upto < first || upto - first + 1 < n->cfg.compact_entries) continue;
    if (!synced) {
      int rc = eng_state_sync(n->state);
#ifdef RK_TEST_HOOKS
      if (n->test_fail_state_sync) rc = RK_EIO;
#endif
      if (rc != RK_OK) {
        /* Never retried: after a failed sync the kernel may have dropped
         * the dirty pages, so a later "successful" one would let the WAL
         * be compacted past what is really on disk (fsyncgate). */
        RK_ERROR("node", "state store sync failed: %s; stopping", rk_strerror(rc));
        n->fatal = rc;
        return;
      }
      synced = 1;
    }
    int rc = eng_wal_compact(n->wal, r->desc.id, upto + 1, 0);
    if (rc != RK_OK) {
      RK_WARN("node", "range %llu: compaction to %llu refused: %s", (unsigned long long)r->desc.id,
              (unsigned long long)upto, rk_strerror(rc));
      continue;
    }
    compacted++;
  }
  if (compacted == 0) return;
  eng_wal_purge_stats ps;
  memset(&ps, 0, sizeof ps);
  int rc = eng_wal_purge(n->wal, &ps);
  RK_INFO("node", "compacted %llu range log(s); purge: %s, %llu segment(s) deleted",
          (unsigned long long)compacted, rk_strerror(rc), (unsigned long long)ps.segments_deleted);
}

static void on_timer(void *ctx) {
  node *n = ctx;
  uint64_t expirations = 0;
  if (read(n->timer_fd, &expirations, sizeof expirations) != (ssize_t)sizeof expirations) return;
  if (node_stopping(n)) return;
  /* A loop that fell behind ticks at most a few times: logical time may lag
   * real time, which only delays elections. */
  if (expirations > 3) expirations = 3;
  for (uint64_t i = 0; i < expirations; i++) mr_host_tick(n->host);
  node_client_tick(n);
  node_snap_tick(n);
  node_metrics_tick(n);
  if (++n->ticks_since_compact >= NODE_COMPACT_EVERY_TICKS) {
    n->ticks_since_compact = 0;
    node_compact(n);
  }
}

int node_stopping(node *n) {
  int rc = n->wal ? eng_wal_stopped(n->wal) : RK_OK;
  if (rc != RK_OK && !n->fatal) {
    RK_ERROR("node", "WAL stopped: %s", rk_strerror(rc));
    n->fatal = rc;
  }
  return n->fatal != RK_OK;
}

static void on_wal(void *ctx) {
  node *n = ctx;
  int rc = eng_wal_process(n->wal);
  if (rc != RK_OK && !node_stopping(n)) { /* an error that did not stop the WAL */
    RK_ERROR("node", "WAL: %s", rk_strerror(rc));
    n->fatal = rc;
  }
}

static void on_signal(void *ctx) {
  node *n = ctx;
  struct signalfd_siginfo si;
  if (read(n->signal_fd, &si, sizeof si) == (ssize_t)sizeof si) {
    RK_INFO("node", "signal %u: shutting down", si.ssi_signo);
    n->stop = 1;
  }
}

/* ---- start-up ---------------------------------------------------------------------- */

static int mkdir_p(const char *path) {
  char buf[4096];
  if (strlen(path) >= sizeof buf) return RK_EINVAL;
  snprintf(buf, sizeof buf, "%s", path);
  for (char *p = buf + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) return rk_err_from_errno(errno);
    *p = '/';
  }
  if (mkdir(buf, 0755) != 0 && errno != EEXIST) return rk_err_from_errno(errno);
  return RK_OK;
}

/* Loads the persisted range table, or bootstraps and persists it. */
static int load_ranges(node *n) {
  size_t cap = 64, cnt = 0;
  range_desc *v = malloc(cap * sizeof *v);
  if (v == NULL) return RK_ENOMEM;
  for (uint64_t id = 1; id <= RANGE_MAX_RANGES; id++) {
    void *val = NULL;
    size_t len = 0;
    int rc = eng_state_range_get(n->state, id, ENG_RANGE_DESC, &val, &len);
    if (rc == RK_ENOTFOUND) break;
    if (rc != RK_OK) {
      free(v);
      return rc;
    }
    if (cnt == cap) {
      cap *= 2;
      range_desc *nv = realloc(v, cap * sizeof *nv);
      if (nv == NULL) {
        free(val);
        free(v);
        return RK_ENOMEM;
      }
      v = nv;
    }
    rc = range_desc_decode(val, len, &v[cnt]);
    free(val);
    if (rc != RK_OK) {
      RK_ERROR("node", "range %llu descriptor is corrupt", (unsigned long long)id);
      free(v);
      return rc;
    }
    cnt++;
  }
  if (cnt > 0) {
    int rc = range_table_adopt(&n->table, v, cnt);
    if (rc != RK_OK) {
      RK_ERROR("node", "persisted range table does not tile the key space");
      free(v);
      return rc;
    }
    if (cnt != n->cfg.ranges)
      RK_INFO("node", "using the persisted table of %zu ranges (--ranges %u ignored)", cnt,
              n->cfg.ranges);
    return RK_OK;
  }
  free(v);
  range_node nodes[NODE_MAX_NODES];
  for (uint32_t i = 0; i < n->cfg.n_cluster; i++)
    nodes[i] = (range_node){.id = n->cfg.cluster[i].id, .zone = n->cfg.cluster[i].zone};
  int rc = range_table_bootstrap(&n->table, n->cfg.ranges, nodes, n->cfg.n_cluster);
  if (rc != RK_OK) return rc;
  eng_state_batch *b = eng_state_batch_new(n->state);
  if (b == NULL) return RK_ENOMEM;
  for (size_t i = 0; i < n->table.n; i++) {
    uint8_t buf[RANGE_DESC_MAX_BYTES];
    size_t len = range_desc_encode(&n->table.v[i], buf, sizeof buf);
    eng_state_batch_range_put(b, n->table.v[i].id, ENG_RANGE_DESC, buf, len);
  }
  rc = eng_state_commit(n->state, b);
  eng_state_batch_free(b);
  if (rc == RK_OK) rc = eng_state_sync(n->state);
  RK_INFO("node", "bootstrapped %zu ranges", n->table.n);
  return rc;
}

static int create_groups(node *n) {
  n->ranges = calloc(n->table.n, sizeof *n->ranges);
  if (n->ranges == NULL) return RK_ENOMEM;
  for (size_t i = 0; i < n->table.n; i++) {
    node_range *r = &n->ranges[i];
    r->desc = n->table.v[i];
    r->n = n;
    r->local = range_desc_has_node(&r->desc, n->cfg.node_id);
    if (!r->local) continue;
    mr_boot boot;
    memset(&boot, 0, sizeof boot);
    int found = 0;
    uint64_t snap_term = 0;
    int rc = node_snap_reconcile(n, r, &snap_term);
    if (rc != RK_OK) return rc;
    rc = eng_wal_hard_state(n->wal, r->desc.id, &boot.hs, &found);
    if (rc != RK_OK) return rc;
    rc = eng_state_applied(n->state, r->desc.id, &boot.applied);
    if (rc == RK_ENOTFOUND)
      boot.applied = 0;
    else if (rc != RK_OK)
      return rc;
    node_boot_hard_state(&boot.hs, found, boot.applied, snap_term);
    node_range_conf(r, &boot.conf);
    rc = mr_host_create_group(n->host, r->desc.id, mr_host_replica_id(n->cfg.node_id, 1), &boot);
    if (rc != RK_OK) {
      RK_ERROR("node",
               "range %llu cannot start: %s (hard state term %llu commit %llu, applied "
               "%llu)",
               (unsigned long long)r->desc.id, rk_strerror(rc), (unsigned long long)boot.hs.term,
               (unsigned long long)boot.hs.commit, (unsigned long long)boot.applied);
      return rc;
    }
  }
  return RK_OK;
}

static int open_stores(node *n) {
  char path[4096];
  int rc = mkdir_p(n->cfg.data_dir);
  if (rc != RK_OK) {
    RK_ERROR("node", "cannot create data dir %s: %s", n->cfg.data_dir, rk_strerror(rc));
    return rc;
  }
  eng_state_options so;
  eng_state_options_default(&so);
  snprintf(path, sizeof path, "%s/state", n->cfg.data_dir);
  so.dir = path;
  so.cluster_id = n->cluster_id;
  so.node_id = n->cfg.node_id;
  char msg[256] = "";
  rc = eng_state_open(&so, &n->state, msg, sizeof msg);
  if (rc != RK_OK) {
    fprintf(stderr, "rangekv start: cannot open %s: %s%s%s\n", path, rk_strerror(rc),
            msg[0] ? ": " : "", msg);
    return rc;
  }
  eng_wal_options wo;
  eng_wal_options_default(&wo);
  snprintf(path, sizeof path, "%s/wal", n->cfg.data_dir);
  wo.dir = path;
  wo.cluster_id = n->cluster_id;
  wo.node_id = n->cfg.node_id;
  wo.max_batch_bytes = n->wal_batch_bytes;
  if (n->wal_segment_bytes) { /* test hook: the limits scale down with the segment */
    wo.segment_bytes = n->wal_segment_bytes;
    if (wo.max_entry_bytes > n->wal_batch_bytes - 4096)
      wo.max_entry_bytes = (uint32_t)(n->wal_batch_bytes - 4096);
    if (wo.rewrite_max_group_bytes > (n->wal_batch_bytes - 4096) / 2)
      wo.rewrite_max_group_bytes = (n->wal_batch_bytes - 4096) / 2;
  }
  n->wal_max_entry_bytes = wo.max_entry_bytes;
#ifdef RK_TEST_HOOKS
  /* RK_TEST_WAL_CACHE_BYTES=0: every durable entry is read from its file. */
  const char *cache = getenv("RK_TEST_WAL_CACHE_BYTES");
  if (cache != NULL) wo.cache_bytes = (uint64_t)atoll(cache);
#endif
  eng_wal_recovery rec;
  memset(&rec, 0, sizeof rec);
  rc = eng_wal_open(&wo, &n->wal, &rec);
  if (rc != RK_OK) {
    fprintf(stderr, "rangekv start: cannot open the WAL in %s: %s%s%s\n", path, rk_strerror(rc),
            rec.message[0] ? ": " : "", rec.message);
    return rc;
  }
  if (rec.torn_tail) RK_WARN("node", "WAL: %s", rec.message);
#ifdef RK_TEST_HOOKS
  if (n->test_wal_fsync_fail_at >= 0 || n->test_wal_read_fail_at >= 0) {
    eng_wal_hooks hk;
    eng_wal_hooks_default(&hk);
    hk.fail_fsync_at = n->test_wal_fsync_fail_at;
    hk.fail_read_at = n->test_wal_read_fail_at;
    eng_wal_set_hooks(n->wal, &hk);
  }
#endif
  RK_INFO("node", "WAL recovered: %llu entries of %llu groups in %.3f s",
          (unsigned long long)rec.entries, (unsigned long long)rec.groups,
          (double)rec.elapsed_ns / 1e9);
  return RK_OK;
}

static const node_peer *self_peer(const node_config *cfg) {
  for (uint32_t i = 0; i < cfg->n_cluster; i++)
    if (cfg->cluster[i].id == cfg->node_id) return &cfg->cluster[i];
  return NULL;
}

static int start_net(node *n) {
  tp_net_config tc;
  tp_net_config_default(&tc);
  tc.cluster_id = n->cluster_id;
  tc.node_id = n->cfg.node_id;
  tc.peer_listen = n->cfg.listen;
  tc.client_listen = n->cfg.client_listen;
  tc.client_advertise = n->cfg.client_advertise;
  tc.peer_timeout_ms = n->cfg.peer_timeout_ms;
  tp_net_callbacks cb = {.ctx = n,
                         .on_peer_frame = on_peer_frame,
                         .on_peer_up = on_peer_up,
                         .on_client_frame = node_on_client_frame,
                         .on_client_closed = node_on_client_closed};
  int rc = tp_net_new(&n->net, &tc, &cb);
  if (rc != RK_OK) {
    fprintf(stderr, "rangekv start: cannot listen on %s / %s: %s\n", n->cfg.listen,
            n->cfg.client_listen, rk_strerror(rc));
    return rc;
  }
  snprintf(n->client_addr[n->cfg.node_id], TP_ADDR_MAX, "%s", tp_net_client_addr(n->net));
  for (uint32_t i = 0; i < n->cfg.n_cluster; i++) {
    if (n->cfg.cluster[i].id == n->cfg.node_id) continue;
    rc = tp_net_add_peer(n->net, n->cfg.cluster[i].id, n->cfg.cluster[i].addr);
    if (rc != RK_OK) return rc;
  }
  return RK_OK;
}

static int start_host(node *n) {
  mr_host_config hc;
  mr_host_config_default(&hc, n->cfg.node_id);
  hc.raft.election_tick = n->cfg.election_ticks;
  /* One range's share of a turn must fit a WAL chunk (node_persist_add). */
  uint64_t most =
      n->wal_batch_bytes / 2 < NODE_MAX_UNCOMMITTED ? n->wal_batch_bytes / 2 : NODE_MAX_UNCOMMITTED;
  hc.raft.max_uncommitted_bytes = most;
  hc.raft.max_inflight_bytes = most;
  /* What a follower holds unpersisted, whatever a peer sends: its next
   * Ready's entries (32 bytes of framing each in the WAL, charged 64) and
   * hard state then fit one WAL batch. A healthy follower seldom reaches
   * it: with the default batch, the leader's in-flight window (most,
   * framing counted) plus one message (1/16 of a batch, or one entry the
   * WAL takes) is below it. A follower at it takes the prefix of a message
   * that fits. */
  hc.raft.max_unstable_bytes = n->wal_batch_bytes - 2 * MR_ENTRY_OVERHEAD;
  if (hc.raft.max_msg_bytes > n->wal_batch_bytes / 16)
    hc.raft.max_msg_bytes = n->wal_batch_bytes / 16;
  if (hc.raft.max_entry_bytes > n->wal_max_entry_bytes)
    hc.raft.max_entry_bytes = n->wal_max_entry_bytes;
  hc.quiesce = (uint8_t)(n->cfg.quiesce != 0);
  mr_host_io io = {.ctx = n,
                   .storage = io_storage,
                   .persist = io_persist,
                   .send = io_send,
                   .apply = node_apply,
                   .read_ready = node_read_ready};
  rk_rand_seed(&n->rng, n->cluster_id ^ ((uint64_t)n->cfg.node_id << 32) ^ rk_clock_mono_ns());
  int rc = mr_host_new(&n->host, &hc, &io, &n->rng);
  if (rc != RK_OK) return rc;
  for (uint32_t i = 0; i < n->cfg.n_cluster; i++)
    if (n->cfg.cluster[i].id != n->cfg.node_id)
      (void)mr_host_add_node(n->host, n->cfg.cluster[i].id);
  return RK_OK;
}

static void shutdown_signals(sigset_t *mask) {
  sigemptyset(mask);
  sigaddset(mask, SIGTERM);
  sigaddset(mask, SIGINT);
}

static int start_fds(node *n) {
  n->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (n->timer_fd < 0) return rk_err_from_errno(errno);
  struct itimerspec its = {0};
  its.it_interval.tv_sec = n->cfg.tick_ms / 1000;
  its.it_interval.tv_nsec = (long)(n->cfg.tick_ms % 1000) * 1000000L;
  its.it_value = its.it_interval;
  if (timerfd_settime(n->timer_fd, 0, &its, NULL) != 0) return rk_err_from_errno(errno);
  sigset_t mask;
  shutdown_signals(&mask);
  n->signal_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  if (n->signal_fd < 0) return rk_err_from_errno(errno);
  /* A peer closing its socket must not kill us. */
  signal(SIGPIPE, SIG_IGN);
  int rc = tp_net_watch_fd(n->net, n->timer_fd, on_timer, n);
  if (rc == RK_OK) rc = tp_net_watch_fd(n->net, n->signal_fd, on_signal, n);
  if (rc == RK_OK) rc = tp_net_watch_fd(n->net, eng_wal_fd(n->wal), on_wal, n);
  return rc;
}

/* Returns the first error of the final syncs (RK_OK if none): a clean stop
 * whose last sync failed is not a clean stop, whatever was acknowledged. */
static int shutdown_node(node *n) {
  int first = RK_OK;
  if (n->wal) {
    /* Even after a failure: the WAL's own callbacks must fire while the
     * host is alive (a stopped WAL fails them and retries nothing). */
    int rc = eng_wal_sync(n->wal);
    if (rc != RK_OK && !n->fatal) {
      RK_ERROR("node", "final WAL sync: %s", rk_strerror(rc));
      first = rc;
    }
  }
  if (n->state && !n->fatal) { /* after a failure nothing is synced again */
    /* Nothing is lost if it fails: the WAL still holds what the store lacks. */
    int rc = eng_state_sync(n->state);
    if (rc != RK_OK) {
      RK_ERROR("node", "final state store sync: %s", rk_strerror(rc));
      if (first == RK_OK) first = rc;
    }
  }
  node_snap_free(n); /* before the state store: streams hold its iterators */
  node_metrics_stop(n);
  if (n->host) mr_host_free(n->host);
  if (n->ranges)
    for (size_t i = 0; i < n->table.n; i++) node_range_drop_pending(&n->ranges[i]);
  free(n->ranges);
  free(n->lazy);
  if (n->net) tp_net_free(n->net);
  if (n->batch) eng_state_batch_free(n->batch);
  if (n->wal) eng_wal_close(n->wal);
  if (n->state) eng_state_close(n->state);
  range_table_free(&n->table);
  if (n->timer_fd > 0) close(n->timer_fd);
  if (n->signal_fd > 0) close(n->signal_fd);
  return first;
}

int node_run(const node_config *cfg) {
  node *n = calloc(1, sizeof *n);
  if (n == NULL) return RK_ENOMEM;
  n->cfg = *cfg;
  n->cluster_id = node_cluster_id_of(cfg);
  n->start_ms = node_now_ms();
  n->timer_fd = n->signal_fd = -1;
  n->metrics_fd = -1;
  for (size_t i = 0; i < NODE_METRICS_MAX_CONNS; i++) n->mconn[i].fd = -1;
  int rc = node_snap_installer_init(n);
  if (rc != RK_OK) {
    free(n);
    return rc;
  }
  n->snap_chunk_bytes = NODE_SNAP_CHUNK_BYTES;
  n->snap_max_bytes = NODE_SNAP_MAX_BYTES;
  n->wal_segment_bytes = 0; /* the WAL's default */
  n->wal_batch_bytes = NODE_WAL_BATCH_BYTES;
#ifdef RK_TEST_HOOKS
  /* Test hooks (tests/integration/test_compaction.c; docs/node.md). */
  const char *crash = getenv("RK_TEST_CRASH_POINT");
  n->crash_after_snapshot_state = crash != NULL && strcmp(crash, "snapshot-state") == 0;
  n->crash_after_snapshot_ingest = crash != NULL && strcmp(crash, "snapshot-ingest") == 0;
  n->test_fail_state_sync = getenv("RK_TEST_STATE_SYNC_FAIL") != NULL;
  const char *walfail = getenv("RK_TEST_WAL_FSYNC_FAIL_AT");
  n->test_wal_fsync_fail_at = walfail != NULL ? atoll(walfail) : -1;
  const char *readfail = getenv("RK_TEST_WAL_READ_FAIL_AT");
  n->test_wal_read_fail_at = readfail != NULL ? atoll(readfail) : -1;
  const char *refuse = getenv("RK_TEST_SNAP_REFUSE");
  if (refuse != NULL && atoi(refuse) > 0) n->test_refuse_streams = (uint32_t)atoi(refuse);
  const char *chunk = getenv("RK_TEST_SNAP_CHUNK_BYTES");
  if (chunk != NULL && atoi(chunk) > 0 && (unsigned)atoi(chunk) < NODE_SNAP_CHUNK_BYTES)
    n->snap_chunk_bytes = (uint32_t)atoi(chunk);
  /* Small segments, so a test's few MB go through retirement and reuse. */
  const char *seg = getenv("RK_TEST_WAL_SEGMENT_BYTES");
  long long sb = seg != NULL ? atoll(seg) : 0;
  if (sb >= (1 << 20) && sb < (64 << 20)) {
    n->wal_segment_bytes = (uint64_t)sb;
    n->wal_batch_bytes = (uint64_t)sb / 2;
  }
#endif
  rk_log_set_node(cfg->node_id);
  /* Block the shutdown signals BEFORE RocksDB and the WAL start threads:
   * threads inherit the mask, so the signals reach only our signalfd. */
  sigset_t mask;
  shutdown_signals(&mask);
  pthread_sigmask(SIG_BLOCK, &mask, NULL);
  rc = RK_EINVAL;
  if (self_peer(cfg) == NULL) {
    fprintf(stderr, "rangekv start: node %u is not in --initial-cluster\n", cfg->node_id);
    goto out;
  }
  if ((rc = open_stores(n)) != RK_OK) goto out;
  if ((rc = load_ranges(n)) != RK_OK) goto out;
  if ((rc = start_net(n)) != RK_OK) goto out;
  if ((rc = start_host(n)) != RK_OK) goto out;
  if ((rc = create_groups(n)) != RK_OK) goto out;
  if ((rc = node_snap_staging_open(n)) != RK_OK) {
    fprintf(stderr, "rangekv start: cannot prepare %s/snap: %s\n", cfg->data_dir, rk_strerror(rc));
    goto out;
  }
  if ((rc = start_fds(n)) != RK_OK) goto out;
  char metrics[TP_ADDR_MAX + 16] = "";
  if ((rc = node_metrics_start(n, metrics, sizeof metrics)) != RK_OK) {
    fprintf(stderr, "rangekv start: cannot serve metrics on %s: %s\n", cfg->metrics_listen,
            rk_strerror(rc));
    goto out;
  }
  n->batch = eng_state_batch_new(n->state);
  if (n->batch == NULL) {
    rc = RK_ENOMEM;
    goto out;
  }
  printf("rangekv node %u ready: peer=%s client=%s ranges=%zu%s%s\n", cfg->node_id,
         tp_net_peer_addr(n->net), tp_net_client_addr(n->net), n->table.n,
         metrics[0] ? " metrics=" : "", metrics);
  fflush(stdout);
  /* Once n->fatal is set (a WAL, state store or install failure), no
   * handler touches a Raft core again: a stopped WAL answers its storage
   * reads with RK_ESTOPPED, which the cores treat as a broken invariant.
   * The events left in the same poll return at once; the loop ends. */
  while (!n->stop && !node_stopping(n)) {
    int timeout = -1;
    int64_t wt = eng_wal_timeout_ns(n->wal);
    if (wt >= 0) timeout = (int)((wt + 999999) / 1000000);
    if (mr_host_has_work(n->host)) timeout = 0;
    /* A snapshot stream refills its window as the peer drains it, which
     * wakes nobody: look again every millisecond while one runs. */
    if (n->ntx > 0 && (timeout < 0 || timeout > 1)) timeout = 1;
    (void)tp_net_poll(n->net, timeout);
    on_wal(n);
    for (int i = 0; i < 64 && mr_host_has_work(n->host) && !node_stopping(n); i++) {
      if (mr_host_turn(n->host) == RK_ESTOPPED) {
        n->fatal = RK_ESTOPPED;
        RK_ERROR("node", "a WAL write failed: the node stops (no write is ever retried as if "
                         "it were durable)");
      }
      on_wal(n);
    }
    if (n->ntx > 0 && !node_stopping(n)) (void)node_snap_pump(n);
  }
  rc = n->fatal ? n->fatal : RK_OK;
out:;
  int src = shutdown_node(n);
  if (rc == RK_OK) rc = src;
  free(n);
  return rc;
}
