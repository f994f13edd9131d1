#include "multiraft/hostmem.h"

#include "common/rk_assert.h"
#include "common/rk_err.h"
#include "common/rk_hash.h"

#include <stdlib.h>
#include <string.h>

/* A frame in flight: mr_host_frame pointing at owned deep copies. */
typedef struct mr_hm_frame {
  mr_host_frame f;
  mr_host_gmsg *msgs;
  mr_host_hb *hbs, *hb_resps;
  struct mr_hm_frame *next;
} mr_hm_frame;

static void *xdup(const void *p, size_t n) {
  if (n == 0) return NULL;
  void *q = malloc(n);
  RK_ASSERTF(q != NULL, "out of memory");
  memcpy(q, p, n);
  return q;
}

static void *xcalloc(size_t n, size_t size) {
  void *p = calloc(n, size);
  RK_ASSERTF(p != NULL, "out of memory");
  return p;
}

uint32_t mr_hm_replica_node(const mr_hm_cluster *c, uint64_t g, int k) {
  return 1 + (uint32_t)((g + (uint64_t)k) % (uint64_t)c->n);
}

int mr_hm_replicas(const mr_hm_cluster *c) { return c->n < 3 ? c->n : 3; }

static uint64_t replica_of(const mr_hm_cluster *c, uint64_t g, int k) {
  return mr_host_replica_id(mr_hm_replica_node(c, g, k), 1);
}

/* FNV-1a over (term, payload): identifies what was applied at an index. */
static uint64_t entry_hash(const rk_entry *e) {
  uint64_t h = rk_fnv1a(RK_FNV_INIT, &e->term, sizeof e->term);
  return rk_fnv1a(h, e->data, e->len) | 1;
}

/* ---- io ------------------------------------------------------------------------ */

static int io_storage(void *ctx, uint64_t group, mr_storage *out) {
  mr_hm_node *nd = ctx;
  if (group < 1 || group > nd->c->groups) return RK_EUNKNOWNRANGE;
  *out = mr_memlog_storage(&nd->logs[group]);
  return RK_OK;
}

static void do_persist(mr_hm_node *nd, const mr_host_write *w, size_t n) {
  for (size_t i = 0; i < n; i++) {
    mr_memlog *ml = &nd->logs[w[i].group];
    if (w[i].snap) RK_ASSERT(mr_memlog_apply_snapshot(ml, w[i].snap) == RK_OK);
    if (w[i].entries->len > 0)
      RK_ASSERT(mr_memlog_append(ml, w[i].entries->v, w[i].entries->len) == RK_OK);
    if (w[i].hs) mr_memlog_set_hard_state(ml, w[i].hs);
  }
}

static void io_persist(void *ctx, uint64_t batch, const mr_host_write *w, size_t n, int sync) {
  mr_hm_node *nd = ctx;
  if (!sync) {
    /* Commit-index updates only: nothing waits, so never deferred. */
    nd->lazy_batches++;
    do_persist(nd, w, n);
    mr_host_persisted(nd->h, batch, RK_OK);
    return;
  }
  if (nd->persist_fail) {
    mr_host_persisted(nd->h, batch, RK_EIO);
    return;
  }
  if (nd->defer_persist) {
    RK_ASSERT(nd->n_deferred < 16);
    nd->deferred_w[nd->n_deferred] = w;
    nd->deferred_n[nd->n_deferred] = n;
    nd->deferred[nd->n_deferred++] = batch;
    return;
  }
  do_persist(nd, w, n);
  mr_host_persisted(nd->h, batch, RK_OK);
}

void mr_hm_complete_deferred_at(mr_hm_node *nd, size_t k) {
  RK_ASSERT(k < nd->n_deferred);
  do_persist(nd, nd->deferred_w[k], nd->deferred_n[k]);
  mr_host_persisted(nd->h, nd->deferred[k], RK_OK);
  for (size_t i = k + 1; i < nd->n_deferred; i++) {
    nd->deferred[i - 1] = nd->deferred[i];
    nd->deferred_w[i - 1] = nd->deferred_w[i];
    nd->deferred_n[i - 1] = nd->deferred_n[i];
  }
  nd->n_deferred--;
}

