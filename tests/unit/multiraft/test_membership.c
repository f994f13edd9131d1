/* Membership changes (thesis ch. 4): learners, single-server changes, joint
 * consensus, learner promotion. */
#include "harness.h"

#include "common/rk_err.h"
#include "multiraft/raft_int.h"

#include <criterion/criterion.h>

static harness *cluster(int n, h_opts *o) {
  *o = h_default_opts();
  return h_new(n, o);
}

static int change(harness *h, uint64_t leader, int transition, int op, uint64_t id) {
  mr_conf_change cc = {.transition = (uint8_t)transition, .n = 1};
  cc.changes[0] = (mr_cc_single){.op = (uint8_t)op, .id = id};
  int rc = mr_raft_propose_conf_change(h_raft(h, leader), &cc, NULL);
  h_deliver_all(h);
  return rc;
}

static uint8_t flags_at(harness *h, uint64_t node, uint64_t id) {
  mr_conf c;
  mr_raft_conf(h_raft(h, node), &c);
  return mr_conf_flags(&c, id);
}

/* n voters led by 1, and replica n + 1 added as a learner that caught up. */
static harness *with_learner(int n, h_opts *o) {
  harness *h = cluster(n, o);
  cr_assert(h_elect(h, 1));
  uint64_t l = (uint64_t)n + 1;
  h_add_node(h, l, o);
  cr_assert_eq(change(h, 1, MR_CC_AUTO, MR_CC_ADD_LEARNER, l), RK_OK);
  h_tick(h, 1, 2);
  cr_assert_eq(flags_at(h, 1, l), MR_LEARNER);
  return h;
}

static void assert_commits(harness *h, uint64_t leader) {
  uint64_t idx;
  cr_assert_eq(mr_raft_propose(h_raft(h, leader), "w", 1, &idx, NULL), RK_OK);
  h_deliver_all(h);
  cr_assert_geq(mr_raft_commit(h_raft(h, leader)), idx);
}

/* A ReadIndex pending when the configuration shrinks is judged again by
 * the new configuration: here the leader is left as the only voter, and
 * with no follower left to answer a heartbeat round, nothing else would
 * ever confirm it. */
Test(membership, a_read_pending_across_a_shrink_is_confirmed_by_the_new_configuration) {
  h_opts o;
  harness *h = cluster(2, &o);
  cr_assert(h_elect(h, 1));
  h_drop_type(h, MR_MSG_HEARTBEAT_RESP); /* no read round completes */
  cr_assert_eq(mr_raft_read_index(h_raft(h, 1), 77), RK_OK);
  h_deliver_all(h);
  cr_assert_eq(h->nodes[1].n_reads, 0, "confirmed without node 2's answer");
  cr_assert_eq(change(h, 1, MR_CC_AUTO, MR_CC_REMOVE, 2), RK_OK); /* appends still flow */
  h_deliver_all(h);
  cr_assert_eq(flags_at(h, 1, 2), 0, "node 2 was not removed");
  cr_assert_eq(h->nodes[1].n_reads, 1, "the pending read was never confirmed");
  cr_assert_eq(h->nodes[1].reads[0].ctx, 77);
  h_set_filter(h, NULL, NULL);
  h_free(h);
}

Test(membership, learner_catches_up_but_does_not_count) {
  h_opts o;
  harness *h = with_learner(3, &o);
  cr_assert_eq(flags_at(h, 4, 4), MR_LEARNER, "the learner learned the group via snapshot + log");
  cr_assert_eq(mr_raft_last_index(h_raft(h, 4)), mr_raft_last_index(h_raft(h, 1)));
  /* leader + learner only: nothing commits */
  h_cut(h, 1, 2);
  h_cut(h, 1, 3);
  uint64_t idx;
  cr_assert_eq(mr_raft_propose(h_raft(h, 1), "x", 1, &idx, NULL), RK_OK);
  h_deliver_all(h);
  cr_assert_eq(mr_raft_last_index(h_raft(h, 4)), idx, "the learner has it");
  cr_assert_lt(mr_raft_commit(h_raft(h, 1)), idx, "but its copy does not count");
  h_free(h);
}

Test(membership, learner_never_campaigns_and_its_vote_does_not_count) {
  h_opts o;
  harness *h = with_learner(3, &o);
  uint64_t term = mr_raft_term(h_raft(h, 4));
  h_isolate(h, 4);
  h_tick(h, 4, 100);
  cr_assert_eq(mr_raft_role(h_raft(h, 4)), MR_FOLLOWER);
  cr_assert_eq(mr_raft_term(h_raft(h, 4)), term, "a learner never campaigns");
  h_heal(h);
  /* 2 campaigns and reaches only the learner: learner votes do not count */
  h_crash(h, 1);
  h_cut(h, 2, 3);
  h_tick(h, 2, 20);
  h_tick(h, 4, 20);
  cr_assert_neq(mr_raft_role(h_raft(h, 2)), MR_LEADER);
  h_free(h);
}

