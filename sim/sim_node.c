/* sim_node.c — the simulated node: a small multi-group host driving the
 * Raft cores (multiraft/raft.h) over the simulated disk and network.
 *
 * It follows the host loop contract of raft.h, for every group at once:
 *
 *   after every event on the node (sim_node_flush):
 *     for each group touched, in hosting order, with a Ready:
 *       send the messages that may leave before persistence (leader appends)
 *       write snapshot / entries / hard state to the node's disk (unsynced)
 *       nothing written  -> finish now (below)
 *       else             -> keep the Ready in this turn's batch
 *     one fsync for the whole batch (sim_disk_sync_begin), completing after
 *     the simulated latency (FIFO per disk; a stalled disk holds it back)
 *   when that fsync completes (SIM_EV_SYNC -> sim_node_sync_done):
 *     for each Ready of the batch: finish it
 *   finish a Ready:
 *     send the must_persist messages (votes, acks), apply the committed
 *     entries to the KV state machine, answer the clients whose proposals
 *     applied here and the reads whose index is applied, mr_raft_advance,
 *     maybe take a snapshot and compact the log
 *
 * This is the loop multiraft/host.c (issue 6) will own: one WAL batch per
 * turn, messages honouring must_persist, apply after durability. The
 * simulator then swaps this file for the real host; what it keeps is the
 * disk, the network and the checks.
 *
 * A crash (sim_node_down) drops every replica, every batch and every pending
 * client operation; the disk keeps what was synced (sim_disk_crash). A boot
 * rebuilds each group from its disk: hard state, the snapshot (state machine
 * image + configuration) if any, and the log; committed entries past the
 * snapshot are re-applied through Ready.committed.
 */
#include "sim/sim_int.h"

#include "common/rk_assert.h"
#include "common/rk_err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* ---- messages --------------------------------------------------------------- */

void sim_msg_free(sim_msg *sm) {
  if (sm == NULL) return;
  mr_msg_free(&sm->m);
  free(sm);
}

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

