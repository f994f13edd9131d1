/* node_client.c — client requests on a node.
 *
 *   request           at a replica that leads the range        elsewhere
 *   PUT / DEL / CAS   propose; answer when the entry applies   RK_ENOTLEADER
 *                     (RK_EPROPOSALDROPPED if another entry     + leader hint
 *                     took its index; RK_ETIMEOUT after the
 *                     request timeout: outcome unknown)
 *   GET / SCAN        ReadIndex; answer once confirmed and     RK_ENOTLEADER
 *                     applied (retried each tick while the     + leader hint
 *                     new leader's no-op is not committed)
 *   RANGES, STATUS    answered at once by any node
 * A node that holds no replica of the range answers RK_EWRONGNODE with the
 * range's first replica as the hint. Outcomes follow ../shared/HISTORY.md:
 * RK_ENOTLEADER / RK_EWRONGNODE / validation errors mean "not proposed".
 */
#include "node/node_int.h"

#include "common/rk_assert.h"
#include "common/rk_err.h"
#include "common/rk_log.h"
#include "kv/kvcmd.h"

#include <stdlib.h>
#include <string.h>

void node_collect_totals(node *n, node_totals *t) {
  memset(t, 0, sizeof *t);
  for (size_t i = 0; i < n->table.n; i++) {
    node_range *r = &n->ranges[i];
    mr_raft *raft = r->local ? mr_host_group_raft(n->host, r->desc.id) : NULL;
    if (!raft) continue;
    if (mr_raft_role(raft) == MR_LEADER) t->leaders++;
    if (mr_raft_term(raft) > t->max_term) t->max_term = mr_raft_term(raft);
    const mr_counters *c = mr_raft_counters(raft);
    t->raft_bad_input += (uint64_t)c->unknown_type + c->not_member + c->bad_index + c->malformed +
                         c->malformed_snap + c->oversized + c->bad_conf_change;
    t->raft_appends_dropped += c->unstable_full;
    uint64_t first = 0, last = 0;
    if (eng_wal_first_index(n->wal, r->desc.id, &first) == RK_OK &&
        eng_wal_last_index(n->wal, r->desc.id, &last) == RK_OK && last + 1 > first)
      t->log_entries += last + 1 - first;
  }
}

void node_respond(node *n, uint64_t conn, Rangekv__ClientResponse *resp) {
  size_t len = rangekv__client_response__get_packed_size(resp);
  uint8_t *buf = malloc(len ? len : 1);
  if (buf == NULL) {
    tp_net_close_client(n->net, conn); /* the client sees an unknown outcome */
    return;
  }
  rangekv__client_response__pack(resp, buf);
  int rc = len <= TP_FRAME_DEFAULT_MAX_PAYLOAD
               ? tp_net_send_client(n->net, conn, TP_FRAME_CLIENT_RESPONSE, buf, (uint32_t)len)
               : RK_ETOOLARGE;
  free(buf);
  if (rc != RK_OK && rc != RK_ECLOSED) {
    /* Never silence: a response that cannot go (no size bound above should
     * allow one) closes the connection, which the client sees. */
    RK_ERROR("node", "response %llu of %zu bytes not sent: %s; closing the client connection",
             (unsigned long long)resp->id, len, rk_strerror(rc));
    tp_net_close_client(n->net, conn);
  }
}

uint32_t node_range_leader(node *n, const node_range *r) {
  if (!r->local) return 0;
  mr_raft *raft = mr_host_group_raft(n->host, r->desc.id);
  if (raft == NULL) return 0;
  uint64_t lead = mr_raft_lead(raft);
  return lead ? mr_host_replica_node(lead) : 0;
}

void node_respond_error(node *n, uint64_t conn, uint64_t req_id, int code, const char *detail,
                        const node_range *r) {
  Rangekv__ClientResponse resp;
  rangekv__client_response__init(&resp);
  resp.id = req_id;
  resp.code = code;
  resp.error = node_pb_str(detail ? detail : rk_strerror(code));
  if (r != NULL) {
    resp.range_id = r->desc.id;
    uint32_t hint = node_range_leader(n, r);
    if (hint == 0 && !r->local && r->desc.n_replicas > 0) hint = r->desc.replicas[0];
    if (hint == n->cfg.node_id) hint = 0; /* we are not leading it: no useful hint */
    resp.leader_node = hint;
    if (hint && hint <= NODE_MAX_NODES) resp.leader_addr = n->client_addr[hint];
  }
  node_respond(n, conn, &resp);
}

