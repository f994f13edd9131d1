/* sim_world.c — the simulator's event loop, fault injection and phases.
 *
 * One run: sim_world_init -> sim_world_start -> sim_world_step until done.
 * Each step pops the next event in (time, source, seq) order (sim_heap.h),
 * advances the simulated clock to its time, writes one trace line, performs
 * it, lets the touched node run its host loop (sim_node_flush), and then
 * checks every invariant on that node's touched groups (sim_node_check,
 * sim_check.c). A violation stops the run at that event.
 *
 * Randomness: one rk_rand seeded with the seed; the network, the disk, the
 * fault injector, the workload and each node incarnation get streams forked
 * from it in a fixed order, so adding a draw in one subsystem does not
 * reshuffle the others.
 */
#include "sim/sim_int.h"

#include "common/rk_assert.h"
#include "common/rk_err.h"
#include "common/rk_log.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

const char *sim_ev_name(uint32_t kind) {
  switch (kind) {
  case SIM_EV_TICK: return "tick";
  case SIM_EV_MSG: return "deliver";
  case SIM_EV_SYNC: return "fsync-done";
  case SIM_EV_CRASH: return "crash";
  case SIM_EV_RESTART: return "restart";
  case SIM_EV_FAULT: return "fault";
  case SIM_EV_HEAL: return "heal";
  case SIM_EV_STALL_END: return "stall-end";
  case SIM_EV_CLIENT_NEXT: return "client-next";
  case SIM_EV_REQ: return "request";
  case SIM_EV_REPLY: return "reply";
  case SIM_EV_CLIENT_TIMEOUT: return "client-timeout";
  case SIM_EV_CLIENT_RETRY: return "client-retry";
  case SIM_EV_ISOLATE: return "isolate";
  case SIM_EV_INSTALL: return "install-done";
  default: return "?";
  }
}

/* ---- faults list ------------------------------------------------------------- */

static const char *const fault_names[] = {
#define SIM_F_NAME_(name, str, doc) str,
    SIM_FAULTS(SIM_F_NAME_)
#undef SIM_F_NAME_
};

int sim_faults_parse(const char *s, uint32_t *out, const char **bad) {
  *out = 0;
  if (strcmp(s, "all") == 0) {
    *out = SIM_F_ALL;
    return 0;
  }
  if (strcmp(s, "none") == 0) return 0;
  static char buf[256];
  snprintf(buf, sizeof buf, "%s", s);
  char *save = NULL;
  for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    int found = 0;
    for (int i = 0; i < SIM_FB_COUNT_; i++) {
      if (strcmp(tok, fault_names[i]) == 0) {
        *out |= 1u << i;
        found = 1;
      }
    }
    if (!found) {
      if (bad) *bad = tok;
      return -1;
    }
  }
  return 0;
}

void sim_faults_format(uint32_t f, char *buf, size_t n) {
  if (f == 0) {
    snprintf(buf, n, "none");
    return;
  }
  size_t k = 0;
  buf[0] = 0;
  for (int i = 0; i < SIM_FB_COUNT_; i++) {
    if (!(f & (1u << i))) continue;
    int w = snprintf(buf + k, n - k, "%s%s", k ? "," : "", fault_names[i]);
    if (w < 0 || (size_t)w >= n - k) return;
    k += (size_t)w;
  }
}

void sim_opts_default(sim_opts *o) {
  memset(o, 0, sizeof *o);
  o->seed = 1;
  o->nodes = 3;
  o->groups = 2;
  o->zones = 3;
  o->steps = 50000;
  o->faults = SIM_F_ALL;
  o->clients = 4;
  o->keys_per_group = 4;
  o->tick_us = 10000;
  o->election_ticks = 10;
  o->heartbeat_ticks = 1;
  o->prevote = 1;
  o->check_quorum = 1;
  o->op_timeout_us = 1000000;
  o->liveness_us = 20000000;
  o->sync_min_us = 200;
  o->sync_max_us = 8000;
  o->max_clock_offset_us = 250000;
  o->check_lin = 1;
  o->p_isolate_leader = 0.3;
  o->idle_us = 10000000;
}

/* ---- the world ------------------------------------------------------------------ */

void sim_schedule(sim_world *w, uint64_t at, uint32_t source, uint32_t kind, uint32_t node,
                  uint64_t a, uint64_t b, void *ptr) {
  RK_ASSERT(at >= w->now);
  sim_event e = {
      .time = at, .source = source, .kind = kind, .node = node, .a = a, .b = b, .ptr = ptr};
  sim_heap_push(&w->heap, &e);
}

uint64_t sim_local_time(const sim_world *w, uint32_t node) {
  const sim_node *nd = &w->nodes[node];
  int64_t t = (int64_t)w->now + (int64_t)w->now / 1000000 * nd->drift_ppm + nd->clock_offset_us;
  return t < 0 ? 0 : (uint64_t)t;
}

/* The next tick of a node: tick_us of its local clock, i.e. scaled by its
 * drift in global time. */
static void schedule_tick(sim_world *w, uint32_t node) {
  sim_node *nd = &w->nodes[node];
  uint64_t period = w->o.tick_us * 1000000 / (uint64_t)(1000000 + nd->drift_ppm);
  sim_schedule(w, w->now + period, SIM_SRC_NODE(node), SIM_EV_TICK, node, nd->incarnation, 0, NULL);
}

static uint64_t sim_log_clock(void *ctx) { return ((const sim_world *)ctx)->now * 1000u; }