Test(membership, learner_promotion) {
  h_opts o;
  harness *h = cluster(3, &o);
  cr_assert(h_elect(h, 1));
  h_add_node(h, 4, &o);
  cr_assert_eq(change(h, 1, MR_CC_AUTO, MR_CC_ADD_LEARNER, 4), RK_OK);
  cr_assert_eq(change(h, 1, MR_CC_AUTO, MR_CC_ADD_VOTER, 4), RK_OK);
  h_tick(h, 1, 2);
  cr_assert_eq(flags_at(h, 1, 4), MR_VOTER_IN);
  cr_assert_eq(flags_at(h, 4, 4), MR_VOTER_IN);
  /* the promoted replica can now lead */
  h_tick_all(h, 1);
  cr_assert_eq(mr_raft_transfer_leader(h_raft(h, 1), 4), RK_OK);
  h_deliver_all(h);
  cr_assert_eq(h_leader(h), 4);
  h_free(h);
}

Test(membership, single_server_changes_3_4_5_4_3) {
  h_opts o;
  harness *h = cluster(3, &o);
  cr_assert(h_elect(h, 1));
  h_add_node(h, 4, &o);
  h_add_node(h, 5, &o);
  uint64_t steps[][2] = {
      {MR_CC_ADD_VOTER, 4}, {MR_CC_ADD_VOTER, 5}, {MR_CC_REMOVE, 5}, {MR_CC_REMOVE, 4}};
  int sizes[] = {4, 5, 4, 3};
  for (int s = 0; s < 4; s++) {
    cr_assert_eq(change(h, 1, MR_CC_AUTO, (int)steps[s][0], steps[s][1]), RK_OK, "step %d", s);
    h_tick(h, 1, 2);
    mr_conf c;
    mr_raft_conf(h_raft(h, 1), &c);
    cr_assert_eq(c.n, sizes[s], "step %d: %d replicas", s, c.n);
    cr_assert_not(mr_conf_is_joint(&c));
    for (uint64_t i = 1; i <= 3; i++) {
      mr_conf ci;
      mr_raft_conf(h_raft(h, i), &ci);
      cr_assert_eq(ci.n, sizes[s], "node %llu agrees", (unsigned long long)i);
    }
    assert_commits(h, 1);
  }
  h_free(h);
}

Test(membership, one_change_in_flight) {
  h_opts o;
  harness *h = cluster(3, &o);
  mr_conf_change cc = {.transition = MR_CC_AUTO, .n = 1};
  cc.changes[0] = (mr_cc_single){.op = MR_CC_ADD_LEARNER, .id = 4};
  cr_assert_eq(mr_raft_propose_conf_change(h_raft(h, 1), &cc, NULL), RK_ENOTLEADER);
  cr_assert(h_elect(h, 1));
  h_isolate(h, 1);
  cr_assert_eq(mr_raft_propose_conf_change(h_raft(h, 1), &cc, NULL), RK_OK);
  cc.changes[0].id = 5;
  cr_assert_eq(mr_raft_propose_conf_change(h_raft(h, 1), &cc, NULL), RK_ECONFPENDING);
  h_free(h);
}

Test(membership, conf_change_waits_for_the_noop) {
  h_opts o;
  harness *h = cluster(3, &o);
  h_drop_type(h, MR_MSG_APP_RESP);
  cr_assert(h_elect(h, 1));
  mr_conf_change cc = {.transition = MR_CC_AUTO, .n = 1};
  cc.changes[0] = (mr_cc_single){.op = MR_CC_ADD_LEARNER, .id = 4};
  cr_assert_eq(mr_raft_propose_conf_change(h_raft(h, 1), &cc, NULL), RK_ECONFPENDING,
               "no change before the leader's no-op is applied");
  h_set_filter(h, NULL, NULL);
  h_tick(h, 1, 2);
  cr_assert_eq(mr_raft_propose_conf_change(h_raft(h, 1), &cc, NULL), RK_OK);
  h_free(h);
}

