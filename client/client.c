/* client/client.c — the request engine: connections, routing with leader
 * hints, bounded retries within each call's deadline, outcome classification
 * (see rk_client.h for the contract).
 *
 * One routed call, step by step:
 *   1. no range table yet (or it was dropped): fetch one (OP_RANGES) from any
 *      peer, seeds first;
 *   2. route the key to its range; pick the node: a fresh hint from the last
 *      answer, else the range's cached leader, else its replicas in turn;
 *   3. connect if needed (a cached connection is first checked to be alive,
 *      so a node restarted since the last call costs a reconnect, not an
 *      unknown outcome); send; wait for the answer with our request id;
 *   4. by the answer:  OK -> done (remember the leader);
 *        not leader / wrong node -> follow the hint, or the next replica;
 *        unknown range -> drop the table, refetch;  busy -> pause, same node;
 *        validation -> definite failure;
 *        timeout / dropped / lost connection after sending -> a write returns
 *        UNKNOWN at once (never re-sent); a read tries elsewhere;
 *   5. pauses between attempts double from backoff_min_ms to backoff_max_ms
 *      with jitter; a hint to a different node is followed without a pause
 *      (at most 3 hops in a row, so two nodes pointing at each other cannot
 *      spin);
 *   6. at the deadline: RK_ENOQUORUM if no leader ever took the request
 *      (definite), RK_ETIMEOUT if a read reached a leader that timed out. A
 *      write is not sent again with less than min(100 ms, deadline / 10) left.
 * A node that took a request and gave no answer is shunned for the range:
 * not tried, nor reached through a hint or the cached leader, until it
 * answers, a deadline's time has passed, or every other replica names it
 * as the leader in one call (it was slow, not gone); for a read, a replica
 * that cannot be reached in the call counts as naming it (nobody else can
 * serve the range: a leader's first reads wait for its term's first entry
 * to commit, which can outlast one attempt while a replica is rebuilt and
 * the third is down).
 */
#include "client/rkc_int.h"

#include "common/rk_clock.h"
#include "common/rk_err.h"
#include "common/rk_rand.h"
#include "transport/frame.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- the connection seam ------------------------------------------------------ */

static uint64_t real_now(void) { return rk_clock_mono_ns(); }
static void real_sleep(uint32_t ms) {
  struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

static const rkc_conn_ops real_ops = {tp_conn_open, tp_conn_close, tp_conn_send,
                                      tp_conn_recv, real_now,      real_sleep};
const rkc_conn_ops *rkc_ops_ = &real_ops;

void rkc_set_conn_ops(const rkc_conn_ops *ops) { rkc_ops_ = ops ? ops : &real_ops; }

/* ---- options, open, close --------------------------------------------------------- */

void rkc_options_default(rkc_options *o) {
  memset(o, 0, sizeof *o);
  o->timeout_ms = 5000;
  o->connect_timeout_ms = 1000;
  o->read_attempt_ms = 1000;
  o->backoff_min_ms = 5;
  o->backoff_max_ms = 200;
}

static rkc_peer *add_peer(rkc_client *c, const char *addr, uint32_t node_id) {
  if (c->n_peers == c->cap_peers) {
    size_t cap = c->cap_peers ? c->cap_peers * 2 : 8;
    rkc_peer *p = realloc(c->peers, cap * sizeof *p);
    if (p == NULL) return NULL;
    c->peers = p;
    c->cap_peers = cap;
  }
  rkc_peer *p = &c->peers[c->n_peers++];
  memset(p, 0, sizeof *p);
  snprintf(p->addr, sizeof p->addr, "%s", addr);
  p->node_id = node_id;
  return p;
}

int rkc_open(rkc_client **out, const rkc_options *o) {
  *out = NULL;
  if (o->n_endpoints == 0 || o->n_endpoints > RKC_MAX_ENDPOINTS || o->endpoints == NULL)
    return RK_EINVAL;
  for (size_t i = 0; i < o->n_endpoints; i++)
    if (o->endpoints[i] == NULL || o->endpoints[i][0] == '\0' ||
        strlen(o->endpoints[i]) >= RKC_ADDR_MAX)
      return RK_EINVAL;
  rkc_client *c = calloc(1, sizeof *c);
  if (c == NULL) return RK_ENOMEM;
  c->opt = *o;
  c->opt.endpoints = NULL; /* copied into peers below; the caller's array is not kept */
  rkc_options d;
  rkc_options_default(&d);
  if (c->opt.timeout_ms == 0) c->opt.timeout_ms = d.timeout_ms;
  if (c->opt.connect_timeout_ms == 0) c->opt.connect_timeout_ms = d.connect_timeout_ms;
  if (c->opt.read_attempt_ms == 0) c->opt.read_attempt_ms = d.read_attempt_ms;
  if (c->opt.backoff_min_ms == 0) c->opt.backoff_min_ms = d.backoff_min_ms;
  if (c->opt.backoff_max_ms < c->opt.backoff_min_ms) c->opt.backoff_max_ms = c->opt.backoff_min_ms;
  c->cluster_id = o->cluster_id;
  for (size_t i = 0; i < o->n_endpoints; i++) {
    if (add_peer(c, o->endpoints[i], 0) == NULL) {
      rkc_close(c);
      return RK_ENOMEM;
    }
  }
  c->n_seeds = c->n_peers;
  /* Different clients spread their first choices differently. */
  c->rng = rkc_ops_->now_ns() ^ (uint64_t)(uintptr_t)c;
  c->seed_turn = (size_t)(rk_splitmix64(&c->rng) % c->n_seeds);
  *out = c;
  return RK_OK;
}

void rkc_close(rkc_client *c) {
  if (c == NULL) return;
  for (size_t i = 0; i < c->n_peers; i++)
    if (c->peers[i].conn) rkc_ops_->close(c->peers[i].conn);
  free(c->peers);
  rkc_ranges_free(&c->table);
  free(c);
}

const rkc_call_info *rkc_last(const rkc_client *c) { return &c->last; }

int rkc_outcome_unknown(int err) {
  return err == RK_ETIMEOUT || err == RK_EPROPOSALDROPPED || err == RK_ECLOSED;
}

void rkc_buf_free(rkc_buf *b) {
  if (b == NULL) return;
  free(b->data);
  b->data = NULL;
  b->len = 0;
}

void rkc_kvs_free(rkc_kvs *k) {
  if (k == NULL) return;
  for (size_t i = 0; i < k->n; i++) {
    rkc_buf_free(&k->v[i].key);
    rkc_buf_free(&k->v[i].value);
  }
  free(k->v);
  memset(k, 0, sizeof *k);
}

/* ---- helpers ------------------------------------------------------------------- */

static void begin(rkc_client *c) { memset(&c->last, 0, sizeof c->last); }

static int finish(rkc_client *c, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int finish(rkc_client *c, int err, const char *fmt, ...) {
  c->last.err = err;
  c->last.outcome_unknown = rkc_outcome_unknown(err);
  if (fmt != NULL) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->last.detail, sizeof c->last.detail, fmt, ap);
    va_end(ap);
  } else {
    c->last.detail[0] = 0;
  }
  return err;
}