void sim_world_init(sim_world *w, const sim_opts *o, sim_result *r) {
  memset(w, 0, sizeof *w);
  w->o = *o;
  if (w->o.report == NULL) w->o.report = stderr;
  /* What the host logs (a failed fsync, a leadership change) is timed by
   * the simulated clock and goes into the trace file, between the lines of
   * the event that caused it; without a trace file, nowhere. */
  w->log_level_was = (int)rk_log_get_level();
  rk_log_set_clock(sim_log_clock, w);
  if (o->trace)
    rk_log_set_sink(o->trace);
  else
    rk_log_set_level(RK_LOG_OFF);
  RK_ASSERT(o->nodes >= 1 && o->nodes <= SIM_MAX_NODES && o->groups >= 1);
  w->res = r;
  memset(r, 0, sizeof *r);
  rk_rand_seed(&w->rng, o->seed);
  rk_rand_fork(&w->rng, &w->net_rng);
  rk_rand_fork(&w->rng, &w->disk_rng);
  rk_rand_fork(&w->rng, &w->fault_rng);
  rk_rand_fork(&w->rng, &w->work_rng);
  sim_heap_init(&w->heap);
  sim_trace_init(&w->trace, o->trace);
  sim_hist_init(&w->hist);
  w->nnodes = o->nodes;
  sim_net_init(&w->net, o->nodes, o->zones < o->nodes ? o->zones : o->nodes);
  /* Per-seed shape of the protocol traffic: tiny AppendEntries (one entry
   * each) and short windows expose ordering bugs that big batches hide. */
  static const uint64_t msg_sizes[] = {1, 256, 4096};
  static const uint32_t windows[] = {1, 4, 64};
  static const uint64_t snaps[] = {16, 64, 1000000};
  w->max_msg_bytes = o->max_msg_bytes ? o->max_msg_bytes : msg_sizes[rk_rand_below(&w->rng, 3)];
  w->max_inflight = o->max_inflight ? o->max_inflight : windows[rk_rand_below(&w->rng, 3)];
  w->snap_every = snaps[rk_rand_below(&w->rng, 3)];
  /* Half the seeds compact like a node does (docs/node.md): only up to the
   * host's compact hint, where every replica holds the log; then no replica
   * may ever need a snapshot, which the checker asserts. */
  w->compact_by_hint = (int)rk_rand_below(&w->rng, 2);
  /* Half the seeds cap what a follower holds unpersisted as tightly as the
   * core allows (a node caps it at a WAL batch): drops and re-probes. */
  int cap = o->unstable_cap;
  if (cap == SIM_PER_SEED) cap = rk_rand_below(&w->rng, 2) ? SIM_ALWAYS : SIM_NEVER;
  if (cap == SIM_ALWAYS) {
    uint64_t one = SIM_CMD_MAX + MR_ENTRY_OVERHEAD;
    w->max_unstable_bytes = w->max_msg_bytes > one ? w->max_msg_bytes : one;
  }
  /* A quarter of the seeds make every third group one voter and learners:
   * a lone voter wins in the Ready that raises its term, with its first
   * AppendEntries in the same Ready. */
  int lone = o->lone_voters;
  if (lone == SIM_PER_SEED) lone = rk_rand_below(&w->rng, 4) == 0 ? SIM_ALWAYS : SIM_NEVER;
  sim_trace_add(&w->trace,
                "t=0 traffic max_msg_bytes=%llu max_inflight=%u snap_every=%llu%s "
                "max_unstable_bytes=%llu%s",
                (unsigned long long)w->max_msg_bytes, w->max_inflight,
                (unsigned long long)w->snap_every, w->compact_by_hint ? " compact_by_hint" : "",
                (unsigned long long)w->max_unstable_bytes,
                lone == SIM_ALWAYS ? " lone_voters" : "");
  for (uint32_t i = 0; i < w->nnodes; i++) {
    sim_node *nd = &w->nodes[i];
    nd->id = i;
    sim_disk_init(&nd->disk);
    nd->drift_ppm = (int64_t)rk_rand_below(&w->fault_rng, 401) - 200;
  }
  w->ngroups = o->groups;
  w->groups = calloc(w->ngroups, sizeof *w->groups);
  RK_ASSERT(w->groups != NULL);
  uint32_t nrep = o->replicas ? o->replicas : 3;
  if (nrep > o->nodes) nrep = o->nodes;
  RK_ASSERT(nrep <= 8);
  for (uint32_t g = 0; g < w->ngroups; g++) {
    sim_group *gr = &w->groups[g];
    gr->id = g;
    sim_check_init_group(gr);
    gr->nrep = nrep;
    mr_conf conf;
    memset(&conf, 0, sizeof conf);
    /* Consecutive nodes sit in different zones (node i in zone i % zones). */
    for (uint32_t k = 0; k < nrep; k++) {
      gr->node[k] = (g + k) % o->nodes;
      conf.r[conf.n].id = SIM_RID(gr->node[k]);
      conf.r[conf.n].flags = k > 0 && lone == SIM_ALWAYS && g % 3 == 0 ? MR_LEARNER : MR_VOTER_IN;
      conf.n++;
    }
    for (uint32_t k = 0; k < nrep; k++) sim_node_host(w, gr->node[k], g, &conf);
  }
  w->nclients = o->idle ? 0 : o->clients;
  w->clients = calloc(w->nclients ? w->nclients : 1, sizeof *w->clients);
  RK_ASSERT(w->clients != NULL);
  for (uint32_t c = 0; c < w->nclients; c++) {
    w->clients[c].id = c;
    w->clients[c].hint = calloc(w->ngroups, sizeof *w->clients[c].hint);
    RK_ASSERT(w->clients[c].hint != NULL);
  }
  w->read_pct = 30;
  w->keys = o->keys_per_group * w->ngroups;
  if (w->keys == 0) w->keys = 1;
}

static void free_event_payload(sim_event *e) {
  if (e->ptr == NULL) return;
  if (e->kind == SIM_EV_MSG)
    sim_frame_free(e->ptr);
  else
    free(e->ptr);
  e->ptr = NULL;
}