Test(membership, invalid_changes_refused) {
  h_opts o;
  harness *h = cluster(3, &o);
  cr_assert(h_elect(h, 1));
  mr_conf_change leave = {.transition = MR_CC_AUTO, .n = 0};
  cr_assert_eq(mr_raft_propose_conf_change(h_raft(h, 1), &leave, NULL), RK_EINVAL,
               "cannot leave a joint configuration we are not in");
  mr_conf_change all = {.transition = MR_CC_JOINT_EXPLICIT, .n = 3};
  for (int i = 0; i < 3; i++)
    all.changes[i] = (mr_cc_single){.op = MR_CC_REMOVE, .id = (uint64_t)i + 1};
  cr_assert_eq(mr_raft_propose_conf_change(h_raft(h, 1), &all, NULL), RK_EINVAL,
               "never remove every voter");
  h_free(h);
}

static int replace(harness *h, uint64_t leader, int transition, uint64_t add, uint64_t rm) {
  mr_conf_change cc = {.transition = (uint8_t)transition, .n = 2};
  cc.changes[0] = (mr_cc_single){.op = MR_CC_ADD_VOTER, .id = add};
  cc.changes[1] = (mr_cc_single){.op = MR_CC_REMOVE, .id = rm};
  int rc = mr_raft_propose_conf_change(h_raft(h, leader), &cc, NULL);
  h_deliver_all(h);
  return rc;
}

Test(joint, enter_and_leave_automatically) {
  h_opts o;
  harness *h = cluster(3, &o);
  cr_assert(h_elect(h, 1));
  h_add_node(h, 4, &o);
  cr_assert_eq(replace(h, 1, MR_CC_AUTO, 4, 3), RK_OK); /* two voter changes: joint */
  h_tick(h, 1, 3);
  for (uint64_t i = 1; i <= 4; i++) {
    mr_conf c;
    mr_raft_conf(h_raft(h, i), &c);
    if (i == 3) continue; /* 3 may not learn that it left */
    cr_assert_not(mr_conf_is_joint(&c), "node %llu left the joint config", (unsigned long long)i);
    cr_assert_eq(c.n, 3);
    cr_assert_eq(mr_conf_flags(&c, 4), MR_VOTER_IN);
    cr_assert_eq(mr_conf_flags(&c, 3), 0);
  }
  assert_commits(h, 1);
  h_free(h);
}

Test(joint, explicit_leave_and_both_majorities_needed) {
  h_opts o;
  harness *h = cluster(3, &o);
  cr_assert(h_elect(h, 1));
  h_add_node(h, 4, &o);
  h_add_node(h, 5, &o);
  /* C_old = {1,2,3}, C_new = {1,4,5} */
  mr_conf_change cc = {.transition = MR_CC_JOINT_EXPLICIT, .n = 4};
  cc.changes[0] = (mr_cc_single){.op = MR_CC_ADD_VOTER, .id = 4};
  cc.changes[1] = (mr_cc_single){.op = MR_CC_ADD_VOTER, .id = 5};
  cc.changes[2] = (mr_cc_single){.op = MR_CC_REMOVE, .id = 2};
  cc.changes[3] = (mr_cc_single){.op = MR_CC_REMOVE, .id = 3};
  cr_assert_eq(mr_raft_propose_conf_change(h_raft(h, 1), &cc, NULL), RK_OK);
  h_deliver_all(h);
  h_tick(h, 1, 3);
  mr_conf c;
  mr_raft_conf(h_raft(h, 1), &c);
  cr_assert(mr_conf_is_joint(&c), "explicit: stays joint");
  cr_assert_eq(mr_conf_flags(&c, 2), MR_VOTER_OUT);
  cr_assert_eq(mr_conf_flags(&c, 4), MR_VOTER_IN);
  cr_assert_eq(mr_conf_flags(&c, 1), MR_VOTER_IN | MR_VOTER_OUT);
  /* C_old's majority alone ({1,2,3}) is not enough */
  h_cut(h, 1, 4);
  h_cut(h, 1, 5);
  uint64_t idx;
  cr_assert_eq(mr_raft_propose(h_raft(h, 1), "x", 1, &idx, NULL), RK_OK);
  h_deliver_all(h);
  cr_assert_lt(mr_raft_commit(h_raft(h, 1)), idx);
  h_heal(h);
  h_tick(h, 1, 2);
  cr_assert_geq(mr_raft_commit(h_raft(h, 1)), idx, "both majorities now");
  /* leave explicitly */
  mr_conf_change leave = {.transition = MR_CC_AUTO, .n = 0};
  cr_assert_eq(mr_raft_propose_conf_change(h_raft(h, 1), &leave, NULL), RK_OK);
  h_deliver_all(h);
  h_tick(h, 1, 2);
  mr_raft_conf(h_raft(h, 1), &c);
  cr_assert_not(mr_conf_is_joint(&c));
  cr_assert_eq(c.n, 3);
  /* C_new's majority alone ({1,4,5}) now suffices */
  h_isolate(h, 2);
  h_isolate(h, 3);
  assert_commits(h, 1);
  h_free(h);
}

