/* sim_client.c — the simulated workload and the history it records.
 *
 * Each client has at most one operation outstanding (HISTORY.md). An
 * operation is a put, get (linearizable: ReadIndex at the leader), delete or
 * compare-and-set on one of w->keys keys ("k<n>", key n lives in group
 * n % groups); written values are unique per key ("c<client>-<n>").
 *
 * An operation goes to the node the client believes leads the key's group.
 * A node that is down or not the leader refuses it before proposing, saying
 * who it thinks leads; the client then retries elsewhere under the same call
 * time (a refused attempt had no effect, so the operation is still one
 * operation). Outcomes, recorded when the operation ends:
 *   true   the leader applied it (or served the read) and the reply arrived;
 *   false  the deadline passed while every attempt so far had been refused;
 *   null   the deadline passed with an attempt outstanding: it may have been
 *          proposed (leader crashed, lost leadership, message lost...).
 * Client <-> node traffic is not subject to network faults: a client is
 * assumed to sit next to the node it talks to; what it cannot know is what
 * the cluster did with its request.
 *
 * In the liveness phase each client issues writes until one is
 * acknowledged (its "probe"), then stops.
 */
#include "sim/sim_int.h"

#include "common/rk_assert.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CLIENT_LAT_US 200
#define RETRY_US      3000
#define THINK_MAX_US  4000

static void key_name(uint32_t k, char *buf, size_t n) { snprintf(buf, n, "k%u", k); }

static void record(sim_world *w, sim_client *c, sim_hist_ok ok, const sim_reply *rp) {
  sim_req *q = &c->req;
  sim_hist_rec rec;
  memset(&rec, 0, sizeof rec);
  rec.client = c->id;
  rec.key = q->key;
  rec.call = c->call;
  rec.ret = ok == SIM_HIST_NULL ? 0 : w->now;
  rec.ok = ok;
  switch (q->op) {
  case SIM_OP_PUT:
    rec.op = SIM_HIST_PUT;
    rec.value = q->value;
    break;
  case SIM_OP_DELETE: rec.op = SIM_HIST_DELETE; break;
  case SIM_OP_CAS:
    rec.op = SIM_HIST_CAS;
    rec.expected = q->has_expected ? q->expected : NULL;
    rec.new_value = q->value;
    rec.swapped = rp ? rp->swapped != 0 : false;
    break;
  case SIM_OP_GET:
    rec.op = SIM_HIST_GET;
    rec.value = (rp && rp->found) ? rp->value : NULL;
    break;
  default: RK_UNREACHABLE();
  }
  RK_ASSERT(sim_hist_add(&w->hist, &rec) == 0);
  if (w->res) {
    w->res->ops++;
    if (ok == SIM_HIST_TRUE)
      w->res->ops_ok++;
    else if (ok == SIM_HIST_FALSE)
      w->res->ops_fail++;
    else
      w->res->ops_unknown++;
  }
  sim_trace_add(&w->trace, "t=%llu c%u op=%llu %s %s -> %s%s%s", (unsigned long long)w->now, c->id,
                (unsigned long long)c->opno, sim_hist_op_name(rec.op), q->key,
                ok == SIM_HIST_TRUE    ? "ok"
                : ok == SIM_HIST_FALSE ? "refused"
                                       : "unknown",
                rec.op == SIM_HIST_GET && ok == SIM_HIST_TRUE ? " value=" : "",
                rec.op == SIM_HIST_GET && ok == SIM_HIST_TRUE ? (rec.value ? rec.value : "nil")
                                                              : "");
}

static void send_attempt(sim_world *w, sim_client *c) {
  sim_req *q = malloc(sizeof *q);
  RK_ASSERT(q != NULL);
  *q = c->req;
  c->target = c->pin ? c->pin - 1 : c->hint[c->req.group];
  c->maybe = 1; /* outstanding until a refusal comes back */
  c->attempts++;
  sim_schedule(w, w->now + CLIENT_LAT_US, SIM_SRC_CLIENT(c->id), SIM_EV_REQ, c->target, 0, 0, q);
}