void mr_hm_complete_deferred(mr_hm_node *nd) {
  for (size_t i = 0; i < nd->n_deferred; i++) {
    do_persist(nd, nd->deferred_w[i], nd->deferred_n[i]);
    mr_host_persisted(nd->h, nd->deferred[i], RK_OK);
  }
  nd->n_deferred = 0;
}

static void io_send(void *ctx, const mr_host_frame *f) {
  mr_hm_node *nd = ctx;
  mr_hm_cluster *c = nd->c;
  RK_ASSERT(f->from_node == nd->id && f->to_node >= 1 && f->to_node <= (uint32_t)c->n);
  RK_ASSERTF(nd->sent_turn[f->to_node] != nd->turn, "two frames to node %u in one turn",
             f->to_node);
  nd->sent_turn[f->to_node] = nd->turn;
  mr_hm_frame *fr = xcalloc(1, sizeof *fr);
  fr->f = *f;
  fr->msgs = xdup(f->msgs, f->n_msgs * sizeof *f->msgs);
  for (size_t i = 0; i < f->n_msgs; i++) {
    const mr_msg *m = &f->msgs[i].msg;
    RK_ASSERTF(m->type != MR_MSG_HEARTBEAT && m->type != MR_MSG_HEARTBEAT_RESP,
               "a heartbeat travelled uncoalesced");
    rk_entry_vec_init(&fr->msgs[i].msg.entries);
    for (size_t k = 0; k < m->entries.len; k++)
      RK_ASSERT(rk_entry_vec_push(&fr->msgs[i].msg.entries, &m->entries.v[k]) == RK_OK);
    if (m->snap) {
      mr_snapshot *s = xdup(m->snap, sizeof *s);
      s->data = xdup(m->snap->data, m->snap->len);
      fr->msgs[i].msg.snap = s;
    }
  }
  fr->hbs = xdup(f->hbs, f->n_hbs * sizeof *f->hbs);
  fr->hb_resps = xdup(f->hb_resps, f->n_hb_resps * sizeof *f->hb_resps);
  fr->f.msgs = fr->msgs;
  fr->f.hbs = fr->hbs;
  fr->f.hb_resps = fr->hb_resps;
  if (c->tail)
    c->tail->next = fr;
  else
    c->head = fr;
  c->tail = fr;
}

static void frame_free(mr_hm_frame *fr) {
  for (size_t i = 0; i < fr->f.n_msgs; i++) mr_msg_free(&fr->msgs[i].msg);
  free(fr->msgs);
  free(fr->hbs);
  free(fr->hb_resps);
  free(fr);
}

static void io_apply(void *ctx, const mr_host_apply *a, size_t n) {
  mr_hm_node *nd = ctx;
  mr_hm_cluster *c = nd->c;
  for (size_t i = 0; i < n; i++) {
    uint64_t g = a[i].group;
    if (a[i].snap) nd->applied[g] = a[i].snap->index;
    for (size_t k = 0; k < a[i].committed->len; k++) {
      const rk_entry *e = &a[i].committed->v[k];
      RK_ASSERTF(e->index == nd->applied[g] + 1, "group %llu applies %llu after %llu",
                 (unsigned long long)g, (unsigned long long)e->index,
                 (unsigned long long)nd->applied[g]);
      nd->applied[g] = e->index;
      if (e->index >= c->applied_cap[g]) {
        uint64_t ncap = (e->index + 1) * 2;
        uint64_t *nh = realloc(c->applied_hash[g], ncap * sizeof *nh);
        RK_ASSERTF(nh != NULL, "out of memory");
        memset(nh + c->applied_cap[g], 0, (ncap - c->applied_cap[g]) * sizeof *nh);
        c->applied_hash[g] = nh;
        c->applied_cap[g] = ncap;
      }
      uint64_t *slot = &c->applied_hash[g][e->index];
      if (*slot == 0) *slot = entry_hash(e);
      RK_ASSERTF(*slot == entry_hash(e), "State Machine Safety: group %llu index %llu",
                 (unsigned long long)g, (unsigned long long)e->index);
    }
  }
}

