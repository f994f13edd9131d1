/* harness.c — see harness.h. */
#include "harness.h"

#include "common/rk_assert.h"
#include "common/rk_err.h"

#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

h_opts h_default_opts(void) {
  return (h_opts){.pre_vote = 1,
                  .check_quorum = 1,
                  .max_inflight_msgs = 64,
                  .max_inflight_bytes = 0,
                  .max_msg_bytes = 1 << 20,
                  .max_uncommitted_bytes = 1 << 20,
                  .bugs = 0,
                  .seed = 42};
}

static void make_cfg(mr_config *c, uint64_t id, const h_opts *o) {
  mr_config_default(c, id);
  c->election_tick = 10;
  c->heartbeat_tick = 1;
  c->pre_vote = (uint8_t)o->pre_vote;
  c->check_quorum = (uint8_t)o->check_quorum;
  c->max_inflight_msgs = o->max_inflight_msgs;
  c->max_inflight_bytes = o->max_inflight_bytes;
  c->max_msg_bytes = o->max_msg_bytes;
  c->max_uncommitted_bytes = o->max_uncommitted_bytes;
  c->max_unstable_bytes = o->max_unstable_bytes;
  if (o->max_entry_bytes) c->max_entry_bytes = o->max_entry_bytes;
#ifdef RK_TEST_HOOKS
  c->test_bugs = o->bugs;
#endif
}

static void boot(harness *h, h_node *nd) {
  mr_boot b = {.hs = nd->log.hs, .conf = nd->conf, .applied = nd->applied};
  mr_storage st = mr_memlog_storage(&nd->log);
  int rc = mr_raft_init(&nd->r, &nd->cfg, &st, &b, &h->rng);
  cr_assert_eq(rc, RK_OK, "init node %llu: %s", (unsigned long long)nd->id, rk_strerror(rc));
}

harness *h_new(int n, const h_opts *o) {
  cr_assert(n >= 1 && n <= H_MAX);
  harness *h = calloc(1, sizeof *h);
  rk_rand_seed(&h->rng, o->seed);
  h->n = n;
  mr_conf conf = {.n = (uint8_t)n};
  for (int i = 0; i < n; i++)
    conf.r[i] = (mr_conf_replica){.id = (uint64_t)i + 1, .flags = MR_VOTER_IN};
  for (int i = 1; i <= n; i++) {
    h_node *nd = &h->nodes[i];
    nd->exists = 1;
    nd->id = (uint64_t)i;
    make_cfg(&nd->cfg, nd->id, o);
    mr_memlog_init(&nd->log);
    mr_snapshot s = {.index = 1, .term = 1, .conf = conf};
    mr_memlog_apply_snapshot(&nd->log, &s);
    nd->log.hs = (rk_hard_state){.term = 1, .vote = 0, .commit = 1};
    nd->applied = 1;
    nd->conf = conf;
    boot(h, nd);
  }
  return h;
}

void h_add_node(harness *h, uint64_t id, const h_opts *o) {
  cr_assert(id >= 1 && id <= H_MAX && !h->nodes[id].exists);
  h_node *nd = &h->nodes[id];
  nd->exists = 1;
  nd->id = id;
  make_cfg(&nd->cfg, id, o);
  mr_memlog_init(&nd->log);
  if ((int)id > h->n) h->n = (int)id;
  boot(h, nd);
}

void h_free(harness *h) {
  for (int i = 1; i <= h->n; i++) {
    h_node *nd = &h->nodes[i];
    if (!nd->exists) continue;
    mr_raft_free(nd->r);
    mr_memlog_free(&nd->log);
    free(nd->apps);
  }
  for (size_t k = 0; k < h->q_len; k++) mr_msg_free(&h->q[(h->q_head + k) % h->q_cap]);
  free(h->q);
  free(h->sm_term);
  free(h);
}

mr_raft *h_raft(harness *h, uint64_t id) { return h->nodes[id].r; }

static void enqueue(harness *h, mr_msg *m) {
  if (h->q_len == h->q_cap) {
    size_t nc = h->q_cap ? h->q_cap * 2 : 64;
    mr_msg *nq = calloc(nc, sizeof *nq);
    for (size_t k = 0; k < h->q_len; k++) nq[k] = h->q[(h->q_head + k) % h->q_cap];
    free(h->q);
    h->q = nq;
    h->q_cap = nc;
    h->q_head = 0;
  }
  h->q[(h->q_head + h->q_len) % h->q_cap] = *m;
  h->q_len++;
  memset(m, 0, sizeof *m);
}

