/* Snapshots and log compaction (thesis ch. 5), crash and restart. */
#include "harness.h"

#include "common/rk_err.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

static harness *cluster(int n, h_opts *o) {
  *o = h_default_opts();
  return h_new(n, o);
}

/* The application snapshots its state at its applied index and compacts. */
static void snapshot_and_compact(harness *h, uint64_t id) {
  h_node *nd = &h->nodes[id];
  char data[32];
  int n = snprintf(data, sizeof data, "state@%llu", (unsigned long long)nd->applied);
  cr_assert_eq(mr_memlog_create_snapshot(&nd->log, nd->applied, &nd->conf, data, (uint32_t)n),
               RK_OK);
  cr_assert_eq(mr_memlog_compact(&nd->log, nd->applied), RK_OK);
}

static void assert_same_log(harness *h, uint64_t a, uint64_t b) {
  uint64_t la = mr_raft_last_index(h_raft(h, a));
  cr_assert_eq(la, mr_raft_last_index(h_raft(h, b)));
  uint64_t lo = mr_raft_first_index(h_raft(h, a));
  uint64_t lb = mr_raft_first_index(h_raft(h, b));
  if (lb > lo) lo = lb;
  for (uint64_t i = lo; i <= la; i++) cr_assert_eq(h_term_at(h, a, i), h_term_at(h, b, i));
}

Test(snapshot, install_on_follower_far_behind_after_compaction) {
  h_opts o;
  harness *h = cluster(3, &o);
  cr_assert(h_elect(h, 1));
  h_isolate(h, 3);
  for (int i = 0; i < 50; i++) cr_assert_eq(h_propose(h, 1, "v"), RK_OK);
  h_deliver_all(h);
  snapshot_and_compact(h, 1);
  uint64_t snap = h->nodes[1].log.snap.index;
  cr_assert_eq(snap, 52);
  cr_assert_eq(mr_raft_first_index(h_raft(h, 1)), 53, "compacted");
  for (int i = 0; i < 3; i++) cr_assert_eq(h_propose(h, 1, "after"), RK_OK);
  h_deliver_all(h);
  h_heal(h);
  h_tick(h, 1, 3);
  cr_assert_eq(h->sent[MR_MSG_SNAP], 1, "one InstallSnapshot");
  cr_assert_eq(h->nodes[3].log.snap.index, snap);
  cr_assert_eq(memcmp(h->nodes[3].log.snap.data, "state@52", 8), 0, "opaque data delivered");
  cr_assert_eq(mr_raft_applied(h_raft(h, 3)), 55);
  assert_same_log(h, 1, 3);
  /* it continues as a normal follower */
  cr_assert_eq(h_propose(h, 1, "more"), RK_OK);
  h_deliver_all(h);
  cr_assert_eq(mr_raft_commit(h_raft(h, 3)), 56);
  h_free(h);
}

Test(snapshot, configuration_inside_snapshot_is_restored) {
  h_opts o;
  harness *h = cluster(3, &o);
  cr_assert(h_elect(h, 1));
  h_isolate(h, 3);
  h_add_node(h, 4, &o);
  mr_conf_change cc = {.transition = MR_CC_AUTO, .n = 1};
  cc.changes[0] = (mr_cc_single){.op = MR_CC_ADD_LEARNER, .id = 4};
  cr_assert_eq(mr_raft_propose_conf_change(h_raft(h, 1), &cc, NULL), RK_OK);
  h_deliver_all(h);
  h_tick(h, 1, 2);
  snapshot_and_compact(h, 1);
  cr_assert_eq(mr_conf_flags(&h->nodes[1].log.snap.conf, 4), MR_LEARNER);
  h_heal(h);
  h_tick(h, 1, 3);
  mr_conf c;
  mr_raft_conf(h_raft(h, 3), &c);
  cr_assert_eq(c.n, 4);
  cr_assert_eq(mr_conf_flags(&c, 4), MR_LEARNER, "the change arrived inside the snapshot");
  /* and survives a restart of the follower */
  h_crash(h, 3);
  h_restart(h, 3);
  mr_raft_conf(h_raft(h, 3), &c);
  cr_assert_eq(mr_conf_flags(&c, 4), MR_LEARNER);
  h_free(h);
}

static int drop_first_snap(harness *h, mr_msg *m, void *arg) {
  (void)h;
  int *dropped = arg;
  if (m->type == MR_MSG_SNAP && !*dropped) {
    *dropped = 1;
    return 0;
  }
  return 1;
}

Test(snapshot, lost_snapshot_is_resent) {
  h_opts o;
  harness *h = cluster(3, &o);
  cr_assert(h_elect(h, 1));
  h_isolate(h, 3);
  for (int i = 0; i < 5; i++) cr_assert_eq(h_propose(h, 1, "v"), RK_OK);
  h_deliver_all(h);
  snapshot_and_compact(h, 1);
  int dropped = 0;
  h_set_filter(h, drop_first_snap, &dropped);
  h_heal(h);
  h_tick(h, 1, 30);
  cr_assert(dropped);
  cr_assert_eq(h->nodes[3].log.snap.index, 7);
  assert_same_log(h, 1, 3);
  h_free(h);
}

/* Leader 1 has compacted past node 3 and sent it a snapshot that was lost
 * on the way: node 3's progress is SNAPSHOT. */
