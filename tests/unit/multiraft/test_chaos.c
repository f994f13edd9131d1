/* Randomized scripts over the harness: partitions, crashes, restarts,
 * proposals, reads, transfers, membership changes and compaction, with the
 * harness checking invariants and State Machine Safety after every step;
 * then a liveness phase (faults stop, a leader must emerge and commit).
 * Deterministic: fixed seeds, no time. */
#include "harness.h"

#include "common/rk_err.h"
#include "common/rk_rand.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

static void compact(harness *h, uint64_t id) {
  h_node *nd = &h->nodes[id];
  if (nd->applied <= nd->log.snap.index || nd->applied < mr_memlog_first_index(&nd->log)) return;
  cr_assert_eq(mr_memlog_create_snapshot(&nd->log, nd->applied, &nd->conf, "s", 1), RK_OK);
  cr_assert_eq(mr_memlog_compact(&nd->log, nd->applied), RK_OK);
}

static int lossy(harness *h, mr_msg *m, void *arg) {
  (void)m;
  rk_rand *rng = arg;
  (void)h;
  return !rk_rand_chance(rng, 0.1);
}

/* H_CHAOS_SEEDS=N widens the sweep for a local soak (default 40 / 20). */
static uint64_t seeds(uint64_t dflt) {
  const char *e = getenv("H_CHAOS_SEEDS");
  return e ? strtoull(e, NULL, 10) : dflt;
}