size_t h_queue_len(const harness *h) { return h->q_len; }
const mr_msg *h_queue_at(const harness *h, size_t k) { return &h->q[(h->q_head + k) % h->q_cap]; }

void h_drop_all(harness *h) {
  while (h->q_len > 0) {
    mr_msg_free(&h->q[h->q_head]);
    h->q_head = (h->q_head + 1) % h->q_cap;
    h->q_len--;
  }
}

/* State Machine Safety, checked as entries are applied. */
static void sm_record(harness *h, uint64_t id, uint64_t index, uint64_t term) {
  if (index >= h->sm_cap) {
    size_t nc = h->sm_cap ? h->sm_cap : 64;
    while (nc <= index) nc *= 2;
    h->sm_term = realloc(h->sm_term, nc * sizeof *h->sm_term);
    memset(h->sm_term + h->sm_cap, 0, (nc - h->sm_cap) * sizeof *h->sm_term);
    h->sm_cap = nc;
  }
  if (h->sm_term[index] == 0)
    h->sm_term[index] = term;
  else if (h->sm_tolerate)
    h->sm_violations += h->sm_term[index] != term;
  else
    cr_assert_eq(h->sm_term[index], term,
                 "State Machine Safety: node %llu applied index %llu term %llu, another term %llu",
                 (unsigned long long)id, (unsigned long long)index, (unsigned long long)term,
                 (unsigned long long)h->sm_term[index]);
}

void h_process(harness *h, uint64_t id) {
  h_node *nd = &h->nodes[id];
  if (!nd->r) return;
  int guard = 0;
  while (mr_raft_has_ready(nd->r)) {
    cr_assert(guard++ < 1000, "node %llu never stops being ready", (unsigned long long)id);
    mr_ready rd;
    cr_assert_eq(mr_raft_ready(nd->r, &rd), RK_OK);
    for (size_t i = 0; i < rd.n_msgs; i++)
      if (!rd.msgs[i].must_persist) enqueue(h, &rd.msgs[i]);
    if (rd.snapshot.index != 0) {
      cr_assert_eq(mr_memlog_apply_snapshot(&nd->log, &rd.snapshot), RK_OK);
      nd->applied = rd.snapshot.index;
      nd->conf = rd.snapshot.conf;
      sm_record(h, id, rd.snapshot.index, rd.snapshot.term);
    }
    if (rd.entries.len > 0)
      cr_assert_eq(mr_memlog_append(&nd->log, rd.entries.v, rd.entries.len), RK_OK);
    if (rd.hs_changed) mr_memlog_set_hard_state(&nd->log, &rd.hs);
    for (size_t i = 0; i < rd.n_msgs; i++)
      if (rd.msgs[i].type != 0) enqueue(h, &rd.msgs[i]);
    for (size_t i = 0; i < rd.committed.len; i++) {
      const rk_entry *e = &rd.committed.v[i];
      if (e->index <= nd->applied) continue;
      cr_assert_eq(e->index, nd->applied + 1, "apply gap at node %llu", (unsigned long long)id);
      sm_record(h, id, e->index, e->term);
      if (nd->n_apps == nd->cap_apps) {
        nd->cap_apps = nd->cap_apps ? nd->cap_apps * 2 : 32;
        nd->apps = realloc(nd->apps, nd->cap_apps * sizeof *nd->apps);
      }
      h_applied *a = &nd->apps[nd->n_apps++];
      memset(a, 0, sizeof *a);
      a->index = e->index;
      a->term = e->term;
      a->len = e->len;
      if (e->len > 0) memcpy(a->data, e->data, e->len < sizeof a->data ? e->len : sizeof a->data);
      nd->applied = e->index;
    }
    for (size_t i = 0; i < rd.n_reads && nd->n_reads < 64; i++)
      nd->reads[nd->n_reads++] = rd.reads[i];
    mr_raft_advance(nd->r, &rd);
    mr_raft_conf(nd->r, &nd->conf); /* as of applied, durable with it */
    mr_raft_check_invariants(nd->r);
  }
}

static void process_all(harness *h) {
  for (int i = 1; i <= h->n; i++) h_process(h, (uint64_t)i);
}