Test(joint, leader_not_in_cnew_steps_down_after_leaving) {
  h_opts o;
  harness *h = cluster(3, &o);
  cr_assert(h_elect(h, 1));
  h_add_node(h, 4, &o);
  cr_assert_eq(replace(h, 1, MR_CC_JOINT_IMPLICIT, 4, 1), RK_OK);
  h_tick(h, 1, 1);
  cr_assert_eq(mr_raft_role(h_raft(h, 1)), MR_FOLLOWER, "removed leader stepped down");
  h_tick_all(h, 40);
  uint64_t l = h_leader(h);
  cr_assert(l == 2 || l == 3 || l == 4, "a member of C_new leads: %llu", (unsigned long long)l);
  assert_commits(h, l);
  h_free(h);
}

/* Holds back what leader 1 tells 2 and 3: entries from `from_index` on,
 * and any commit index at or past `commit_limit`. */
typedef struct hold_back {
  uint64_t from_index, commit_limit;
} hold_back;

static int hold_back_filter(harness *h, mr_msg *m, void *arg) {
  (void)h;
  const hold_back *hb = arg;
  if (m->from != 1) return 1;
  if (m->commit >= hb->commit_limit) return 0;
  for (size_t i = 0; i < m->entries.len; i++)
    if (m->entries.v[i].index >= hb->from_index) return 0;
  return 1;
}

/* A leader demoted (op MR_CC_ADD_LEARNER) or removed (MR_CC_REMOVE) by
 * joint consensus, holding an entry of its own past the leave that nobody
 * else has, steps down when it applies the leave, before 2 and 3 learn that
 * it committed: they are still in the joint configuration, whose outgoing
 * half needs 1's vote, and 1 refuses them (its log is longer). No leader
 * could ever be elected, were it not for 1 telling them the commit
 * (nudge_leader, learn_commit). */
static void leaving_leader_does_not_strand_the_group(uint8_t op) {
  h_opts o = h_default_opts();
  o.max_msg_bytes = 1; /* one entry per AppendEntries */
  harness *h = h_new(2, &o);
  cr_assert(h_elect(h, 1));
  h_add_node(h, 3, &o);
  cr_assert_eq(change(h, 1, MR_CC_AUTO, MR_CC_ADD_LEARNER, 3), RK_OK);
  h_tick(h, 1, 2);
  mr_raft *l = h_raft(h, 1);
  /* Enter the joint configuration (1 out, 3 promoted); the leave that 1
   * proposes once the enter applies is held back. */
  hold_back hb = {.from_index = mr_raft_last_index(l) + 2, .commit_limit = UINT64_MAX};
  h_set_filter(h, hold_back_filter, &hb);
  mr_conf_change cc = {.transition = MR_CC_JOINT_IMPLICIT, .n = 2};
  cc.changes[0] = (mr_cc_single){.op = op, .id = 1};
  cc.changes[1] = (mr_cc_single){.op = MR_CC_ADD_VOTER, .id = 3};
  uint64_t enter = 0;
  cr_assert_eq(mr_raft_propose_conf_change(l, &cc, &enter), RK_OK);
  cr_assert_eq(enter + 1, hb.from_index);
  h_deliver_all(h);
  h_tick_all(h, 1);
  cr_assert_eq(mr_raft_last_index(l), enter + 1, "1 proposed the leave");
  cr_assert_eq(flags_at(h, 2, 3), MR_VOTER_IN, "2 is in the joint configuration");
  /* An entry of 1's own after the leave, which 2 and 3 will never get. */
  uint64_t own = 0;
  cr_assert_eq(mr_raft_propose(l, "x", 1, &own, NULL), RK_OK);
  /* Now the leave reaches 2 and 3, but not its commit, nor 1's own entry. */
  hb.from_index = own;
  hb.commit_limit = enter + 1;
  h_tick_all(h, 3);
  cr_assert_geq(mr_raft_commit(l), enter + 1, "1 committed the leave");
  cr_assert_eq(flags_at(h, 1, 1), op == MR_CC_REMOVE ? 0 : MR_LEARNER, "1 applied it");
  cr_assert_neq(mr_raft_role(l), MR_LEADER, "1 stepped down");
  cr_assert_lt(mr_raft_commit(h_raft(h, 2)), enter + 1, "2 never heard of the commit");
  cr_assert_lt(mr_raft_commit(h_raft(h, 3)), enter + 1, "3 never heard of the commit");
  /* The network heals: a voter must come to lead. */
  h_set_filter(h, NULL, NULL);
  uint64_t lead = 0;
  for (int k = 0; k < 200 && (lead = h_leader(h)) != 2 && lead != 3; k++) h_tick_all(h, 1);
  cr_assert(lead == 2 || lead == 3, "no voter leads (leader %llu, 1 is %d)",
            (unsigned long long)lead, mr_raft_role(l));
  assert_commits(h, lead);
  h_free(h);
}