void sim_world_free(sim_world *w) {
  rk_log_set_clock(NULL, NULL);
  rk_log_set_sink(NULL);
  rk_log_set_node(0);
  rk_log_set_level((rk_log_level)w->log_level_was);
  sim_event e;
  while (sim_heap_pop(&w->heap, &e)) free_event_payload(&e);
  sim_heap_free(&w->heap);
  for (uint32_t i = 0; i < w->nnodes; i++) {
    sim_node *nd = &w->nodes[i];
    if (nd->up) sim_node_down(w, i);
    sim_disk_free(&nd->disk);
    free(nd->hosted);
    free(nd->bootconf);
    sim_check_free_node(nd);
    free(nd->rep_index);
    free(nd->dirty.v);
    free(nd->syncing_ids.v);
    free(nd->open_ids.v);
    free(nd->installs); /* sim_node_down freed what they held */
  }
  free(w->awake);
  free(w->campaigned);
  free(w->led_down);
  free(w->releader);
  for (uint32_t g = 0; g < w->ngroups; g++) sim_check_free_group(&w->groups[g]);
  free(w->groups);
  for (uint32_t c = 0; c < w->nclients; c++) free(w->clients[c].hint);
  free(w->clients);
  sim_hist_free(&w->hist);
}

void sim_violation(sim_world *w, const char *invariant, const char *fmt, ...) {
  if (w->stopped) return;
  w->stopped = 1;
  sim_result *r = w->res;
  r->violation = 1;
  r->violation_event = w->events;
  snprintf(r->invariant, sizeof r->invariant, "%s", invariant);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->detail, sizeof r->detail, fmt, ap);
  va_end(ap);
  FILE *out = w->o.report;
  fprintf(out, "sim: VIOLATION seed=%llu event=%llu time=%llu invariant=%s\n",
          (unsigned long long)w->o.seed, (unsigned long long)w->events, (unsigned long long)w->now,
          invariant);
  fprintf(out, "sim:   %s\n", r->detail);
  fprintf(out, "sim: last trace events:\n");
  sim_trace_dump(&w->trace, out, 20);
  fflush(out);
}

void sim_crash(sim_world *w, uint32_t node) {
  sim_node *nd = &w->nodes[node];
  if (!nd->up) return;
  sim_node_down(w, node);
  sim_disk_crash(&nd->disk, &w->disk_rng, (w->o.faults & SIM_F(TORN)) != 0);
  sim_check_crashed(w, node);
  nd->stall_until = 0;
  if (w->res) w->res->crashes++;
}

void sim_restart(sim_world *w, uint32_t node) {
  sim_node *nd = &w->nodes[node];
  if (nd->up) return;
  sim_node_boot(w, node);
  /* Desynchronise the restarted node's ticks from everyone else's. */
  uint64_t first = rk_rand_below(&w->fault_rng, w->o.tick_us) + 1;
  sim_schedule(w, w->now + first, SIM_SRC_NODE(node), SIM_EV_TICK, node, nd->incarnation, 0, NULL);
}

void sim_world_start(sim_world *w) {
  sim_opts *o = &w->o;
  if (o->faults & SIM_F(LOSS)) w->net.p_loss = rk_rand_double(&w->fault_rng) * 0.08;
  if (o->faults & SIM_F(DUP)) w->net.p_dup = rk_rand_double(&w->fault_rng) * 0.05;
  if (o->faults & SIM_F(REORDER)) w->net.p_reorder = rk_rand_double(&w->fault_rng) * 0.10;
  for (uint32_t i = 0; i < w->nnodes; i++) {
    if (o->faults & SIM_F(CLOCK))
      w->nodes[i].clock_offset_us =
          (int64_t)rk_rand_below(&w->fault_rng, o->max_clock_offset_us + 1) -
          (int64_t)o->max_clock_offset_us / 2;
    sim_restart(w, i);
    sim_node_flush(w, i);
    sim_node_check(w, i);
  }
  if (o->idle) return; /* no load, no faults: see idle_progress */
  if (!w->scripted) {
    w->clients_on = 1;
    sim_clients_start(w);
    if (o->faults & ~(SIM_F(LOSS) | SIM_F(DUP) | SIM_F(REORDER) | SIM_F(TORN)))
      sim_schedule(w, w->now + 300000, SIM_SRC_WORLD, SIM_EV_FAULT, 0, 0, 0, NULL);
  }
}

/* ---- fault injection (safety phase) ------------------------------------------ */

static uint32_t pick_node(sim_world *w) {
  return (uint32_t)rk_rand_below(&w->fault_rng, w->nnodes);
}

static void schedule_heal(sim_world *w);

int sim_group_leader(sim_world *w, uint32_t g) {
  int lead = -1;
  uint64_t term = 0;
  for (uint32_t k = 0; k < w->nnodes; k++) {
    sim_replica *r = sim_node_replica(w, k, g);
    if (r && sim_rep_role(r) == SIM_ROLE_LEADER && (lead < 0 || sim_rep_term(r) > term)) {
      lead = (int)k;
      term = sim_rep_term(r);
    }
  }
  return lead;
}

/* Fault class conf: group g's leader is asked to demote one of its voters
 * to a learner, promote a learner, or both at once (joint consensus, left
 * automatically), over the replicas the group already has. A leader with a
 * change in flight refuses; so be it. */