static uint64_t now_ns(void) { return rkc_ops_->now_ns(); }

static int remaining_ms(uint64_t deadline) {
  uint64_t n = now_ns();
  if (n >= deadline) return 0;
  uint64_t ms = (deadline - n + 999999) / 1000000;
  return ms > INT32_MAX ? INT32_MAX : (int)ms;
}

static int min_int(int a, int b) { return a < b ? a : b; }

/* When a call started now must be answered by (its options' timeout_ms). */
static uint64_t call_deadline(const rkc_client *c) {
  return now_ns() + (uint64_t)c->opt.timeout_ms * 1000000u;
}

/* The least of a deadline a write is retried with: 100 ms, or a tenth of
 * the whole deadline if that is less. */
static int min_write_attempt_ms(const rkc_client *c) {
  return min_int(100, (int)(c->opt.timeout_ms / 10));
}

static void pause_for(rkc_client *c, uint32_t *backoff, uint64_t deadline) {
  int rem = remaining_ms(deadline);
  if (rem <= 0) return;
  /* Jitter in [backoff/2, backoff]: clients retrying together spread out. */
  uint32_t b = *backoff;
  uint32_t ms = b / 2 + (uint32_t)(rk_splitmix64(&c->rng) % (b / 2 + 1));
  if (ms == 0) ms = 1;
  rkc_ops_->sleep_ms((uint32_t)min_int((int)ms, rem));
  *backoff = b * 2 > c->opt.backoff_max_ms ? c->opt.backoff_max_ms : b * 2;
}

static rkc_peer *peer_of_node(rkc_client *c, uint32_t node) {
  for (size_t i = 0; i < c->n_peers; i++)
    if (c->peers[i].node_id == node) return &c->peers[i];
  const rkc_node *n = rkc_ranges_node(&c->table, node);
  if (n == NULL || n->client_addr[0] == '\0') return NULL;
  for (size_t i = 0; i < c->n_peers; i++)
    if (c->peers[i].node_id == 0 && strcmp(c->peers[i].addr, n->client_addr) == 0) {
      c->peers[i].node_id = node;
      return &c->peers[i];
    }
  return add_peer(c, n->client_addr, node);
}

/* A leader hint naming an address we may not know yet. */
static void learn_addr(rkc_client *c, uint32_t node, const char *addr) {
  if (node == 0 || addr == NULL || addr[0] == '\0' || strlen(addr) >= RKC_ADDR_MAX) return;
  for (size_t i = 0; i < c->n_peers; i++)
    if (c->peers[i].node_id == node) {
      if (strcmp(c->peers[i].addr, addr) != 0) {
        if (c->peers[i].conn) rkc_ops_->close(c->peers[i].conn);
        c->peers[i].conn = NULL;
        snprintf(c->peers[i].addr, sizeof c->peers[i].addr, "%s", addr);
      }
      return;
    }
  (void)add_peer(c, addr, node);
}

