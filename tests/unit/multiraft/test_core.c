/* The core's contracts: memory at rest, the Ready durability flags, the
 * Ready/Advance protocol, init validation, planted-bug switches. */
#include "harness.h"

#include "common/rk_err.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

Test(core, bytes_at_rest_for_3_replica_group_under_1kib) {
  h_opts o = h_default_opts();
  harness *h = h_new(3, &o);
  cr_assert(h_elect(h, 1));
  for (int i = 0; i < 20; i++) cr_assert_eq(h_propose(h, 1, "payload"), RK_OK);
  h_deliver_all(h);
  h_tick_all(h, 3); /* heartbeats release drained in-flight windows */
  size_t leader = mr_raft_bytes_at_rest(h_raft(h, 1));
  size_t follower = mr_raft_bytes_at_rest(h_raft(h, 2));
  fprintf(stderr, "bytes at rest (3 replicas): leader %zu, follower %zu\n", leader, follower);
  cr_assert_lt(leader, 1024);
  cr_assert_lt(follower, 1024);
  cr_assert_eq(leader, follower, "no leader-only heap at rest");
  h_free(h);
}

static size_t count_flagged(const mr_ready *rd, int type, int must_persist) {
  size_t n = 0;
  for (size_t i = 0; i < rd->n_msgs; i++)
    n += rd->msgs[i].type == type && rd->msgs[i].must_persist == must_persist;
  return n;
}

/* Steps a message into `to` and returns its next Ready (caller frees). */
static void step_and_ready(harness *h, const mr_msg *m, mr_ready *rd) {
  mr_raft *r = h_raft(h, m->to);
  cr_assert_eq(mr_raft_step(r, m), RK_OK);
  cr_assert(mr_raft_has_ready(r));
  cr_assert_eq(mr_raft_ready(r, rd), RK_OK);
}

Test(core, votes_and_acks_wait_for_persistence_leader_appends_do_not) {
  h_opts o = h_default_opts();
  o.pre_vote = 0;
  harness *h = h_new(3, &o);
  mr_ready rd;
  /* a vote response waits */
  mr_msg v = {.type = MR_MSG_VOTE, .from = 1, .to = 2, .term = 2, .index = 1, .log_term = 1};
  step_and_ready(h, &v, &rd);
  cr_assert_eq(count_flagged(&rd, MR_MSG_VOTE_RESP, 1), 1);
  cr_assert(rd.hs_changed && rd.hs.vote == 1);
  mr_ready_free(&rd);
  h_free(h);

  h = h_new(3, &o);
  cr_assert(h_elect(h, 1));
  /* a leader's append may leave at once */
  cr_assert_eq(h_propose(h, 1, "x"), RK_OK);
  cr_assert_eq(mr_raft_ready(h_raft(h, 1), &rd), RK_OK);
  cr_assert_eq(count_flagged(&rd, MR_MSG_APP, 0), 2);
  cr_assert_eq(rd.entries.len, 1);
  /* the follower's ack waits */
  mr_msg app = rd.msgs[0];
  mr_ready frd;
  step_and_ready(h, &app, &frd);
  cr_assert_eq(count_flagged(&frd, MR_MSG_APP_RESP, 1), 1);
  cr_assert_eq(frd.entries.len, 1);
  mr_ready_free(&frd);
  mr_ready_free(&rd);
  /* a heartbeat response carries nothing durable */
  mr_msg hb = {.type = MR_MSG_HEARTBEAT, .from = 1, .to = 3, .term = 2, .commit = 2};
  step_and_ready(h, &hb, &frd);
  cr_assert_eq(count_flagged(&frd, MR_MSG_HEARTBEAT_RESP, 0), 1);
  mr_ready_free(&frd);
  h_free(h);
}

Test(core, planted_bug_ack_before_persist_flags_ack_sendable) {
  h_opts o = h_default_opts();
  o.bugs = MR_BUG_ACK_BEFORE_PERSIST;
  harness *h = h_new(3, &o);
  cr_assert(h_elect(h, 1));
  mr_msg app = {.type = MR_MSG_APP, .from = 1, .to = 2, .term = 2, .index = 2, .log_term = 2};
  rk_entry e = {.index = 3, .term = 2, .len = 1, .data = (uint8_t *)"x"};
  app.entries.v = &e;
  app.entries.len = 1;
  mr_ready rd;
  step_and_ready(h, &app, &rd);
  cr_assert_eq(count_flagged(&rd, MR_MSG_APP_RESP, 0), 1, "the bug: ack before durable");
  mr_ready_free(&rd);
  h_free(h);
}

