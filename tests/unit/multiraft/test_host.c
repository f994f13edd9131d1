/* Multi-raft host: batching, coalesced heartbeats, quiescence, targeted
 * wake-up. A small deterministic cluster of hosts over an in-memory network:
 * frames are deep-copied into one FIFO and delivered by settle(); persist is
 * synchronous into a memlog per replica unless a test defers it. */
#include "common/rk_err.h"
#include "common/rk_rand.h"
#include "multiraft/host.h"
#include "multiraft/memlog.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#define HC_MAX_NODES  5
#define HC_MAX_GROUPS 400

typedef struct hc_frame {
  mr_host_frame f; /* points at the owned copies below */
  mr_host_gmsg *msgs;
  mr_host_hb *hbs, *hb_resps;
  struct hc_frame *next;
} hc_frame;

typedef struct hc_node {
  uint32_t id;
  mr_host *h;
  mr_memlog logs[HC_MAX_GROUPS + 1];
  uint64_t applied[HC_MAX_GROUPS + 1];
  int crashed;
  int persist_fail;
  int defer_persist; /* leave batches pending in deferred[] */
  uint64_t deferred[16];
  size_t n_deferred;
  uint64_t turn;                        /* incremented before every mr_host_turn */
  uint64_t sent_turn[HC_MAX_NODES + 1]; /* turn of the last frame to each node */
  uint64_t read_ready;                  /* ReadIndex results delivered */
} hc_node;

typedef struct hc_cluster {
  int n;
  uint64_t groups;
  hc_node node[HC_MAX_NODES + 1];
  hc_frame *head, *tail;
  rk_rand rng;
  /* What any replica applied at (group, index): State Machine Safety. */
  uint64_t *applied_hash[HC_MAX_GROUPS + 1];
  uint64_t applied_cap[HC_MAX_GROUPS + 1];
} hc_cluster;

static hc_cluster *C;

static uint32_t replica_node(uint64_t group, int k) {
  return 1 + (uint32_t)((group + (uint64_t)k) % (uint64_t)C->n);
}
static uint64_t replica_of(uint64_t group, int k) {
  return mr_host_replica_id(replica_node(group, k), 1);
}

static uint64_t entry_hash(const rk_entry *e) {
  uint64_t h = 1469598103934665603ull ^ e->term;
  for (uint32_t i = 0; i < e->len; i++) h = (h ^ e->data[i]) * 1099511628211ull;
  return h;
}

/* ---- io callbacks ---------------------------------------------------------- */

static int io_storage(void *ctx, uint64_t group, mr_storage *out) {
  hc_node *nd = ctx;
  cr_assert(group >= 1 && group <= HC_MAX_GROUPS);
  *out = mr_memlog_storage(&nd->logs[group]);
  return RK_OK;
}

static void do_persist(hc_node *nd, const mr_host_write *w, size_t n) {
  for (size_t i = 0; i < n; i++) {
    mr_memlog *ml = &nd->logs[w[i].group];
    if (w[i].snap) cr_assert_eq(mr_memlog_apply_snapshot(ml, w[i].snap), RK_OK);
    if (w[i].entries->len > 0)
      cr_assert_eq(mr_memlog_append(ml, w[i].entries->v, w[i].entries->len), RK_OK);
    if (w[i].hs) mr_memlog_set_hard_state(ml, w[i].hs);
  }
}

static const mr_host_write *pending_w[HC_MAX_NODES + 1][16];
static size_t pending_n[HC_MAX_NODES + 1][16];

static void io_persist(void *ctx, uint64_t batch, const mr_host_write *w, size_t n) {
  hc_node *nd = ctx;
  if (nd->persist_fail) {
    mr_host_persisted(nd->h, batch, RK_EIO);
    return;
  }
  if (nd->defer_persist) {
    cr_assert_lt(nd->n_deferred, 16);
    pending_w[nd->id][nd->n_deferred] = w;
    pending_n[nd->id][nd->n_deferred] = n;
    nd->deferred[nd->n_deferred++] = batch;
    return;
  }
  do_persist(nd, w, n);
  mr_host_persisted(nd->h, batch, RK_OK);
}