static void drop_conn(rkc_peer *p) {
  if (p->conn) rkc_ops_->close(p->conn);
  p->conn = NULL;
}

/* Makes sure p has a live connection. A cached connection is polled first:
 * a stray frame (the late answer to a request that timed out) is discarded;
 * a closed one is replaced. */
static int peer_connect(rkc_client *c, rkc_peer *p, uint64_t deadline) {
  if (p->conn) {
    for (int i = 0; i < 1024; i++) {
      uint16_t type;
      const uint8_t *pl;
      uint32_t len;
      int rc = rkc_ops_->recv(p->conn, &type, &pl, &len, 0);
      if (rc == RK_ETIMEOUT) return RK_OK; /* nothing pending: alive */
      if (rc != RK_OK) break;
    }
    drop_conn(p);
  }
  int rem = remaining_ms(deadline);
  if (rem <= 0) return RK_ETIMEOUT;
  tp_handshake hs;
  memset(&hs, 0, sizeof hs);
  int rc = rkc_ops_->open(&p->conn, p->addr, c->cluster_id,
                          min_int(rem, (int)c->opt.connect_timeout_ms), &hs);
  if (rc != RK_OK) {
    p->conn = NULL;
    return rc;
  }
  if (c->cluster_id == 0) c->cluster_id = hs.cluster_id;
  if (p->node_id == 0 && hs.node_id <= UINT32_MAX) p->node_id = (uint32_t)hs.node_id;
  return RK_OK;
}

/* Sends req on p and waits (up to attempt_ms) for the answer carrying its id.
 * *sent is set once any byte may have left. Returns RK_OK with *out, or
 * RK_ETIMEOUT (connection kept; a late answer is discarded later), RK_ECLOSED
 * (connection dropped), RK_ENOMEM. */
static int exchange(rkc_client *c, rkc_peer *p, Rangekv__ClientRequest *req, int attempt_ms,
                    Rangekv__ClientResponse **out, int *sent) {
  *out = NULL;
  req->id = ++c->next_id;
  size_t sz = rangekv__client_request__get_packed_size(req);
  if (sz > TP_FRAME_DEFAULT_MAX_PAYLOAD) return RK_ETOOLARGE;
  uint8_t *buf = malloc(sz ? sz : 1);
  if (buf == NULL) return RK_ENOMEM;
  rangekv__client_request__pack(req, buf);
  uint64_t until = now_ns() + (uint64_t)attempt_ms * 1000000u;
  *sent = 1;
  int rc = rkc_ops_->send(p->conn, TP_FRAME_CLIENT_REQUEST, buf, (uint32_t)sz, attempt_ms);
  free(buf);
  if (rc != RK_OK) {
    drop_conn(p);
    return rc == RK_ETIMEOUT ? RK_ETIMEOUT : RK_ECLOSED;
  }
  for (;;) {
    int rem = remaining_ms(until);
    if (rem <= 0) return RK_ETIMEOUT;
    uint16_t type;
    const uint8_t *pl;
    uint32_t len;
    rc = rkc_ops_->recv(p->conn, &type, &pl, &len, rem);
    if (rc == RK_ETIMEOUT) return RK_ETIMEOUT;
    if (rc != RK_OK) {
      drop_conn(p);
      return RK_ECLOSED;
    }
    if (type != TP_FRAME_CLIENT_RESPONSE) continue;
    Rangekv__ClientResponse *r = rangekv__client_response__unpack(NULL, len, pl);
    if (r == NULL) { /* garbage from the node: this connection cannot be trusted */
      drop_conn(p);
      return RK_ECLOSED;
    }
    if (r->id != req->id) { /* a late answer to an earlier attempt */
      rangekv__client_response__free_unpacked(r, NULL);
      continue;
    }
    *out = r;
    return RK_OK;
  }
}

/* Merges the nodes of a fresh table into the peer list. */
static void adopt_table(rkc_client *c, rkc_ranges *t) {
  rkc_ranges_free(&c->table);
  c->table = *t;
  memset(t, 0, sizeof *t);
  for (size_t i = 0; i < c->table.n_nodes; i++) {
    const rkc_node *n = &c->table.nodes[i];
    if (n->id == 0) continue;
    rkc_peer *p = NULL;
    for (size_t k = 0; k < c->n_peers && p == NULL; k++)
      if (c->peers[k].node_id == n->id) p = &c->peers[k];
    if (p != NULL)
      learn_addr(c, n->id, n->client_addr);
    else
      (void)peer_of_node(c, n->id);
  }
}

/* OP_RANGES on one peer. */
static int ranges_from(rkc_client *c, rkc_peer *p, uint64_t deadline, rkc_ranges *out) {
  int rc = peer_connect(c, p, deadline);
  if (rc != RK_OK) return rc;
  Rangekv__ClientRequest req = RANGEKV__CLIENT_REQUEST__INIT;
  req.op = RANGEKV__CLIENT_OP__OP_RANGES;
  Rangekv__ClientResponse *r = NULL;
  int sent = 0;
  rc =
      exchange(c, p, &req, min_int(remaining_ms(deadline), (int)c->opt.read_attempt_ms), &r, &sent);
  if (rc != RK_OK) return rc;
  c->last.node_id = p->node_id;
  rc = r->code;
  if (rc == RK_OK) rc = rkc_ranges_from_proto(out, r);
  rangekv__client_response__free_unpacked(r, NULL);
  return rc;
}