static void change_membership(sim_world *w, uint32_t g) {
  int lead = sim_group_leader(w, g);
  if (lead < 0) return;
  mr_conf conf;
  mr_raft_conf(sim_node_replica(w, (uint32_t)lead, g)->raft, &conf);
  uint64_t voters[MR_MAX_REPLICAS], learners[MR_MAX_REPLICAS];
  uint32_t nv = 0, nl = 0;
  for (uint8_t i = 0; i < conf.n; i++) {
    if (conf.r[i].flags & (MR_VOTER_OUT | MR_LEARNER_NEXT)) return; /* joint: leaving */
    if (conf.r[i].flags & MR_VOTER_IN) voters[nv++] = conf.r[i].id;
    if (conf.r[i].flags & MR_LEARNER) learners[nl++] = conf.r[i].id;
  }
  rk_rand *r = &w->fault_rng;
  /* 0 demote, 1 promote, 2 both, 3 remove; what the configuration allows.
   * A group loses at most one of its three replicas (a removed replica is
   * never added back: its id would be reused), any one, its leader too. */
  uint32_t kinds[4], nk = 0;
  if (nv >= 2) kinds[nk++] = 0;
  if (nl >= 1) kinds[nk++] = 1;
  if (nv >= 1 && nl >= 1) kinds[nk++] = 2;
  if (conf.n >= 3 && conf.n == w->groups[g].nrep) kinds[nk++] = 3;
  if (nk == 0) return;
  uint32_t kind = kinds[rk_rand_below(r, nk)];
  mr_conf_change cc;
  memset(&cc, 0, sizeof cc);
  cc.transition = MR_CC_AUTO;
  if (kind == 3) {
    /* any member but the last voter */
    uint64_t pick[MR_MAX_REPLICAS];
    uint32_t np = 0;
    for (uint8_t i = 0; i < conf.n; i++)
      if (nv >= 2 || !(conf.r[i].flags & MR_VOTER_IN)) pick[np++] = conf.r[i].id;
    if (np == 0) return;
    cc.changes[cc.n++] = (mr_cc_single){MR_CC_REMOVE, pick[rk_rand_below(r, np)]};
  } else {
    if (kind != 1)
      cc.changes[cc.n++] = (mr_cc_single){MR_CC_ADD_LEARNER, voters[rk_rand_below(r, nv)]};
    if (kind != 0)
      cc.changes[cc.n++] = (mr_cc_single){MR_CC_ADD_VOTER, learners[rk_rand_below(r, nl)]};
  }
  uint64_t index = 0;
  int rc = sim_node_conf_change(w, (uint32_t)lead, g, &cc, &index);
  static const char *const what[] = {"demote", "promote", "demote+promote", "remove"};
  char who[32];
  if (cc.n > 1)
    snprintf(who, sizeof who, "n%u+n%u", sim_rid_node(cc.changes[0].id),
             sim_rid_node(cc.changes[1].id));
  else
    snprintf(who, sizeof who, "n%u", sim_rid_node(cc.changes[0].id));
  sim_trace_add(&w->trace, "t=%llu fault conf g%u leader n%d %s %s: %s at %llu",
                (unsigned long long)w->now, g, lead, what[kind], who,
                rc == RK_OK ? "proposed" : rk_strerror(rc), (unsigned long long)index);
  if (w->res && rc == RK_OK) w->res->conf_changes++;
  sim_node_flush(w, (uint32_t)lead);
  sim_node_check(w, (uint32_t)lead);
}

static void schedule_restart(sim_world *w, uint32_t node) {
  sim_schedule(w, w->now + rk_rand_range(&w->fault_rng, 50000, 1500000), SIM_SRC_WORLD,
               SIM_EV_RESTART, node, 0, 0, NULL);
}

/* The node's WAL failed an fsync and the node exited (node_stopping): what
 * the failed batch wrote may or may not be on the disk, as after any crash,
 * and nothing of it was acknowledged. A later restart recovers. */
void sim_io_failure_stop(sim_world *w, uint32_t node) {
  sim_trace_add(&w->trace, "t=%llu n%u stops: an fsync failed", (unsigned long long)w->now, node);
  if (w->res) w->res->io_errors++;
  sim_crash(w, node);
  if (w->phase == SIM_PHASE_SAFETY) schedule_restart(w, node);
}