static void io_read_ready(void *ctx, uint64_t group, uint64_t read_ctx, uint64_t index) {
  mr_hm_node *nd = ctx;
  (void)read_ctx;
  RK_ASSERTF(nd->applied[group] >= index, "read served before apply");
  nd->read_ready++;
}

/* ---- cluster ------------------------------------------------------------------- */

int mr_hm_new(mr_hm_cluster **out, int n, uint64_t groups, const mr_hm_opts *o) {
  if (n < 1 || n > MR_HM_MAX_NODES || groups < 1) return RK_EINVAL;
  mr_hm_cluster *c = xcalloc(1, sizeof *c);
  c->n = n;
  c->groups = groups;
  c->check_invariants = 1;
  rk_rand_seed(&c->rng, o->seed);
  c->applied_hash = xcalloc(groups + 1, sizeof *c->applied_hash);
  c->applied_cap = xcalloc(groups + 1, sizeof *c->applied_cap);
  for (int i = 1; i <= n; i++) {
    mr_hm_node *nd = &c->node[i];
    nd->id = (uint32_t)i;
    nd->c = c;
    nd->logs = xcalloc(groups + 1, sizeof *nd->logs);
    nd->applied = xcalloc(groups + 1, sizeof *nd->applied);
    for (uint64_t g = 0; g <= groups; g++) mr_memlog_init(&nd->logs[g]);
    mr_host_config cfg;
    mr_host_config_default(&cfg, nd->id);
    cfg.quiesce = (uint8_t)o->quiesce;
    if (o->election_tick) cfg.raft.election_tick = o->election_tick;
    cfg.liveness_ticks = o->liveness_ticks;
    mr_host_io io = {.ctx = nd,
                     .storage = io_storage,
                     .persist = io_persist,
                     .send = io_send,
                     .apply = io_apply,
                     .read_ready = io_read_ready};
    int rc = mr_host_new(&nd->h, &cfg, &io, &c->rng);
    if (rc != RK_OK) {
      mr_hm_free(c);
      return rc;
    }
    for (int j = 1; j <= n; j++)
      if (j != i) RK_ASSERT(mr_host_add_node(nd->h, (uint32_t)j) == RK_OK);
  }
  int rf = mr_hm_replicas(c);
  for (uint64_t g = 1; g <= groups; g++) {
    mr_boot boot;
    memset(&boot, 0, sizeof boot);
    boot.conf.n = (uint8_t)rf;
    for (int k = 0; k < rf; k++)
      boot.conf.r[k] = (mr_conf_replica){replica_of(c, g, k), MR_VOTER_IN};
    for (int k = 0; k < rf; k++) {
      mr_hm_node *nd = &c->node[mr_hm_replica_node(c, g, k)];
      int rc = mr_host_create_group(nd->h, g, replica_of(c, g, k), &boot);
      if (rc != RK_OK) {
        mr_hm_free(c);
        return rc;
      }
    }
  }
  *out = c;
  return RK_OK;
}

void mr_hm_free(mr_hm_cluster *c) {
  if (c == NULL) return;
  while (c->head) {
    mr_hm_frame *fr = c->head;
    c->head = fr->next;
    frame_free(fr);
  }
  for (int i = 1; i <= c->n; i++) {
    mr_hm_node *nd = &c->node[i];
    mr_host_free(nd->h);
    if (nd->logs)
      for (uint64_t g = 0; g <= c->groups; g++) mr_memlog_free(&nd->logs[g]);
    free(nd->logs);
    free(nd->applied);
  }
  for (uint64_t g = 0; g <= c->groups; g++) free(c->applied_hash[g]);
  free(c->applied_hash);
  free(c->applied_cap);
  free(c);
}