/* Fetches the range table from the first peer that answers, starting at the
 * next in turn. RK_OK, RK_ENOMEM, or the last peer's error. */
static int refresh(rkc_client *c, uint64_t deadline) {
  int last = RK_ENOQUORUM;
  size_t n = c->n_peers;
  for (size_t k = 0; k < n && remaining_ms(deadline) > 0; k++) {
    rkc_peer *p = &c->peers[(c->seed_turn + k) % n];
    rkc_ranges t;
    int rc = ranges_from(c, p, deadline, &t);
    if (rc == RK_OK) {
      c->seed_turn = (c->seed_turn + k) % n;
      adopt_table(c, &t);
      return RK_OK;
    }
    if (rc == RK_ENOMEM || rc == RK_EWRONGCLUSTER) return rc;
    last = rc;
  }
  c->seed_turn = (c->seed_turn + 1) % (n ? n : 1);
  return last;
}

static const char *code_detail(const Rangekv__ClientResponse *r) {
  return r->error && r->error[0] ? r->error : rk_strerror(r->code);
}

/* The shunned node is tried again once every other replica of r is in
 * `others` (bit id - 1: it named the shunned node leader, or could not be
 * reached, in this call): it leads after all, or nobody else can answer. */
static void maybe_unshun(rkc_range *r, uint64_t others) {
  uint32_t n = 0;
  for (uint32_t k = 0; k < r->n_replicas; k++) {
    uint32_t node = r->replicas[k];
    n += node == r->shunned || (node >= 1 && node <= 64 && (others >> (node - 1) & 1));
  }
  if (n >= r->n_replicas) r->shunned = 0;
}

/* The routed call (see the file comment). key routes; is_write decides what
 * an unknown outcome does. scan_end/scan_end_len: for OP_SCAN, the caller's
 * end (clamped here to the range's end). */