Test(core, step_between_ready_and_advance) {
  h_opts o = h_default_opts();
  harness *h = h_new(1, &o);
  h_tick(h, 1, 20);
  mr_raft *r = h_raft(h, 1);
  cr_assert_eq(mr_raft_role(r), MR_LEADER);
  cr_assert_eq(mr_raft_propose(r, "a", 1, NULL, NULL), RK_OK);
  mr_ready rd;
  cr_assert_eq(mr_raft_ready(r, &rd), RK_OK);
  cr_assert_eq(rd.entries.len, 1);
  /* while "the fsync is in flight" the host keeps feeding the core */
  cr_assert_eq(mr_raft_propose(r, "b", 1, NULL, NULL), RK_OK);
  mr_raft_tick(r);
  cr_assert_not(mr_raft_has_ready(r), "one Ready at a time");
  mr_memlog *ml = &h->nodes[1].log;
  cr_assert_eq(mr_memlog_append(ml, rd.entries.v, rd.entries.len), RK_OK);
  mr_raft_advance(r, &rd);
  mr_raft_check_invariants(r);
  cr_assert(mr_raft_has_ready(r));
  cr_assert_eq(mr_raft_ready(r, &rd), RK_OK);
  cr_assert_eq(rd.entries.len, 1, "only the new entry");
  cr_assert_eq(rd.entries.v[0].data[0], 'b');
  cr_assert_eq(rd.committed.len, 1, "'a' committed once durable");
  cr_assert_eq(rd.committed.v[0].data[0], 'a');
  cr_assert_eq(mr_memlog_append(ml, rd.entries.v, rd.entries.len), RK_OK);
  mr_memlog_set_hard_state(ml, &rd.hs);
  mr_raft_advance(r, &rd);
  h->nodes[1].applied = mr_raft_applied(r); /* we applied by hand above */
  h_process(h, 1);
  cr_assert_eq(mr_raft_applied(r), mr_raft_last_index(r));
  h_free(h);
}

Test(core, init_rejects_incoherent_persisted_state) {
  mr_memlog ml;
  mr_memlog_init(&ml);
  rk_rand rng;
  rk_rand_seed(&rng, 1);
  mr_config cfg;
  mr_config_default(&cfg, 1);
  mr_storage st = mr_memlog_storage(&ml);
  mr_boot b = {.hs = {.term = 1, .commit = 5}}; /* commit beyond the empty log */
  mr_raft *r;
  cr_assert_eq(mr_raft_init(&r, &cfg, &st, &b, &rng), RK_EINVAL);
  b.hs.commit = 0;
  b.conf.n = 1;
  b.conf.r[0] = (mr_conf_replica){.id = 0, .flags = MR_VOTER_IN};
  cr_assert_eq(mr_raft_init(&r, &cfg, &st, &b, &rng), RK_EINVAL, "replica id 0");
  b.conf.r[0].id = 1;
  cfg.heartbeat_tick = cfg.election_tick;
  cr_assert_eq(mr_raft_init(&r, &cfg, &st, &b, &rng), RK_EINVAL, "heartbeat >= election");
  /* An unstable cap that one honest message could exceed would stall a
   * follower for good: refused. */
  mr_config_default(&cfg, 1);
  cfg.max_entry_bytes = 1000;
  cfg.max_msg_bytes = 4096;
  cfg.max_unstable_bytes = 4095;
  cr_assert_eq(mr_raft_init(&r, &cfg, &st, &b, &rng), RK_EINVAL, "cap below a message");
  cfg.max_msg_bytes = 100;
  cfg.max_unstable_bytes = 1000 + MR_ENTRY_OVERHEAD - 1;
  cr_assert_eq(mr_raft_init(&r, &cfg, &st, &b, &rng), RK_EINVAL, "cap below an entry");
  cfg.max_unstable_bytes = 1000 + MR_ENTRY_OVERHEAD;
  cr_assert_eq(mr_raft_init(&r, &cfg, &st, &b, &rng), RK_OK, "the tightest cap");
  mr_raft_free(r);
  mr_config_default(&cfg, 1);
  cr_assert_eq(mr_raft_init(&r, &cfg, &st, &b, &rng), RK_OK);
  mr_raft_free(r);
  mr_memlog_free(&ml);
}

Test(core, message_type_names) {
  cr_assert_str_eq(mr_msg_type_name(MR_MSG_APP), "APP");
  cr_assert_str_eq(mr_msg_type_name(MR_MSG_READ_INDEX_RESP), "READ_INDEX_RESP");
  cr_assert_str_eq(mr_msg_type_name(200), "UNKNOWN");
}

Test(core, quorum_math_joint) {
  /* exercised through the public conf helpers */
  mr_conf c = {.n = 3};
  for (int i = 0; i < 3; i++)
    c.r[i] = (mr_conf_replica){.id = (uint64_t)i + 1, .flags = MR_VOTER_IN};
  mr_conf_change cc = {.transition = MR_CC_AUTO, .n = 2};
  cc.changes[0] = (mr_cc_single){.op = MR_CC_ADD_VOTER, .id = 4};
  cc.changes[1] = (mr_cc_single){.op = MR_CC_REMOVE, .id = 3};
  mr_conf next;
  cr_assert_eq(mr_conf_apply_change(&c, &cc, &next), RK_OK);
  cr_assert(mr_conf_is_joint(&next), "two voter changes go through joint consensus");
  cr_assert(next.auto_leave);
  cr_assert_eq(mr_conf_flags(&next, 3), MR_VOTER_OUT);
  cr_assert_eq(mr_conf_flags(&next, 4), MR_VOTER_IN);
  cr_assert_eq(mr_conf_apply_change(&next, &cc, &c), RK_EINVAL, "no entering twice");
}
