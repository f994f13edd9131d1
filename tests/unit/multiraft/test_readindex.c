/* ReadIndex (thesis §6.4) and leadership transfer (thesis §3.10). */
#include "harness.h"

#include "common/rk_err.h"

#include <criterion/criterion.h>

static harness *cluster(int n) {
  h_opts o = h_default_opts();
  return h_new(n, &o);
}

Test(read_index, refused_before_noop_commits) {
  harness *h = cluster(3);
  h_drop_type(h, MR_MSG_APP_RESP); /* the no-op cannot commit */
  cr_assert(h_elect(h, 1));
  cr_assert_lt(mr_raft_commit(h_raft(h, 1)), 2);
  cr_assert_eq(mr_raft_read_index(h_raft(h, 1), 7), RK_EAGAIN);
  h_set_filter(h, NULL, NULL);
  h_tick(h, 1, 2);
  cr_assert_eq(mr_raft_commit(h_raft(h, 1)), 2);
  cr_assert_eq(mr_raft_read_index(h_raft(h, 1), 7), RK_OK);
  h_free(h);
}

Test(read_index, served_after_quorum_heartbeat) {
  harness *h = cluster(3);
  cr_assert(h_elect(h, 1));
  cr_assert_eq(h_propose(h, 1, "a"), RK_OK);
  h_deliver_all(h);
  cr_assert_eq(mr_raft_read_index(h_raft(h, 1), 42), RK_OK);
  h_process(h, 1);
  cr_assert_eq(h->nodes[1].n_reads, 0, "not before a quorum answered the heartbeat");
  uint64_t hb = h->sent[MR_MSG_HEARTBEAT_RESP];
  h_deliver_all(h);
  cr_assert_gt(h->sent[MR_MSG_HEARTBEAT_RESP], hb);
  cr_assert_eq(h->nodes[1].n_reads, 1);
  cr_assert_eq(h->nodes[1].reads[0].ctx, 42);
  cr_assert_eq(h->nodes[1].reads[0].index, 3);
  cr_assert_geq(h->nodes[1].applied, 3);
  h_free(h);
}

Test(read_index, one_follower_is_a_quorum_of_three) {
  harness *h = cluster(3);
  cr_assert(h_elect(h, 1));
  h_isolate(h, 3);
  cr_assert_eq(mr_raft_read_index(h_raft(h, 1), 5), RK_OK);
  h_deliver_all(h);
  cr_assert_eq(h->nodes[1].n_reads, 1);
  h_free(h);
}

/* CheckQuorum's path: a read accepted by a leader that has just been cut off
 * waits for a quorum that never answers; the leader steps down after an
 * election timeout, the read is dropped with it, and a read asked of the
 * deposed node afterwards is refused. Nothing is ever served, even after
 * the heal, although the majority has moved on. */
Test(read_index, deposed_leader_cannot_serve_stale_read) {
  harness *h = cluster(3);
  cr_assert(h_elect(h, 1));
  h_isolate(h, 1);
  cr_assert_eq(mr_raft_read_index(h_raft(h, 1), 9), RK_OK, "accepted: it still leads");
  cr_assert_eq(mr_raft_pending_reads(h_raft(h, 1)), 1);
  h_deliver_all(h);
  cr_assert_eq(h->nodes[1].n_reads, 0, "no read state without a quorum");
  /* the majority moves on: new leader, new write */
  h_tick_all(h, 40);
  uint64_t l = h_leader(h);
  cr_assert(l == 2 || l == 3);
  cr_assert_eq(h_propose(h, l, "new"), RK_OK);
  h_deliver_all(h);
  cr_assert_neq(mr_raft_role(h_raft(h, 1)), MR_LEADER, "CheckQuorum deposed it while cut off");
  cr_assert_eq(mr_raft_pending_reads(h_raft(h, 1)), 0, "its pending read went with it");
  cr_assert_eq(mr_raft_read_index(h_raft(h, 1), 10), RK_ENOTLEADER, "knows no leader yet");
  h_heal(h);
  h_tick_all(h, 5);
  cr_assert_eq(h->nodes[1].n_reads, 0, "the stale read is never served");
  cr_assert_neq(mr_raft_role(h_raft(h, 1)), MR_LEADER);
  h_free(h);
}

