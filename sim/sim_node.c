/* sim_node.c — a simulated node: the real multi-Raft host (multiraft/host.h)
 * over the simulated disk and network.
 *
 * Each up node owns one mr_host and one sim_replica per hosted group (the
 * group's state machine, pending client operations and the checker's
 * bookkeeping; the Raft core itself belongs to the host). The host's I/O
 * seam is wired to the simulator:
 *
 *   storage     the group's log on the node's sim_disk (current view)
 *   persist     every write of the batch goes to the disk at once (unsynced,
 *               one record per group, so a crash keeps or tears it whole);
 *               the batch id joins the OPEN gather list
 *   send        the frame is deep-copied and routed through sim_net (loss,
 *               duplication, reordering, partitions) as one delivery event
 *   apply       committed entries reach the KV state machine; clients whose
 *               proposals applied here are answered
 *   read_ready  ReadIndex results: reads are served once applied
 *
 * After every event on a node (sim_node_flush) the host runs turns until it
 * has no work. Group commit keeps at most one fsync in flight per disk: when
 * none is running, the open list's batches start one (sim_disk_sync_begin);
 * batches persisted meanwhile gather for the next, so a slow disk makes
 * batches bigger, not queues longer. When the fsync completes
 * (sim_node_sync_done) each of its batches is reported to the host
 * (mr_host_persisted) and the next turn sends the messages that waited for
 * durability, applies, and advances.
 *
 * A crash (sim_node_down) frees the host, every replica, every batch and
 * pending operation; the disk keeps what was synced (sim_disk_crash). A boot
 * builds a new host and re-creates each group from its disk: hard state, the
 * snapshot (state machine image + configuration) if any, and the log;
 * committed entries past the snapshot are re-applied through the host.
 */
#include "sim/sim_int.h"

#include "common/rk_assert.h"
#include "common/rk_err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sim_u64v_push(sim_u64v *v, uint64_t x) {
  if (v->len == v->cap) {
    v->cap = v->cap ? 2 * v->cap : 16;
    v->v = realloc(v->v, v->cap * sizeof *v->v);
    RK_ASSERT(v->v != NULL);
  }
  v->v[v->len++] = x;
}

/* ---- storage: the core reads the disk's current view ---------------------- */

static const sim_log_view *store_view(void *ctx) {
  sim_store_ctx *s = ctx;
  return sim_disk_view(s->disk, s->slot, 0);
}

static uint64_t st_first(void *ctx) { return sim_view_first(store_view(ctx)); }
static uint64_t st_last(void *ctx) { return sim_view_last(store_view(ctx)); }

static int st_term(void *ctx, uint64_t i, uint64_t *term) {
  const sim_log_view *v = store_view(ctx);
  if (i < v->snap.index) return RK_ECOMPACTED;
  if (i > sim_view_last(v)) return RK_EUNAVAILABLE;
  *term = sim_view_term(v, i);
  return RK_OK;
}

static int st_entries(void *ctx, uint64_t lo, uint64_t hi, uint64_t max_bytes, rk_entry_vec *out) {
  const sim_log_view *v = store_view(ctx);
  if (lo <= v->snap.index) return RK_ECOMPACTED;
  if (hi > sim_view_last(v) + 1) return RK_EUNAVAILABLE;
  uint64_t bytes = 0;
  for (uint64_t i = lo; i < hi; i++) {
    const rk_entry *e = sim_view_entry(v, i);
    if (i > lo && bytes + e->len > max_bytes) break;
    bytes += e->len;
    if (rk_entry_vec_push(out, e) != RK_OK) return RK_ENOMEM;
  }
  return RK_OK;
}

/* Snapshot meta on the simulated disk: the configuration,
 *   u8 n, u8 auto_leave, then n times (u64 id little endian, u8 flags). */
static void conf_encode(const mr_conf *c, sim_blob *b) {
  uint8_t buf[2 + 9 * MR_MAX_REPLICAS], *p = buf;
  *p++ = c->n;
  *p++ = c->auto_leave;
  for (uint8_t i = 0; i < c->n; i++) {
    for (int k = 0; k < 8; k++) *p++ = (uint8_t)(c->r[i].id >> (8 * k));
    *p++ = c->r[i].flags;
  }
  sim_blob_set(b, buf, (size_t)(p - buf));
}

static void conf_decode(const sim_blob *b, mr_conf *c) {
  memset(c, 0, sizeof *c);
  if (b->len < 2) return;
  const uint8_t *p = b->p;
  c->n = *p++;
  c->auto_leave = *p++;
  RK_ASSERT(c->n <= MR_MAX_REPLICAS && b->len == 2 + 9u * c->n);
  for (uint8_t i = 0; i < c->n; i++) {
    c->r[i].id = 0;
    for (int k = 0; k < 8; k++) c->r[i].id |= (uint64_t)*p++ << (8 * k);
    c->r[i].flags = *p++;
  }
}

static int st_snapshot(void *ctx, mr_snapshot *out) {
  const sim_log_view *v = store_view(ctx);
  if (v->snap.index == 0) return RK_EUNAVAILABLE;
  memset(out, 0, sizeof *out);
  out->index = v->snap.index;
  out->term = v->snap.term;
  conf_decode(&v->snap.meta, &out->conf);
  out->len = (uint32_t)v->snap.data.len;
  if (out->len) {
    out->data = malloc(out->len);
    if (out->data == NULL) return RK_ENOMEM;
    memcpy(out->data, v->snap.data.p, out->len);
  }
  return RK_OK;
}

static const mr_storage_ops store_ops = {st_first, st_last, st_term, st_entries, st_snapshot};

/* ---- frames on the wire ------------------------------------------------------ */

