/* Elections (Raft §5.2, §5.4.1), Pre-Vote (thesis §9.6), CheckQuorum (§6.2). */
#include "harness.h"

#include "common/rk_err.h"

#include <criterion/criterion.h>

static harness *cluster(int n, int pre_vote, int check_quorum) {
  h_opts o = h_default_opts();
  o.pre_vote = pre_vote;
  o.check_quorum = check_quorum;
  return h_new(n, &o);
}

Test(election, win) {
  harness *h = cluster(3, 1, 1);
  cr_assert(h_elect(h, 1));
  cr_assert_eq(mr_raft_term(h_raft(h, 1)), 2);
  for (uint64_t i = 2; i <= 3; i++) {
    cr_assert_eq(mr_raft_role(h_raft(h, i)), MR_FOLLOWER);
    cr_assert_eq(mr_raft_lead(h_raft(h, i)), 1);
    cr_assert_eq(mr_raft_term(h_raft(h, i)), 2);
    cr_assert_eq(h->nodes[i].log.hs.vote, 1, "the vote is persisted");
  }
  h_free(h);
}

Test(election, split_vote_and_retry) {
  harness *h = cluster(4, 0, 0);
  /* 1 and 2 campaign at once; 1 gets 3's vote, 2 gets 4's: 2 of 4 each */
  h_cut(h, 1, 2);
  h_cut(h, 1, 4);
  h_cut(h, 2, 3);
  mr_raft_campaign(h_raft(h, 1));
  mr_raft_campaign(h_raft(h, 2));
  h_deliver_all(h);
  cr_assert_eq(mr_raft_role(h_raft(h, 1)), MR_CANDIDATE);
  cr_assert_eq(mr_raft_role(h_raft(h, 2)), MR_CANDIDATE);
  cr_assert_eq(h_leader(h), 0, "a split vote elects nobody");
  h_heal(h);
  /* randomized timeouts break the tie in a later term */
  for (int k = 0; k < 100 && h_leader(h) == 0; k++) h_tick_all(h, 1);
  uint64_t l = h_leader(h);
  cr_assert_neq(l, 0);
  cr_assert_gt(mr_raft_term(h_raft(h, l)), 2);
  h_free(h);
}

Test(election, step_down_on_higher_term) {
  harness *h = cluster(3, 0, 0);
  cr_assert(h_elect(h, 1));
  h_isolate(h, 1);
  cr_assert(h_elect(h, 2));
  cr_assert_eq(mr_raft_term(h_raft(h, 2)), 3);
  cr_assert_eq(mr_raft_role(h_raft(h, 1)), MR_LEADER, "the old leader does not know yet");
  h_heal(h);
  h_tick(h, 2, 1); /* a heartbeat at term 3 */
  cr_assert_eq(mr_raft_role(h_raft(h, 1)), MR_FOLLOWER);
  cr_assert_eq(mr_raft_term(h_raft(h, 1)), 3);
  cr_assert_eq(mr_raft_lead(h_raft(h, 1)), 2);
  h_free(h);
}

Test(election, one_vote_per_term) {
  harness *h = cluster(3, 0, 0);
  h_cut(h, 1, 2);
  mr_raft_campaign(h_raft(h, 1)); /* term 2: 3 votes for 1 */
  h_deliver_some(h, 2);           /* the requests (1->2 is cut) */
  h_drop_all(h);                  /* 3's grant is lost */
  cr_assert_eq(mr_raft_vote(h_raft(h, 3)), 1);
  h_cut(h, 1, 3);
  mr_raft_campaign(h_raft(h, 2)); /* term 2 as well */
  h_deliver_all(h);
  cr_assert_eq(mr_raft_term(h_raft(h, 2)), 2);
  cr_assert_eq(mr_raft_vote(h_raft(h, 3)), 1, "3 already voted in term 2");
  cr_assert_neq(mr_raft_role(h_raft(h, 2)), MR_LEADER);
  h_free(h);
}

static void diverge_logs(harness *h) {
  /* leader 1 replicates entries to 2 only; 3 stays behind */
  cr_assert(h_elect(h, 1));
  h_isolate(h, 3);
  for (int i = 0; i < 3; i++) cr_assert_eq(h_propose(h, 1, "x"), RK_OK);
  h_deliver_all(h);
  h_crash(h, 1);
  h_heal(h);
}

Test(election, uptodate_restriction) {
  harness *h = cluster(3, 0, 0);
  diverge_logs(h);
  mr_raft_campaign(h_raft(h, 3));
  h_deliver_all(h);
  cr_assert_neq(mr_raft_role(h_raft(h, 3)), MR_LEADER, "2 refuses: 3's log is behind (5.4.1)");
  cr_assert(h_elect(h, 2));
  h_free(h);
}

Test(election, planted_bug_vote_without_uptodate_check) {
  h_opts o = h_default_opts();
  o.pre_vote = 0;
  o.check_quorum = 0;
  o.bugs = MR_BUG_VOTE_NO_UPTODATE;
  harness *h = h_new(3, &o);
  diverge_logs(h);
  cr_assert(h_elect(h, 3), "with the planted bug the stale node wins");
  h_free(h);
}

Test(election, randomized_timeout_within_bounds) {
  harness *h = cluster(1, 0, 0);
  /* a lone voter elects itself between election_tick and 2*election_tick */
  int ticks = 0;
  while (mr_raft_role(h_raft(h, 1)) != MR_LEADER && ticks < 100) {
    h_tick(h, 1, 1);
    ticks++;
  }
  cr_assert_geq(ticks, 10);
  cr_assert_lt(ticks, 20);
  h_free(h);
}