size_t h_deliver_some(harness *h, size_t max) {
  size_t done = 0;
  process_all(h);
  while (done < max && h->q_len > 0) {
    mr_msg m = h->q[h->q_head];
    memset(&h->q[h->q_head], 0, sizeof m);
    h->q_head = (h->q_head + 1) % h->q_cap;
    h->q_len--;
    done++;
    h_node *to = (m.to <= H_MAX) ? &h->nodes[m.to] : NULL;
    int deliver = to && to->exists && to->r && m.from <= H_MAX && !h->cut[m.from][m.to];
    if (deliver && h->filter) deliver = h->filter(h, &m, h->filter_arg);
    if (getenv("H_TRACE"))
      fprintf(stderr, "%s %llu->%llu t%llu i%llu lt%llu c%llu n%zu rej%d hint%llu %s\n",
              mr_msg_type_name(m.type), (unsigned long long)m.from, (unsigned long long)m.to,
              (unsigned long long)m.term, (unsigned long long)m.index,
              (unsigned long long)m.log_term, (unsigned long long)m.commit, m.entries.len, m.reject,
              (unsigned long long)m.reject_hint, deliver ? "" : "DROP");
    if (deliver) {
      h->sent[m.type]++;
      (void)mr_raft_step(to->r, &m);
      mr_raft_check_invariants(to->r);
      h_process(h, m.to);
    }
    mr_msg_free(&m);
  }
  process_all(h);
  return done;
}

void h_deliver_all(harness *h) {
  for (int rounds = 0; rounds < 100000; rounds++) {
    h_deliver_some(h, 1 << 20);
    if (h->q_len == 0) return;
  }
  cr_assert_fail("network never drained");
}

void h_tick(harness *h, uint64_t id, int n) {
  for (int k = 0; k < n; k++) {
    if (h->nodes[id].r) mr_raft_tick(h->nodes[id].r);
    h_deliver_all(h);
  }
}

void h_tick_all(harness *h, int n) {
  for (int k = 0; k < n; k++) {
    for (int i = 1; i <= h->n; i++)
      if (h->nodes[i].r) mr_raft_tick(h->nodes[i].r);
    h_deliver_all(h);
  }
}

int h_elect(harness *h, uint64_t id) {
  mr_raft_campaign(h->nodes[id].r);
  h_deliver_all(h);
  return mr_raft_role(h->nodes[id].r) == MR_LEADER;
}

void h_cut(harness *h, uint64_t a, uint64_t b) {
  h->cut[a][b] = 1;
  h->cut[b][a] = 1;
}

void h_partition(harness *h, const uint64_t *group) {
  int in[H_MAX + 1] = {0};
  for (const uint64_t *g = group; *g; g++) in[*g] = 1;
  for (int a = 1; a <= H_MAX; a++)
    for (int b = 1; b <= H_MAX; b++)
      if (in[a] != in[b]) h->cut[a][b] = 1;
}

void h_isolate(harness *h, uint64_t id) {
  uint64_t g[2] = {id, 0};
  h_partition(h, g);
}

void h_heal(harness *h) { memset(h->cut, 0, sizeof h->cut); }

void h_crash(harness *h, uint64_t id) {
  mr_raft_free(h->nodes[id].r); /* unstable state is lost */
  h->nodes[id].r = NULL;
}

void h_restart(harness *h, uint64_t id) {
  cr_assert(h->nodes[id].r == NULL);
  boot(h, &h->nodes[id]);
}

int h_propose(harness *h, uint64_t id, const char *s) {
  return mr_raft_propose(h->nodes[id].r, s, (uint32_t)strlen(s), NULL, NULL);
}

void h_set_filter(harness *h, h_filter_fn f, void *arg) {
  h->filter = f;
  h->filter_arg = arg;
}

static int drop_type(harness *h, mr_msg *m, void *arg) {
  (void)h;
  return m->type != (mr_msg_type)(uintptr_t)arg;
}

void h_drop_type(harness *h, mr_msg_type type) {
  h_set_filter(h, drop_type, (void *)(uintptr_t)type);
}

uint64_t h_leader(harness *h) {
  uint64_t best = 0, term = 0;
  for (int i = 1; i <= h->n; i++) {
    mr_raft *r = h->nodes[i].r;
    if (r && mr_raft_role(r) == MR_LEADER && mr_raft_term(r) >= term) {
      best = (uint64_t)i;
      term = mr_raft_term(r);
    }
  }
  return best;
}

uint64_t h_term_at(harness *h, uint64_t id, uint64_t i) {
  uint64_t t = 0;
  if (h->nodes[id].r) {
    if (mr_raft_term_at(h->nodes[id].r, i, &t) != RK_OK) return 0;
    return t;
  }
  mr_storage st = mr_memlog_storage(&h->nodes[id].log);
  if (st.ops->term(st.ctx, i, &t) != RK_OK) return 0;
  return t;
}