static void msg_clone(mr_msg *dst, const mr_msg *src) {
  *dst = *src;
  rk_entry_vec_init(&dst->entries);
  for (size_t i = 0; i < src->entries.len; i++)
    RK_ASSERT(rk_entry_vec_push(&dst->entries, &src->entries.v[i]) == RK_OK);
  dst->snap = NULL;
  if (src->snap) {
    dst->snap = malloc(sizeof *dst->snap);
    RK_ASSERT(dst->snap != NULL);
    *dst->snap = *src->snap;
    dst->snap->data = NULL;
    if (src->snap->len) {
      dst->snap->data = malloc(src->snap->len);
      RK_ASSERT(dst->snap->data != NULL);
      memcpy(dst->snap->data, src->snap->data, src->snap->len);
    }
  }
}

static void *dup_array(const void *p, size_t n, size_t elem) {
  if (n == 0) return NULL;
  void *q = malloc(n * elem);
  RK_ASSERT(q != NULL);
  memcpy(q, p, n * elem);
  return q;
}

static sim_frame *frame_clone(const mr_host_frame *src, uint32_t from, uint32_t to) {
  sim_frame *f = calloc(1, sizeof *f);
  RK_ASSERT(f != NULL);
  f->from_node = from;
  f->to_node = to;
  f->n_msgs = src->n_msgs;
  if (src->n_msgs) {
    f->msgs = calloc(src->n_msgs, sizeof *f->msgs);
    RK_ASSERT(f->msgs != NULL);
    for (size_t i = 0; i < src->n_msgs; i++) {
      f->msgs[i].group = src->msgs[i].group;
      msg_clone(&f->msgs[i].msg, &src->msgs[i].msg);
    }
  }
  f->n_hbs = src->n_hbs;
  f->hbs = dup_array(src->hbs, src->n_hbs, sizeof *src->hbs);
  f->n_hb_resps = src->n_hb_resps;
  f->hb_resps = dup_array(src->hb_resps, src->n_hb_resps, sizeof *src->hb_resps);
  return f;
}

void sim_frame_free(sim_frame *f) {
  if (f == NULL) return;
  for (size_t i = 0; i < f->n_msgs; i++) mr_msg_free(&f->msgs[i].msg);
  free(f->msgs);
  free(f->hbs);
  free(f->hb_resps);
  free(f);
}

static void msg_describe(uint32_t from, uint32_t to, uint64_t group, const mr_msg *m, char *buf,
                         size_t n) {
  int k = snprintf(buf, n, "n%u->n%u g%llu %s t%llu", from, to, (unsigned long long)group,
                   mr_msg_type_name(m->type), (unsigned long long)m->term);
  if (k < 0 || (size_t)k >= n) return;
  switch (m->type) {
  case MR_MSG_APP:
    snprintf(buf + k, n - (size_t)k, " prev=%llu/%llu ents=%zu commit=%llu",
             (unsigned long long)m->index, (unsigned long long)m->log_term, m->entries.len,
             (unsigned long long)m->commit);
    break;
  case MR_MSG_APP_RESP:
    if (m->commit != 0) /* a learner's nudge */
      snprintf(buf + k, n - (size_t)k, " nudge commit=%llu/%llu", (unsigned long long)m->commit,
               (unsigned long long)m->log_term);
    else
      snprintf(buf + k, n - (size_t)k, " %s index=%llu", m->reject ? "reject" : "match",
               (unsigned long long)m->index);
    break;
  case MR_MSG_VOTE:
  case MR_MSG_PREVOTE:
    snprintf(buf + k, n - (size_t)k, " last=%llu/%llu", (unsigned long long)m->index,
             (unsigned long long)m->log_term);
    break;
  case MR_MSG_VOTE_RESP:
  case MR_MSG_PREVOTE_RESP:
    snprintf(buf + k, n - (size_t)k, " %s", m->reject ? "rejected" : "granted");
    break;
  case MR_MSG_HEARTBEAT:
    snprintf(buf + k, n - (size_t)k, " commit=%llu", (unsigned long long)m->commit);
    break;
  case MR_MSG_SNAP:
    if (m->snap)
      snprintf(buf + k, n - (size_t)k, " snap=%llu/%llu voters=%u",
               (unsigned long long)m->snap->index, (unsigned long long)m->snap->term,
               m->snap->conf.n);
    break;
  default: break;
  }
}

static void trace_hbs(sim_world *w, const sim_frame *f, const mr_host_hb *hb, size_t n,
                      const char *kind) {
  for (size_t i = 0; i < n; i++)
    sim_trace_add(&w->trace, "t=%llu e=%llu deliver n%u->n%u g%llu %s t%llu commit=%llu%s%s",
                  (unsigned long long)w->now, (unsigned long long)w->events, f->from_node,
                  f->to_node, (unsigned long long)hb[i].group, kind, (unsigned long long)hb[i].term,
                  (unsigned long long)hb[i].commit, hb[i].ctx ? " read" : "",
                  hb[i].quiesce ? " quiesce" : "");
}

void sim_frame_trace(sim_world *w, const sim_frame *f) {
  char buf[160];
  for (size_t i = 0; i < f->n_msgs; i++) {
    msg_describe(f->from_node, f->to_node, f->msgs[i].group, &f->msgs[i].msg, buf, sizeof buf);
    sim_trace_add(&w->trace, "t=%llu e=%llu deliver %s", (unsigned long long)w->now,
                  (unsigned long long)w->events, buf);
  }
  trace_hbs(w, f, f->hbs, f->n_hbs, "HEARTBEAT");
  trace_hbs(w, f, f->hb_resps, f->n_hb_resps, "HEARTBEAT_RESP");
}

/* ---- replicas ------------------------------------------------------------------ */

sim_replica *sim_node_replica(sim_world *w, uint32_t node, uint64_t group) {
  sim_node *nd = &w->nodes[node];
  if (!nd->up || group >= nd->nrep_index) return NULL;
  int32_t i = nd->rep_index[group];
  return i < 0 ? NULL : &nd->reps[i];
}

uint64_t sim_rep_term(const sim_replica *r) { return mr_raft_term(r->raft); }
uint64_t sim_rep_commit(const sim_replica *r) { return mr_raft_commit(r->raft); }
uint64_t sim_rep_leader(const sim_replica *r) { return mr_raft_lead(r->raft); }