static int chaos(uint64_t seed, int n, int steps, uint32_t bugs) {
  h_opts o = h_default_opts();
  o.seed = seed;
  o.max_msg_bytes = 64;
  o.max_inflight_msgs = 4;
  rk_rand rng;
  rk_rand_seed(&rng, seed * 7919 + 1);
  o.pre_vote = (int)rk_rand_below(&rng, 2);
  o.check_quorum = (int)rk_rand_below(&rng, 2);
  o.bugs = bugs;
  harness *h = h_new(n, &o);
  h->sm_tolerate = bugs != 0; /* with a planted bug, count instead of failing */
  rk_rand net;
  rk_rand_seed(&net, seed + 99);
  h_set_filter(h, lossy, &net);
  for (int s = 0; s < steps; s++) {
    uint64_t id = 1 + rk_rand_below(&rng, (uint64_t)n);
    switch (rk_rand_below(&rng, 12)) {
    case 0:
      h_heal(h);
      if (rk_rand_chance(&rng, 0.5)) h_isolate(h, id);
      break;
    case 1:
      if (h->nodes[id].r && rk_rand_chance(&rng, 0.3)) {
        h_crash(h, id);
      } else if (!h->nodes[id].r) {
        h_restart(h, id);
      }
      break;
    case 2:
    case 3:
    case 4:
      if (h->nodes[id].r) (void)h_propose(h, id, "chaos");
      break;
    case 5:
      if (h->nodes[id].r) (void)mr_raft_read_index(h->nodes[id].r, (uint64_t)s + 1);
      break;
    case 6:
      if (h->nodes[id].r)
        (void)mr_raft_transfer_leader(h->nodes[id].r, 1 + rk_rand_below(&rng, (uint64_t)n));
      break;
    case 7:
      if (h->nodes[id].r) {
        /* demote or promote someone (never below 2 voters) */
        mr_conf_change cc = {.transition = (uint8_t)rk_rand_below(&rng, 2), .n = 1};
        cc.changes[0].id = 1 + rk_rand_below(&rng, (uint64_t)n);
        cc.changes[0].op = rk_rand_chance(&rng, 0.7) ? MR_CC_ADD_VOTER : MR_CC_ADD_LEARNER;
        mr_conf c;
        mr_raft_conf(h->nodes[id].r, &c);
        int voters = 0;
        for (int i = 0; i < c.n; i++) voters += (c.r[i].flags & MR_VOTER_IN) != 0;
        if (cc.changes[0].op == MR_CC_ADD_VOTER || voters > 2)
          (void)mr_raft_propose_conf_change(h->nodes[id].r, &cc, NULL);
        if (mr_conf_is_joint(&c) && rk_rand_chance(&rng, 0.5)) {
          mr_conf_change leave = {.n = 0};
          (void)mr_raft_propose_conf_change(h->nodes[id].r, &leave, NULL);
        }
      }
      break;
    case 8:
      if (h->nodes[id].r) compact(h, id);
      break;
    default: h_tick_all(h, 1); break;
    }
    h_deliver_all(h);
  }
  if (bugs) {
    int v = h->sm_violations;
    h_free(h);
    return v;
  }
  /* liveness: heal, restart everyone, promote everyone back, converge */
  h_set_filter(h, NULL, NULL);
  h_heal(h);
  for (uint64_t i = 1; i <= (uint64_t)n; i++)
    if (!h->nodes[i].r) h_restart(h, i);
  /* a write must eventually be applied somewhere (the leader may still
   * change under transfers and demotions, so retry) */
  uint64_t l = 0;
  int applied = 0;
  for (int k = 0; k < 400 && !applied; k++) {
    l = h_leader(h);
    if (l && k % 10 == 0) (void)mr_raft_propose(h_raft(h, l), "final", 5, NULL, NULL);
    h_tick_all(h, 1);
    for (uint64_t i = 1; i <= (uint64_t)n && !applied; i++)
      for (size_t a = 0; a < h->nodes[i].n_apps && !applied; a++)
        applied = h->nodes[i].apps[a].len == 5 && h->nodes[i].apps[a].data[0] == 'f';
  }
  cr_assert(applied, "seed %llu: no write applied after healing", (unsigned long long)seed);
  /* and the group settles on a leader again */
  for (int k = 0; k < 300 && !(l = h_leader(h)); k++) h_tick_all(h, 1);
  cr_assert_neq(l, 0, "seed %llu: no leader at the end", (unsigned long long)seed);
  cr_assert_eq(h->sm_violations, 0);
  if (getenv("H_CHAOS_STATS")) {
    uint64_t msgs = 0;
    for (int t = 0; t < MR_MSG_TYPE_MAX_; t++) msgs += h->sent[t];
    fprintf(stderr, "seed %llu pv%d cq%d: leader %llu term %llu commit %llu msgs %llu snaps %llu\n",
            (unsigned long long)seed, o.pre_vote, o.check_quorum, (unsigned long long)l,
            (unsigned long long)mr_raft_term(h_raft(h, l)),
            (unsigned long long)mr_raft_commit(h_raft(h, l)), (unsigned long long)msgs,
            (unsigned long long)h->sent[MR_MSG_SNAP]);
  }
  h_free(h);
  return 0;
}

Test(chaos, three_nodes_many_seeds) {
  for (uint64_t seed = 1; seed <= seeds(40); seed++) (void)chaos(seed, 3, 1500, 0);
}

Test(chaos, five_nodes_many_seeds) {
  for (uint64_t seed = 1000; seed < 1000 + seeds(20); seed++) (void)chaos(seed, 5, 1500, 0);
}

/* The same scripts find a planted bug: some seed breaks State Machine
 * Safety. (MR_BUG_COMMIT_OLD_TERM needs the Figure 8 interleaving of three
 * terms, which random scripts did not hit in 2,000 seeds; the deterministic
 * replay commit::planted_bug_commit_old_term_breaks_state_machine_safety
 * covers it.) */
static int seeds_violating(uint32_t bug, int n) {
  int bad = 0;
  for (uint64_t seed = 1; seed <= seeds(60); seed++) bad += chaos(seed, n, 1500, bug) > 0;
  return bad;
}

Test(chaos, planted_bug_vote_no_uptodate_is_caught) {
  cr_assert_gt(seeds_violating(MR_BUG_VOTE_NO_UPTODATE, 3), 0);
}