Test(joint, a_demoted_leader_that_steps_down_does_not_strand_the_group) {
  leaving_leader_does_not_strand_the_group(MR_CC_ADD_LEARNER);
}

Test(joint, a_removed_leader_that_steps_down_does_not_strand_the_group) {
  leaving_leader_does_not_strand_the_group(MR_CC_REMOVE);
}

/* Ticks r n times; returns in how many ticks it sent nudges (and nothing
 * else). */
static int nudge_rounds(mr_raft *r, int n) {
  int rounds = 0;
  for (int i = 0; i < n; i++) {
    mr_raft_tick(r);
    mr_ready rd;
    cr_assert_eq(mr_raft_ready(r, &rd), RK_OK);
    int nudged = 0;
    for (size_t k = 0; k < rd.n_msgs; k++) {
      cr_assert_eq(rd.msgs[k].type, MR_MSG_APP_RESP, "a removed replica only nudges");
      cr_assert_eq(rd.msgs[k].commit, mr_raft_commit(r));
      cr_assert(rd.msgs[k].to == 1 || rd.msgs[k].to == 2, "to a voter, not %llu",
                (unsigned long long)rd.msgs[k].to);
      nudged = 1;
    }
    rounds += nudged;
    mr_raft_advance(r, &rd);
    mr_ready_free(&rd);
  }
  return rounds;
}

/* A removed replica tells the voters its commit for a few timeouts only:
 * nothing but the host's cleanup ends it, and it must not wake its old
 * group's voters forever. A vote request (a voter still counts it) and a
 * restart start the count again. */
Test(joint, a_removed_replica_nudges_for_a_few_timeouts_then_goes_quiet) {
  h_opts o;
  harness *h = cluster(3, &o);
  cr_assert(h_elect(h, 1));
  cr_assert_eq(change(h, 1, MR_CC_AUTO, MR_CC_REMOVE, 3), RK_OK);
  h_tick(h, 1, 2);
  cr_assert_eq(flags_at(h, 3, 3), 0, "3 applied its removal");
  cr_assert_eq(nudge_rounds(h_raft(h, 3), 40 * 20), (int)MR_REMOVED_NUDGES);
  mr_raft *r = h_raft(h, 3);
  uint64_t last = mr_raft_last_index(r);
  mr_msg m = {.type = MR_MSG_PREVOTE,
              .from = 2,
              .to = 3,
              .term = mr_raft_term(r) + 1,
              .index = last,
              .log_term = h_term_at(h, 3, last)};
  cr_assert_eq(mr_raft_step(r, &m), RK_OK);
  mr_ready rd; /* its pre-vote answer */
  cr_assert_eq(mr_raft_ready(r, &rd), RK_OK);
  mr_raft_advance(r, &rd);
  mr_ready_free(&rd);
  cr_assert_eq(nudge_rounds(r, 40 * 20), (int)MR_REMOVED_NUDGES, "asked again: nudges again");
  h_crash(h, 3);
  h_restart(h, 3);
  cr_assert_eq(nudge_rounds(h_raft(h, 3), 40 * 20), (int)MR_REMOVED_NUDGES,
               "restarted removed: nudges again");
  h_free(h);
}

Test(joint, demote_voter_to_learner) {
  h_opts o;
  harness *h = cluster(3, &o);
  cr_assert(h_elect(h, 1));
  mr_conf_change cc = {.transition = MR_CC_JOINT_IMPLICIT, .n = 1};
  cc.changes[0] = (mr_cc_single){.op = MR_CC_ADD_LEARNER, .id = 3};
  cr_assert_eq(mr_raft_propose_conf_change(h_raft(h, 1), &cc, NULL), RK_OK);
  h_deliver_all(h);
  h_tick(h, 1, 2);
  cr_assert_eq(flags_at(h, 1, 3), MR_LEARNER);
  cr_assert_eq(flags_at(h, 3, 3), MR_LEARNER);
  h_free(h);
}