static void inject_fault(sim_world *w) {
  rk_rand *r = &w->fault_rng;
  uint32_t f = w->o.faults;
  /* The enabled actions, in a fixed order; pick one uniformly. */
  uint32_t acts[8], n = 0;
  if (f & SIM_F(PARTITION)) acts[n++] = SIM_FB_PARTITION;
  if (f & SIM_F(ONEWAY)) acts[n++] = SIM_FB_ONEWAY;
  if (f & SIM_F(CRASH)) acts[n++] = SIM_FB_CRASH;
  if (f & SIM_F(STALL)) acts[n++] = SIM_FB_STALL;
  if (f & SIM_F(CLOCK)) acts[n++] = SIM_FB_CLOCK;
  if (f & SIM_F(EIO)) acts[n++] = SIM_FB_EIO;
  if (f & SIM_F(CONF)) acts[n++] = SIM_FB_CONF;
  if (n == 0) return;
  uint32_t act = acts[rk_rand_below(r, n)];
  uint32_t node = pick_node(w);
  switch (act) {
  case SIM_FB_PARTITION: {
    uint32_t mask = 0;
    while (mask == 0 || mask == (1u << w->nnodes) - 1)
      mask = (uint32_t)rk_rand_below(r, 1u << w->nnodes);
    sim_net_partition(&w->net, mask);
    sim_trace_add(&w->trace, "t=%llu fault partition side=0x%x", (unsigned long long)w->now, mask);
    if (w->res) w->res->partitions++;
    break;
  }
  case SIM_FB_ONEWAY: {
    uint32_t to = pick_node(w);
    if (to == node) to = (node + 1) % w->nnodes;
    sim_net_block_oneway(&w->net, node, to);
    sim_trace_add(&w->trace, "t=%llu fault oneway n%u-/->n%u", (unsigned long long)w->now, node,
                  to);
    if (w->res) w->res->partitions++;
    break;
  }
  case SIM_FB_CRASH:
    if (!w->nodes[node].up) break;
    sim_schedule(w, w->now, SIM_SRC_WORLD, SIM_EV_CRASH, node, 0, 0, NULL);
    schedule_restart(w, node);
    break;
  case SIM_FB_CONF: change_membership(w, (uint32_t)rk_rand_below(r, w->ngroups)); break;
  case SIM_FB_EIO:
    if (!w->nodes[node].up || w->nodes[node].eio_next) break;
    w->nodes[node].eio_next = 1;
    sim_trace_add(&w->trace, "t=%llu fault n%u next fsync fails", (unsigned long long)w->now, node);
    break;
  case SIM_FB_STALL: {
    uint64_t until = w->now + rk_rand_range(r, 100000, 2000000);
    if (until > w->nodes[node].stall_until) w->nodes[node].stall_until = until;
    sim_trace_add(&w->trace, "t=%llu fault n%u disk stalls until %llu", (unsigned long long)w->now,
                  node, (unsigned long long)until);
    if (w->res) w->res->stalls++;
    sim_schedule(w, until, SIM_SRC_WORLD, SIM_EV_STALL_END, node, 0, 0, NULL);
    break;
  }
  case SIM_FB_CLOCK: {
    sim_node *nd = &w->nodes[node];
    uint64_t bound = w->o.max_clock_offset_us;
    if (w->o.break_clock_bound) bound *= 4;
    nd->clock_offset_us = (int64_t)rk_rand_below(r, bound + 1) - (int64_t)bound / 2;
    nd->drift_ppm = (int64_t)rk_rand_below(r, 401) - 200;
    sim_trace_add(&w->trace, "t=%llu fault n%u clock offset=%lldus drift=%lldppm",
                  (unsigned long long)w->now, node, (long long)nd->clock_offset_us,
                  (long long)nd->drift_ppm);
    break;
  }
  default: RK_UNREACHABLE();
  }
  if (act == SIM_FB_PARTITION || act == SIM_FB_ONEWAY) schedule_heal(w);
  sim_schedule(w, w->now + rk_rand_range(r, 50000, 500000), SIM_SRC_WORLD, SIM_EV_FAULT, 0, 0, 0,
               NULL);
}

static void schedule_heal(sim_world *w) {
  if (w->heal_at != 0) return;
  w->heal_at = w->now + rk_rand_range(&w->fault_rng, 50000, 1000000);
  sim_schedule(w, w->heal_at, SIM_SRC_WORLD, SIM_EV_HEAL, 0, 0, 0, NULL);
}

/* Leader-targeted faults (Jepsen's "isolate the leader"): a new leader is
 * cut off, with some probability, within its first few round trips, which is
 * when an old-term entry may be on a majority while the leader's own no-op is
 * not (Raft Figure 8) and when a leader's unreplicated tail is largest. */
void sim_on_new_leader(sim_world *w, uint32_t node) {
  if (w->scripted || w->phase != SIM_PHASE_SAFETY || !(w->o.faults & SIM_F(PARTITION))) return;
  /* One cut at a time: with many groups per node, elections are frequent
   * and every cut isolates a whole node. */
  if (w->isolating) return;
  if (!rk_rand_chance(&w->fault_rng, w->o.p_isolate_leader)) return;
  w->isolating = 1;
  uint64_t at = w->now + rk_rand_below(&w->fault_rng, 20000);
  sim_schedule(w, at, SIM_SRC_WORLD, SIM_EV_ISOLATE, node, 0, 0, NULL);
}

void sim_stop_faults(sim_world *w) {
  sim_net_heal(&w->net);
  sim_net_calm(&w->net);
  w->heal_at = 0;
  for (uint32_t i = 0; i < w->nnodes; i++) {
    w->nodes[i].stall_until = 0;
    w->nodes[i].eio_next = 0;
    if (!w->nodes[i].up) {
      sim_restart(w, i);
      sim_node_flush(w, i);
      sim_node_check(w, i);
    }
  }
}

/* ---- phases --------------------------------------------------------------------- */

static void start_liveness(sim_world *w) {
  w->phase = SIM_PHASE_LIVENESS;
  w->liveness_start = w->now;
  sim_trace_add(&w->trace, "t=%llu phase liveness: faults stop", (unsigned long long)w->now);
  sim_stop_faults(w);
  /* Idle clients start their probe now; busy ones after their operation. */
  for (uint32_t c = 0; c < w->nclients; c++)
    if (!w->clients[c].busy)
      sim_schedule(w, w->now, SIM_SRC_CLIENT(c), SIM_EV_CLIENT_NEXT, c, 0, 0, NULL);
}

/* Every group has a leader whose log is committed and applied everywhere.
 * If not, and why is given, *why says which group and what is missing. */
static int groups_settled_why(sim_world *w, char *why, size_t n) {
  for (uint32_t g = 0; g < w->ngroups; g++) {
    int l = sim_group_leader(w, g);
    if (l < 0) {
      if (why) snprintf(why, n, "group %u has no leader", g);
      return 0;
    }
    uint32_t ln = (uint32_t)l;
    sim_replica *lead = sim_node_replica(w, ln, g);
    uint64_t last = mr_raft_last_index(lead->raft);
    if (sim_rep_commit(lead) != last) {
      if (why)
        snprintf(why, n, "group %u: leader n%u commit %llu < last %llu", g, ln,
                 (unsigned long long)sim_rep_commit(lead), (unsigned long long)last);
      return 0;
    }
    mr_conf conf;
    mr_raft_conf(lead->raft, &conf);
    for (uint32_t k = 0; k < w->nnodes; k++) {
      sim_replica *r = sim_node_replica(w, k, g);
      if (r == NULL || mr_conf_flags(&conf, SIM_RID(k)) == 0) continue; /* removed */
      if (sim_rep_term(r) != sim_rep_term(lead) || r->applied != last) {
        if (why)
          snprintf(why, n,
                   "group %u: n%u at term %llu applied %llu (%s), leader n%u term %llu last %llu",
                   g, k, (unsigned long long)sim_rep_term(r), (unsigned long long)r->applied,
                   sim_rep_quiesced(w, k, r) ? "quiesced" : "awake", ln,
                   (unsigned long long)sim_rep_term(lead), (unsigned long long)last);
        return 0;
      }
    }
  }
  return 1;
}