static void complete_deferred(hc_node *nd) {
  for (size_t i = 0; i < nd->n_deferred; i++) {
    do_persist(nd, pending_w[nd->id][i], pending_n[nd->id][i]);
    mr_host_persisted(nd->h, nd->deferred[i], RK_OK);
  }
  nd->n_deferred = 0;
}

static void *dup_mem(const void *p, size_t n) {
  if (n == 0) return NULL;
  void *q = malloc(n);
  cr_assert_not_null(q);
  memcpy(q, p, n);
  return q;
}

static void io_send(void *ctx, const mr_host_frame *f) {
  hc_node *nd = ctx;
  cr_assert_eq(f->from_node, nd->id);
  /* One frame per destination node per turn. */
  cr_assert_neq(nd->sent_turn[f->to_node], nd->turn, "two frames to node %u in one turn",
                f->to_node);
  nd->sent_turn[f->to_node] = nd->turn;
  hc_frame *c = calloc(1, sizeof *c);
  cr_assert_not_null(c);
  c->f = *f;
  mr_host_gmsg *msgs = dup_mem(f->msgs, f->n_msgs * sizeof *msgs);
  for (size_t i = 0; i < f->n_msgs; i++) {
    /* Heartbeats never travel alone: they are coalesced. */
    cr_assert(msgs[i].msg.type != MR_MSG_HEARTBEAT && msgs[i].msg.type != MR_MSG_HEARTBEAT_RESP,
              "uncoalesced heartbeat");
    const mr_msg *m = &f->msgs[i].msg;
    rk_entry_vec_init(&msgs[i].msg.entries);
    for (size_t k = 0; k < m->entries.len; k++)
      cr_assert_eq(rk_entry_vec_push(&msgs[i].msg.entries, &m->entries.v[k]), RK_OK);
    if (m->snap) {
      mr_snapshot *s = dup_mem(m->snap, sizeof *s);
      s->data = dup_mem(m->snap->data, m->snap->len);
      msgs[i].msg.snap = s;
    }
  }
  c->msgs = msgs;
  c->hbs = dup_mem(f->hbs, f->n_hbs * sizeof *f->hbs);
  c->hb_resps = dup_mem(f->hb_resps, f->n_hb_resps * sizeof *f->hb_resps);
  c->f.msgs = c->msgs;
  c->f.hbs = c->hbs;
  c->f.hb_resps = c->hb_resps;
  if (C->tail)
    C->tail->next = c;
  else
    C->head = c;
  C->tail = c;
}

static void frame_free(hc_frame *c) {
  for (size_t i = 0; i < c->f.n_msgs; i++) mr_msg_free(&c->msgs[i].msg);
  free(c->msgs);
  free(c->hbs);
  free(c->hb_resps);
  free(c);
}

static void io_apply(void *ctx, const mr_host_apply *a, size_t n) {
  hc_node *nd = ctx;
  for (size_t i = 0; i < n; i++) {
    uint64_t g = a[i].group;
    if (a[i].snap) nd->applied[g] = a[i].snap->index;
    for (size_t k = 0; k < a[i].committed->len; k++) {
      const rk_entry *e = &a[i].committed->v[k];
      cr_assert_eq(e->index, nd->applied[g] + 1, "group %llu applies out of order",
                   (unsigned long long)g);
      nd->applied[g] = e->index;
      if (e->index >= C->applied_cap[g]) {
        uint64_t ncap = (e->index + 1) * 2;
        C->applied_hash[g] = realloc(C->applied_hash[g], ncap * sizeof(uint64_t));
        memset(C->applied_hash[g] + C->applied_cap[g], 0,
               (ncap - C->applied_cap[g]) * sizeof(uint64_t));
        C->applied_cap[g] = ncap;
      }
      uint64_t hsh = entry_hash(e) | 1;
      uint64_t *slot = &C->applied_hash[g][e->index];
      if (*slot == 0) *slot = hsh;
      cr_assert_eq(*slot, hsh, "State Machine Safety: group %llu index %llu differs",
                   (unsigned long long)g, (unsigned long long)e->index);
    }
  }
}