Test(read_index, deposed_leader_without_check_quorum_learns_higher_term) {
  h_opts o = h_default_opts();
  o.check_quorum = 0;
  o.pre_vote = 0;
  harness *h = h_new(3, &o);
  cr_assert(h_elect(h, 1));
  h_isolate(h, 1);
  cr_assert(h_elect(h, 2));
  cr_assert_eq(h_propose(h, 2, "new"), RK_OK);
  h_deliver_all(h);
  cr_assert_eq(mr_raft_role(h_raft(h, 1)), MR_LEADER, "it still believes it leads");
  cr_assert_eq(mr_raft_read_index(h_raft(h, 1), 9), RK_OK);
  h_heal(h);
  h_deliver_all(h); /* the heartbeat round reaches term-3 followers */
  cr_assert_eq(h->nodes[1].n_reads, 0);
  h_tick(h, 2, 1); /* the new leader's heartbeat deposes it */
  cr_assert_eq(h->nodes[1].n_reads, 0, "followers of term 3 do not confirm a term-2 read");
  cr_assert_eq(mr_raft_role(h_raft(h, 1)), MR_FOLLOWER);
  h_free(h);
}

Test(read_index, follower_forwards_to_leader) {
  harness *h = cluster(3);
  cr_assert(h_elect(h, 1));
  cr_assert_eq(h_propose(h, 1, "a"), RK_OK);
  h_deliver_all(h);
  cr_assert_eq(mr_raft_read_index(h_raft(h, 2), 77), RK_OK);
  h_deliver_all(h);
  cr_assert_eq(h->nodes[2].n_reads, 1);
  cr_assert_eq(h->nodes[2].reads[0].ctx, 77);
  cr_assert_eq(h->nodes[2].reads[0].index, 3);
  cr_assert_geq(h->nodes[2].applied, 3);
  h_free(h);
}

Test(read_index, follower_without_leader_refuses) {
  harness *h = cluster(3);
  cr_assert_eq(mr_raft_read_index(h_raft(h, 2), 1), RK_ENOTLEADER);
  h_free(h);
}

/* ---- leadership transfer ---- */

Test(transfer, success_after_catching_up_target) {
  harness *h = cluster(3);
  cr_assert(h_elect(h, 1));
  h_isolate(h, 3);
  for (int i = 0; i < 5; i++) cr_assert_eq(h_propose(h, 1, "x"), RK_OK);
  h_deliver_all(h);
  uint64_t tn = h->sent[MR_MSG_TIMEOUT_NOW];
  h_heal(h);
  cr_assert_eq(mr_raft_transfer_leader(h_raft(h, 1), 3), RK_OK);
  cr_assert_eq(h_propose(h, 1, "y"), RK_ETRANSFERRING, "proposals refused while transferring");
  h_deliver_all(h);
  cr_assert_eq(h->sent[MR_MSG_TIMEOUT_NOW], tn + 1);
  cr_assert_eq(h_leader(h), 3);
  cr_assert_eq(mr_raft_term(h_raft(h, 3)), 3);
  cr_assert_eq(mr_raft_role(h_raft(h, 1)), MR_FOLLOWER);
  cr_assert_eq(mr_raft_last_index(h_raft(h, 3)), 8, "caught up (7) + its no-op");
  h_free(h);
}

Test(transfer, aborted_when_target_unreachable) {
  harness *h = cluster(3);
  cr_assert(h_elect(h, 1));
  h_isolate(h, 3);
  cr_assert_eq(mr_raft_transfer_leader(h_raft(h, 1), 3), RK_OK);
  cr_assert_eq(mr_raft_transferee(h_raft(h, 1)), 3);
  cr_assert_eq(h_propose(h, 1, "y"), RK_ETRANSFERRING);
  h_tick(h, 1, 10); /* one election timeout */
  cr_assert_eq(mr_raft_transferee(h_raft(h, 1)), 0, "aborted");
  cr_assert_eq(h_leader(h), 1);
  cr_assert_eq(h_propose(h, 1, "y"), RK_OK);
  h_free(h);
}

Test(transfer, refused_to_non_voter_and_by_follower) {
  harness *h = cluster(3);
  cr_assert(h_elect(h, 1));
  cr_assert_eq(mr_raft_transfer_leader(h_raft(h, 1), 7), RK_EINVAL);
  cr_assert_eq(mr_raft_transfer_leader(h_raft(h, 2), 3), RK_ENOTLEADER);
  h_free(h);
}

Test(transfer, timeout_now_overrides_lease) {
  harness *h = cluster(3);
  cr_assert(h_elect(h, 1));
  h_deliver_all(h);
  /* 2 and 3 just heard the leader (lease), yet the transfer succeeds */
  cr_assert_eq(mr_raft_transfer_leader(h_raft(h, 1), 2), RK_OK);
  h_deliver_all(h);
  cr_assert_eq(h_leader(h), 2);
  h_free(h);
}
