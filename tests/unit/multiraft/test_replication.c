/* Log replication (Raft §5.3), the commit rule (§5.4.2, Figure 8), the
 * leader no-op, flow control and proposal refusals. */
#include "harness.h"

#include "common/rk_err.h"

#include <criterion/criterion.h>
#include <string.h>

static harness *cluster(int n) {
  h_opts o = h_default_opts();
  return h_new(n, &o);
}

static void assert_same_log(harness *h, uint64_t a, uint64_t b) {
  uint64_t la = mr_raft_last_index(h_raft(h, a)), lb = mr_raft_last_index(h_raft(h, b));
  cr_assert_eq(la, lb, "last index %llu vs %llu", (unsigned long long)la, (unsigned long long)lb);
  for (uint64_t i = 1; i <= la; i++)
    cr_assert_eq(h_term_at(h, a, i), h_term_at(h, b, i), "index %llu", (unsigned long long)i);
}

Test(replication, log_matching) {
  harness *h = cluster(3);
  cr_assert(h_elect(h, 1));
  for (int i = 0; i < 10; i++) cr_assert_eq(h_propose(h, 1, "cmd"), RK_OK);
  h_deliver_all(h);
  assert_same_log(h, 1, 2);
  assert_same_log(h, 1, 3);
  for (uint64_t i = 1; i <= 3; i++) {
    cr_assert_eq(mr_raft_commit(h_raft(h, i)), 12);
    cr_assert_eq(h->nodes[i].applied, 12);
    cr_assert_eq(h->nodes[i].n_apps, 11, "no-op + 10 commands");
  }
  h_free(h);
}

Test(replication, conflicting_suffix_overwritten) {
  harness *h = cluster(3);
  cr_assert(h_elect(h, 1));
  h_deliver_all(h);
  h_isolate(h, 1);
  for (int i = 0; i < 5; i++) cr_assert_eq(h_propose(h, 1, "lost"), RK_OK);
  h_deliver_all(h);
  cr_assert_eq(mr_raft_last_index(h_raft(h, 1)), 7);
  /* 2 and 3 elect a new leader once 1's lease has expired */
  h_tick_all(h, 40);
  uint64_t l = h_leader(h);
  cr_assert(l == 2 || l == 3, "leader %llu", (unsigned long long)l);
  cr_assert_eq(h_propose(h, l, "kept"), RK_OK);
  h_deliver_all(h);
  uint64_t last = mr_raft_last_index(h_raft(h, l));
  h_heal(h);
  h_tick(h, l, 2);
  cr_assert_eq(mr_raft_role(h_raft(h, 1)), MR_FOLLOWER);
  assert_same_log(h, 1, l);
  cr_assert_eq(h_term_at(h, 1, 3), mr_raft_term(h_raft(h, l)), "1's suffix was replaced");
  cr_assert_eq(mr_raft_last_index(h_raft(h, 1)), last);
  h_free(h);
}

static int count_rejects(harness *h, mr_msg *m, void *arg) {
  (void)h;
  if (m->type == MR_MSG_APP_RESP && m->reject) ++*(int *)arg;
  return 1;
}

Test(replication, fast_backoff_converges_in_terms) {
  h_opts o = h_default_opts();
  o.pre_vote = 0;
  o.check_quorum = 0;
  harness *h = h_new(3, &o);
  cr_assert(h_elect(h, 3));
  h_deliver_all(h);
  /* 3 piles up 30 uncommitted entries of term 2 in isolation */
  h_isolate(h, 3);
  for (int i = 0; i < 30; i++) cr_assert_eq(h_propose(h, 3, "stale"), RK_OK);
  h_deliver_all(h);
  /* meanwhile the majority {1,2} goes through three terms of 10 entries */
  uint64_t leaders[] = {1, 2, 1};
  for (int t = 0; t < 3; t++) {
    cr_assert(h_elect(h, leaders[t]));
    for (int i = 0; i < 10; i++) cr_assert_eq(h_propose(h, leaders[t], "fresh"), RK_OK);
    h_deliver_all(h);
  }
  cr_assert_eq(mr_raft_term(h_raft(h, 1)), 5);
  int rejects = 0;
  h_set_filter(h, count_rejects, &rejects);
  h_heal(h);
  h_tick(h, 1, 1);
  assert_same_log(h, 1, 3);
  /* bounded by the divergent terms (3 + 1), not by the 30 divergent entries */
  cr_assert_leq(rejects, 4, "rejections: %d", rejects);
  cr_assert_geq(rejects, 1);
  h_free(h);
}

static int count_apps_to_2(harness *h, mr_msg *m, void *arg) {
  (void)h;
  if (m->type == MR_MSG_APP && m->to == 2 && m->entries.len > 0) ++*(int *)arg;
  return 1;
}