static void io_read_ready(void *ctx, uint64_t group, uint64_t read_ctx, uint64_t index) {
  hc_node *nd = ctx;
  (void)read_ctx;
  cr_assert_geq(nd->applied[group], index, "read served before apply");
  nd->read_ready++;
}

/* ---- cluster ------------------------------------------------------------------- */

static void cluster_new(int n, uint64_t groups, int quiesce) {
  cr_assert(n <= HC_MAX_NODES && groups <= HC_MAX_GROUPS);
  C = calloc(1, sizeof *C);
  C->n = n;
  C->groups = groups;
  rk_rand_seed(&C->rng, 1234);
  for (int i = 1; i <= n; i++) {
    hc_node *nd = &C->node[i];
    nd->id = (uint32_t)i;
    for (uint64_t g = 0; g <= HC_MAX_GROUPS; g++) mr_memlog_init(&nd->logs[g]);
    mr_host_config cfg;
    mr_host_config_default(&cfg, nd->id);
    cfg.quiesce = (uint8_t)quiesce;
    mr_host_io io = {.ctx = nd,
                     .storage = io_storage,
                     .persist = io_persist,
                     .send = io_send,
                     .apply = io_apply,
                     .read_ready = io_read_ready};
    cr_assert_eq(mr_host_new(&nd->h, &cfg, &io, &C->rng), RK_OK);
    for (int j = 1; j <= n; j++)
      if (j != i) cr_assert_eq(mr_host_add_node(nd->h, (uint32_t)j), RK_OK);
  }
  int rf = n < 3 ? n : 3;
  for (uint64_t g = 1; g <= groups; g++) {
    mr_boot boot;
    memset(&boot, 0, sizeof boot);
    boot.conf.n = (uint8_t)rf;
    for (int k = 0; k < rf; k++) boot.conf.r[k] = (mr_conf_replica){replica_of(g, k), MR_VOTER_IN};
    for (int k = 0; k < rf; k++) {
      hc_node *nd = &C->node[replica_node(g, k)];
      cr_assert_eq(mr_host_create_group(nd->h, g, replica_of(g, k), &boot), RK_OK);
    }
  }
}

static void cluster_free(void) {
  while (C->head) {
    hc_frame *c = C->head;
    C->head = c->next;
    frame_free(c);
  }
  for (int i = 1; i <= C->n; i++) {
    mr_host_free(C->node[i].h);
    for (uint64_t g = 0; g <= HC_MAX_GROUPS; g++) mr_memlog_free(&C->node[i].logs[g]);
  }
  for (uint64_t g = 0; g <= HC_MAX_GROUPS; g++) free(C->applied_hash[g]);
  free(C);
}

static void run_turn(hc_node *nd) {
  nd->turn++;
  int rc = mr_host_turn(nd->h);
  cr_assert(rc == RK_OK || rc == RK_ESTOPPED);
  mr_host_check_invariants(nd->h);
}

/* Runs turns and deliveries until nothing moves; bounded. */
static void settle(void) {
  for (int rounds = 0; rounds < 100000; rounds++) {
    int moved = 0;
    for (int i = 1; i <= C->n; i++) {
      hc_node *nd = &C->node[i];
      if (nd->crashed) continue;
      if (mr_host_has_work(nd->h)) {
        run_turn(nd);
        moved = 1;
      }
    }
    while (C->head) {
      hc_frame *c = C->head;
      C->head = c->next;
      if (C->head == NULL) C->tail = NULL;
      hc_node *to = &C->node[c->f.to_node];
      if (!to->crashed && !C->node[c->f.from_node].crashed) mr_host_receive(to->h, &c->f);
      frame_free(c);
      moved = 1;
    }
    if (!moved) return;
  }
  cr_assert_fail("cluster did not settle");
}

static void tick_all(int ticks) {
  for (int t = 0; t < ticks; t++) {
    for (int i = 1; i <= C->n; i++)
      if (!C->node[i].crashed) mr_host_tick(C->node[i].h);
    settle();
  }
}