int sim_rep_role(const sim_replica *r) {
  switch (mr_raft_role(r->raft)) {
  case MR_LEADER: return SIM_ROLE_LEADER;
  case MR_CANDIDATE: return SIM_ROLE_CANDIDATE;
  case MR_PRECANDIDATE: return SIM_ROLE_PRECANDIDATE;
  default: return SIM_ROLE_FOLLOWER;
  }
}

const char *sim_role_name(int role) {
  switch (role) {
  case SIM_ROLE_LEADER: return "leader";
  case SIM_ROLE_CANDIDATE: return "candidate";
  case SIM_ROLE_PRECANDIDATE: return "precandidate";
  default: return "follower";
  }
}

void sim_rep_voters(const sim_replica *r, uint64_t *in, uint32_t *n_in, uint64_t *out,
                    uint32_t *n_out) {
  mr_conf c;
  mr_raft_conf(r->raft, &c);
  *n_in = *n_out = 0;
  for (uint8_t i = 0; i < c.n; i++) {
    if (c.r[i].flags & MR_VOTER_IN) in[(*n_in)++] = c.r[i].id;
    if (c.r[i].flags & MR_VOTER_OUT) out[(*n_out)++] = c.r[i].id;
  }
}

/* Where an initial member's log starts (CockroachDB's raftInitialLogIndex /
 * raftInitialLogTerm): every initial member begins from a snapshot at
 * (SIM_INIT_INDEX, SIM_INIT_TERM) holding the initial configuration and an
 * empty state machine. A replica added later starts empty and, since the
 * leader's log starts above that index, is brought in by InstallSnapshot,
 * which carries the configuration. (Replaying the log from index 1 instead
 * would apply "add me" onto an empty configuration and leave the joiner
 * believing it is a one-voter group.) */
#define SIM_INIT_INDEX 5
#define SIM_INIT_TERM  5

void sim_node_host(sim_world *w, uint32_t node, uint64_t group, const mr_conf *boot) {
  sim_node *nd = &w->nodes[node];
  for (size_t i = 0; i < nd->nhosted; i++) RK_ASSERT(nd->hosted[i] != group);
  nd->hosted = realloc(nd->hosted, (nd->nhosted + 1) * sizeof *nd->hosted);
  nd->bootconf = realloc(nd->bootconf, (nd->nhosted + 1) * sizeof *nd->bootconf);
  RK_ASSERT(nd->hosted && nd->bootconf);
  nd->hosted[nd->nhosted] = group;
  nd->bootconf[nd->nhosted] = *boot;
  nd->nhosted++;
  uint32_t slot = sim_disk_group(&nd->disk, group);
  if (boot->n > 0) {
    sim_snap s;
    memset(&s, 0, sizeof s);
    s.index = SIM_INIT_INDEX;
    s.term = SIM_INIT_TERM;
    conf_encode(boot, &s.meta);
    sim_kv kv;
    sim_kv_init(&kv);
    s.data.p = sim_kv_image(&kv, &s.data.len);
    rk_hard_state hs = {.term = SIM_INIT_TERM, .vote = 0, .commit = SIM_INIT_INDEX};
    sim_disk_bootstrap(&nd->disk, slot, &s, &hs);
    sim_snap_free(&s);
  }
}

/* ---- client operations and the state machine ------------------------------------- */

static void pending_remove(sim_replica *r, size_t i) { r->pend[i] = r->pend[--r->npend]; }

static uint64_t read_ctx(uint32_t client, uint64_t opno) {
  return ((uint64_t)client << 40) | (opno & ((UINT64_C(1) << 40) - 1));
}

static void refuse(sim_world *w, uint32_t node, const sim_req *rq, uint64_t hint, int status) {
  sim_reply rp;
  memset(&rp, 0, sizeof rp);
  rp.client = rq->client;
  rp.opno = rq->opno;
  rp.status = status;
  rp.hint = (uint32_t)hint;
  sim_client_reply(w, node, &rp);
}

static void pending_add(sim_replica *r, const sim_req *rq) {
  if (r->npend == r->cappend) {
    r->cappend = r->cappend ? 2 * r->cappend : 8;
    r->pend = realloc(r->pend, r->cappend * sizeof *r->pend);
    RK_ASSERT(r->pend != NULL);
  }
  sim_pending *p = &r->pend[r->npend++];
  memset(p, 0, sizeof *p);
  p->client = rq->client;
  p->opno = rq->opno;
  p->op = rq->op;
  snprintf(p->key, sizeof p->key, "%s", rq->key);
}

static void reply_ok(sim_world *w, uint32_t node, const sim_pending *p, int swapped,
                     const char *value) {
  sim_reply rp;
  memset(&rp, 0, sizeof rp);
  rp.client = p->client;
  rp.opno = p->opno;
  rp.status = SIM_R_OK;
  rp.swapped = swapped;
  if (value) {
    rp.found = 1;
    snprintf(rp.value, sizeof rp.value, "%s", value);
  }
  sim_client_reply(w, node, &rp);
}

/* Applies whatever the host hands over, as a node does: the host owes each
 * entry exactly once, in order, after the snapshot it restored. */
static void apply_entry(sim_world *w, uint32_t node, sim_replica *r, const rk_entry *e) {
  if (e->index != r->applied + 1) {
    sim_violation(w, "apply-order", "group %llu: n%u was handed index %llu to apply after %llu",
                  (unsigned long long)r->group, node, (unsigned long long)e->index,
                  (unsigned long long)r->applied);
    return;
  }
  r->applied = e->index;
  if (w->res) w->res->commits++;
  sim_cmd c;
  int command = e->type == RK_ENTRY_NORMAL && e->len > 0;
  int changed = 0;
  if (command) {
    RK_ASSERTF(sim_cmd_decode(e->data, e->len, &c) == 0, "n%u: undecodable command at %llu", node,
               (unsigned long long)e->index);
    changed = sim_kv_apply(&r->kv, &c);
  }
  sim_check_applied(w, node, r, e);
  if (!command) return;
  for (size_t i = 0; i < r->npend; i++) {
    sim_pending *p = &r->pend[i];
    if (p->client == c.client && p->opno == c.opno && p->op != SIM_OP_GET) {
      sim_check_acked(w, r->group, e->index);
      reply_ok(w, node, p, c.op == SIM_OP_CAS ? changed : 0, NULL);
      pending_remove(r, i);
      break;
    }
  }
}