Test(confchange, encode_decode_roundtrip_and_malformed) {
  mr_conf_change cc = {.transition = MR_CC_JOINT_EXPLICIT, .n = 2}, out;
  cc.changes[0] = (mr_cc_single){.op = MR_CC_ADD_VOTER, .id = 0x0102030405060708ull};
  cc.changes[1] = (mr_cc_single){.op = MR_CC_REMOVE, .id = 9};
  uint8_t buf[MR_CC_MAX_BYTES];
  size_t n = mr_cc_encode(&cc, buf, sizeof buf);
  cr_assert_eq(n, 20);
  cr_assert_eq(mr_cc_decode(buf, n, &out), RK_OK);
  cr_assert_eq(out.changes[0].id, cc.changes[0].id);
  cr_assert_eq(out.changes[1].op, MR_CC_REMOVE);
  cr_assert_eq(mr_cc_decode(buf, n - 1, &out), RK_EMALFORMED);
  buf[2] = 77;
  cr_assert_eq(mr_cc_decode(buf, n, &out), RK_EMALFORMED);
}

/* A replica that does not know its group yet must learn the configuration
 * from a snapshot: replaying "add X" onto an empty configuration would make
 * X a one-voter group that elects itself alone. */
Test(membership, no_change_applies_onto_an_empty_configuration) {
  mr_conf empty = {.n = 0}, next;
  mr_conf_change add = {.transition = MR_CC_AUTO, .n = 1, .changes = {{MR_CC_ADD_VOTER, 7}}};
  cr_assert_eq(mr_conf_apply_change(&empty, &add, &next), RK_EINVAL);
  mr_conf one = {.n = 1, .r = {{1, MR_VOTER_IN}}};
  cr_assert_eq(mr_conf_apply_change(&one, &add, &next), RK_OK, "a known group still grows");
  cr_assert_eq(next.n, 2);
}

static size_t count_msgs(const mr_ready *rd, int type, int must_persist) {
  size_t n = 0;
  for (size_t i = 0; i < rd->n_msgs; i++)
    if (rd->msgs[i].type == type && rd->msgs[i].must_persist == must_persist) n++;
  return n;
}

/* A lone voter wins its election in one Ready, with APPs to its learner at
 * the new term. They wait for that term to be durable: sent before, a crash
 * could make the voter reuse the term for other entries at the same
 * indexes, and the learner would keep the first ones (Log Matching broken
 * for good once it is promoted). */
Test(membership, a_lone_voters_first_messages_wait_for_its_new_term) {
  h_opts o;
  harness *h = with_learner(1, &o);
  h_crash(h, 1);
  h_restart(h, 1);
  mr_raft *r = h_raft(h, 1);
  uint64_t term = mr_raft_term(r);
  mr_raft_campaign(r);
  cr_assert_eq(mr_raft_role(r), MR_LEADER, "a lone voter wins at once");
  mr_ready rd;
  cr_assert_eq(mr_raft_ready(r, &rd), RK_OK);
  cr_assert_eq(rd.hs.term, term + 1);
  cr_assert(rd.must_sync);
  cr_assert_eq(count_msgs(&rd, MR_MSG_APP, 0), 0, "an APP left before its term was durable");
  cr_assert_geq(count_msgs(&rd, MR_MSG_APP, 1), 1, "the learner is sent the new leader's log");
  mr_ready_free(&rd);
  h_free(h);
}

/* The same rule on a follower: its answer to the heartbeat that raised its
 * term waits for the term; at a term it already holds it leaves at once. */
Test(membership, a_heartbeat_answer_waits_only_when_the_term_moved) {
  h_opts o;
  harness *h = cluster(3, &o);
  cr_assert(h_elect(h, 1));
  h_deliver_all(h);
  mr_raft *f = h_raft(h, 2);
  uint64_t term = mr_raft_term(f), commit = mr_raft_commit(f);
  mr_msg hb = {.type = MR_MSG_HEARTBEAT, .from = 1, .to = 2, .term = term, .commit = commit};
  cr_assert_eq(mr_raft_step(f, &hb), RK_OK);
  mr_ready rd;
  cr_assert_eq(mr_raft_ready(f, &rd), RK_OK);
  cr_assert_eq(count_msgs(&rd, MR_MSG_HEARTBEAT_RESP, 0), 1, "same term: answered at once");
  mr_raft_advance(f, &rd);
  mr_ready_free(&rd);
  hb.term = term + 1; /* a new leader's (its election was not seen here) */
  hb.from = 3;
  cr_assert_eq(mr_raft_step(f, &hb), RK_OK);
  cr_assert_eq(mr_raft_ready(f, &rd), RK_OK);
  cr_assert_eq(rd.hs.term, term + 1);
  cr_assert_eq(count_msgs(&rd, MR_MSG_HEARTBEAT_RESP, 1), 1, "new term: answered once durable");
  cr_assert_eq(count_msgs(&rd, MR_MSG_HEARTBEAT_RESP, 0), 0);
  mr_ready_free(&rd);
  h_free(h);
}