static int routed(rkc_client *c, Rangekv__ClientRequest *req, int is_write, const uint8_t *key,
                  size_t klen, const uint8_t *scan_end, size_t scan_end_len,
                  Rangekv__ClientResponse **out) {
  *out = NULL;
  uint64_t deadline = call_deadline(c);
  uint32_t backoff = c->opt.backoff_min_ms;
  uint32_t hint = 0, turn = (uint32_t)rk_splitmix64(&c->rng), failed = 0;
  int saw_unknown = 0, hops = 0;
  /* Nodes (bit id - 1) that, in this call, named the shunned node leader or
   * could not be reached. */
  uint64_t backs_shunned = 0;
  char why[120] = "";
  for (int first = 1;; first = 0) {
    if (!first) {
      if (hint != 0 && hops < 3)
        hops++;
      else {
        hops = 0;
        pause_for(c, &backoff, deadline);
      }
    }
    if (remaining_ms(deadline) <= 0) break;
    if (c->table.n == 0) {
      int rc = refresh(c, deadline);
      if (rc == RK_ENOMEM || rc == RK_EWRONGCLUSTER)
        return finish(c, rc, "fetching the range table: %s", rk_strerror(rc));
      if (rc != RK_OK) {
        snprintf(why, sizeof why, "range table: %s", rk_strerror(rc));
        continue;
      }
    }
    /* The table tiles the key space (checked when it was adopted). */
    rkc_range *r = &c->table.v[rkc_ranges_index(&c->table, key, klen)];
    c->last.range_id = r->id;
    uint32_t shun = r->shunned && now_ns() < r->shunned_until_ns ? r->shunned : 0;
    /* A hint or a cached leader that names the silent node is stale (a
     * follower inside its election timeout still names it). */
    if (hint == shun) hint = 0;
    if (shun != 0 && r->leader == shun) r->leader = 0;
    uint32_t node = hint ? hint : r->leader;
    if (node == 0) { /* no leader known: the replicas in turn, not one that just failed */
      for (uint32_t k = 0; k < r->n_replicas; k++) {
        node = r->replicas[turn++ % r->n_replicas];
        if (node != failed && node != shun) break;
      }
    }
    hint = 0;
    failed = node; /* until it answers */
    rkc_peer *p = peer_of_node(c, node);
    if (p == NULL) { /* a node we have no address for: the table is stale */
      if (r->leader == node) r->leader = 0;
      rkc_ranges_free(&c->table);
      continue;
    }
    int rc = peer_connect(c, p, deadline);
    if (rc == RK_EWRONGCLUSTER)
      return finish(c, rc, "node %u at %s belongs to another cluster", node, p->addr);
    if (rc != RK_OK) {
      snprintf(why, sizeof why, "node %u (%s): %s", node, p->addr, rk_strerror(rc));
      if (r->leader == node) r->leader = 0;
      /* Reads only: a write sent to a stalled node would wait out its
       * whole deadline and come back unknown, where the shun ends it as a
       * definite "no quorum". */
      if (!is_write && r->shunned != 0 && node >= 1 && node <= 64) {
        backs_shunned |= UINT64_C(1) << (node - 1);
        maybe_unshun(r, backs_shunned);
      }
      continue;
    }
    req->range_id = r->id;
    if (req->op == RANGEKV__CLIENT_OP__OP_SCAN) {
      /* [key, min(end, range end)) */
      const uint8_t *e = scan_end;
      size_t el = scan_end_len;
      if (r->end_len && (el == 0 || rkc_key_cmp(r->end, r->end_len, e, el) < 0)) {
        e = r->end;
        el = r->end_len;
      }
      req->end_key.data = (uint8_t *)(uintptr_t)e;
      req->end_key.len = el;
    }
    Rangekv__ClientResponse *resp = NULL;
    int sent = 0;
    int attempt = remaining_ms(deadline);
    /* A write sent again with almost nothing left may well be committed
     * by the leader it reaches, yet come back as a timeout (unknown) and
     * shun that leader: stop instead, "not taken". */
    if (is_write && c->last.attempts > 0 && attempt < min_write_attempt_ms(c)) break;
    if (!is_write) attempt = min_int(attempt, (int)c->opt.read_attempt_ms);
    rc = exchange(c, p, req, attempt, &resp, &sent);
    if (sent) c->last.attempts++;
    if (rc == RK_ENOMEM || rc == RK_ETOOLARGE) return finish(c, rc, "encoding the request");
    if (rc != RK_OK) {
      c->last.node_id = node;
      /* Whatever it was, this node did not answer: the next requests find
       * the leader among the others rather than wait on it once more (a
       * stalled process keeps its connections open while the others
       * elect), for one request timeout, until it answers again, or until
       * the others back it (maybe_unshun). */
      if (r->leader == node) r->leader = 0;
      if (r->shunned != node) backs_shunned = 0; /* they backed another node */
      r->shunned = node;
      r->shunned_until_ns = call_deadline(c);
      if (is_write)
        return finish(c, rc, "node %u (%s): %s after sending; the write may or may not apply", node,
                      p->addr, rc == RK_ETIMEOUT ? "no answer" : "connection lost");
      saw_unknown = 1;
      snprintf(why, sizeof why, "node %u (%s): %s", node, p->addr, rk_strerror(rc));
      continue;
    }
    c->last.node_id = node;
    failed = 0;
    if (r->shunned == node) r->shunned = 0; /* it answers again */
    int code = resp->code;
    switch (rkc_classify(code)) {
    case RKC_DONE:
      if (resp->range_id != req->range_id) {
        /* An answer for another range than the one asked is a node bug:
         * never hand it on as this key's (or this span's) data. A write
         * it answers may have applied: its outcome is unknown, not a
         * definite failure. */
        int rc2 = finish(c, is_write ? RK_ETIMEOUT : RK_EMALFORMED,
                         "node %u answered for range %llu, asked range %llu%s", node,
                         (unsigned long long)resp->range_id, (unsigned long long)req->range_id,
                         is_write ? "; the write may or may not have been applied" : "");
        rangekv__client_response__free_unpacked(resp, NULL);
        return rc2;
      }
      if (r->leader != node) r->leader = node;
      *out = resp;
      return finish(c, RK_OK, NULL);
    case RKC_REDIRECT: {
      uint32_t h = resp->leader_node;
      learn_addr(c, h, resp->leader_addr);
      if (h != 0 && h == r->shunned && node >= 1 && node <= 64) {
        backs_shunned |= UINT64_C(1) << (node - 1);
        maybe_unshun(r, backs_shunned);
      }
      if (h != 0 && h != node) {
        r->leader = h;
        hint = h;
      } else {
        if (r->leader == node) r->leader = 0;
        if (code == RK_EWRONGNODE) rkc_ranges_free(&c->table); /* our table is wrong */
      }
      snprintf(why, sizeof why, "node %u: %s", node, code_detail(resp));
      break;
    }
    case RKC_REFRESH:
      rkc_ranges_free(&c->table);
      snprintf(why, sizeof why, "node %u: %s", node, code_detail(resp));
      break;
    case RKC_RETRY:
      snprintf(why, sizeof why, "node %u: %s", node, code_detail(resp));
      hops = 3; /* same node, after a pause */
      hint = node;
      break;
    case RKC_FINAL: {
      int rc2 = finish(c, code, "node %u: %s", node, code_detail(resp));
      rangekv__client_response__free_unpacked(resp, NULL);
      return rc2;
    }
    case RKC_UNKNOWN:
      if (is_write) {
        int ret = code == RK_EPROPOSALDROPPED ? code : RK_ETIMEOUT;
        int rc2 = finish(c, ret, "node %u: %s (%s); the write may or may not apply", node,
                         code_detail(resp), rk_errname(code));
        rangekv__client_response__free_unpacked(resp, NULL);
        return rc2;
      }
      saw_unknown = 1;
      snprintf(why, sizeof why, "node %u: %s", node, code_detail(resp));
      break;
    }
    rangekv__client_response__free_unpacked(resp, NULL);
  }
  if (saw_unknown)
    return finish(c, RK_ETIMEOUT, "no answer within the deadline (%u ms); last: %s",
                  c->opt.timeout_ms, why);
  return finish(c, RK_ENOQUORUM, "no leader reachable within the deadline (%u ms); last: %s",
                c->opt.timeout_ms, why[0] ? why : "nothing tried");
}