static void serve_reads(sim_world *w, uint32_t node, sim_replica *r) {
  for (size_t i = 0; i < r->npend;) {
    sim_pending *p = &r->pend[i];
    if (p->op == SIM_OP_GET && p->read_index != 0 && r->applied >= p->read_index) {
      reply_ok(w, node, p, 0, sim_kv_get(&r->kv, p->key));
      pending_remove(r, i);
      continue;
    }
    i++;
  }
}

static void maybe_snapshot(sim_world *w, uint32_t node, sim_replica *r) {
  if (w->snap_every == 0) return;
  sim_node *nd = &w->nodes[node];
  const sim_log_view *v = sim_disk_view(&nd->disk, r->slot, 0);
  if (r->applied < v->snap.index + w->snap_every) return;
  /* The state machine image is at `applied`: compact there only when every
   * replica is known to hold the log that far. */
  if (w->compact_by_hint && mr_host_compact_hint(nd->host, r->group) < r->applied) return;
  uint64_t at = r->applied, term = 0;
  if ((w->o.bugs & SIM_BUG_SNAP_BEHIND) && at - 1 > v->snap.index) at--;
  if (mr_raft_term_at(r->raft, at, &term) != RK_OK || term == 0) return;
  sim_snap s;
  memset(&s, 0, sizeof s);
  s.index = at;
  s.term = term;
  mr_conf conf;
  mr_raft_conf(r->raft, &conf);
  conf_encode(&conf, &s.meta);
  s.data.p = sim_kv_image(&r->kv, &s.data.len);
  sim_disk_compact(&nd->disk, r->slot, &s);
  sim_snap_free(&s);
  sim_trace_add(&w->trace, "t=%llu n%u g%llu compact snapshot=%llu/%llu",
                (unsigned long long)w->now, node, (unsigned long long)r->group,
                (unsigned long long)at, (unsigned long long)term);
}

void sim_node_touch(sim_world *w, uint32_t node, sim_replica *r) {
  if (r->dirty) return;
  sim_node *nd = &w->nodes[node];
  r->dirty = 1;
  sim_u64v_push(&nd->dirty, (uint64_t)(r - nd->reps));
}

static void touch_group(sim_world *w, uint32_t node, uint64_t group) {
  sim_replica *r = sim_node_replica(w, node, group);
  if (r) sim_node_touch(w, node, r);
}

int sim_rep_quiesced(sim_world *w, uint32_t node, const sim_replica *r) {
  sim_node *nd = &w->nodes[node];
  return nd->up && mr_host_group_quiesced(nd->host, r->group);
}

/* ---- the host's I/O seam --------------------------------------------------------- */

static sim_replica *ctx_replica(void *ctx, uint64_t group, sim_world **w, uint32_t *node) {
  sim_host_ctx *c = ctx;
  *w = c->w;
  *node = c->node;
  sim_replica *r = sim_node_replica(c->w, c->node, group);
  RK_ASSERTF(r != NULL, "n%u: the host names group %llu, which the node does not host", c->node,
             (unsigned long long)group);
  return r;
}

static int io_storage(void *ctx, uint64_t group, mr_storage *out) {
  sim_host_ctx *c = ctx;
  sim_replica *r = sim_node_replica(c->w, c->node, group);
  if (r == NULL) return RK_EUNKNOWNRANGE;
  out->ops = &store_ops;
  out->ctx = &r->store;
  return RK_OK;
}

/* One group's share of a persist batch: snapshot, entries and hard state as
 * one record on the disk (what one checksum protects in the WAL). */
static void write_group(sim_world *w, uint32_t node, sim_replica *r, const mr_host_write *wr) {
  sim_node *nd = &w->nodes[node];
  sim_disk_record_begin(&nd->disk);
  if (wr->snap) {
    const mr_snapshot *sn = wr->snap;
    sim_check_installing(w, node, r, sn->index);
    sim_snap s;
    memset(&s, 0, sizeof s);
    s.index = sn->index;
    s.term = sn->term;
    conf_encode(&sn->conf, &s.meta);
    sim_blob_set(&s.data, sn->data, sn->len);
    sim_disk_install_snapshot(&nd->disk, r->slot, &s);
    sim_snap_free(&s);
    w->snap_installs++;
    if (w->compact_by_hint)
      sim_violation(w, "compact-hint",
                    "group %llu: n%u needed a snapshot (%llu/%llu) though logs are only cut "
                    "where every replica holds them",
                    (unsigned long long)r->group, node, (unsigned long long)sn->index,
                    (unsigned long long)sn->term);
    w->last_snap_voters = 0;
    for (uint8_t i = 0; i < sn->conf.n; i++)
      w->last_snap_voters += (sn->conf.r[i].flags & MR_VOTER_IN) != 0;
    sim_trace_add(&w->trace, "t=%llu n%u g%llu install snapshot=%llu/%llu voters=%u",
                  (unsigned long long)w->now, node, (unsigned long long)r->group,
                  (unsigned long long)sn->index, (unsigned long long)sn->term, sn->conf.n);
  }
  if (wr->entries->len) {
    const sim_log_view *v = sim_disk_view(&nd->disk, r->slot, 0);
    uint64_t first = wr->entries->v[0].index;
    uint64_t prev = first > 0 ? sim_view_term(v, first - 1) : 0;
    sim_check_written(w, node, r, wr->entries->v, wr->entries->len, prev);
    sim_disk_append(&nd->disk, r->slot, wr->entries->v, wr->entries->len);
  }
  if (wr->hs) sim_disk_set_hardstate(&nd->disk, r->slot, wr->hs);
  sim_disk_record_end(&nd->disk);
  sim_node_touch(w, node, r);
}