Test(replication, inflight_window_respected) {
  h_opts o = h_default_opts();
  o.max_inflight_msgs = 3;
  o.max_msg_bytes = 4; /* one 4-byte command per message */
  harness *h = h_new(3, &o);
  cr_assert(h_elect(h, 1));
  h_deliver_all(h);
  int state;
  cr_assert_eq(mr_raft_progress(h_raft(h, 1), 2, NULL, NULL, &state, NULL), RK_OK);
  cr_assert_eq(state, 1, "2 is in REPLICATE");
  h->cut[2][1] = 1; /* 2's acknowledgements are lost */
  int apps = 0;
  h_set_filter(h, count_apps_to_2, &apps);
  for (int i = 0; i < 10; i++) cr_assert_eq(h_propose(h, 1, "abcd"), RK_OK);
  h_deliver_all(h);
  uint32_t infl;
  cr_assert_eq(mr_raft_progress(h_raft(h, 1), 2, NULL, NULL, NULL, &infl), RK_OK);
  cr_assert_eq(apps, 3, "only the window's worth was sent: %d", apps);
  cr_assert_eq(infl, 3);
  /* 3 acknowledged everything, so commit still advanced */
  cr_assert_eq(mr_raft_commit(h_raft(h, 1)), 12);
  h->cut[2][1] = 0;
  h_set_filter(h, NULL, NULL);
  h_tick(h, 1, 3);
  assert_same_log(h, 1, 2);
  h_free(h);
}

Test(replication, inflight_bytes_window_respected) {
  h_opts o = h_default_opts();
  o.max_inflight_msgs = 100;
  o.max_inflight_bytes = 2 * (4 + MR_ENTRY_OVERHEAD); /* framing counts too */
  o.max_msg_bytes = 4;
  harness *h = h_new(3, &o);
  cr_assert(h_elect(h, 1));
  h_deliver_all(h);
  h->cut[2][1] = 1;
  int apps = 0;
  h_set_filter(h, count_apps_to_2, &apps);
  for (int i = 0; i < 10; i++) cr_assert_eq(h_propose(h, 1, "abcd"), RK_OK);
  h_deliver_all(h);
  cr_assert_eq(apps, 2, "two messages of one 4-byte entry each: %d", apps);
  h_free(h);
}

static int max_entries_per_app(harness *h, mr_msg *m, void *arg) {
  (void)h;
  size_t *mx = arg;
  if (m->type == MR_MSG_APP && m->entries.len > *mx) *mx = m->entries.len;
  return 1;
}

Test(replication, max_bytes_per_message) {
  h_opts o = h_default_opts();
  o.max_msg_bytes = 2 * (5 + MR_ENTRY_OVERHEAD);
  harness *h = h_new(3, &o);
  cr_assert(h_elect(h, 1));
  h_deliver_all(h);
  h_isolate(h, 3);
  for (int i = 0; i < 20; i++) cr_assert_eq(h_propose(h, 1, "abcde"), RK_OK);
  h_deliver_all(h);
  size_t mx = 0;
  h_set_filter(h, max_entries_per_app, &mx);
  h_heal(h);
  h_tick(h, 1, 3);
  cr_assert_eq(mx, 2, "two 5-byte entries and their framing per message, got %zu", mx);
  assert_same_log(h, 1, 3);
  h_free(h);
}

/* Empty entries (each leader's no-op) are charged their framing too, so a
 * run of them is sent a few at a time: a follower's cap on unpersisted
 * entries (max_unstable_bytes) can then always take one message. */
Test(replication, a_run_of_empty_entries_is_split_by_its_framing) {
  h_opts o = h_default_opts();
  o.max_msg_bytes = 3 * MR_ENTRY_OVERHEAD;
  o.pre_vote = o.check_quorum = 0; /* elections back to back, no lease */
  harness *h = h_new(3, &o);
  h_isolate(h, 3);
  for (uint64_t i = 0; i < 8; i++) cr_assert(h_elect(h, 1 + i % 2));
  uint64_t last = mr_raft_last_index(h_raft(h, 2));
  cr_assert_geq(last, 8, "a no-op per election: last %llu", (unsigned long long)last);
  size_t mx = 0;
  h_set_filter(h, max_entries_per_app, &mx);
  h_heal(h);
  h_tick(h, 2, 3);
  cr_assert_eq(mx, 3, "three empty entries' framing per message, got %zu", mx);
  assert_same_log(h, 2, 3);
  h_free(h);
}

