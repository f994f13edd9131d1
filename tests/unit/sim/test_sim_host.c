/* The simulator running the real multi-Raft host (multiraft/host.h) on every
 * node, with many groups: invariants under faults, idle cost independent of
 * the number of groups, targeted wake-up after a node crash, and WAL syncs
 * shared by more groups as more of them are active. Everything here is
 * simulated time and event counts: deterministic, no wall-clock assertion. */
#include "sim/sim.h"

#include <criterion/criterion.h>
#include <stdio.h>

/* The 10,000-group runs take minutes under AddressSanitizer (every large
 * frame copy is an mmap there): the sanitizer pass runs the same assertions
 * at 1,000 groups; the release pass (and CI's) at 10,000. */
#if defined(__SANITIZE_ADDRESS__)
#define BIG_GROUPS 1000u
#else
#define BIG_GROUPS 10000u
#endif

static sim_opts opts(uint64_t seed, uint32_t nodes, uint32_t groups) {
  sim_opts o;
  sim_opts_default(&o);
  o.seed = seed;
  o.nodes = nodes;
  o.groups = groups;
  o.report = fopen("/dev/null", "w");
  cr_assert_not_null(o.report);
  return o;
}

static void run_ok(sim_opts *o, sim_result *r) {
  int v = sim_run(o, r);
  fclose(o->report);
  cr_assert_eq(v, 0, "seed %llu: %s: %s", (unsigned long long)o->seed, r->invariant, r->detail);
}

static double pair_rate(const sim_stats *s) {
  return sim_stats_per_sec(s, s->frames) / s->node_pairs;
}

static sim_stats idle_run(uint32_t nodes, uint32_t groups, uint32_t crash) {
  sim_opts o = opts(1, nodes, groups);
  o.faults = 0;
  o.idle = 1;
  o.idle_us = 2000000;
  o.idle_crash = crash;
  sim_result r;
  run_ok(&o, &r);
  cr_assert(r.st.settled, "%u groups never all elected and quiesced", groups);
  /* The window closes on the first check at or after its end. */
  cr_assert_geq(r.st.window_us, o.idle_us);
  cr_assert_leq(r.st.window_us, o.idle_us + 2 * o.tick_us);
  return r.st;
}

Test(sim_host, many_groups_on_five_nodes_keep_every_invariant_under_faults) {
  for (uint64_t seed = 1; seed <= 3; seed++) {
    sim_opts o = opts(seed, 5, 200);
    o.steps = 20000;
    sim_result r;
    run_ok(&o, &r);
    cr_assert_gt(r.ops_ok, 0);
    cr_assert_gt(r.crashes + r.partitions, 0, "the faults were injected");
  }
}

Test(sim_host, idle_cost_does_not_grow_with_the_number_of_groups) {
  sim_stats small = idle_run(3, 100, 0);
  sim_stats big = idle_run(3, BIG_GROUPS, 0);
  cr_assert_eq(small.quiesced, 100);
  cr_assert_eq(big.quiesced, BIG_GROUPS);
  double a = pair_rate(&small), b = pair_rate(&big);
  cr_assert_gt(a, 0.0, "node liveness frames still flow");
  cr_assert_lt(b, 2.0 * a);
  cr_assert_lt(a, 2.0 * b);
  /* At rest: no heartbeat entries and no WAL writes at all. */
  cr_assert_eq(small.hb_entries, 0);
  cr_assert_eq(big.hb_entries, 0);
  cr_assert_eq(big.wal_syncs, 0);
  cr_assert_eq(big.entries, 0);
  cr_assert_eq(big.awake, 0);
}

Test(sim_host, a_crashed_node_wakes_only_the_groups_it_led) {
  const uint32_t nodes = 5, groups = BIG_GROUPS, dead = 2;
  sim_opts d;
  sim_opts_default(&d);
  uint64_t election_timeout_us = (uint64_t)d.election_ticks * d.tick_us;
  sim_stats s = idle_run(nodes, groups, dead + 1);
  cr_assert_gt(s.led_by_crashed, groups / nodes / 2, "the crashed node led a share of groups");
  /* Exactly the orphaned groups woke and campaigned; nothing else stirred. */
  cr_assert_eq(s.campaigned, s.led_by_crashed);
  cr_assert_eq(s.awake, s.led_by_crashed);
  cr_assert_eq(s.woke_not_led, 0);
  /* Every orphan has a new leader within three election timeouts. */
  cr_assert_eq(s.releaded, s.led_by_crashed);
  cr_assert_leq(s.max_releader_us, 3 * election_timeout_us);
  /* And quiesced again without the dead node's replicas. */
  cr_assert_eq(s.quiesced, groups);
}

/* Entries per WAL sync with one client per group (one operation in flight
 * each): one fsync is shared by more groups as more are active. */
static double entries_per_sync(uint32_t groups) {
  sim_opts o = opts(1, 3, groups);
  o.faults = 0;
  o.clients = groups;
  o.steps = 50000;
  sim_result r;
  run_ok(&o, &r);
  cr_assert_gt(r.st.wal_syncs, 0);
  return (double)r.st.entries / (double)r.st.wal_syncs;
}

Test(sim_host, entries_per_wal_sync_grow_with_active_groups) {
  double one = entries_per_sync(1), hundred = entries_per_sync(100);
  cr_assert_gt(hundred, 5.0 * one);
}

Test(sim_host, stats_line_has_the_documented_fields) {
  sim_stats s = {.groups = 7,
                 .window_us = 2000000,
                 .frames = 1200,
                 .node_pairs = 3,
                 .hb_entries = 50,
                 .wal_syncs = 9,
                 .entries = 30,
                 .quiesced = 7};
  char buf[256] = {0};
  FILE *f = fmemopen(buf, sizeof buf, "w");
  cr_assert_not_null(f);
  sim_stats_print(f, &s);
  fclose(f);
  cr_assert_str_eq(buf, "stats: groups=7 sim_seconds=2.000 node_pair_msgs_per_sec=200.0 "
                        "heartbeat_entries_per_sec=25.0 quiesced=7 wal_syncs=9 entries=30\n");
}