/* The disk queues writes in order, so a batch nothing waits for (sync == 0:
 * commit-index updates only) needs no fsync of its own: the next one covers
 * it, and a crash before then may lose it. */
/* With fault class install, half the synced batches that carry snapshots
 * do what a node does while its installer thread works (node_snap_install.c):
 * every other write lands now, the snapshot groups' writes 1-30 ms later,
 * and only then does the batch join a sync, so later batches complete
 * before it (the host must allow that). */
static void io_persist(void *ctx, uint64_t batch, const mr_host_write *wr, size_t n, int sync) {
  sim_host_ctx *c = ctx;
  sim_world *w = c->w;
  uint32_t node = c->node;
  sim_node *nd = &w->nodes[node];
  size_t nsnap = 0;
  for (size_t i = 0; i < n; i++) nsnap += wr[i].snap != NULL;
  RK_ASSERTF(nsnap == 0 || n == 1, "n%u: a snapshot shares persist batch %llu", node,
             (unsigned long long)batch);
  int defer =
      sync && nsnap > 0 && (w->o.faults & SIM_F(INSTALL)) && rk_rand_below(&w->disk_rng, 2) == 0;
  sim_install *in = NULL;
  if (defer) {
    if (nd->ninstalls == nd->capinstalls) {
      nd->capinstalls = nd->capinstalls ? 2 * nd->capinstalls : 4;
      nd->installs = realloc(nd->installs, nd->capinstalls * sizeof *nd->installs);
      RK_ASSERT(nd->installs != NULL);
    }
    in = &nd->installs[nd->ninstalls++];
    *in = (sim_install){.batch = batch, .w = calloc(nsnap, sizeof *in->w)};
    RK_ASSERT(in->w != NULL);
  }
  for (size_t i = 0; i < n; i++) {
    if (in && wr[i].snap != NULL) {
      in->w[in->n++] = wr[i];
      continue;
    }
    /* ctx_replica also checks that the group is hosted here. */
    sim_replica *r = ctx_replica(ctx, wr[i].group, &w, &node);
    write_group(w, node, r, &wr[i]);
  }
  if (in) {
    uint64_t at = w->now + rk_rand_range(&w->disk_rng, 1000, 30000);
    sim_schedule(w, at, SIM_SRC_NODE(node), SIM_EV_INSTALL, node, nd->incarnation, batch, NULL);
  } else if (sync) {
    sim_u64v_push(&nd->open_ids, batch);
  } else {
    mr_host_persisted(nd->host, batch, RK_OK);
  }
}

void sim_node_install_done(sim_world *w, uint32_t node, uint64_t batch) {
  sim_node *nd = &w->nodes[node];
  size_t k = 0;
  while (k < nd->ninstalls && nd->installs[k].batch != batch) k++;
  RK_ASSERTF(k < nd->ninstalls, "n%u: no deferred install for batch %llu", node,
             (unsigned long long)batch);
  sim_install in = nd->installs[k];
  memmove(&nd->installs[k], &nd->installs[k + 1], (nd->ninstalls - k - 1) * sizeof in);
  nd->ninstalls--;
  for (size_t i = 0; i < in.n; i++) {
    sim_replica *r = ctx_replica(&nd->hctx, in.w[i].group, &w, &node);
    write_group(w, node, r, &in.w[i]);
  }
  free(in.w);
  sim_u64v_push(&nd->open_ids, batch);
}

/* The term floor: a restarted node must come back with at least the term of
 * every message that promised something durable. Excluded: pre-votes (a term
 * the sender has not adopted), and a follower's heartbeat response and
 * ReadIndex forward, which the core may send before persisting a term it
 * just learned: they promise nothing a lower term could break (the node cast
 * no vote in that term, or the vote would have been persisted with it). */
static int msg_promises_term(const mr_msg *m) {
  return m->type != MR_MSG_PREVOTE && m->type != MR_MSG_PREVOTE_RESP &&
         m->type != MR_MSG_HEARTBEAT_RESP && m->type != MR_MSG_READ_INDEX;
}

static void io_send(void *ctx, const mr_host_frame *hf) {
  sim_host_ctx *c = ctx;
  sim_world *w = c->w;
  uint32_t node = c->node;
  w->frames_sent++;
  w->hb_entries += hf->n_hbs + hf->n_hb_resps;
  for (size_t i = 0; i < hf->n_msgs; i++) {
    const mr_msg *m = &hf->msgs[i].msg;
    if (msg_promises_term(m)) sim_check_sent(w, node, hf->msgs[i].group, m->term);
    if (m->type == MR_MSG_VOTE_RESP && !m->reject)
      sim_check_voted(w, node, hf->msgs[i].group, m->term, sim_rid_node(m->to));
    else if (m->type == MR_MSG_VOTE) /* a candidate votes for itself */
      sim_check_voted(w, node, hf->msgs[i].group, m->term, node);
    else if (m->type == MR_MSG_APP || m->type == MR_MSG_SNAP || m->type == MR_MSG_HEARTBEAT)
      sim_check_led(w, node, hf->msgs[i].group, m->term);
    touch_group(w, node, hf->msgs[i].group); /* a precandidate shows only here */
  }
  for (size_t i = 0; i < hf->n_hbs; i++) {
    sim_check_sent(w, node, hf->hbs[i].group, hf->hbs[i].term);
    sim_check_led(w, node, hf->hbs[i].group, hf->hbs[i].term);
  }
  RK_ASSERT(hf->to_node >= 1 && hf->to_node <= w->nnodes && hf->to_node != node + 1);
  uint32_t to = hf->to_node - 1;
  uint64_t delay[2];
  int copies = sim_net_route(&w->net, &w->net_rng, node, to, delay);
  for (int k = 0; k < copies; k++)
    sim_schedule(w, w->now + delay[k], SIM_SRC_NODE(node), SIM_EV_MSG, to, 0, 0,
                 frame_clone(hf, node, to));
}