static void finish(sim_world *w, sim_client *c) {
  c->busy = 0;
  if (w->phase == SIM_PHASE_DONE) return;
  if (w->phase == SIM_PHASE_LIVENESS && c->probe_done) return;
  /* At least 1 us: the history's intervals are closed, so a call at the
   * very instant of the previous return would count as concurrent with it
   * and hide a client missing its own write. */
  uint64_t think = 1 + rk_rand_below(&w->work_rng, THINK_MAX_US);
  sim_schedule(w, w->now + think, SIM_SRC_CLIENT(c->id), SIM_EV_CLIENT_NEXT, c->id, 0, 0, NULL);
}

static void start_op(sim_world *w, sim_client *c) {
  RK_ASSERT(!c->busy);
  rk_rand *r = &w->work_rng;
  sim_req *q = &c->req;
  memset(q, 0, sizeof *q);
  uint32_t k = (uint32_t)rk_rand_below(r, w->keys);
  uint64_t p = rk_rand_below(r, 100);
  q->client = c->id;
  q->opno = ++c->opno;
  q->group = k % w->ngroups;
  key_name(k, q->key, sizeof q->key);
  /* Mix: read_pct% gets; the rest split 1:2:4 delete:cas:put (30% gets by
   * default: 30/10/20/40). */
  uint64_t rp = w->read_pct;
  if (p < rp)
    p = 0;
  else
    p = 30 + (p - rp) * 70 / (100 - rp);
  if (w->phase == SIM_PHASE_LIVENESS) p = 99; /* probes are puts */
  if (p < 30)
    q->op = SIM_OP_GET;
  else if (p < 40)
    q->op = SIM_OP_DELETE;
  else if (p < 60)
    q->op = SIM_OP_CAS;
  else
    q->op = SIM_OP_PUT;
  if (q->op == SIM_OP_PUT || q->op == SIM_OP_CAS)
    snprintf(q->value, sizeof q->value, "c%u-%llu", c->id, (unsigned long long)++c->nwrites);
  if (q->op == SIM_OP_CAS) {
    /* Expect a value some client wrote to this key recently, or absence. */
    uint64_t back = rk_rand_below(r, 3);
    q->has_expected = rk_rand_chance(r, 0.8);
    if (q->has_expected) {
      uint32_t oc = (uint32_t)rk_rand_below(r, w->nclients);
      uint64_t on = w->clients[oc].nwrites;
      if (on > back) on -= back;
      snprintf(q->expected, sizeof q->expected, "c%u-%llu", oc, (unsigned long long)on);
    }
  }
  c->busy = 1;
  c->call = w->now;
  c->attempts = 0;
  send_attempt(w, c);
  sim_schedule(w, w->now + w->o.op_timeout_us, SIM_SRC_CLIENT(c->id), SIM_EV_CLIENT_TIMEOUT, c->id,
               c->opno, 0, NULL);
}

void sim_client_submit(sim_world *w, uint32_t ci, uint32_t node, int pin, uint8_t op,
                       const char *key, const char *value, const char *expected) {
  RK_ASSERT(ci < w->nclients);
  sim_client *c = &w->clients[ci];
  RK_ASSERT(!c->busy);
  sim_req *q = &c->req;
  memset(q, 0, sizeof *q);
  q->client = c->id;
  q->opno = ++c->opno;
  q->op = op;
  snprintf(q->key, sizeof q->key, "%s", key);
  uint32_t k = 0;
  if (sscanf(key, "k%u", &k) != 1) k = 0;
  q->group = k % w->ngroups;
  if (value) snprintf(q->value, sizeof q->value, "%s", value);
  if (expected) {
    q->has_expected = 1;
    snprintf(q->expected, sizeof q->expected, "%s", expected);
  }
  c->pin = pin ? node + 1 : 0;
  c->hint[q->group] = node;
  c->busy = 1;
  c->call = w->now;
  c->attempts = 0;
  send_attempt(w, c);
  sim_schedule(w, w->now + w->o.op_timeout_us, SIM_SRC_CLIENT(c->id), SIM_EV_CLIENT_TIMEOUT, c->id,
               c->opno, 0, NULL);
}