static int groups_settled(sim_world *w) { return groups_settled_why(w, NULL, 0); }

static void liveness_progress(sim_world *w) {
  if (w->phase != SIM_PHASE_LIVENESS || w->stopped) return;
  if (w->now > w->liveness_start + w->o.liveness_us) {
    uint32_t unprobed = 0;
    for (uint32_t c = 0; c < w->nclients; c++) unprobed += !w->clients[c].probe_done;
    char why[200] = "settled";
    groups_settled_why(w, why, sizeof why);
    sim_violation(w, "liveness",
                  "%llu us after faults stopped: %u client(s) without an acknowledged write; "
                  "groups: %s",
                  (unsigned long long)w->o.liveness_us, unprobed, why);
    return;
  }
  if (!sim_clients_all_probed(w)) return;
  if (!groups_settled(w)) return;
  sim_trace_add(&w->trace, "t=%llu phase done: %llu us to recover", (unsigned long long)w->now,
                (unsigned long long)(w->now - w->liveness_start));
  w->phase = SIM_PHASE_DONE;
  sim_check_final(w);
}

/* ---- idle runs and stats ---------------------------------------------------------- */

/* Every group settled (groups_settled) and, with quiescence on, every up
 * replica of it quiesced. */
static int groups_quiet(sim_world *w) {
  if (!groups_settled(w)) return 0;
  if (w->o.no_quiesce) return 1;
  for (uint32_t n = 0; n < w->nnodes; n++) {
    if (!w->nodes[n].up) continue;
    sim_node *nd = &w->nodes[n];
    for (size_t i = 0; i < nd->nreps; i++)
      if (!sim_rep_quiesced(w, n, &nd->reps[i])) return 0;
  }
  return 1;
}

static uint64_t disk_syncs(const sim_world *w) {
  uint64_t s = 0;
  for (uint32_t n = 0; n < w->nnodes; n++) s += w->nodes[n].disk.stats.syncs;
  return s;
}

static uint64_t disk_entries(const sim_world *w) {
  uint64_t s = 0;
  for (uint32_t n = 0; n < w->nnodes; n++) s += w->nodes[n].disk.stats.entries_written;
  return s;
}

/* Opens the measured window: counters restart from here (res->st holds the
 * base until stats_finish), and with idle_crash the node crashes now. */
static void open_window(sim_world *w) {
  sim_stats *st = &w->res->st;
  st->settled = 1;
  w->window_start = w->now;
  st->frames = w->frames_sent;
  st->hb_entries = w->hb_entries;
  st->wal_syncs = disk_syncs(w);
  st->entries = disk_entries(w);
  w->awake = calloc(w->ngroups, 1);
  w->campaigned = calloc(w->ngroups, 1);
  RK_ASSERT(w->awake && w->campaigned);
  sim_trace_add(&w->trace, "t=%llu phase idle window: every group led and quiet",
                (unsigned long long)w->now);
  if (w->o.idle_crash == 0) return;
  uint32_t dead = w->o.idle_crash - 1;
  RK_ASSERT(dead < w->nnodes);
  w->led_down = calloc(w->ngroups, 1);
  w->releader = calloc(w->ngroups, sizeof *w->releader);
  RK_ASSERT(w->led_down && w->releader);
  for (uint32_t g = 0; g < w->ngroups; g++) {
    sim_replica *r = sim_node_replica(w, dead, g);
    if (r && sim_rep_role(r) == SIM_ROLE_LEADER) {
      w->led_down[g] = 1;
      st->led_by_crashed++;
    }
  }
  w->crash_at = w->now;
  sim_trace_add(&w->trace, "t=%llu crash n%u, leader of %u group(s)", (unsigned long long)w->now,
                dead, st->led_by_crashed);
  sim_crash(w, dead);
}

static void stats_finish(sim_world *w) {
  sim_stats *st = &w->res->st;
  st->groups = w->ngroups;
  st->window_us = w->now - w->window_start;
  st->frames = w->frames_sent - st->frames;
  st->hb_entries = w->hb_entries - st->hb_entries;
  st->wal_syncs = disk_syncs(w) - st->wal_syncs;
  st->entries = disk_entries(w) - st->entries;
  st->node_pairs = w->nnodes * (w->nnodes - 1) / 2;
  st->quiesced = 0;
  for (uint32_t g = 0; g < w->ngroups; g++) {
    int quiet = 1;
    for (uint32_t n = 0; n < w->nnodes && quiet; n++) {
      sim_replica *r = sim_node_replica(w, n, g);
      if (r && !sim_rep_quiesced(w, n, r)) quiet = 0;
    }
    st->quiesced += (uint32_t)quiet;
    if (w->awake == NULL) continue;
    st->awake += w->awake[g];
    st->campaigned += w->campaigned[g];
    if (w->led_down == NULL) continue;
    if (w->led_down[g]) {
      if (w->releader[g] != 0) {
        st->releaded++;
        if (w->releader[g] - 1 > st->max_releader_us) st->max_releader_us = w->releader[g] - 1;
      }
    } else if (w->awake[g] || w->campaigned[g]) {
      st->woke_not_led++;
    }
  }
}