/* ---- the operations ------------------------------------------------------------- */

static int check_key(rkc_client *c, size_t klen) {
  if (klen == 0) return finish(c, RK_EINVAL, "empty key");
  if (klen > RKC_KEY_MAX)
    return finish(c, RK_ETOOLARGE, "key of %zu bytes (limit %u)", klen, RKC_KEY_MAX);
  return RK_OK;
}

static int check_value(rkc_client *c, size_t vlen) {
  if (vlen > RKC_VALUE_MAX)
    return finish(c, RK_ETOOLARGE, "value of %zu bytes (limit %u)", vlen, RKC_VALUE_MAX);
  return RK_OK;
}

static ProtobufCBinaryData bin(const void *p, size_t n) {
  ProtobufCBinaryData b = {n, (uint8_t *)(uintptr_t)p};
  return b;
}

int rkc_put(rkc_client *c, const void *key, size_t klen, const void *val, size_t vlen) {
  begin(c);
  int rc = check_key(c, klen);
  if (rc == RK_OK) rc = check_value(c, vlen);
  if (rc != RK_OK) return rc;
  Rangekv__ClientRequest req = RANGEKV__CLIENT_REQUEST__INIT;
  req.op = RANGEKV__CLIENT_OP__OP_PUT;
  req.key = bin(key, klen);
  req.value = bin(val, vlen);
  Rangekv__ClientResponse *r;
  rc = routed(c, &req, 1, key, klen, NULL, 0, &r);
  if (rc == RK_OK) rangekv__client_response__free_unpacked(r, NULL);
  return rc;
}

static int copy_buf(rkc_buf *b, const uint8_t *p, size_t n) {
  b->data = malloc(n + 1);
  if (b->data == NULL) return RK_ENOMEM;
  if (n) memcpy(b->data, p, n);
  b->data[n] = 0;
  b->len = n;
  return RK_OK;
}

int rkc_get(rkc_client *c, const void *key, size_t klen, rkc_buf *val, int *found) {
  begin(c);
  val->data = NULL;
  val->len = 0;
  *found = 0;
  int rc = check_key(c, klen);
  if (rc != RK_OK) return rc;
  Rangekv__ClientRequest req = RANGEKV__CLIENT_REQUEST__INIT;
  req.op = RANGEKV__CLIENT_OP__OP_GET;
  req.key = bin(key, klen);
  Rangekv__ClientResponse *r;
  rc = routed(c, &req, 0, key, klen, NULL, 0, &r);
  if (rc != RK_OK) return rc;
  *found = r->found;
  rc = copy_buf(val, r->found ? r->value.data : NULL, r->found ? r->value.len : 0);
  rangekv__client_response__free_unpacked(r, NULL);
  if (rc != RK_OK) *found = 0;
  return rc == RK_OK ? RK_OK : finish(c, rc, "copying the value");
}

int rkc_del(rkc_client *c, const void *key, size_t klen) {
  begin(c);
  int rc = check_key(c, klen);
  if (rc != RK_OK) return rc;
  Rangekv__ClientRequest req = RANGEKV__CLIENT_REQUEST__INIT;
  req.op = RANGEKV__CLIENT_OP__OP_DEL;
  req.key = bin(key, klen);
  Rangekv__ClientResponse *r;
  rc = routed(c, &req, 1, key, klen, NULL, 0, &r);
  if (rc == RK_OK) rangekv__client_response__free_unpacked(r, NULL);
  return rc;
}

int rkc_cas(rkc_client *c, const void *key, size_t klen, const void *expected, size_t elen,
            const void *nv, size_t nlen, int *swapped) {
  begin(c);
  *swapped = 0;
  int rc = check_key(c, klen);
  if (rc == RK_OK) rc = check_value(c, nlen);
  if (rc == RK_OK && expected) rc = check_value(c, elen);
  if (rc != RK_OK) return rc;
  Rangekv__ClientRequest req = RANGEKV__CLIENT_REQUEST__INIT;
  req.op = RANGEKV__CLIENT_OP__OP_CAS;
  req.key = bin(key, klen);
  req.value = bin(nv, nlen);
  req.expected_absent = expected == NULL;
  if (expected) req.expected = bin(expected, elen);
  Rangekv__ClientResponse *r;
  rc = routed(c, &req, 1, key, klen, NULL, 0, &r);
  if (rc != RK_OK) return rc;
  *swapped = r->swapped;
  rangekv__client_response__free_unpacked(r, NULL);
  return RK_OK;
}