/* etcd's case for learners voting: voters {1, 2} promote learner 3, and
 * the change commits on {1, 2} before 3 hears of it. With 1 gone, only 2
 * can win, and it needs 3's vote; 3 still believes it is a learner of
 * leader 1. Having heard nothing for its election timeout (it nudged 1 at
 * the timeout), it must answer: a replica that cannot campaign keeps its
 * election clock running instead of restarting it, so it is no longer in
 * 1's lease. */
Test(membership, a_learner_promoted_without_knowing_it_votes_once_its_leader_is_silent) {
  h_opts o;
  harness *h = with_learner(2, &o);
  h_deliver_all(h);
  h_cut(h, 1, 3);
  cr_assert_eq(change(h, 1, MR_CC_AUTO, MR_CC_ADD_VOTER, 3), RK_OK);
  h_tick(h, 1, 2);
  cr_assert_eq(flags_at(h, 2, 3), MR_VOTER_IN, "2 applied the promotion");
  cr_assert_eq(flags_at(h, 3, 3), MR_LEARNER, "3 never heard of it");
  h_crash(h, 1);
  mr_raft *l = h_raft(h, 3);
  cr_assert_eq(mr_raft_lead(l), 1);
  /* Tick 3 up to its nudge: its election timeout has passed. */
  int nudged = 0;
  for (int i = 0; i < 4 * 10 && !nudged; i++) {
    mr_raft_tick(l);
    mr_ready rd;
    cr_assert_eq(mr_raft_ready(l, &rd), RK_OK);
    for (size_t k = 0; k < rd.n_msgs; k++) nudged |= rd.msgs[k].type == MR_MSG_APP_RESP;
    mr_raft_advance(l, &rd);
    mr_ready_free(&rd);
  }
  cr_assert(nudged, "3 never nudged its leader");
  /* 2 times out and campaigns (pre-vote, then vote): 3's votes decide. */
  mr_raft *c = h_raft(h, 2);
  for (int i = 0; i < 4 * 10 && mr_raft_role(c) == MR_FOLLOWER; i++) h_tick(h, 2, 1);
  h_deliver_all(h);
  cr_assert_eq(mr_raft_role(c), MR_LEADER, "2 could not win with 3's vote (role %d)",
               mr_raft_role(c));
  h_free(h);
}

/* The other side of the rule above: a learner that hears its leader keeps
 * to the CheckQuorum lease like any follower, ignoring a candidate that
 * would only disrupt it. */
Test(membership, a_learner_that_hears_its_leader_ignores_vote_requests) {
  h_opts o;
  harness *h = with_learner(2, &o);
  h_deliver_all(h);
  mr_raft *l = h_raft(h, 3);
  uint64_t term = mr_raft_term(l);
  cr_assert_eq(mr_raft_lead(l), 1);
  uint64_t last = mr_raft_last_index(h_raft(h, 2));
  mr_msg m = {.type = MR_MSG_VOTE,
              .from = 2,
              .to = 3,
              .term = term + 1,
              .index = last,
              .log_term = h_term_at(h, 2, last)};
  cr_assert_eq(mr_raft_step(l, &m), RK_OK);
  cr_assert_eq(mr_raft_term(l), term, "a vote inside the lease moved its term");
  size_t answers = 0;
  if (mr_raft_has_ready(l)) {
    mr_ready rd;
    cr_assert_eq(mr_raft_ready(l, &rd), RK_OK);
    answers = rd.n_msgs;
    mr_raft_advance(l, &rd);
    mr_ready_free(&rd);
  }
  cr_assert_eq(answers, 0, "it answered a vote inside the lease");
  h_free(h);
}

static int hide_commit_from_2(harness *h, mr_msg *m, void *arg) {
  (void)h;
  return !(m->to == 2 && m->commit >= *(const uint64_t *)arg);
}

/* A learner's nudge names its commit and the term there: a replica whose log
 * holds that entry takes the commit from it, whatever its role (a voter may
 * otherwise never learn a commit its lost leader did not tell it); a
 * different term there, and it takes nothing. */