void sim_clients_start(sim_world *w) {
  for (uint32_t i = 0; i < w->nclients; i++) {
    sim_client *c = &w->clients[i];
    for (uint32_t g = 0; g < w->ngroups; g++)
      c->hint[g] = w->groups[g].node[rk_rand_below(&w->work_rng, w->groups[g].nrep)];
    uint64_t at = w->now + 1000 + rk_rand_below(&w->work_rng, 5000);
    sim_schedule(w, at, SIM_SRC_CLIENT(i), SIM_EV_CLIENT_NEXT, i, 0, 0, NULL);
  }
}

int sim_clients_all_probed(const sim_world *w) {
  for (uint32_t i = 0; i < w->nclients; i++)
    if (!w->clients[i].probe_done || w->clients[i].busy) return 0;
  return 1;
}

void sim_client_reply(sim_world *w, uint32_t from_node, const sim_reply *rp) {
  sim_reply *copy = malloc(sizeof *copy);
  RK_ASSERT(copy != NULL);
  *copy = *rp;
  sim_schedule(w, w->now + CLIENT_LAT_US, SIM_SRC_NODE(from_node), SIM_EV_REPLY, rp->client, 0, 0,
               copy);
}

void sim_client_event(sim_world *w, const sim_event *e) {
  sim_client *c = &w->clients[e->node];
  switch (e->kind) {
  case SIM_EV_CLIENT_NEXT:
    if (!w->clients_on || c->busy) return;
    if (w->phase == SIM_PHASE_DONE) return;
    if (w->phase == SIM_PHASE_LIVENESS && c->probe_done) return;
    start_op(w, c);
    return;
  case SIM_EV_CLIENT_RETRY:
    if (c->busy && c->opno == e->a && !c->maybe) send_attempt(w, c);
    return;
  case SIM_EV_CLIENT_TIMEOUT:
    if (!c->busy || c->opno != e->a) return;
    record(w, c, c->maybe ? SIM_HIST_NULL : SIM_HIST_FALSE, NULL);
    finish(w, c);
    return;
  case SIM_EV_REPLY: {
    const sim_reply *rp = e->ptr;
    if (!c->busy || rp->opno != c->opno || !c->maybe) return; /* stale */
    if (rp->status == SIM_R_OK) {
      record(w, c, SIM_HIST_TRUE, rp);
      if (w->phase == SIM_PHASE_LIVENESS && c->req.op != SIM_OP_GET) c->probe_done = 1;
      finish(w, c);
      return;
    }
    /* Refused before proposing: try the hinted leader, else the next host. */
    c->maybe = 0;
    sim_group *g = &w->groups[c->req.group];
    uint32_t next = c->target;
    if (rp->hint != 0 && rp->hint - 1 != c->target && rp->hint - 1 < w->nnodes)
      next = rp->hint - 1;
    else {
      uint32_t pos = 0;
      for (uint32_t i = 0; i < g->nrep; i++)
        if (g->node[i] == c->target) pos = i;
      next = g->node[(pos + 1 + rk_rand_below(&w->work_rng, g->nrep)) % g->nrep];
    }
    c->hint[c->req.group] = next;
    sim_schedule(w, w->now + RETRY_US, SIM_SRC_CLIENT(c->id), SIM_EV_CLIENT_RETRY, c->id, c->opno,
                 0, NULL);
    return;
  }
  default: RK_UNREACHABLE();
  }
}