Test(replication, noop_appended_on_election) {
  harness *h = cluster(3);
  cr_assert(h_elect(h, 1));
  mr_raft *r = h_raft(h, 1);
  cr_assert_eq(mr_raft_last_index(r), 2);
  cr_assert_eq(h_term_at(h, 1, 2), 2, "the no-op carries the new term");
  for (uint64_t i = 1; i <= 3; i++) {
    cr_assert_eq(h->nodes[i].n_apps, 1, "node %llu apps %zu applied %llu", (unsigned long long)i,
                 h->nodes[i].n_apps, (unsigned long long)h->nodes[i].applied);
    cr_assert_eq(h->nodes[i].apps[0].len, 0, "an empty entry");
    cr_assert_eq(h->nodes[i].apps[0].index, 2);
  }
  h_free(h);
}

Test(replication, leader_counts_itself_only_when_durable) {
  harness *h = cluster(1);
  h_tick(h, 1, 20);
  cr_assert_eq(h_leader(h), 1);
  mr_raft *r = h_raft(h, 1);
  uint64_t idx;
  cr_assert_eq(mr_raft_propose(r, "a", 1, &idx, NULL), RK_OK);
  cr_assert_lt(mr_raft_commit(r), idx, "not committed before the Ready is persisted");
  h_process(h, 1);
  cr_assert_eq(mr_raft_commit(r), idx);
  h_free(h);
}

/* ---- Figure 8 (Raft paper §5.4.2), replayed with 5 servers. Index 2 is
 * everybody's committed no-op of term 2; the figure's "index 2" is our 3. */

typedef struct fig8 {
  uint64_t block_app_from; /* drop APPs from this node */
  uint64_t max_index_to;   /* truncate APPs from 1 to 3 beyond this index */
} fig8;

static int fig8_filter(harness *h, mr_msg *m, void *arg) {
  (void)h;
  fig8 *f = arg;
  if (m->type == MR_MSG_APP && m->from == f->block_app_from) return 0;
  if (m->type == MR_MSG_APP && m->from == 1 && f->max_index_to) {
    size_t keep = 0;
    while (keep < m->entries.len && m->entries.v[keep].index <= f->max_index_to) keep++;
    rk_entry_vec_truncate(&m->entries, keep);
  }
  return 1;
}

static void figure8(int bug, int variant_e) {
  h_opts o = h_default_opts();
  o.pre_vote = 0;
  o.check_quorum = 0;
  o.bugs = bug ? MR_BUG_COMMIT_OLD_TERM : 0;
  harness *h = h_new(5, &o);
  h->sm_tolerate = bug;
  fig8 f = {0};
  h_set_filter(h, fig8_filter, &f);
  /* (a) S1 leads term 2 and replicates X=(3, term 2) to S2 only */
  cr_assert(h_elect(h, 1));
  uint64_t g12[] = {1, 2, 0};
  h_partition(h, g12);
  cr_assert_eq(h_propose(h, 1, "X"), RK_OK);
  h_deliver_all(h);
  cr_assert_eq(h_term_at(h, 2, 3), 2);
  /* (b) S1 crashes; S5 wins term 3 with S3, S4 and appends (3, term 3)
   * locally only */
  h_crash(h, 1);
  h_heal(h);
  h_cut(h, 5, 2);
  f.block_app_from = 5;
  int won5 = h_elect(h, 5);
  cr_assert(won5, "S5 role %d term %llu; S3 term %llu vote %llu", mr_raft_role(h_raft(h, 5)),
            (unsigned long long)mr_raft_term(h_raft(h, 5)),
            (unsigned long long)mr_raft_term(h_raft(h, 3)),
            (unsigned long long)mr_raft_vote(h_raft(h, 3)));
  cr_assert_eq(mr_raft_term(h_raft(h, 5)), 3);
  cr_assert_eq(h_term_at(h, 5, 3), 3);
  h_drop_all(h);
  /* (c) S5 crashes; S1 restarts and wins term 4 with S2, S3; it replicates
   * X (term 2) to S3, so X is on a majority {S1, S2, S3} -- but its own
   * (4, term 4) no-op reaches no one */
  h_crash(h, 5);
  h_heal(h);
  h_restart(h, 1);
  f.block_app_from = 0;
  f.max_index_to = 3;
  h_cut(h, 1, 4);
  h_tick(h, 1, 0);
  mr_raft_campaign(h_raft(h, 1)); /* term 2 -> 3 collides with nothing */
  h_deliver_all(h);
  if (mr_raft_role(h_raft(h, 1)) != MR_LEADER) {
    mr_raft_campaign(h_raft(h, 1));
    h_deliver_all(h);
  }
  cr_assert_eq(mr_raft_role(h_raft(h, 1)), MR_LEADER);
  cr_assert_eq(mr_raft_term(h_raft(h, 1)), 4);
  h_tick(h, 1, 2); /* heartbeats -> appends, truncated at index 3 */
  cr_assert_eq(h_term_at(h, 3, 3), 2, "X reached S3: majority S1,S2,S3");
  if (!bug) {
    cr_assert_eq(mr_raft_commit(h_raft(h, 1)), 2, "X (term 2) is NOT committed by counting");
  } else {
    cr_assert_eq(mr_raft_commit(h_raft(h, 1)), 3, "the planted bug commits X by counting");
  }
  if (variant_e) {
    /* (e) instead, S1 gets its term-4 entry onto a majority: that commits it
     * and, indirectly, X; S5 can no longer win an election */
    f.max_index_to = 0;
    h_tick(h, 1, 2);
    cr_assert_eq(mr_raft_commit(h_raft(h, 1)), 4);
    h_crash(h, 1);
    h_restart(h, 5);
    h_heal(h);
    for (int k = 0; k < 3; k++) {
      mr_raft_campaign(h_raft(h, 5));
      h_deliver_all(h);
      cr_assert_neq(mr_raft_role(h_raft(h, 5)), MR_LEADER, "S5 lacks committed entries");
    }
    cr_assert_eq(h_term_at(h, 2, 3), 2, "X stays");
    cr_assert_eq(h->sm_violations, 0);
    h_free(h);
    return;
  }
  /* (d) S1 crashes; S5 restarts and wins term 5 with S2, S3, S4 (its last
   * term 3 beats their 2) and overwrites X everywhere */
  h_crash(h, 1);
  h_restart(h, 5);
  f.max_index_to = 0;
  h_heal(h);
  if (!h_elect(h, 5)) cr_assert(h_elect(h, 5), "term 4 is taken; S5 wins term 5");
  cr_assert_eq(mr_raft_term(h_raft(h, 5)), 5);
  h_deliver_all(h);
  /* (with the bug S2 and S3 believe X committed and refuse to drop it) */
  for (uint64_t i = bug ? 4 : 2; i <= 4; i++)
    cr_assert_eq(h_term_at(h, i, 3), 3, "S%llu's index 3 is now term 3", (unsigned long long)i);
  if (bug) {
    cr_assert_gt(h->sm_violations, 0, "S1 applied X, the others applied S5's entry");
  } else {
    cr_assert_eq(h->sm_violations, 0);
  }
  h_free(h);
}