void node_range_drop_pending(node_range *r) {
  for (size_t i = 0; i < r->nreads; i++) {
    free(r->reads[i].key);
    free(r->reads[i].end);
  }
  free(r->reads);
  free(r->props);
  r->reads = NULL;
  r->props = NULL;
  r->nreads = r->capreads = r->nprops = r->capprops = 0;
}

/* The longest key a request may carry: a scan may start just after a
 * longest key (that key + "\0"), where a client resumes a scan the node
 * stopped early. */
static size_t max_key_of(const Rangekv__ClientRequest *req) {
  return KV_MAX_KEY + (req->op == RANGEKV__CLIENT_OP__OP_SCAN);
}

/* The range a request is for: by id, else by key. NULL if the id is unknown. */
static node_range *route(node *n, const Rangekv__ClientRequest *req) {
  if (req->range_id != 0) {
    if (req->range_id > n->table.n) return NULL;
    return &n->ranges[req->range_id - 1];
  }
  if (req->key.len > max_key_of(req)) return &n->ranges[0]; /* refused as too large later */
  const range_desc *d = range_table_lookup(&n->table, req->key.data, req->key.len);
  return &n->ranges[d->id - 1];
}

static int is_leader(node *n, const node_range *r) {
  if (!r->local) return 0;
  mr_raft *raft = mr_host_group_raft(n->host, r->desc.id);
  return raft != NULL && mr_raft_role(raft) == MR_LEADER;
}

/* Answers RK_EWRONGNODE / RK_ENOTLEADER (with a hint) unless this replica
 * leads r; 1 if it answered. Refusing before the core is asked keeps a
 * follower of a quiesced range asleep. Both mean "not proposed". */
static int refused_unless_leader(node *n, uint64_t conn, uint64_t req_id, const node_range *r) {
  if (!r->local) {
    node_respond_error(n, conn, req_id, RK_EWRONGNODE, "this node holds no replica of the range",
                       r);
    return 1;
  }
  if (!is_leader(n, r)) {
    node_respond_error(n, conn, req_id, RK_ENOTLEADER, NULL, r);
    return 1;
  }
  return 0;
}

static void handle_write(node *n, uint64_t conn, const Rangekv__ClientRequest *req, node_range *r) {
  kv_cmd c = {.key = req->key.data, .klen = (uint32_t)req->key.len};
  if (req->key.len > UINT32_MAX || req->value.len > UINT32_MAX || req->expected.len > UINT32_MAX) {
    node_respond_error(n, conn, req->id, RK_ETOOLARGE, NULL, NULL);
    return;
  }
  switch (req->op) {
  case RANGEKV__CLIENT_OP__OP_PUT:
    c.op = KV_PUT;
    c.value = req->value.data;
    c.vlen = (uint32_t)req->value.len;
    break;
  case RANGEKV__CLIENT_OP__OP_DEL: c.op = KV_DEL; break;
  default:
    c.op = KV_CAS;
    c.value = req->value.data;
    c.vlen = (uint32_t)req->value.len;
    c.expect_absent = req->expected_absent ? 1 : 0;
    if (!c.expect_absent) {
      c.expected = req->expected.data;
      c.elen = (uint32_t)req->expected.len;
    }
    break;
  }
  int rc = kv_cmd_validate(&c);
  if (rc != RK_OK) {
    node_respond_error(n, conn, req->id, rc,
                       rc == RK_ETOOLARGE ? "key over 4096 bytes or value over 1 MiB" : NULL, NULL);
    return;
  }
  if (refused_unless_leader(n, conn, req->id, r)) return;
  size_t len = kv_cmd_size(&c);
  uint8_t *buf = malloc(len);
  if (buf == NULL) {
    node_respond_error(n, conn, req->id, RK_ENOMEM, NULL, r);
    return;
  }
  kv_cmd_encode(&c, buf, len);
  uint64_t index = 0, hint = 0;
  rc = mr_host_propose(n->host, r->desc.id, buf, (uint32_t)len, &index, &hint);
  free(buf);
  if (rc != RK_OK) {
    /* Refused before anything entered the log: a definite failure. */
    node_respond_error(n, conn, req->id, rc, NULL, r);
    return;
  }
  if (r->nprops == r->capprops) {
    size_t ncap = r->capprops ? r->capprops * 2 : 16;
    node_prop *np = realloc(r->props, ncap * sizeof *np);
    RK_ASSERTF(np != NULL, "out of memory");
    r->props = np;
    r->capprops = ncap;
  }
  /* Usually appended at the end; after a leader lost entries and was
   * re-elected a new proposal can reuse an index below older pending ones. */
  size_t at = r->nprops;
  while (at > 0 && r->props[at - 1].index > index) at--;
  memmove(r->props + at + 1, r->props + at, (r->nprops - at) * sizeof *r->props);
  r->nprops++;
  n->maybe_pending = 1;
  r->props[at] = (node_prop){.conn = conn,
                             .req_id = req->id,
                             .index = index,
                             .term = mr_raft_term(mr_host_group_raft(n->host, r->desc.id)),
                             .deadline_ms = node_now_ms() + n->cfg.request_timeout_ms};
}