Test(membership, a_replica_learns_a_commit_from_a_learners_nudge) {
  h_opts o;
  harness *h = with_learner(2, &o);
  h_deliver_all(h);
  mr_raft *f = h_raft(h, 2);
  uint64_t idx = 0;
  cr_assert_eq(mr_raft_propose(h_raft(h, 1), "w", 1, &idx, NULL), RK_OK);
  h_set_filter(h, hide_commit_from_2, &idx);
  h_deliver_all(h);
  h_tick_all(h, 2);
  h_set_filter(h, NULL, NULL);
  cr_assert_geq(mr_raft_commit(h_raft(h, 3)), idx, "the learner knows the commit");
  cr_assert_lt(mr_raft_commit(f), idx, "2 does not");
  uint64_t t = h_term_at(h, 2, idx);
  cr_assert_neq(t, 0, "2 holds the entry");
  mr_msg m = {.type = MR_MSG_APP_RESP,
              .from = 3,
              .to = 2,
              .term = mr_raft_term(f),
              .index = idx,
              .commit = idx,
              .log_term = t + 1};
  cr_assert_eq(mr_raft_step(f, &m), RK_OK);
  cr_assert_lt(mr_raft_commit(f), idx, "another entry there: nothing learned");
  m.log_term = t;
  cr_assert_eq(mr_raft_step(f, &m), RK_OK);
  cr_assert_eq(mr_raft_commit(f), idx, "the same entry: committed");
  h_free(h);
}

/* A learner never campaigns, which is what would wake a leader that stopped
 * heartbeating (a quiescing host). Hearing no leader for an election
 * timeout, it tells every voter (the leader it last heard may be gone) what
 * it has committed instead, and the term there (true of any leader's log;
 * a voter that missed the commit may take it, learn_commit). */
static void assert_nudges_every_voter(harness *h, mr_raft *l, uint64_t commit) {
  mr_ready rd;
  cr_assert_eq(mr_raft_ready(l, &rd), RK_OK);
  uint8_t to[5] = {0};
  for (size_t i = 0; i < rd.n_msgs; i++) {
    const mr_msg *m = &rd.msgs[i];
    cr_assert_neq(m->type, MR_MSG_VOTE);
    cr_assert_neq(m->type, MR_MSG_PREVOTE);
    if (m->type != MR_MSG_APP_RESP) continue;
    cr_assert(m->to >= 1 && m->to <= 3, "a voter, not %llu", (unsigned long long)m->to);
    cr_assert_eq(m->index, commit);
    cr_assert_eq(m->commit, commit);
    cr_assert_eq(m->log_term, h_term_at(h, 4, commit));
    cr_assert(!m->reject);
    to[m->to] = 1;
  }
  cr_assert(to[1] && to[2] && to[3], "every voter: %d %d %d", to[1], to[2], to[3]);
  mr_raft_advance(l, &rd);
  mr_ready_free(&rd);
}

Test(membership, a_learner_that_hears_no_leader_nudges_it) {
  h_opts o;
  harness *h = with_learner(3, &o);
  cr_assert_eq(flags_at(h, 4, 4), MR_LEARNER);
  h_deliver_all(h);
  mr_raft *l = h_raft(h, 4);
  uint64_t commit = mr_raft_commit(l);
  cr_assert_eq(mr_raft_lead(l), 1);
  for (int i = 0; i < 2 * 10; i++) mr_raft_tick(l); /* past any randomized timeout */
  cr_assert_eq(mr_raft_role(l), MR_FOLLOWER, "a learner never campaigns");
  assert_nudges_every_voter(h, l, commit);
  /* Knowing no leader (as after a restart), the same. */
  mr_raft_forget_leader(l);
  for (int i = 0; i < 2 * 10; i++) mr_raft_tick(l);
  assert_nudges_every_voter(h, l, commit);
  /* Once per timeout (10..19 ticks), not at every tick past it. */
  int rounds = 0;
  for (int i = 0; i < 100; i++) {
    mr_raft_tick(l);
    mr_ready rd;
    cr_assert_eq(mr_raft_ready(l, &rd), RK_OK);
    int nudged = 0;
    for (size_t k = 0; k < rd.n_msgs; k++) nudged |= rd.msgs[k].type == MR_MSG_APP_RESP;
    rounds += nudged;
    mr_raft_advance(l, &rd);
    mr_ready_free(&rd);
  }
  cr_assert(rounds >= 5 && rounds <= 10, "%d nudge rounds in 100 ticks", rounds);
  /* Its leader takes the nudge as the truth it is. */
  h_deliver_all(h);
  cr_assert_eq(mr_raft_role(h_raft(h, 1)), MR_LEADER);
  h_free(h);
}