/* The node whose replica leads group g with the highest term, 0 if none. */
static uint32_t leader_node(uint64_t g) {
  uint32_t best = 0;
  uint64_t term = 0;
  for (int i = 1; i <= C->n; i++) {
    if (C->node[i].crashed) continue;
    mr_raft *r = mr_host_group_raft(C->node[i].h, g);
    if (r && mr_raft_role(r) == MR_LEADER && mr_raft_term(r) >= term) {
      best = (uint32_t)i;
      term = mr_raft_term(r);
    }
  }
  return best;
}

/* Elects the replica k = g % rf of every group, spreading leadership. */
static void elect_all(void) {
  int rf = C->n < 3 ? C->n : 3;
  for (uint64_t g = 1; g <= C->groups; g++) {
    hc_node *nd = &C->node[replica_node(g, (int)(g % (uint64_t)rf))];
    cr_assert_eq(mr_host_campaign(nd->h, g), RK_OK);
  }
  settle();
  tick_all(2);
  for (uint64_t g = 1; g <= C->groups; g++)
    cr_assert_neq(leader_node(g), 0, "group %llu", (unsigned long long)g);
}

static mr_host_stats stats(int node) {
  mr_host_stats s;
  mr_host_stats_get(C->node[node].h, &s);
  return s;
}

static void propose(uint64_t g, const char *val) {
  uint32_t ln = leader_node(g);
  cr_assert_neq(ln, 0);
  uint64_t idx = 0;
  cr_assert_eq(mr_host_propose(C->node[ln].h, g, val, (uint32_t)strlen(val), &idx, NULL), RK_OK);
}

static int applied_everywhere(uint64_t g, uint64_t index) {
  for (int k = 0; k < (C->n < 3 ? C->n : 3); k++) {
    hc_node *nd = &C->node[replica_node(g, k)];
    if (!nd->crashed && nd->applied[g] < index) return 0;
  }
  return 1;
}

/* ---- tests ---------------------------------------------------------------------- */

Test(host, elects_and_replicates_many_groups) {
  cluster_new(3, 60, 1);
  elect_all();
  for (uint64_t g = 1; g <= C->groups; g++) propose(g, "v1");
  settle();
  tick_all(2);
  for (uint64_t g = 1; g <= C->groups; g++) {
    uint64_t last = mr_raft_last_index(mr_host_group_raft(C->node[leader_node(g)].h, g));
    cr_assert(applied_everywhere(g, last), "group %llu", (unsigned long long)g);
  }
  cluster_free();
}

Test(host, one_persist_batch_per_turn_for_all_groups) {
  cluster_new(3, 90, 0);
  elect_all();
  hc_node *n1 = &C->node[1];
  uint64_t led = 0;
  for (uint64_t g = 1; g <= C->groups; g++) {
    if (leader_node(g) != 1) continue;
    propose(g, "batched");
    led++;
  }
  cr_assert_gt(led, 10);
  mr_host_stats before = stats(1);
  run_turn(n1);
  mr_host_stats after = stats(1);
  cr_assert_eq(after.persist_batches - before.persist_batches, 1, "one WAL batch for %llu groups",
               (unsigned long long)led);
  cr_assert_eq(after.entries_persisted - before.entries_persisted, led);
  settle();
  cluster_free();
}

Test(host, pipelined_persist_keeps_one_ready_per_group_and_orders_batches) {
  cluster_new(3, 30, 0);
  elect_all();
  hc_node *n1 = &C->node[1];
  n1->defer_persist = 1;
  uint64_t g1 = 0;
  for (uint64_t g = 1; g <= C->groups && !g1; g++)
    if (leader_node(g) == 1) g1 = g;
  cr_assert_neq(g1, 0);
  propose(g1, "a");
  run_turn(n1); /* batch 1 in flight */
  propose(g1, "b");
  run_turn(n1); /* g1 has a Ready out: nothing new for it */
  cr_assert_eq(n1->n_deferred, 1);
  uint64_t applied_before = n1->applied[g1];
  complete_deferred(n1);
  n1->defer_persist = 0;
  settle();
  tick_all(2);
  cr_assert_gt(n1->applied[g1], applied_before);
  cr_assert(applied_everywhere(g1, mr_raft_last_index(mr_host_group_raft(n1->h, g1))));
  cluster_free();
}