static harness *snapshot_lost_on_the_way(int *dropped) {
  h_opts o;
  harness *h = cluster(3, &o);
  cr_assert(h_elect(h, 1));
  h_isolate(h, 3);
  for (int i = 0; i < 5; i++) cr_assert_eq(h_propose(h, 1, "v"), RK_OK);
  h_deliver_all(h);
  snapshot_and_compact(h, 1);
  h_heal(h);
  *dropped = 0;
  h_set_filter(h, drop_first_snap, dropped);
  h_tick(h, 1, 1); /* heartbeat resp from 3 -> snapshot sent (and lost) */
  cr_assert(*dropped);
  int state;
  cr_assert_eq(mr_raft_progress(h_raft(h, 1), 3, NULL, NULL, &state, NULL), RK_OK);
  cr_assert_eq(state, 2, "SNAPSHOT");
  return h;
}

Test(snapshot, report_snapshot_failure_returns_to_probe) {
  int dropped, state;
  harness *h = snapshot_lost_on_the_way(&dropped);
  mr_raft_report_snapshot(h_raft(h, 1), 3, 1);
  cr_assert_eq(mr_raft_progress(h_raft(h, 1), 3, NULL, NULL, &state, NULL), RK_OK);
  cr_assert_eq(state, 0, "PROBE");
  h_tick(h, 1, 2);
  assert_same_log(h, 1, 3);
  h_free(h);
}

Test(snapshot, a_snapshot_the_host_reports_moving_is_not_presumed_lost) {
  int dropped, state;
  harness *h = snapshot_lost_on_the_way(&dropped); /* as if still streaming */
  /* Three election timeouts (10 ticks each) with word that it moves. */
  for (int t = 0; t < 30; t++) {
    mr_raft_snapshot_alive(h_raft(h, 1), 3);
    h_tick(h, 1, 1);
    cr_assert_eq(mr_raft_progress(h_raft(h, 1), 3, NULL, NULL, &state, NULL), RK_OK);
    cr_assert_eq(state, 2, "still SNAPSHOT after %d ticks", t + 1);
  }
  /* No more word: presumed lost after at most two rounds, then resent. */
  h_tick(h, 1, 20);
  cr_assert_eq(h->nodes[3].log.snap.index, 7, "the resent snapshot was installed");
  assert_same_log(h, 1, 3);
  h_free(h);
}

Test(snapshot, log_compaction_keeps_replication_going) {
  h_opts o;
  harness *h = cluster(3, &o);
  cr_assert(h_elect(h, 1));
  for (int round = 0; round < 3; round++) {
    for (int i = 0; i < 10; i++) cr_assert_eq(h_propose(h, 1, "v"), RK_OK);
    h_deliver_all(h);
    for (uint64_t n = 1; n <= 3; n++) snapshot_and_compact(h, n);
  }
  cr_assert_eq(mr_raft_first_index(h_raft(h, 2)), 33);
  cr_assert_eq(h->sent[MR_MSG_SNAP], 0, "caught-up followers never need a snapshot");
  cr_assert_eq(h_propose(h, 1, "w"), RK_OK);
  h_deliver_all(h);
  cr_assert_eq(mr_raft_commit(h_raft(h, 2)), 33);
  h_free(h);
}

Test(crash, restart_keeps_only_persisted_state) {
  h_opts o;
  harness *h = cluster(3, &o);
  cr_assert(h_elect(h, 1));
  for (int i = 0; i < 5; i++) cr_assert_eq(h_propose(h, 1, "v"), RK_OK);
  h_deliver_all(h);
  /* 2 receives an append but crashes before its Ready is persisted */
  cr_assert_eq(h_propose(h, 1, "unsynced"), RK_OK);
  h_process(h, 1);
  uint64_t last_before = h->nodes[2].log.ents.len + h->nodes[2].log.snap_index;
  int stepped = 0;
  for (size_t k = 0; k < h_queue_len(h); k++) {
    const mr_msg *m = h_queue_at(h, k);
    if (m->type == MR_MSG_APP && m->to == 2 && m->entries.len > 0) {
      cr_assert_eq(mr_raft_step(h_raft(h, 2), m), RK_OK);
      stepped = 1;
    }
  }
  cr_assert(stepped);
  cr_assert_eq(mr_raft_last_index(h_raft(h, 2)), last_before + 1, "in memory only");
  h_crash(h, 2); /* before its Ready was persisted */
  h_drop_all(h);
  h_restart(h, 2);
  cr_assert_eq(mr_raft_last_index(h_raft(h, 2)), last_before);
  cr_assert_eq(mr_raft_term(h_raft(h, 2)), 2);
  cr_assert_eq(mr_raft_vote(h_raft(h, 2)), 1, "the vote survives");
  h_tick(h, 1, 2);
  assert_same_log(h, 1, 2);
  h_free(h);
}

Test(crash, leader_restart_recovers_and_reelects) {
  h_opts o;
  harness *h = cluster(3, &o);
  cr_assert(h_elect(h, 1));
  for (int i = 0; i < 5; i++) cr_assert_eq(h_propose(h, 1, "v"), RK_OK);
  h_deliver_all(h);
  h_crash(h, 1);
  h_tick_all(h, 40);
  uint64_t l = h_leader(h);
  cr_assert(l == 2 || l == 3);
  h_restart(h, 1);
  h_tick_all(h, 3);
  cr_assert_eq(mr_raft_lead(h_raft(h, 1)), l);
  assert_same_log(h, 1, l);
  h_free(h);
}