static void io_apply(void *ctx, const mr_host_apply *a, size_t n) {
  sim_world *w = NULL;
  uint32_t node = 0;
  for (size_t k = 0; k < n; k++) {
    sim_replica *r = ctx_replica(ctx, a[k].group, &w, &node);
    if (a[k].snap && a[k].snap->index <= r->applied)
      sim_violation(w, "apply-order",
                    "group %llu: n%u was handed a snapshot at %llu to restore after applying %llu",
                    (unsigned long long)r->group, node, (unsigned long long)a[k].snap->index,
                    (unsigned long long)r->applied);
    else if (a[k].snap) {
      RK_ASSERT(sim_kv_restore(&r->kv, a[k].snap->data, a[k].snap->len) == 0);
      r->applied = a[k].snap->index;
      sim_check_restored(w, node, r, a[k].snap->index, a[k].snap->term);
    }
    for (size_t i = 0; i < a[k].committed->len && !w->stopped; i++)
      apply_entry(w, node, r, &a[k].committed->v[i]);
    if ((w->o.bugs & SIM_BUG_APPLY_TWICE) && a[k].committed->len > 0 && !w->stopped)
      apply_entry(w, node, r, &a[k].committed->v[0]);
    serve_reads(w, node, r);
    sim_node_touch(w, node, r);
  }
}

static void io_read_ready(void *ctx, uint64_t group, uint64_t rctx, uint64_t index) {
  sim_world *w = NULL;
  uint32_t node = 0;
  sim_replica *r = ctx_replica(ctx, group, &w, &node);
  for (size_t k = 0; k < r->npend; k++) {
    sim_pending *p = &r->pend[k];
    if (p->op == SIM_OP_GET && read_ctx(p->client, p->opno) == rctx)
      p->read_index = index ? index : 1;
  }
  serve_reads(w, node, r);
  sim_node_touch(w, node, r);
}

/* ---- boot and crash ------------------------------------------------------------- */

static void replica_start(sim_world *w, uint32_t node, size_t hi) {
  sim_node *nd = &w->nodes[node];
  sim_replica *r = &nd->reps[hi];
  memset(r, 0, sizeof *r);
  r->group = nd->hosted[hi];
  r->slot = sim_disk_group(&nd->disk, r->group);
  r->store.disk = &nd->disk;
  r->store.slot = r->slot;
  sim_kv_init(&r->kv);
  const sim_log_view *v = sim_disk_view(&nd->disk, r->slot, 0);
  mr_boot boot;
  memset(&boot, 0, sizeof boot);
  boot.hs = v->hs;
  if (w->o.bugs & SIM_BUG_FORGET_VOTE) boot.hs.vote = 0;
  if (v->snap.index > 0) {
    conf_decode(&v->snap.meta, &boot.conf);
    boot.applied = v->snap.index;
    RK_ASSERT(sim_kv_restore(&r->kv, v->snap.data.p, v->snap.data.len) == 0);
    sim_check_restored(w, node, r, v->snap.index, v->snap.term);
  } else {
    boot.conf = nd->bootconf[hi];
  }
  r->applied = boot.applied;
  int rc = mr_host_create_group(nd->host, r->group, SIM_RID(node), &boot);
  RK_ASSERTF(rc == RK_OK, "n%u g%llu: mr_host_create_group: %s", node, (unsigned long long)r->group,
             rk_strerror(rc));
  r->raft = mr_host_group_raft(nd->host, r->group);
  r->shown_role = -1;
  sim_node_touch(w, node, r);
}

static void host_start(sim_world *w, uint32_t node) {
  sim_node *nd = &w->nodes[node];
  mr_host_config hc;
  mr_host_config_default(&hc, node + 1);
  mr_config *cfg = &hc.raft;
  cfg->election_tick = w->o.election_ticks;
  cfg->heartbeat_tick = w->o.heartbeat_ticks;
  cfg->pre_vote = (uint8_t)(w->o.prevote != 0);
  cfg->check_quorum = (uint8_t)(w->o.check_quorum != 0);
  cfg->max_msg_bytes = w->max_msg_bytes;
  cfg->max_inflight_msgs = w->max_inflight;
  cfg->max_entry_bytes = SIM_CMD_MAX;
  cfg->max_unstable_bytes = w->max_unstable_bytes;
#ifdef RK_TEST_HOOKS
  cfg->test_bugs = w->o.bugs & ~(uint32_t)SIM_BUGS_HOST;
#endif
  hc.quiesce = (uint8_t)!w->o.no_quiesce;
  nd->hctx.w = w;
  nd->hctx.node = node;
  mr_host_io io = {.ctx = &nd->hctx,
                   .storage = io_storage,
                   .persist = io_persist,
                   .send = io_send,
                   .apply = io_apply,
                   .read_ready = io_read_ready};
  int rc = mr_host_new(&nd->host, &hc, &io, &nd->rng);
  RK_ASSERTF(rc == RK_OK, "n%u: mr_host_new: %s", node, rk_strerror(rc));
  /* Every node of the cluster is a peer: liveness frames go to all. */
  for (uint32_t j = 0; j < w->nnodes; j++)
    if (j != node) RK_ASSERT(mr_host_add_node(nd->host, j + 1) == RK_OK);
}