static void run_rejoin(harness *h, uint64_t *term_before, uint64_t *term_after, uint64_t *lead) {
  cr_assert(h_elect(h, 1));
  h_tick_all(h, 2);
  *term_before = mr_raft_term(h_raft(h, 1));
  h_isolate(h, 3);
  h_tick(h, 3, 60); /* 3 times out again and again alone */
  h_heal(h);
  h_tick_all(h, 30);
  *lead = h_leader(h);
  *term_after = *lead ? mr_raft_term(h_raft(h, *lead)) : 0;
}

Test(prevote, rejoining_node_does_not_disrupt) {
  harness *h = cluster(3, 1, 1);
  uint64_t before, after, lead;
  run_rejoin(h, &before, &after, &lead);
  cr_assert_eq(mr_raft_term(h_raft(h, 3)), before, "pre-vote: the isolated node's term stayed");
  cr_assert_eq(lead, 1);
  cr_assert_eq(after, before, "the healthy leader was not disrupted");
  h_free(h);
}

Test(prevote, off_rejoining_node_disrupts) {
  harness *h = cluster(3, 0, 1);
  uint64_t before, after, lead;
  run_rejoin(h, &before, &after, &lead);
  cr_assert_gt(after, before, "without pre-vote the rejoining node forces a new term");
  h_free(h);
}

Test(check_quorum, isolated_leader_steps_down) {
  harness *h = cluster(3, 1, 1);
  cr_assert(h_elect(h, 1));
  h_isolate(h, 1);
  h_tick(h, 1, 25);
  cr_assert_eq(mr_raft_role(h_raft(h, 1)), MR_FOLLOWER);
  h_free(h);
}

Test(check_quorum, connected_leader_stays) {
  harness *h = cluster(3, 1, 1);
  cr_assert(h_elect(h, 1));
  h_tick_all(h, 50);
  cr_assert_eq(h_leader(h), 1);
  cr_assert_eq(mr_raft_term(h_raft(h, 1)), 2);
  h_free(h);
}

Test(check_quorum, follower_in_lease_ignores_vote_request) {
  harness *h = cluster(3, 0, 1);
  cr_assert(h_elect(h, 1));
  /* 3 cannot hear the leader and campaigns; 2 heard the leader recently */
  h_cut(h, 1, 3);
  mr_raft_campaign(h_raft(h, 3));
  h_deliver_all(h);
  cr_assert_eq(mr_raft_term(h_raft(h, 2)), 2, "2 ignored the vote request (lease)");
  cr_assert_eq(mr_raft_vote(h_raft(h, 2)), 1);
  cr_assert_eq(h_leader(h), 1);
  h_free(h);
}

/* What the host does once liveness shows no live majority: the leader
 * steps down in its term, with nothing committed lost and no vote spent;
 * a no-op for anyone else; and the group elects again afterwards. */
Test(check_quorum, step_down_keeps_the_term_and_the_log) {
  harness *h = cluster(3, 1, 1);
  cr_assert(h_elect(h, 1));
  uint64_t term = mr_raft_term(h_raft(h, 1));
  uint64_t last = mr_raft_last_index(h_raft(h, 1));
  mr_raft_step_down(h_raft(h, 2)); /* a follower: no-op */
  cr_assert_eq(mr_raft_role(h_raft(h, 2)), MR_FOLLOWER);
  cr_assert_eq(mr_raft_lead(h_raft(h, 2)), 1);
  mr_raft_step_down(h_raft(h, 1));
  cr_assert_eq(mr_raft_role(h_raft(h, 1)), MR_FOLLOWER);
  cr_assert_eq(mr_raft_term(h_raft(h, 1)), term);
  cr_assert_eq(mr_raft_lead(h_raft(h, 1)), 0);
  cr_assert_eq(mr_raft_last_index(h_raft(h, 1)), last);
  uint64_t idx = 0;
  cr_assert_eq(mr_raft_propose(h_raft(h, 1), "x", 1, &idx, NULL), RK_ENOTLEADER);
  cr_assert(h_elect(h, 2));
  cr_assert_gt(mr_raft_term(h_raft(h, 2)), term);
  h_free(h);
}

/* The host's node-liveness signal: followers of a dead leader forget it, so a
 * survivor's campaign succeeds at once instead of being refused by the
 * lease (§4.2.3) until the followers' own election timeouts run out. */
Test(check_quorum, forgotten_leader_no_longer_blocks_votes) {
  harness *h = cluster(3, 1, 1);
  cr_assert(h_elect(h, 1));
  uint64_t term = mr_raft_term(h_raft(h, 1));
  h_crash(h, 1);
  /* In lease: 2's immediate campaign is refused by 3. */
  mr_raft_campaign(h_raft(h, 2));
  h_deliver_all(h);
  cr_assert_neq(mr_raft_role(h_raft(h, 2)), MR_LEADER, "3 still honours 1's lease");
  mr_raft_forget_leader(h_raft(h, 3));
  cr_assert_eq(mr_raft_lead(h_raft(h, 3)), 0);
  mr_raft_forget_leader(h_raft(h, 2));
  mr_raft_campaign(h_raft(h, 2));
  h_deliver_all(h);
  cr_assert_eq(mr_raft_role(h_raft(h, 2)), MR_LEADER);
  cr_assert_gt(mr_raft_term(h_raft(h, 2)), term);
  /* Not a follower: a no-op. */
  mr_raft_forget_leader(h_raft(h, 2));
  cr_assert_eq(mr_raft_role(h_raft(h, 2)), MR_LEADER);
  cr_assert_eq(mr_raft_lead(h_raft(h, 2)), 2);
  h_free(h);
}