/* Idle runs: settle, then measure idle_us. Looks at most once per tick
 * period (the settle check walks every replica). */
static void idle_progress(sim_world *w) {
  if (w->stopped || w->phase == SIM_PHASE_DONE || w->now < w->idle_next_check) return;
  w->idle_next_check = w->now + w->o.tick_us;
  if (w->awake == NULL) {
    if (groups_quiet(w)) {
      open_window(w);
    } else if (w->now > w->o.liveness_us) {
      sim_violation(w, "liveness", "idle: the groups did not all elect and quiesce within %llu us",
                    (unsigned long long)w->o.liveness_us);
    }
    return;
  }
  if (w->now >= w->window_start + w->o.idle_us) w->phase = SIM_PHASE_DONE;
}

double sim_stats_per_sec(const sim_stats *s, uint64_t x) {
  return s->window_us ? (double)x * 1e6 / (double)s->window_us : 0.0;
}

void sim_stats_print(FILE *out, const sim_stats *s) {
  double pair = s->node_pairs ? sim_stats_per_sec(s, s->frames) / s->node_pairs : 0.0;
  fprintf(out,
          "stats: groups=%u sim_seconds=%.3f node_pair_msgs_per_sec=%.1f "
          "heartbeat_entries_per_sec=%.1f quiesced=%u wal_syncs=%llu entries=%llu\n",
          s->groups, (double)s->window_us / 1e6, pair, sim_stats_per_sec(s, s->hb_entries),
          s->quiesced, (unsigned long long)s->wal_syncs, (unsigned long long)s->entries);
}

/* ---- one step -------------------------------------------------------------------------- */

static void trace_event(sim_world *w, const sim_event *e) {
  char buf[160];
  switch (e->kind) {
  case SIM_EV_MSG: {
    const sim_frame *f = e->ptr;
    sim_trace_add(&w->trace, "t=%llu e=%llu deliver n%u->n%u frame msgs=%zu hbs=%zu resps=%zu",
                  (unsigned long long)w->now, (unsigned long long)w->events, f->from_node,
                  f->to_node, f->n_msgs, f->n_hbs, f->n_hb_resps);
    sim_frame_trace(w, f);
    return;
  }
  case SIM_EV_TICK:
    /* Ticks are most events; one short line each. */
    sim_trace_add(&w->trace, "t=%llu e=%llu n%u tick", (unsigned long long)w->now,
                  (unsigned long long)w->events, e->node);
    return;
  case SIM_EV_REQ: {
    const sim_req *q = e->ptr;
    snprintf(buf, sizeof buf, "c%u->n%u op=%llu %s %s", q->client, e->node,
             (unsigned long long)q->opno,
             q->op == SIM_OP_GET   ? "get"
             : q->op == SIM_OP_PUT ? "put"
             : q->op == SIM_OP_CAS ? "cas"
                                   : "delete",
             q->key);
    break;
  }
  case SIM_EV_REPLY: {
    const sim_reply *p = e->ptr;
    snprintf(buf, sizeof buf, "->c%u op=%llu %s", p->client, (unsigned long long)p->opno,
             p->status == SIM_R_OK     ? "ok"
             : p->status == SIM_R_DOWN ? "down"
                                       : "refused");
    break;
  }
  case SIM_EV_INSTALL:
    snprintf(buf, sizeof buf, "n%u batch=%llu%s", e->node, (unsigned long long)e->b,
             e->a != w->nodes[e->node].incarnation ? " (stale)" : "");
    break;
  case SIM_EV_SYNC:
    snprintf(buf, sizeof buf, "n%u barrier=%llu%s", e->node, (unsigned long long)e->b,
             e->a != w->nodes[e->node].incarnation ? " (stale)" : "");
    break;
  case SIM_EV_CLIENT_NEXT:
  case SIM_EV_CLIENT_TIMEOUT:
  case SIM_EV_CLIENT_RETRY: snprintf(buf, sizeof buf, "c%u", e->node); break;
  case SIM_EV_FAULT:
  case SIM_EV_HEAL: buf[0] = 0; break;
  default: snprintf(buf, sizeof buf, "n%u", e->node); break;
  }
  sim_trace_add(&w->trace, "t=%llu e=%llu %s %s", (unsigned long long)w->now,
                (unsigned long long)w->events, sim_ev_name(e->kind), buf);
}

/* Does the event happen on node e->node (rather than the world or a client)? */
static int on_node(const sim_event *e) {
  switch (e->kind) {
  case SIM_EV_TICK:
  case SIM_EV_MSG:
  case SIM_EV_SYNC:
  case SIM_EV_CRASH:
  case SIM_EV_RESTART:
  case SIM_EV_STALL_END:
  case SIM_EV_REQ:
  case SIM_EV_INSTALL: return 1;
  default: return 0;
  }
}

/* Runs the host loop and the checks on a node an event touched. */
static void settle(sim_world *w, uint32_t node) {
  sim_node_flush(w, node);
  sim_node_check(w, node);
}