void sim_node_boot(sim_world *w, uint32_t node) {
  sim_node *nd = &w->nodes[node];
  RK_ASSERT(!nd->up);
  nd->up = 1;
  nd->incarnation++;
  /* Election jitter of this incarnation: forked from the world, so a
   * restart at a different moment draws different timeouts, reproducibly. */
  rk_rand_fork(&w->rng, &nd->rng);
  nd->reps = calloc(nd->nhosted ? nd->nhosted : 1, sizeof *nd->reps);
  RK_ASSERT(nd->reps != NULL);
  nd->nreps = nd->nhosted;
  /* group id -> replica slot, for O(1) routing */
  uint64_t maxg = 0;
  for (size_t i = 0; i < nd->nhosted; i++)
    if (nd->hosted[i] + 1 > maxg) maxg = nd->hosted[i] + 1;
  nd->rep_index = realloc(nd->rep_index, (maxg ? maxg : 1) * sizeof *nd->rep_index);
  RK_ASSERT(nd->rep_index != NULL);
  for (uint64_t g = 0; g < maxg; g++) nd->rep_index[g] = -1;
  for (size_t i = 0; i < nd->nhosted; i++) nd->rep_index[nd->hosted[i]] = (int32_t)i;
  nd->nrep_index = maxg;
  host_start(w, node);
  for (size_t i = 0; i < nd->nhosted; i++) {
    replica_start(w, node, i);
    sim_check_restarted(w, node, &nd->reps[i]);
  }
}

void sim_node_down(sim_world *w, uint32_t node) {
  sim_node *nd = &w->nodes[node];
  RK_ASSERT(nd->up);
  for (size_t i = 0; i < nd->nreps; i++)
    w->res->appends_dropped += mr_raft_counters(nd->reps[i].raft)->unstable_full;
  mr_host_free(nd->host); /* its cores and every Ready waiting for a sync */
  nd->host = NULL;
  for (size_t i = 0; i < nd->nreps; i++) {
    sim_kv_free(&nd->reps[i].kv);
    free(nd->reps[i].pend);
  }
  free(nd->reps);
  nd->reps = NULL;
  nd->nreps = 0;
  nd->dirty.len = 0;
  nd->syncing = 0;
  nd->syncing_ids.len = nd->open_ids.len = 0;
  /* Deferred installs never landed: their writes are lost with the host. */
  for (size_t i = 0; i < nd->ninstalls; i++) free(nd->installs[i].w);
  nd->ninstalls = 0;
  nd->eio_next = nd->io_failed = 0;
  nd->up = 0;
  nd->incarnation++;
}

/* ---- client requests ------------------------------------------------------------- */

void sim_node_request(sim_world *w, uint32_t node, const sim_req *rq) {
  sim_node *nd = &w->nodes[node];
  if (!nd->up) {
    refuse(w, node, rq, 0, SIM_R_DOWN);
    return;
  }
  sim_replica *r = sim_node_replica(w, node, rq->group);
  if (r == NULL) {
    refuse(w, node, rq, 0, SIM_R_REFUSED);
    return;
  }
  sim_node_touch(w, node, r);
  if (rq->op == SIM_OP_GET) {
    if (mr_raft_role(r->raft) != MR_LEADER) {
      refuse(w, node, rq, mr_host_replica_node(mr_raft_lead(r->raft)), SIM_R_REFUSED);
      return;
    }
    int rc = mr_host_read(nd->host, r->group, read_ctx(rq->client, rq->opno));
    if (rc != RK_OK) {
      refuse(w, node, rq, node + 1, SIM_R_REFUSED); /* e.g. no-op not committed yet */
      return;
    }
    pending_add(r, rq);
    return;
  }
  uint8_t buf[SIM_CMD_MAX];
  sim_cmd c = {.op = rq->op,
               .client = rq->client,
               .opno = rq->opno,
               .key = rq->key,
               .klen = strlen(rq->key),
               .has_expected = rq->has_expected,
               .expected = rq->expected,
               .elen = strlen(rq->expected),
               .value = rq->value,
               .vlen = strlen(rq->value)};
  size_t len = sim_cmd_encode(&c, buf, sizeof buf);
  RK_ASSERT(len > 0);
  uint64_t index = 0, hint = 0;
  int rc = mr_host_propose(nd->host, r->group, buf, (uint32_t)len, &index, &hint);
  if (rc != RK_OK) {
    refuse(w, node, rq, mr_host_replica_node(hint), SIM_R_REFUSED);
    return;
  }
  pending_add(r, rq);
}

int sim_node_conf_change(sim_world *w, uint32_t node, uint64_t group, const mr_conf_change *cc,
                         uint64_t *index) {
  sim_node *nd = &w->nodes[node];
  if (!nd->up) return RK_EUNAVAILABLE;
  touch_group(w, node, group);
  return mr_host_conf_change(nd->host, group, cc, index);
}

/* ---- the loop -------------------------------------------------------------------------- */

static uint64_t sync_latency(sim_world *w, const sim_node *nd) {
  uint64_t l = rk_rand_range(&w->disk_rng, w->o.sync_min_us, w->o.sync_max_us);
  return nd->slow_sync_us ? nd->slow_sync_us : l;
}

/* Starts the fsync of every batch gathered so far. */
static void start_sync(sim_world *w, uint32_t node) {
  sim_node *nd = &w->nodes[node];
  RK_ASSERT(!nd->syncing && nd->open_ids.len > 0 && nd->syncing_ids.len == 0);
  nd->syncing = 1;
  nd->barrier = sim_disk_sync_begin(&nd->disk);
  sim_u64v t = nd->syncing_ids;
  nd->syncing_ids = nd->open_ids;
  nd->open_ids = t;
  uint64_t start = w->now;
  if (nd->stall_until > start) start = nd->stall_until;
  uint64_t done = start + sync_latency(w, nd);
  sim_schedule(w, done, SIM_SRC_NODE(node), SIM_EV_SYNC, node, nd->incarnation, nd->barrier, NULL);
}