static uint8_t *dup_bytes(const ProtobufCBinaryData *b) {
  uint8_t *p = malloc(b->len ? b->len : 1);
  RK_ASSERTF(p != NULL, "out of memory");
  if (b->len) memcpy(p, b->data, b->len);
  return p;
}

/* The core's current term for r (0 without a local replica). */
static uint64_t range_term(node *n, const node_range *r) {
  mr_raft *raft = mr_host_group_raft(n->host, r->desc.id);
  return raft != NULL ? mr_raft_term(raft) : 0;
}

/* Issues (or re-issues) the ReadIndex of rd: RK_OK when the core took it. */
static int issue_read(node *n, node_range *r, node_read *rd) {
  int rc = mr_host_read(n->host, r->desc.id, rd->ctx);
  rd->issued = rc == RK_OK;
  rd->issued_term = range_term(n, r);
  return rc;
}

static void handle_read(node *n, uint64_t conn, const Rangekv__ClientRequest *req, node_range *r) {
  if (req->key.len > max_key_of(req) || req->end_key.len > KV_MAX_KEY) {
    node_respond_error(
        n, conn, req->id, RK_ETOOLARGE,
        req->key.len > max_key_of(req) ? "key over 4096 bytes" : "end key over 4096 bytes", NULL);
    return;
  }
  if (req->op == RANGEKV__CLIENT_OP__OP_GET && req->key.len == 0) {
    node_respond_error(n, conn, req->id, RK_EINVAL, "empty key", NULL);
    return;
  }
  if (refused_unless_leader(n, conn, req->id, r)) return;
  if (r->nreads == r->capreads) {
    size_t ncap = r->capreads ? r->capreads * 2 : 16;
    node_read *nr = realloc(r->reads, ncap * sizeof *nr);
    RK_ASSERTF(nr != NULL, "out of memory");
    r->reads = nr;
    r->capreads = ncap;
  }
  node_read *rd = &r->reads[r->nreads++];
  n->maybe_pending = 1;
  *rd = (node_read){.conn = conn,
                    .req_id = req->id,
                    .ctx = ++n->next_ctx,
                    .deadline_ms = node_now_ms() + n->cfg.request_timeout_ms,
                    .op = (int)req->op,
                    .key = dup_bytes(&req->key),
                    .klen = req->key.len,
                    .end = dup_bytes(&req->end_key),
                    .elen = req->end_key.len,
                    .limit = req->limit};
  int rc = issue_read(n, r, rd);
  /* RK_EAGAIN: the new leader's no-op is not committed yet; retried each
   * tick. Anything else: this replica cannot serve it. */
  if (rc != RK_OK && rc != RK_EAGAIN) {
    node_respond_error(n, conn, req->id, rc, NULL, r);
    free(rd->key);
    free(rd->end);
    r->nreads--;
  }
}