int sim_world_step(sim_world *w) {
  if (w->stopped || w->phase == SIM_PHASE_DONE) return 0;
  sim_event e;
  if (!sim_heap_pop(&w->heap, &e)) return 0;
  RK_ASSERT(e.time >= w->now);
  w->now = e.time;
  w->events++;
  trace_event(w, &e);
  /* Log lines name the node as the trace does (its index): only node
   * events run host code. */
  if (on_node(&e)) rk_log_set_node(e.node);
  switch (e.kind) {
  case SIM_EV_TICK: {
    sim_node *nd = &w->nodes[e.node];
    if (!nd->up || e.a != nd->incarnation) break;
    sim_node_tick(w, e.node);
    schedule_tick(w, e.node);
    settle(w, e.node);
    break;
  }
  case SIM_EV_MSG: {
    const sim_frame *f = e.ptr;
    if (w->nodes[e.node].up && !sim_net_blocked(&w->net, f->from_node, e.node)) {
      sim_node_recv(w, e.node, f);
      settle(w, e.node);
    }
    break;
  }
  case SIM_EV_SYNC: {
    sim_node *nd = &w->nodes[e.node];
    if (!nd->up || e.a != nd->incarnation) break;
    sim_node_sync_done(w, e.node, e.b);
    settle(w, e.node);
    break;
  }
  case SIM_EV_INSTALL: {
    sim_node *nd = &w->nodes[e.node];
    if (!nd->up || e.a != nd->incarnation) break;
    sim_node_install_done(w, e.node, e.b);
    settle(w, e.node);
    break;
  }
  case SIM_EV_CRASH: sim_crash(w, e.node); break;
  case SIM_EV_RESTART:
    sim_restart(w, e.node);
    settle(w, e.node);
    break;
  case SIM_EV_FAULT:
    if (w->phase == SIM_PHASE_SAFETY) inject_fault(w);
    break;
  case SIM_EV_HEAL:
    if (w->heal_at == e.time) {
      sim_net_heal(&w->net);
      w->heal_at = 0;
      w->isolating = 0;
    }
    break;
  case SIM_EV_STALL_END: break;
  case SIM_EV_ISOLATE:
    if (w->phase != SIM_PHASE_SAFETY) break;
    sim_net_isolate(&w->net, e.node);
    if (w->res) w->res->partitions++;
    schedule_heal(w);
    break;
  case SIM_EV_REQ:
    sim_node_request(w, e.node, e.ptr);
    settle(w, e.node);
    break;
  case SIM_EV_REPLY:
  case SIM_EV_CLIENT_NEXT:
  case SIM_EV_CLIENT_TIMEOUT:
  case SIM_EV_CLIENT_RETRY: sim_client_event(w, &e); break;
  default: RK_UNREACHABLE();
  }
  free_event_payload(&e);
  if (w->o.idle) {
    if (e.kind == SIM_EV_TICK) idle_progress(w);
  } else if (!w->scripted) {
    if (w->phase == SIM_PHASE_SAFETY && w->events >= w->o.steps) start_liveness(w);
    liveness_progress(w);
  }
  return !w->stopped && w->phase != SIM_PHASE_DONE;
}

/* ---- one seed --------------------------------------------------------------------------- */

int sim_run(const sim_opts *o, sim_result *r) {
  sim_world *w = calloc(1, sizeof *w);
  RK_ASSERT(w != NULL);
  sim_world_init(w, o, r);
  w->quiet_state = 1;
  sim_world_start(w);
  while (sim_world_step(w)) {
  }
  if (!w->stopped && w->phase != SIM_PHASE_DONE)
    sim_violation(w, "liveness", "the event queue ran dry before the liveness phase ended");
  if (!w->stopped && o->check_lin) {
    sim_lin_result lr;
    sim_lin_opts lo;
    sim_lin_opts_default(&lo);
    if (o->lin_max_states) lo.max_states_per_key = o->lin_max_states;
    int rc = sim_lin_check(&w->hist, &lo, &lr);
    if (rc != 0)
      sim_violation(w, "history", "the history does not validate (%d)", rc);
    else if (lr.verdict == SIM_LIN_VIOLATION)
      sim_violation(w, "linearizability", "key %s: %s", lr.key, lr.message);
    else if (lr.verdict == SIM_LIN_UNKNOWN) /* unproven is not a pass */
      sim_violation(w, "linearizability",
                    "key %s: undecided within the checker's search budget (%s)", lr.key,
                    lr.message);
  }
  if (o->history_path) {
    FILE *f = fopen(o->history_path, "w");
    if (f == NULL || sim_hist_write(f, &w->hist) != 0)
      fprintf(w->o.report, "sim: cannot write history to %s\n", o->history_path);
    if (f) fclose(f);
  }
  stats_finish(w);
  r->events = w->events;
  r->trace_hash = w->trace.hash;
  r->sim_us = w->now;
  int v = r->violation;
  sim_world_free(w);
  free(w);
  return v;
}

int sim_bugs_parse(const char *s, uint32_t *out, const char **bad) {
  static const struct {
    const char *name;
    uint32_t bit;
  } bugs[] = {{"commit-old-term", MR_BUG_COMMIT_OLD_TERM},
              {"vote-no-uptodate", MR_BUG_VOTE_NO_UPTODATE},
              {"ack-before-persist", MR_BUG_ACK_BEFORE_PERSIST},
              {"vote-twice", MR_BUG_VOTE_TWICE},
              {"truncate-matching", MR_BUG_TRUNCATE_MATCHING},
              {"apply-twice", SIM_BUG_APPLY_TWICE},
              {"snap-behind", SIM_BUG_SNAP_BEHIND},
              {"forget-vote", SIM_BUG_FORGET_VOTE},
              {"eio-ignored", SIM_BUG_EIO_IGNORED}};
  *out = 0;
  if (strcmp(s, "none") == 0) return 0;
#ifndef RK_TEST_HOOKS
  /* The core ignores planted bugs unless built with the hooks: refuse
   * rather than run a "bug" that is not there. */
  if (bad) *bad = "(this build has no RK_TEST_HOOKS)";
  return -1;
#endif
  static char buf[256];
  snprintf(buf, sizeof buf, "%s", s);
  char *save = NULL;
  for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    int found = 0;
    for (size_t i = 0; i < sizeof bugs / sizeof bugs[0]; i++)
      if (strcmp(tok, bugs[i].name) == 0) {
        *out |= bugs[i].bit;
        found = 1;
      }
    if (!found) {
      if (bad) *bad = tok;
      return -1;
    }
  }
  return 0;
}