int mr_hm_turn(mr_hm_node *nd) {
  nd->turn++;
  int rc = mr_host_turn(nd->h);
  if (nd->c->check_invariants) mr_host_check_invariants(nd->h);
  return rc;
}

int mr_hm_settle(mr_hm_cluster *c, int max_rounds) {
  for (int round = 0; round < max_rounds; round++) {
    int moved = 0;
    for (int i = 1; i <= c->n; i++) {
      mr_hm_node *nd = &c->node[i];
      if (nd->crashed || !mr_host_has_work(nd->h)) continue;
      (void)mr_hm_turn(nd);
      moved = 1;
    }
    while (c->head) {
      mr_hm_frame *fr = c->head;
      c->head = fr->next;
      if (c->head == NULL) c->tail = NULL;
      mr_hm_node *to = &c->node[fr->f.to_node];
      const mr_hm_node *from = &c->node[fr->f.from_node];
      if (!to->crashed && !from->crashed && !to->isolated && !from->isolated && !to->deaf) {
        mr_host_receive(to->h, &fr->f);
        c->frames_delivered++;
      }
      frame_free(fr);
      moved = 1;
    }
    if (!moved) return RK_OK;
  }
  return RK_ETIMEOUT;
}

int mr_hm_tick_all(mr_hm_cluster *c, int ticks) {
  for (int t = 0; t < ticks; t++) {
    for (int i = 1; i <= c->n; i++)
      if (!c->node[i].crashed) mr_host_tick(c->node[i].h);
    int rc = mr_hm_settle(c, 100000);
    if (rc != RK_OK) return rc;
  }
  return RK_OK;
}

uint32_t mr_hm_leader_node(const mr_hm_cluster *c, uint64_t g) {
  uint32_t best = 0;
  uint64_t term = 0;
  for (int i = 1; i <= c->n; i++) {
    if (c->node[i].crashed) continue;
    mr_raft *r = mr_host_group_raft(c->node[i].h, g);
    if (r && mr_raft_role(r) == MR_LEADER && mr_raft_term(r) >= term) {
      best = (uint32_t)i;
      term = mr_raft_term(r);
    }
  }
  return best;
}

int mr_hm_elect_all(mr_hm_cluster *c) {
  int rf = mr_hm_replicas(c);
  for (uint64_t g = 1; g <= c->groups; g++) {
    mr_hm_node *nd = &c->node[mr_hm_replica_node(c, g, (int)(g % (uint64_t)rf))];
    RK_ASSERT(mr_host_campaign(nd->h, g) == RK_OK);
  }
  for (int t = 0; t < 100; t++) {
    int rc = mr_hm_tick_all(c, 1);
    if (rc != RK_OK) return rc;
    uint64_t g = 1;
    while (g <= c->groups && mr_hm_leader_node(c, g) != 0) g++;
    if (g > c->groups) return RK_OK;
  }
  return RK_ETIMEOUT;
}

int mr_hm_propose(mr_hm_cluster *c, uint64_t g, const char *val) {
  uint32_t ln = mr_hm_leader_node(c, g);
  if (ln == 0) return RK_ENOTLEADER;
  uint64_t idx = 0;
  return mr_host_propose(c->node[ln].h, g, val, (uint32_t)strlen(val), &idx, NULL);
}

int mr_hm_applied_everywhere(const mr_hm_cluster *c, uint64_t g, uint64_t index) {
  for (int k = 0; k < mr_hm_replicas(c); k++) {
    const mr_hm_node *nd = &c->node[mr_hm_replica_node(c, g, k)];
    if (!nd->crashed && nd->applied[g] < index) return 0;
  }
  return 1;
}

mr_host_stats mr_hm_stats(const mr_hm_cluster *c, int node) {
  mr_host_stats s;
  mr_host_stats_get(c->node[node].h, &s);
  return s;
}