Test(commit, figure8_old_term_entry_not_committed_by_counting) { figure8(0, 0); }

Test(commit, figure8_e_current_term_entry_commits_the_prefix) { figure8(0, 1); }

Test(commit, planted_bug_commit_old_term_breaks_state_machine_safety) {
  /* with the bug, X is committed and applied at S1, then overwritten: two
   * nodes applied different entries at index 3 */
  figure8(1, 0);
}

Test(proposals, refused_when_not_leader_with_hint) {
  harness *h = cluster(3);
  cr_assert(h_elect(h, 2));
  uint64_t hint = 0;
  cr_assert_eq(mr_raft_propose(h_raft(h, 1), "x", 1, NULL, &hint), RK_ENOTLEADER);
  cr_assert_eq(hint, 2);
  h_free(h);
}

Test(proposals, uncommitted_bytes_cap) {
  h_opts o = h_default_opts();
  o.max_uncommitted_bytes = 2 * (5 + MR_ENTRY_OVERHEAD); /* two 5-byte entries */
  harness *h = h_new(3, &o);
  cr_assert(h_elect(h, 1));
  h_isolate(h, 1);
  cr_assert_eq(h_propose(h, 1, "12345"), RK_OK);
  cr_assert_eq(h_propose(h, 1, "12345"), RK_OK);
  cr_assert_eq(h_propose(h, 1, "1"), RK_EUNCOMMITTEDFULL);
  /* One that would not fit an empty budget either is never worth a retry. */
  static const char big[2 * (5 + MR_ENTRY_OVERHEAD)];
  cr_assert_eq(mr_raft_propose(h_raft(h, 1), big, sizeof big - MR_ENTRY_OVERHEAD + 1, NULL, NULL),
               RK_ETOOLARGE);
  h_heal(h);
  h_tick(h, 1, 2); /* commit and apply free the budget */
  cr_assert_eq(h_propose(h, 1, "1"), RK_OK);
  h_free(h);
}

Test(proposals, oversized_proposal_refused) {
  harness *h = cluster(1);
  h_tick(h, 1, 20);
  static char big[9u << 20];
  cr_assert_eq(mr_raft_propose(h_raft(h, 1), big, sizeof big, NULL, NULL), RK_ETOOLARGE);
  h_free(h);
}