static int kvs_push(rkc_kvs *o, size_t *cap, const Rangekv__KeyValue *kv) {
  if (o->n == *cap) {
    size_t nc = *cap ? *cap * 2 : 16;
    rkc_kv *v = realloc(o->v, nc * sizeof *v);
    if (v == NULL) return RK_ENOMEM;
    o->v = v;
    *cap = nc;
  }
  rkc_kv *d = &o->v[o->n];
  memset(d, 0, sizeof *d);
  if (copy_buf(&d->key, kv->key.data, kv->key.len) != RK_OK) return RK_ENOMEM;
  if (copy_buf(&d->value, kv->value.data, kv->value.len) != RK_OK) {
    rkc_buf_free(&d->key);
    return RK_ENOMEM;
  }
  o->n++;
  return RK_OK;
}

int rkc_scan(rkc_client *c, const void *start, size_t slen, const void *end, size_t elen,
             uint32_t limit, rkc_kvs *out) {
  begin(c);
  memset(out, 0, sizeof *out);
  if (limit == 0) limit = 1000;
  if (slen > RKC_KEY_MAX || elen > RKC_KEY_MAX)
    return finish(c, RK_ETOOLARGE, "scan bound over %u bytes", RKC_KEY_MAX);
  if (elen && rkc_key_cmp(start, slen, end, elen) >= 0) return RK_OK; /* empty span */
  /* cur: where the next part starts; owned copy because it moves. */
  uint8_t *cur = malloc(RKC_KEY_MAX + 2);
  if (cur == NULL) return finish(c, RK_ENOMEM, "scan");
  size_t clen = slen;
  if (slen) memcpy(cur, start, slen);
  size_t cap = 0;
  int rc = RK_OK;
  for (;;) {
    Rangekv__ClientRequest req = RANGEKV__CLIENT_REQUEST__INIT;
    req.op = RANGEKV__CLIENT_OP__OP_SCAN;
    req.key = bin(cur, clen);
    req.limit = limit - (uint32_t)out->n;
    Rangekv__ClientResponse *r;
    /* Each part (a range, or a page resumed within one) has its own
     * deadline: a scan of many ranges or pages may take longer in all. */
    rc = routed(c, &req, 0, cur, clen, end, elen, &r);
    if (rc != RK_OK) break;
    for (size_t i = 0; i < r->n_kvs && out->n < limit && rc == RK_OK; i++)
      rc = kvs_push(out, &cap, r->kvs[i]);
    int more_here = r->more;
    rangekv__client_response__free_unpacked(r, NULL);
    if (rc != RK_OK) {
      finish(c, rc, "scan: out of memory");
      break;
    }
    if (out->n >= limit) {
      out->more = 1; /* there may be more keys */
      break;
    }
    if (more_here && out->n > 0) {
      /* The node stopped early inside this range: resume after the last key. */
      const rkc_buf *lk = &out->v[out->n - 1].key;
      if (lk->len + 1 > RKC_KEY_MAX + 1) break;
      memcpy(cur, lk->data, lk->len);
      cur[lk->len] = 0;
      clen = lk->len + 1;
      continue;
    }
    /* Next range: starts where this part ended, the end routed sent
     * (the range's end, or the caller's), not at a fresh table lookup.
     * Range boundaries never move today (range/keyspan.h), so this is
     * hardening: it keeps a scan gap-free should a table change under it,
     * since a node refuses a part that starts or ends outside its range.
     * req.end_key points into the caller's end or into c->table, which
     * nothing refreshes before this copy. */
    if (req.end_key.len == 0) break; /* to the end of the key space */
    if (elen && rkc_key_cmp(req.end_key.data, req.end_key.len, end, elen) >= 0) break;
    memcpy(cur, req.end_key.data, req.end_key.len);
    clen = req.end_key.len;
  }
  free(cur);
  if (rc != RK_OK) rkc_kvs_free(out);
  return rc;
}

/* ---- table and status ------------------------------------------------------------- */

static int fetch_table(rkc_client *c, uint64_t deadline) {
  uint32_t backoff = c->opt.backoff_min_ms;
  int rc = RK_ENOQUORUM;
  while (remaining_ms(deadline) > 0) {
    rc = refresh(c, deadline);
    if (rc == RK_OK || rc == RK_ENOMEM || rc == RK_EWRONGCLUSTER) return rc;
    pause_for(c, &backoff, deadline);
  }
  return rc == RK_OK ? rc : RK_ENOQUORUM;
}

static int ranges_get_by(rkc_client *c, rkc_ranges *out, uint64_t deadline);

int rkc_wait_leaders(rkc_client *c, uint32_t timeout_ms, size_t *led, size_t *total) {
  uint64_t until = now_ns() + (uint64_t)timeout_ms * 1000000u;
  *led = *total = 0;
  for (;;) {
    rkc_ranges t;
    /* Each poll ends by the wait's own end too (a fetch alone may take
     * timeout_ms). */
    uint64_t d = call_deadline(c);
    if (ranges_get_by(c, &t, d < until ? d : until) == RK_OK) {
      *led = 0;
      *total = t.n;
      for (size_t i = 0; i < t.n; i++) *led += t.v[i].leader != 0;
      rkc_ranges_free(&t);
      if (*total > 0 && *led == *total) return RK_OK;
    }
    int left = remaining_ms(until);
    if (left <= 0) return RK_ETIMEOUT;
    rkc_ops_->sleep_ms(left < 50 ? (uint32_t)left : 50);
  }
}