void sim_node_flush(sim_world *w, uint32_t node) {
  sim_node *nd = &w->nodes[node];
  if (!nd->up) return;
  /* Each turn advances what completed and may leave new Readys: run turns
   * until the host is idle (bounded: a host that never settles is a bug). */
  for (uint32_t turns = 0; !w->stopped && mr_host_has_work(nd->host); turns++) {
    RK_ASSERTF(turns < 100000, "n%u: the host never runs out of work", node);
    int rc = mr_host_turn(nd->host);
    if (rc == RK_ESTOPPED && nd->io_failed) break;
    RK_ASSERTF(rc == RK_OK, "n%u: mr_host_turn: %s", node, rk_strerror(rc));
  }
  if (nd->io_failed) {
    RK_ASSERTF(mr_host_turn(nd->host) == RK_ESTOPPED, "n%u: the host runs on after a failed fsync",
               node);
    sim_node_check(w, node); /* what the cores did in this event, before they go */
    sim_io_failure_stop(w, node);
    return;
  }
  if (!nd->syncing && nd->open_ids.len > 0) start_sync(w, node);
  for (size_t i = 0; i < nd->dirty.len && !w->stopped; i++)
    maybe_snapshot(w, node, &nd->reps[nd->dirty.v[i]]);
}

void sim_node_sync_done(sim_world *w, uint32_t node, uint64_t barrier) {
  sim_node *nd = &w->nodes[node];
  RK_ASSERT(nd->syncing && nd->barrier == barrier);
  /* A failed fsync leaves its writes unsynced (fsyncgate: some may be on
   * the platter, none is trusted); the host stops at its next turn. */
  int rc = RK_OK;
  if (nd->eio_next) {
    nd->eio_next = 0;
    nd->io_failed = !(w->o.bugs & SIM_BUG_EIO_IGNORED);
    rc = nd->io_failed ? RK_EIO : RK_OK;
  } else if (!w->o.lying_fsync) {
    sim_disk_sync_done(&nd->disk, barrier);
  }
  nd->syncing = 0;
  for (size_t i = 0; i < nd->syncing_ids.len; i++)
    mr_host_persisted(nd->host, nd->syncing_ids.v[i], rc);
  nd->syncing_ids.len = 0;
}

static void touch_active(sim_world *w, uint32_t node) {
  sim_node *nd = &w->nodes[node];
  size_t n = mr_host_active_count(nd->host);
  for (size_t i = 0; i < n; i++) {
    uint64_t g = mr_host_active_group(nd->host, i);
    touch_group(w, node, g);
    if (w->awake && g < w->ngroups) w->awake[g] = 1;
  }
}

void sim_node_tick(sim_world *w, uint32_t node) {
  /* The groups this tick reaches: the host's active set, and the groups a
   * liveness change in the tick woke (a follower whose leader's node went
   * down, a leader stepped down for want of a live majority). */
  touch_active(w, node);
  mr_host_tick(w->nodes[node].host);
  touch_active(w, node);
}

void sim_node_recv(sim_world *w, uint32_t node, const sim_frame *f) {
  sim_node *nd = &w->nodes[node];
  mr_host_frame hf = {.from_node = f->from_node + 1,
                      .to_node = f->to_node + 1,
                      .msgs = f->msgs,
                      .n_msgs = f->n_msgs,
                      .hbs = f->hbs,
                      .n_hbs = f->n_hbs,
                      .hb_resps = f->hb_resps,
                      .n_hb_resps = f->n_hb_resps};
  mr_host_receive(nd->host, &hf);
  for (size_t i = 0; i < f->n_msgs; i++) touch_group(w, node, f->msgs[i].group);
  for (size_t i = 0; i < f->n_hbs; i++) touch_group(w, node, f->hbs[i].group);
  for (size_t i = 0; i < f->n_hb_resps; i++) touch_group(w, node, f->hb_resps[i].group);
}

/* ---- checks ---------------------------------------------------------------------------- */

static int campaigning(int role) {
  return role == SIM_ROLE_CANDIDATE || role == SIM_ROLE_PRECANDIDATE;
}

/* Idle-run bookkeeping of a role change. */
static void note_role(sim_world *w, sim_replica *r, int role) {
  if (w->campaigned == NULL || r->group >= w->ngroups) return;
  if (campaigning(role) && !campaigning(r->shown_role)) w->campaigned[r->group] = 1;
  if (role == SIM_ROLE_LEADER && w->led_down && w->led_down[r->group] && w->releader[r->group] == 0)
    w->releader[r->group] = w->now - w->crash_at + 1;
}

/* After every event: internal invariants of each touched core, then ours. */
void sim_node_check(sim_world *w, uint32_t node) {
  sim_node *nd = &w->nodes[node];
  if (!nd->up) return;
  /* The host's own invariants walk every group: on small hosts after every
   * event, on big ones every 256th. */
  if (nd->nreps <= 64 || (w->events & 255) == 0) mr_host_check_invariants(nd->host);
  for (size_t i = 0; i < nd->dirty.len && !w->stopped; i++) {
    sim_replica *r = &nd->reps[nd->dirty.v[i]];
    r->dirty = 0;
    mr_raft_check_invariants(r->raft);
    sim_check_replica(w, node, r);
    int role = sim_rep_role(r);
    uint64_t t = sim_rep_term(r), c = sim_rep_commit(r), last = mr_raft_last_index(r->raft);
    if (role != r->shown_role || t != r->shown_term ||
        (!w->quiet_state &&
         (c != r->shown_commit || r->applied != r->shown_applied || last != r->shown_last))) {
      if (role == SIM_ROLE_LEADER && (role != r->shown_role || t != r->shown_term)) {
        if (w->res) w->res->elections++;
        sim_on_new_leader(w, node);
      }
      if (role != r->shown_role || t != r->shown_term) note_role(w, r, role);
      sim_trace_add(&w->trace,
                    "t=%llu n%u g%llu term=%llu role=%s last=%llu commit=%llu applied=%llu",
                    (unsigned long long)w->now, node, (unsigned long long)r->group,
                    (unsigned long long)t, sim_role_name(role), (unsigned long long)last,
                    (unsigned long long)c, (unsigned long long)r->applied);
      r->shown_last = last;
      r->shown_role = role;
      r->shown_term = t;
      r->shown_commit = c;
      r->shown_applied = r->applied;
    }
  }
  if (!w->stopped) nd->dirty.len = 0;
}