void sim_msg_describe(const sim_msg *sm, char *buf, size_t n) {
  const mr_msg *m = &sm->m;
  int k = snprintf(buf, n, "n%u->n%u g%llu %s t%llu", sm->from_node, sm->to_node,
                   (unsigned long long)sm->group, mr_msg_type_name(m->type),
                   (unsigned long long)m->term);
  if (k < 0 || (size_t)k >= n) return;
  switch (m->type) {
  case MR_MSG_APP:
    snprintf(buf + k, n - (size_t)k, " prev=%llu/%llu ents=%zu commit=%llu",
             (unsigned long long)m->index, (unsigned long long)m->log_term, m->entries.len,
             (unsigned long long)m->commit);
    break;
  case MR_MSG_APP_RESP:
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

/* Puts one message (stolen from a Ready) on the wire. */
static void send_msg(sim_world *w, uint32_t node, uint64_t group, mr_msg *m) {
  /* The term floor: a restarted node must come back with at least the term
   * of every message that promised something durable. Excluded: pre-votes
   * (a term the sender has not adopted), and a follower's heartbeat response
   * and ReadIndex forward, which the core may send before persisting a term
   * it just learned: they promise nothing a lower term could break (the
   * node cast no vote in that term, or the vote would have been persisted
   * with it). */
  if (m->type != MR_MSG_PREVOTE && m->type != MR_MSG_PREVOTE_RESP &&
      m->type != MR_MSG_HEARTBEAT_RESP && m->type != MR_MSG_READ_INDEX)
    sim_check_sent(w, node, group, m->term);
  if (m->to == 0 || m->to > w->nnodes) {
    mr_msg_free(m);
    return;
  }
  uint32_t to = (uint32_t)(m->to - 1);
  uint64_t delay[2];
  int copies = sim_net_route(&w->net, &w->net_rng, node, to, delay);
  for (int c = 0; c < copies; c++) {
    sim_msg *sm = malloc(sizeof *sm);
    RK_ASSERT(sm != NULL);
    sm->group = group;
    sm->from_node = node;
    sm->to_node = to;
    if (c + 1 == copies) {
      sm->m = *m; /* the last copy takes the buffers */
      memset(m, 0, sizeof *m);
    } else {
      msg_clone(&sm->m, m);
    }
    sim_schedule(w, w->now + delay[c], SIM_SRC_NODE(node), SIM_EV_MSG, to, 0, 0, sm);
  }
  mr_msg_free(m); /* dropped (copies == 0), or already emptied */
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
  if (v->snap.index > 0) {
    conf_decode(&v->snap.meta, &boot.conf);
    boot.applied = v->snap.index;
    RK_ASSERT(sim_kv_restore(&r->kv, v->snap.data.p, v->snap.data.len) == 0);
  } else {
    boot.conf = nd->bootconf[hi];
  }
  r->applied = boot.applied;
  mr_config cfg;
  mr_config_default(&cfg, SIM_RID(node));
  cfg.election_tick = w->o.election_ticks;
  cfg.heartbeat_tick = w->o.heartbeat_ticks;
  cfg.pre_vote = (uint8_t)(w->o.prevote != 0);
  cfg.check_quorum = (uint8_t)(w->o.check_quorum != 0);
  cfg.max_msg_bytes = w->max_msg_bytes;
  cfg.max_inflight_msgs = w->max_inflight;
#ifdef RK_TEST_HOOKS
  cfg.test_bugs = w->o.bugs;
#endif
  mr_storage st = {&store_ops, &r->store};
  int rc = mr_raft_init(&r->raft, &cfg, &st, &boot, &nd->rng);
  RK_ASSERTF(rc == RK_OK, "n%u g%llu: mr_raft_init: %s", node, (unsigned long long)r->group,
             rk_strerror(rc));
  r->dirty = 1;
  r->shown_role = -1;
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
  for (size_t i = 0; i < nd->nhosted; i++) {
    replica_start(w, node, i);
    sim_check_restarted(w, node, &nd->reps[i]);
  }
}

/* ---- batches: Readys waiting for one fsync ------------------------------------ */

struct sim_batch {
  int syncing; /* its fsync is in flight (only the first batch) */
  uint64_t barrier;
  size_t n;
  uint64_t *groups;
  mr_ready *rds;
  sim_batch *next;
};

static void batch_free(sim_batch *b) {
  for (size_t i = 0; i < b->n; i++) mr_ready_free(&b->rds[i]);
  free(b->groups);
  free(b->rds);
  free(b);
}

static void pending_remove(sim_replica *r, size_t i) { r->pend[i] = r->pend[--r->npend]; }

void sim_node_down(sim_world *w, uint32_t node) {
  sim_node *nd = &w->nodes[node];
  RK_ASSERT(nd->up);
  while (nd->batches) {
    sim_batch *b = nd->batches;
    nd->batches = b->next;
    batch_free(b);
  }
  nd->batches_tail = NULL;
  for (size_t i = 0; i < nd->nreps; i++) {
    sim_replica *r = &nd->reps[i];
    if (r->raft) mr_raft_free(r->raft);
    sim_kv_free(&r->kv);
    free(r->pend);
  }
  free(nd->reps);
  nd->reps = NULL;
  nd->nreps = 0;
  nd->up = 0;
  nd->incarnation++;
}

/* ---- client requests ------------------------------------------------------------- */

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
  r->dirty = 1;
  if (rq->op == SIM_OP_GET) {
    if (mr_raft_role(r->raft) != MR_LEADER) {
      refuse(w, node, rq, mr_raft_lead(r->raft), SIM_R_REFUSED);
      return;
    }
    int rc = mr_raft_read_index(r->raft, read_ctx(rq->client, rq->opno));
    if (rc != RK_OK) {
      refuse(w, node, rq, SIM_RID(node), SIM_R_REFUSED); /* e.g. no-op not committed yet */
      return;
    }
    pending_add(r, rq);
    return;
  }
  uint8_t buf[256];
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
  int rc = mr_raft_propose(r->raft, buf, (uint32_t)len, &index, &hint);
  if (rc != RK_OK) {
    refuse(w, node, rq, hint, SIM_R_REFUSED);
    return;
  }
  pending_add(r, rq);
}

/* ---- applying ---------------------------------------------------------------------- */

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

static void apply_entry(sim_world *w, uint32_t node, sim_replica *r, const rk_entry *e) {
  if (e->index <= r->applied) return; /* covered by an installed snapshot */
  RK_ASSERTF(e->index == r->applied + 1, "n%u g%llu: applying %llu after %llu", node,
             (unsigned long long)r->group, (unsigned long long)e->index,
             (unsigned long long)r->applied);
  sim_check_applied(w, node, r, e);
  r->applied = e->index;
  if (w->res) w->res->commits++;
  if (e->type != RK_ENTRY_NORMAL || e->len == 0) return;
  sim_cmd c;
  RK_ASSERTF(sim_cmd_decode(e->data, e->len, &c) == 0, "n%u: undecodable command at %llu", node,
             (unsigned long long)e->index);
  int changed = sim_kv_apply(&r->kv, &c);
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
  uint64_t term = 0;
  if (mr_raft_term_at(r->raft, r->applied, &term) != RK_OK || term == 0) return;
  sim_snap s;
  memset(&s, 0, sizeof s);
  s.index = r->applied;
  s.term = term;
  mr_conf conf;
  mr_raft_conf(r->raft, &conf);
  conf_encode(&conf, &s.meta);
  s.data.p = sim_kv_image(&r->kv, &s.data.len);
  sim_disk_compact(&nd->disk, r->slot, &s);
  sim_snap_free(&s);
  sim_trace_add(&w->trace, "t=%llu n%u g%llu compact snapshot=%llu/%llu",
                (unsigned long long)w->now, node, (unsigned long long)r->group,
                (unsigned long long)r->applied, (unsigned long long)term);
}

/* Steps 6-8 of the host contract. */
static void finish_ready(sim_world *w, uint32_t node, sim_replica *r, mr_ready *rd) {
  for (size_t i = 0; i < rd->n_msgs; i++)
    if (rd->msgs[i].must_persist) send_msg(w, node, r->group, &rd->msgs[i]);
  for (size_t i = 0; i < rd->committed.len && !w->stopped; i++)
    apply_entry(w, node, r, &rd->committed.v[i]);
  for (size_t i = 0; i < rd->n_reads; i++) {
    for (size_t k = 0; k < r->npend; k++) {
      sim_pending *p = &r->pend[k];
      if (p->op == SIM_OP_GET && read_ctx(p->client, p->opno) == rd->reads[i].ctx)
        p->read_index = rd->reads[i].index ? rd->reads[i].index : 1;
    }
  }
  mr_raft_advance(r->raft, rd);
  r->persisting = 0;
  r->dirty = 1;
  serve_reads(w, node, r);
  maybe_snapshot(w, node, r);
}

/* Steps 1-5 for one replica. Returns 1 if the Ready waits for a sync. */
static int start_ready(sim_world *w, uint32_t node, sim_replica *r, mr_ready *rd) {
  sim_node *nd = &w->nodes[node];
  RK_ASSERT(mr_raft_ready(r->raft, rd) == RK_OK);
  for (size_t i = 0; i < rd->n_msgs; i++)
    if (!rd->msgs[i].must_persist) send_msg(w, node, r->group, &rd->msgs[i]);
  int wrote = 0;
  /* Snapshot, entries and hard state of one Ready: one WAL record. */
  sim_disk_record_begin(&nd->disk);
  if (rd->snapshot.index != 0) {
    sim_snap s;
    memset(&s, 0, sizeof s);
    s.index = rd->snapshot.index;
    s.term = rd->snapshot.term;
    conf_encode(&rd->snapshot.conf, &s.meta);
    sim_blob_set(&s.data, rd->snapshot.data, rd->snapshot.len);
    sim_disk_install_snapshot(&nd->disk, r->slot, &s);
    sim_snap_free(&s);
    RK_ASSERT(sim_kv_restore(&r->kv, rd->snapshot.data, rd->snapshot.len) == 0);
    if (rd->snapshot.index > r->applied) r->applied = rd->snapshot.index;
    w->snap_installs++;
    w->last_snap_voters = 0;
    for (uint8_t i = 0; i < rd->snapshot.conf.n; i++)
      w->last_snap_voters += (rd->snapshot.conf.r[i].flags & MR_VOTER_IN) != 0;
    sim_trace_add(&w->trace, "t=%llu n%u g%llu install snapshot=%llu/%llu voters=%u",
                  (unsigned long long)w->now, node, (unsigned long long)r->group,
                  (unsigned long long)rd->snapshot.index, (unsigned long long)rd->snapshot.term,
                  rd->snapshot.conf.n);
    wrote = 1;
  }
  if (rd->entries.len) {
    const sim_log_view *v = sim_disk_view(&nd->disk, r->slot, 0);
    uint64_t first = rd->entries.v[0].index;
    uint64_t prev = first > 0 ? sim_view_term(v, first - 1) : 0;
    sim_check_written(w, node, r, rd->entries.v, rd->entries.len, prev);
    sim_disk_append(&nd->disk, r->slot, rd->entries.v, rd->entries.len);
    wrote = 1;
  }
  if (rd->hs_changed) {
    sim_disk_set_hardstate(&nd->disk, r->slot, &rd->hs);
    wrote = 1;
  }
  sim_disk_record_end(&nd->disk);
  return wrote;
}

static uint64_t sync_latency(sim_world *w, const sim_node *nd) {
  uint64_t l = rk_rand_range(&w->disk_rng, w->o.sync_min_us, w->o.sync_max_us);
  return nd->slow_sync_us ? nd->slow_sync_us : l;
}

/* Group commit (engine/ WAL style): at most one fsync in flight per disk.
 * Readys produced while it runs are written at once (to the current view)
 * and gathered in the next, open batch, whose fsync starts when the running
 * one completes; so a slow disk makes batches bigger, not queues longer. */
static void start_sync(sim_world *w, uint32_t node) {
  sim_node *nd = &w->nodes[node];
  sim_batch *b = nd->batches;
  RK_ASSERT(b != NULL && !b->syncing);
  b->syncing = 1;
  b->barrier = sim_disk_sync_begin(&nd->disk);
  uint64_t start = w->now;
  if (nd->stall_until > start) start = nd->stall_until;
  uint64_t done = start + sync_latency(w, nd);
  sim_schedule(w, done, SIM_SRC_NODE(node), SIM_EV_SYNC, node, nd->incarnation, b->barrier, NULL);
}

void sim_node_flush(sim_world *w, uint32_t node) {
  sim_node *nd = &w->nodes[node];
  if (!nd->up) return;
  for (int again = 1; again && !w->stopped;) {
    again = 0;
    for (size_t i = 0; i < nd->nreps && !w->stopped; i++) {
      sim_replica *r = &nd->reps[i];
      if (!r->dirty || r->persisting || !mr_raft_has_ready(r->raft)) continue;
      mr_ready rd;
      if (!start_ready(w, node, r, &rd)) {
        finish_ready(w, node, r, &rd);
        again = 1; /* advancing may have produced another Ready */
        continue;
      }
      sim_batch *b = nd->batches_tail;
      if (b == NULL || b->syncing) {
        b = calloc(1, sizeof *b);
        RK_ASSERT(b != NULL);
        if (nd->batches_tail)
          nd->batches_tail->next = b;
        else
          nd->batches = b;
        nd->batches_tail = b;
      }
      b->groups = realloc(b->groups, (b->n + 1) * sizeof *b->groups);
      b->rds = realloc(b->rds, (b->n + 1) * sizeof *b->rds);
      RK_ASSERT(b->groups && b->rds);
      b->groups[b->n] = r->group;
      b->rds[b->n] = rd;
      b->n++;
      r->persisting = 1;
    }
  }
  if (nd->batches && !nd->batches->syncing) start_sync(w, node);
}

void sim_node_sync_done(sim_world *w, uint32_t node, uint64_t barrier) {
  sim_node *nd = &w->nodes[node];
  sim_batch *b = nd->batches;
  RK_ASSERT(b != NULL && b->syncing && b->barrier == barrier);
  if (!w->o.lying_fsync) sim_disk_sync_done(&nd->disk, barrier);
  nd->batches = b->next;
  if (nd->batches == NULL) nd->batches_tail = NULL;
  size_t i = 0;
  for (; i < b->n && !w->stopped; i++) {
    sim_replica *r = sim_node_replica(w, node, b->groups[i]);
    RK_ASSERT(r != NULL && r->persisting);
    finish_ready(w, node, r, &b->rds[i]);
  }
  for (; i < b->n; i++) mr_ready_free(&b->rds[i]); /* the run stopped: not advanced */
  free(b->groups);
  free(b->rds);
  free(b);
  if (nd->batches && !nd->batches->syncing) start_sync(w, node);
}

void sim_node_tick(sim_world *w, uint32_t node) {
  sim_node *nd = &w->nodes[node];
  for (size_t i = 0; i < nd->nreps; i++) {
    mr_raft_tick(nd->reps[i].raft);
    nd->reps[i].dirty = 1;
  }
}

void sim_node_recv(sim_world *w, uint32_t node, sim_msg *sm) {
  sim_replica *r = sim_node_replica(w, node, sm->group);
  if (r == NULL) return;
  (void)mr_raft_step(r->raft, &sm->m); /* a refused message is counted by the core */
  r->dirty = 1;
}

/* After every event: internal invariants of each touched core, then ours. */
void sim_node_check(sim_world *w, uint32_t node) {
  sim_node *nd = &w->nodes[node];
  if (!nd->up) return;
  for (size_t i = 0; i < nd->nreps && !w->stopped; i++) {
    sim_replica *r = &nd->reps[i];
    if (!r->dirty) continue;
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
}