Test(host, heartbeats_are_coalesced_one_frame_per_node_per_turn) {
  /* io_send asserts no per-group heartbeat message and one frame per node
   * per turn; here we check heartbeats did flow, coalesced. */
  cluster_new(3, 50, 0);
  elect_all();
  mr_host_stats before = stats(1);
  tick_all(5);
  mr_host_stats after = stats(1);
  cr_assert_gt(after.hbs_sent - before.hbs_sent, 5 * 10, "heartbeat entries travel coalesced");
  /* Awake and idle: each tick is one turn with one frame to each peer. */
  cr_assert_leq(after.frames_sent - before.frames_sent, 5 * 2 * 3);
  cluster_free();
}

/* Frames, messages and heartbeat entries per tick of an idle, quiesced
 * cluster: must not depend on the number of groups. */
static void idle_cost(uint64_t groups, uint64_t *frames, uint64_t *msgs, uint64_t *hbs) {
  cluster_new(3, groups, 1);
  elect_all();
  tick_all(20);
  for (int i = 1; i <= 3; i++) {
    mr_host_stats s = stats(i);
    cr_assert_eq(s.quiesced, s.groups, "node %d: %llu of %llu quiesced", i,
                 (unsigned long long)s.quiesced, (unsigned long long)s.groups);
    cr_assert_eq(s.active, 0);
  }
  mr_host_stats before = stats(1);
  tick_all(50);
  mr_host_stats after = stats(1);
  *frames = after.frames_sent - before.frames_sent;
  *msgs = after.msgs_sent - before.msgs_sent;
  *hbs = after.hbs_sent - before.hbs_sent;
  cluster_free();
}

Test(host, idle_groups_quiesce_and_idle_cost_is_independent_of_group_count) {
  uint64_t f10, m10, h10, f300, m300, h300;
  idle_cost(10, &f10, &m10, &h10);
  idle_cost(300, &f300, &m300, &h300);
  /* One node heartbeat frame per peer per tick, nothing else. */
  cr_assert_eq(f10, 50 * 2);
  cr_assert_eq(f300, 50 * 2);
  cr_assert_eq(m10 + m300 + h10 + h300, 0, "quiesced groups send nothing");
}

Test(host, quiesced_group_wakes_on_proposal_and_quiesces_again) {
  cluster_new(3, 12, 1);
  elect_all();
  tick_all(20);
  uint64_t g = 5;
  uint32_t ln = leader_node(g);
  cr_assert(mr_host_group_quiesced(C->node[ln].h, g));
  propose(g, "wake");
  settle();
  tick_all(2);
  uint64_t last = mr_raft_last_index(mr_host_group_raft(C->node[ln].h, g));
  cr_assert(applied_everywhere(g, last));
  tick_all(20);
  for (int k = 0; k < 3; k++)
    cr_assert(mr_host_group_quiesced(C->node[replica_node(g, k)].h, g), "replica %d", k);
  cluster_free();
}

Test(host, read_index_wakes_and_completes) {
  cluster_new(3, 6, 1);
  elect_all();
  tick_all(20);
  uint64_t g = 2;
  uint32_t ln = leader_node(g);
  cr_assert(mr_host_group_quiesced(C->node[ln].h, g));
  cr_assert_eq(mr_host_read(C->node[ln].h, g, 77), RK_OK);
  settle();
  tick_all(3);
  cr_assert_eq(C->node[ln].read_ready, 1);
  tick_all(20);
  cr_assert(mr_host_group_quiesced(C->node[ln].h, g), "re-quiesces once the read is done");
  cluster_free();
}