static void handle_ranges(node *n, uint64_t conn, const Rangekv__ClientRequest *req) {
  Rangekv__ClientResponse resp;
  rangekv__client_response__init(&resp);
  resp.id = req->id;
  size_t nr = n->table.n;
  Rangekv__RangeInfo *ri = calloc(nr, sizeof *ri);
  Rangekv__RangeInfo **rp = calloc(nr, sizeof *rp);
  uint32_t *reps = calloc(nr * RANGE_MAX_REPLICAS, sizeof *reps);
  Rangekv__NodeInfo *ni = calloc(n->cfg.n_cluster, sizeof *ni);
  Rangekv__NodeInfo **np = calloc(n->cfg.n_cluster, sizeof *np);
  if (!ri || !rp || !reps || !ni || !np) {
    node_respond_error(n, conn, req->id, RK_ENOMEM, NULL, NULL);
    goto out;
  }
  for (size_t i = 0; i < nr; i++) {
    node_range *r = &n->ranges[i];
    rangekv__range_info__init(&ri[i]);
    ri[i].range_id = r->desc.id;
    ri[i].start_key.data = r->desc.start;
    ri[i].start_key.len = r->desc.start_len;
    ri[i].end_key.data = r->desc.end;
    ri[i].end_key.len = r->desc.end_len;
    ri[i].n_replica_nodes = r->desc.n_replicas;
    ri[i].replica_nodes = reps + i * RANGE_MAX_REPLICAS;
    memcpy(ri[i].replica_nodes, r->desc.replicas, r->desc.n_replicas * sizeof(uint32_t));
    ri[i].leader_node = node_range_leader(n, r);
    mr_raft *raft = r->local ? mr_host_group_raft(n->host, r->desc.id) : NULL;
    if (raft) {
      ri[i].term = mr_raft_term(raft);
      ri[i].commit = mr_raft_commit(raft);
      ri[i].applied = mr_raft_applied(raft);
      ri[i].quiesced = mr_host_group_quiesced(n->host, r->desc.id) != 0;
    }
    rp[i] = &ri[i];
  }
  for (uint32_t i = 0; i < n->cfg.n_cluster; i++) {
    uint32_t id = n->cfg.cluster[i].id;
    rangekv__node_info__init(&ni[i]);
    ni[i].node_id = id;
    ni[i].client_addr = n->client_addr[id];
    ni[i].peer_addr = n->cfg.cluster[i].addr;
    ni[i].zone =
        node_pb_str(id == n->cfg.node_id && n->cfg.zone ? n->cfg.zone : n->cfg.cluster[i].zone);
    ni[i].live = id == n->cfg.node_id || mr_host_node_live(n->host, id);
    np[i] = &ni[i];
  }
  resp.n_ranges = nr;
  resp.ranges = rp;
  resp.n_nodes = n->cfg.n_cluster;
  resp.nodes = np;
  node_respond(n, conn, &resp);
out:
  free(ri);
  free(rp);
  free(reps);
  free(ni);
  free(np);
}

static void handle_status(node *n, uint64_t conn, const Rangekv__ClientRequest *req) {
  Rangekv__ClientResponse resp;
  rangekv__client_response__init(&resp);
  Rangekv__NodeStatus st;
  rangekv__node_status__init(&st);
  resp.id = req->id;
  mr_host_stats hs;
  mr_host_stats_get(n->host, &hs);
  eng_wal_stats ws;
  eng_wal_get_stats(n->wal, &ws);
  st.node_id = n->cfg.node_id;
  st.replicas = hs.groups;
  st.quiesced = hs.quiesced;
  node_totals t;
  node_collect_totals(n, &t);
  st.leaders = t.leaders;
  st.max_term = t.max_term;
  st.log_entries = t.log_entries;
  st.wal_bytes = ws.bytes_written;
  st.wal_fsyncs = ws.fsyncs;
  st.wal_segments = ws.segments_live;
  st.snapshots_sent = n->snapshots_sent;
  st.snapshots_installed = n->snapshots_installed;
  st.snapshots_dropped = n->snapshots_dropped;
  st.snapshots_streaming = n->ntx;
  st.snapshot_staged_bytes = n->rx_bytes;
  st.wal_recycled = ws.segments_recycled;
  st.applied_entries = n->applied_entries;
  st.zone = node_pb_str(n->cfg.zone ? n->cfg.zone : "");
  st.uptime_ms = node_now_ms() - n->start_ms;
  resp.status = &st;
  node_respond(n, conn, &resp);
}

void node_on_client_frame(void *ctx, uint64_t conn, uint16_t type, const uint8_t *payload,
                          uint32_t len) {
  node *n = ctx;
  if (node_stopping(n)) return; /* the client sees its connection close */
  if (type != TP_FRAME_CLIENT_REQUEST) {
    RK_WARN("node", "client %llu sent a frame of type %s: closed", (unsigned long long)conn,
            tp_frame_type_name(type));
    n->bad_frames++;
    tp_net_close_client(n->net, conn);
    return;
  }
  Rangekv__ClientRequest *req = rangekv__client_request__unpack(NULL, len, payload);
  if (req == NULL) {
    RK_WARN("node", "client %llu sent a malformed request: closed", (unsigned long long)conn);
    n->bad_frames++;
    tp_net_close_client(n->net, conn);
    return;
  }
  switch (req->op) {
  case RANGEKV__CLIENT_OP__OP_RANGES: handle_ranges(n, conn, req); break;
  case RANGEKV__CLIENT_OP__OP_STATUS: handle_status(n, conn, req); break;
  case RANGEKV__CLIENT_OP__OP_PUT:
  case RANGEKV__CLIENT_OP__OP_DEL:
  case RANGEKV__CLIENT_OP__OP_CAS:
  case RANGEKV__CLIENT_OP__OP_GET:
  case RANGEKV__CLIENT_OP__OP_SCAN: {
    node_range *r = route(n, req);
    if (r == NULL) {
      node_respond_error(n, conn, req->id, RK_EUNKNOWNRANGE, "no such range id", NULL);
    } else if (req->key.len <= max_key_of(req) &&
               !range_desc_contains(&r->desc, req->key.data, req->key.len)) {
      /* A request must name the range its key (a scan: its start) lives
       * in. A scan clamped to the range instead would silently skip the
       * keys between its start and the range's. */
      node_respond_error(n, conn, req->id, RK_ERANGEMOVED, "key is not in that range", r);
    } else if (req->op == RANGEKV__CLIENT_OP__OP_SCAN && req->range_id != 0 &&
               !range_desc_covers_end(&r->desc, req->end_key.data, req->end_key.len)) {
      /* Nor may a scan that names its range end past it: its client
       * resumes from the end it asked, so clamping would skip the keys in
       * between (a range that shrank since the client's table). Unnamed,
       * the scan is routed by its start and clamped to that range. */
      node_respond_error(n, conn, req->id, RK_ERANGEMOVED, "scan end is past that range", r);
    } else if (req->op == RANGEKV__CLIENT_OP__OP_GET || req->op == RANGEKV__CLIENT_OP__OP_SCAN) {
      handle_read(n, conn, req, r);
    } else {
      handle_write(n, conn, req, r);
    }
    break;
  }
  default: node_respond_error(n, conn, req->id, RK_EINVAL, "unknown operation", NULL); break;
  }
  rangekv__client_request__free_unpacked(req, NULL);
}