/* rkc_ranges_get by a given deadline. */
static int ranges_get_by(rkc_client *c, rkc_ranges *out, uint64_t deadline) {
  begin(c);
  memset(out, 0, sizeof *out);
  rkc_ranges_free(&c->table);
  int rc = fetch_table(c, deadline);
  if (rc != RK_OK)
    return finish(c, rc, "no node answered the range table within %u ms", c->opt.timeout_ms);
  rc = rkc_ranges_copy(out, &c->table);
  return finish(c, rc, rc ? "copying the table" : NULL);
}

int rkc_ranges_get(rkc_client *c, rkc_ranges *out) {
  return ranges_get_by(c, out, call_deadline(c));
}

/* OP_STATUS and OP_RANGES on one node, into s. */
static int status_of(rkc_client *c, rkc_peer *p, uint64_t deadline, rkc_node_status *s) {
  int rc = peer_connect(c, p, deadline);
  if (rc != RK_OK) return rc;
  Rangekv__ClientRequest req = RANGEKV__CLIENT_REQUEST__INIT;
  req.op = RANGEKV__CLIENT_OP__OP_STATUS;
  Rangekv__ClientResponse *r = NULL;
  int sent = 0;
  rc = exchange(c, p, &req, remaining_ms(deadline), &r, &sent);
  if (rc != RK_OK) return rc;
  rc = r->code;
  if (rc == RK_OK && r->status != NULL) {
    const Rangekv__NodeStatus *ns = r->status;
    if (ns->node_id) s->node_id = ns->node_id;
    s->replicas = ns->replicas;
    s->leaders = ns->leaders;
    s->quiesced = ns->quiesced;
    s->wal_bytes = ns->wal_bytes;
    s->log_entries = ns->log_entries;
    s->wal_segments = ns->wal_segments;
    s->snapshots_sent = ns->snapshots_sent;
    s->snapshots_installed = ns->snapshots_installed;
    s->snapshots_dropped = ns->snapshots_dropped;
    s->snapshots_streaming = ns->snapshots_streaming;
    s->snapshot_staged_bytes = ns->snapshot_staged_bytes;
    s->wal_recycled = ns->wal_recycled;
    s->wal_fsyncs = ns->wal_fsyncs;
    s->applied_entries = ns->applied_entries;
    s->max_term = ns->max_term;
    s->uptime_ms = ns->uptime_ms;
    snprintf(s->zone, sizeof s->zone, "%s", ns->zone ? ns->zone : "");
  } else if (rc == RK_OK) {
    rc = RK_EMALFORMED;
  }
  rangekv__client_response__free_unpacked(r, NULL);
  if (rc != RK_OK) return rc;
  /* Commit / applied of this node's own replicas. Best effort. */
  rkc_ranges t;
  if (ranges_from(c, p, deadline, &t) == RK_OK) {
    s->have_indexes = 1;
    for (size_t i = 0; i < t.n; i++) {
      int mine = 0;
      for (uint32_t k = 0; k < t.v[i].n_replicas; k++) mine |= t.v[i].replicas[k] == s->node_id;
      if (!mine) continue;
      s->sum_commit += t.v[i].commit;
      s->sum_applied += t.v[i].applied;
    }
    rkc_ranges_free(&t);
  }
  return RK_OK;
}

int rkc_status(rkc_client *c, rkc_node_status **out, size_t *n) {
  begin(c);
  *out = NULL;
  *n = 0;
  uint64_t deadline = call_deadline(c);
  rkc_ranges_free(&c->table);
  int rc = fetch_table(c, deadline);
  if (rc != RK_OK)
    return finish(c, rc, "no node answered the range table within %u ms", c->opt.timeout_ms);
  size_t nn = c->table.n_nodes;
  rkc_node_status *v = calloc(nn ? nn : 1, sizeof *v);
  if (v == NULL) return finish(c, RK_ENOMEM, "status");
  for (size_t i = 0; i < nn; i++) {
    const rkc_node *nd = &c->table.nodes[i];
    v[i].node_id = nd->id;
    snprintf(v[i].client_addr, sizeof v[i].client_addr, "%s", nd->client_addr);
    rkc_peer *p = peer_of_node(c, nd->id);
    /* Each node gets its own slice, so one dead node cannot eat the others' time. */
    uint64_t per = (uint64_t)(c->opt.connect_timeout_ms + c->opt.read_attempt_ms) * 1000000u;
    uint64_t d = now_ns() + per;
    v[i].err = p ? status_of(c, p, d, &v[i]) : RK_ENOTFOUND;
  }
  *out = v;
  *n = nn;
  return finish(c, RK_OK, NULL);
}