Test(host, node_down_wakes_only_the_groups_it_led) {
  cluster_new(5, 200, 1);
  elect_all();
  tick_all(25);
  const uint32_t dead = 2;
  uint64_t led_by_dead = 0, followers_to_wake = 0;
  uint64_t term_before[HC_MAX_GROUPS + 1];
  uint8_t was_led[HC_MAX_GROUPS + 1];
  for (uint64_t g = 1; g <= C->groups; g++) {
    uint32_t ln = leader_node(g);
    term_before[g] = mr_raft_term(mr_host_group_raft(C->node[ln].h, g));
    was_led[g] = ln == dead;
    if (!was_led[g]) continue;
    led_by_dead++;
    for (int k = 0; k < 3; k++)
      if (replica_node(g, k) != dead) followers_to_wake++;
  }
  cr_assert_gt(led_by_dead, 10);
  uint64_t wakes_before = 0, campaigns_before = 0;
  for (int i = 1; i <= 5; i++) {
    cr_assert_eq(stats(i).quiesced, stats(i).groups);
    if (i == (int)dead) continue;
    wakes_before += stats(i).liveness_wakes;
    campaigns_before += stats(i).campaigns;
  }
  C->node[dead].crashed = 1;
  /* Detection takes liveness_ticks (= one election timeout). */
  tick_all(10 + 2);
  uint64_t wakes = 0;
  for (int i = 1; i <= 5; i++) {
    if (i == (int)dead) continue;
    wakes += stats(i).liveness_wakes;
    cr_assert(!mr_host_node_live(C->node[i].h, dead));
  }
  cr_assert_eq(wakes - wakes_before, followers_to_wake, "exactly the followers of its groups");
  /* Within 3 election timeouts every orphaned group has a new leader. */
  int t = 0;
  for (; t < 3 * 2 * 10; t++) {
    int all = 1;
    for (uint64_t g = 1; g <= C->groups && all; g++)
      if (was_led[g] && leader_node(g) == 0) all = 0;
    if (all) break;
    tick_all(1);
  }
  for (uint64_t g = 1; g <= C->groups; g++) {
    uint32_t ln = leader_node(g);
    cr_assert_neq(ln, 0, "group %llu has no leader", (unsigned long long)g);
    cr_assert_neq(ln, dead);
    if (!was_led[g]) {
      /* Led elsewhere: never woke, never campaigned. */
      cr_assert_eq(mr_raft_term(mr_host_group_raft(C->node[ln].h, g)), term_before[g]);
      for (int k = 0; k < 3; k++) {
        uint32_t nd = replica_node(g, k);
        if (nd != dead) cr_assert(mr_host_group_quiesced(C->node[nd].h, g));
      }
    }
  }
  uint64_t campaigns = 0;
  for (int i = 1; i <= 5; i++)
    if (i != (int)dead) campaigns += stats(i).campaigns;
  cr_assert_leq(campaigns - campaigns_before, followers_to_wake * 3,
                "only orphaned groups campaign");
  cr_assert_geq(campaigns - campaigns_before, led_by_dead);
  cr_log_info("node down: %llu groups led, %llu woken, %llu campaigns, %d ticks to re-elect",
              (unsigned long long)led_by_dead, (unsigned long long)(wakes - wakes_before),
              (unsigned long long)(campaigns - campaigns_before), t);
  cluster_free();
}

Test(host, persist_failure_stops_the_host) {
  cluster_new(3, 9, 0);
  elect_all();
  uint64_t g = 0;
  for (uint64_t i = 1; i <= C->groups && !g; i++)
    if (leader_node(i) == 1) g = i;
  hc_node *n1 = &C->node[1];
  uint64_t applied = n1->applied[g];
  n1->persist_fail = 1;
  propose(g, "lost");
  n1->turn++;
  cr_assert_eq(mr_host_turn(n1->h), RK_ESTOPPED);
  cr_assert_eq(mr_host_turn(n1->h), RK_ESTOPPED);
  cr_assert(!mr_host_has_work(n1->h));
  cr_assert_eq(n1->applied[g], applied, "nothing applied after a failed persist");
  n1->crashed = 1; /* a stopped node is gone as far as the cluster knows */
  settle();
  cluster_free();
}