void node_on_client_closed(void *ctx, uint64_t conn) {
  node *n = ctx;
  if (!n->maybe_pending) return;
  /* Writes still apply; nobody is left to tell. Reads are simply dropped. */
  for (size_t i = 0; i < n->table.n; i++) {
    node_range *r = &n->ranges[i];
    for (size_t k = 0; k < r->nprops; k++)
      if (r->props[k].conn == conn) r->props[k].conn = 0;
    for (size_t k = 0; k < r->nreads;) {
      if (r->reads[k].conn == conn) {
        free(r->reads[k].key);
        free(r->reads[k].end);
        r->reads[k] = r->reads[--r->nreads];
      } else {
        k++;
      }
    }
  }
}

node_read_step node_read_next(const node_read *rd, int leader, uint64_t term, uint64_t now_ms) {
  if (!leader) return NODE_READ_NOT_LEADER;
  if (rd->deadline_ms <= now_ms) return NODE_READ_TIMED_OUT;
  /* The core drops pending ReadIndex requests when its term changes: a
   * leader deposed and re-elected between two ticks holds none of them. */
  if (!rd->issued || rd->issued_term != term) return NODE_READ_ISSUE;
  return NODE_READ_WAIT;
}

void node_client_tick(node *n) {
  if (!n->maybe_pending) return;
  uint64_t now = node_now_ms();
  int any = 0;
  for (size_t i = 0; i < n->table.n; i++) {
    node_range *r = &n->ranges[i];
    if (r->nprops == 0 && r->nreads == 0) continue;
    /* Writes past their deadline: unknown outcome, the entry may still
     * commit. A replica that lost its leadership keeps its writes until
     * then too: the new leader usually has the entry and commits it, and
     * the answer is then definite. (Answering them at once when the node
     * is cut off from a majority was tried: a blip of silence from one
     * peer while another was down then turned writes that would have
     * committed into unknown outcomes.) */
    for (size_t k = 0; k < r->nprops;) {
      node_prop *p = &r->props[k];
      if (p->deadline_ms > now) {
        k++;
        continue;
      }
      if (p->conn)
        node_respond_error(n, p->conn, p->req_id, RK_ETIMEOUT,
                           "timed out after proposing: outcome unknown", r);
      memmove(p, p + 1, (r->nprops - k - 1) * sizeof *p);
      r->nprops--;
    }
    int leader = is_leader(n, r);
    uint64_t term = leader ? range_term(n, r) : 0;
    for (size_t k = 0; k < r->nreads;) {
      node_read *rd = &r->reads[k];
      node_read_step step = node_read_next(rd, leader, term, now);
      if (step == NODE_READ_ISSUE) (void)issue_read(n, r, rd);
      if (step == NODE_READ_WAIT || step == NODE_READ_ISSUE) {
        k++;
        continue;
      }
      int code = step == NODE_READ_NOT_LEADER ? RK_ENOTLEADER : RK_ETIMEOUT;
      node_respond_error(n, rd->conn, rd->req_id, code, NULL, r);
      free(rd->key);
      free(rd->end);
      r->reads[k] = r->reads[--r->nreads];
    }
    any |= r->nprops > 0 || r->nreads > 0;
  }
  n->maybe_pending = any;
}