Test(host, messages_for_unknown_groups_are_counted_and_dropped) {
  cluster_new(3, 3, 1);
  mr_host_hb hb = {.group = 999, .from = replica_of(1, 1), .to = replica_of(1, 0), .term = 5};
  mr_host_gmsg gm = {
      .group = 998,
      .msg = {.type = MR_MSG_APP, .from = replica_of(1, 1), .to = replica_of(1, 0), .term = 5}};
  mr_host_frame f = {.from_node = 2,
                     .to_node = 1,
                     .msgs = &gm,
                     .n_msgs = 1,
                     .hbs = &hb,
                     .n_hbs = 1,
                     .hb_resps = &hb,
                     .n_hb_resps = 1};
  mr_host_receive(C->node[1].h, &f);
  cr_assert_eq(stats(1).unknown_group, 3);
  f.to_node = 3; /* misrouted */
  mr_host_receive(C->node[1].h, &f);
  cr_assert_eq(stats(1).unknown_group, 4);
  settle();
  cluster_free();
}

Test(host, group_lifecycle_and_index) {
  cluster_new(3, 1, 1);
  mr_host *h = C->node[1].h;
  mr_boot boot;
  memset(&boot, 0, sizeof boot);
  boot.conf.n = 1;
  boot.conf.r[0] = (mr_conf_replica){mr_host_replica_id(1, 7), MR_VOTER_IN};
  /* Enough groups to force the index to grow and probe runs to wrap. */
  for (uint64_t g = 100; g < HC_MAX_GROUPS; g++) {
    cr_assert_eq(mr_host_create_group(h, g, mr_host_replica_id(1, 7), &boot), RK_OK);
  }
  cr_assert_eq(mr_host_create_group(h, 100, mr_host_replica_id(1, 7), &boot), RK_EEXIST);
  cr_assert_eq(mr_host_create_group(h, 50, mr_host_replica_id(2, 1), &boot), RK_EINVAL);
  for (uint64_t g = 100; g < HC_MAX_GROUPS; g += 2)
    cr_assert_eq(mr_host_destroy_group(h, g), RK_OK);
  mr_host_check_invariants(h);
  for (uint64_t g = 101; g < HC_MAX_GROUPS; g += 2) cr_assert_not_null(mr_host_group_raft(h, g));
  for (uint64_t g = 100; g < HC_MAX_GROUPS; g += 2) cr_assert_null(mr_host_group_raft(h, g));
  cr_assert_eq(mr_host_destroy_group(h, 100), RK_EUNKNOWNRANGE);
  /* A single-replica group elects itself and commits alone. */
  mr_host_campaign(h, 101);
  settle();
  cr_assert_eq(mr_raft_role(mr_host_group_raft(h, 101)), MR_LEADER);
  cluster_free();
}

Test(host, destroying_a_group_with_a_ready_in_flight_is_safe) {
  cluster_new(3, 6, 0);
  elect_all();
  hc_node *n1 = &C->node[1];
  uint64_t g = 0;
  for (uint64_t i = 1; i <= C->groups && !g; i++)
    if (leader_node(i) == 1) g = i;
  n1->defer_persist = 1;
  propose(g, "doomed");
  run_turn(n1);
  cr_assert_eq(n1->n_deferred, 1);
  cr_assert_eq(mr_host_destroy_group(n1->h, g), RK_OK);
  complete_deferred(n1);
  n1->defer_persist = 0;
  run_turn(n1);
  mr_host_check_invariants(n1->h);
  settle();
  cluster_free();
}

Test(host, idle_group_memory_budget) {
  cluster_new(3, 30, 1);
  elect_all();
  tick_all(20);
  size_t bytes = mr_host_bytes_per_idle_group(C->node[1].h, 1);
  cr_log_info("bytes per idle 3-replica group: %zu", bytes);
  cr_assert_gt(bytes, 0);
  cr_assert_lt(bytes, 1024, "%zu bytes per idle group", bytes);
  cluster_free();
}
