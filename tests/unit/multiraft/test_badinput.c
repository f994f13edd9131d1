/* Bad peer input is counted and ignored, never asserted. */
#include "harness.h"

#include "common/rk_err.h"
#include "common/rk_rand.h"

#include <criterion/criterion.h>
#include <string.h>

static harness *elected(void) {
  h_opts o = h_default_opts();
  harness *h = h_new(3, &o);
  cr_assert(h_elect(h, 1));
  return h;
}

Test(bad_input, unknown_message_type) {
  harness *h = elected();
  mr_msg m = {.type = 99, .from = 1, .to = 2, .term = 2};
  cr_assert_eq(mr_raft_step(h_raft(h, 2), &m), RK_EMALFORMED);
  m.type = 0;
  cr_assert_eq(mr_raft_step(h_raft(h, 2), &m), RK_EMALFORMED);
  cr_assert_eq(mr_raft_counters(h_raft(h, 2))->unknown_type, 2);
  h_free(h);
}

Test(bad_input, sender_not_in_configuration) {
  harness *h = elected();
  mr_msg m = {.type = MR_MSG_VOTE, .from = 7, .to = 2, .term = 9, .index = 100, .log_term = 9};
  cr_assert_eq(mr_raft_step(h_raft(h, 2), &m), RK_EINVAL);
  m.type = MR_MSG_APP_RESP;
  m.to = 1;
  m.term = 2;
  cr_assert_eq(mr_raft_step(h_raft(h, 1), &m), RK_EINVAL);
  cr_assert_eq(mr_raft_counters(h_raft(h, 2))->not_member, 1);
  cr_assert_eq(mr_raft_counters(h_raft(h, 1))->not_member, 1);
  cr_assert_eq(mr_raft_term(h_raft(h, 2)), 2, "no term change from a stranger");
  h_free(h);
}

Test(bad_input, stale_term_ignored) {
  harness *h = elected();
  mr_msg m = {.type = MR_MSG_APP, .from = 3, .to = 2, .term = 1, .index = 5, .log_term = 1};
  cr_assert_eq(mr_raft_step(h_raft(h, 2), &m), RK_OK);
  cr_assert_eq(mr_raft_counters(h_raft(h, 2))->stale_term, 1);
  cr_assert_eq(mr_raft_lead(h_raft(h, 2)), 1);
  cr_assert_eq(mr_raft_last_index(h_raft(h, 2)), 2);
  h_free(h);
}

Test(bad_input, index_beyond_log) {
  harness *h = elected();
  mr_msg m = {.type = MR_MSG_APP_RESP, .from = 2, .to = 1, .term = 2, .index = 1000};
  cr_assert_eq(mr_raft_step(h_raft(h, 1), &m), RK_OK);
  cr_assert_eq(mr_raft_counters(h_raft(h, 1))->bad_index, 1);
  cr_assert_eq(mr_raft_commit(h_raft(h, 1)), 2, "commit not moved by a lie");
  /* a follower asked to append after an index it lacks just rejects */
  mr_msg a = {.type = MR_MSG_APP, .from = 1, .to = 2, .term = 2, .index = 500, .log_term = 2};
  cr_assert_eq(mr_raft_step(h_raft(h, 2), &a), RK_OK);
  cr_assert_eq(mr_raft_last_index(h_raft(h, 2)), 2);
  h_free(h);
}

Test(bad_input, malformed_snapshot) {
  harness *h = elected();
  mr_raft *r = h_raft(h, 2);
  mr_msg m = {.type = MR_MSG_SNAP, .from = 1, .to = 2, .term = 2};
  cr_assert_eq(mr_raft_step(r, &m), RK_OK); /* no snapshot attached */
  mr_snapshot s = {.index = 50, .term = 2}; /* empty configuration */
  m.snap = &s;
  cr_assert_eq(mr_raft_step(r, &m), RK_OK);
  s.conf.n = 2;
  s.conf.r[0] = (mr_conf_replica){.id = 1, .flags = MR_VOTER_IN};
  s.conf.r[1] = (mr_conf_replica){.id = 1, .flags = MR_VOTER_IN}; /* duplicate */
  cr_assert_eq(mr_raft_step(r, &m), RK_OK);
  s.conf.r[1].id = 2;
  s.term = 9; /* newer than the message */
  cr_assert_eq(mr_raft_step(r, &m), RK_OK);
  s.term = 2;
  s.len = 10; /* data missing */
  cr_assert_eq(mr_raft_step(r, &m), RK_OK);
  cr_assert_eq(mr_raft_counters(r)->malformed_snap, 5);
  cr_assert_eq(mr_raft_commit(r), 2);
  h_free(h);
}

Test(bad_input, oversized_and_malformed_entries) {
  harness *h = elected();
  mr_raft *r = h_raft(h, 2);
  static uint8_t big[(8u << 20) + 1];
  mr_msg m = {.type = MR_MSG_APP, .from = 1, .to = 2, .term = 2, .index = 2, .log_term = 2};
  rk_entry e = {.index = 3, .term = 2, .len = sizeof big, .data = big};
  m.entries.v = &e;
  m.entries.len = 1;
  cr_assert_eq(mr_raft_step(r, &m), RK_OK);
  cr_assert_eq(mr_raft_counters(r)->oversized, 1);
  e.len = 1;
  e.index = 5; /* not contiguous with prev index 2 */
  cr_assert_eq(mr_raft_step(r, &m), RK_OK);
  e.index = 3;
  e.term = 7; /* newer than the leader's term */
  cr_assert_eq(mr_raft_step(r, &m), RK_OK);
  cr_assert_eq(mr_raft_counters(r)->malformed, 2);
  cr_assert_eq(mr_raft_last_index(r), 2, "nothing appended");
  h_free(h);
}

Test(bad_input, forged_messages) {
  harness *h = elected();
  mr_msg m = {.type = MR_MSG_HEARTBEAT, .from = 2, .to = 2, .term = 2};
  cr_assert_eq(mr_raft_step(h_raft(h, 2), &m), RK_EMALFORMED, "from myself");
  m.from = 1;
  m.to = 3;
  cr_assert_eq(mr_raft_step(h_raft(h, 2), &m), RK_EMALFORMED, "not for me");
  m.to = 2;
  m.term = 0;
  cr_assert_eq(mr_raft_step(h_raft(h, 2), &m), RK_EMALFORMED, "no term");
  /* a second leader in the same term */
  mr_msg a = {.type = MR_MSG_APP, .from = 2, .to = 1, .term = 2, .index = 2, .log_term = 2};
  cr_assert_eq(mr_raft_step(h_raft(h, 1), &a), RK_OK);
  cr_assert_eq(mr_raft_counters(h_raft(h, 1))->malformed, 1);
  cr_assert_eq(mr_raft_role(h_raft(h, 1)), MR_LEADER);
  h_free(h);
}

/* A term near UINT64_MAX: taken, the next campaign's term + 1 would wrap
 * ("terms never decrease" fired) or every vote request would carry term 0
 * (dropped as malformed: the group could never elect again). */
Test(bad_input, a_term_beyond_any_real_election_is_refused) {
  harness *h = elected();
  mr_raft *r = h_raft(h, 2);
  uint64_t terms[] = {UINT64_MAX, UINT64_MAX - 1, MR_MAX_TERM + 1};
  for (size_t i = 0; i < sizeof terms / sizeof terms[0]; i++) {
    mr_msg hb = {.type = MR_MSG_HEARTBEAT, .from = 1, .to = 2, .term = terms[i]};
    cr_assert_eq(mr_raft_step(r, &hb), RK_EMALFORMED);
    mr_msg tn = {.type = MR_MSG_TIMEOUT_NOW, .from = 1, .to = 2, .term = terms[i]};
    cr_assert_eq(mr_raft_step(r, &tn), RK_EMALFORMED);
  }
  cr_assert_eq(mr_raft_term(r), 2, "the term did not move");
  cr_assert_eq(mr_raft_counters(r)->malformed, 6);
  mr_msg hb = {.type = MR_MSG_HEARTBEAT, .from = 1, .to = 2, .term = MR_MAX_TERM};
  cr_assert_eq(mr_raft_step(r, &hb), RK_OK, "the bound itself is a term");
  h_free(h);
}

/* A peer that floods a follower with entries past the leader's pipeline
 * limit: what would leave more than max_unstable_bytes unpersisted is not
 * taken (counted); the prefix that fits is, and the follower takes entries
 * again once it has persisted what it holds. */
Test(bad_input, a_flood_of_entries_is_cut_at_the_unstable_cap) {
  h_opts o = h_default_opts();
  o.max_unstable_bytes = 3 * (100 + MR_ENTRY_OVERHEAD);
  o.max_msg_bytes = o.max_unstable_bytes; /* what init requires of the cap */
  o.max_entry_bytes = 100;
  harness *h = h_new(3, &o);
  cr_assert(h_elect(h, 1));
  mr_raft *f = h_raft(h, 2);
  uint64_t last = mr_raft_last_index(f), term = mr_raft_term(f);
  static uint8_t payload[100];
  rk_entry e[4];
  for (int i = 0; i < 4; i++)
    e[i] = (rk_entry){.index = last + 1 + (uint64_t)i, .term = term, .len = 100, .data = payload};
  mr_msg m = {
      .type = MR_MSG_APP, .from = 1, .to = 2, .term = term, .index = last, .log_term = term};
  m.entries.v = e;
  m.entries.len = 4; /* four entries: over the cap of three */
  cr_assert_eq(mr_raft_step(f, &m), RK_OK);
  cr_assert_eq(mr_raft_counters(f)->unstable_full, 1);
  cr_assert_eq(mr_raft_last_index(f), last + 3, "the three that fit are taken");
  m.index = last + 3; /* a fourth would make four unpersisted */
  m.entries.v = e + 3;
  m.entries.len = 1;
  cr_assert_eq(mr_raft_step(f, &m), RK_OK);
  cr_assert_eq(mr_raft_counters(f)->unstable_full, 2);
  cr_assert_eq(mr_raft_last_index(f), last + 3);
  h_process(h, 2); /* persisted: the unstable tail is empty again */
  cr_assert_eq(mr_raft_step(f, &m), RK_OK);
  cr_assert_eq(mr_raft_last_index(f), last + 4, "taken once the first three are durable");
  /* A message that replaces the unstable tail counts only what stays. */
  h_process(h, 2);
  rk_entry r[3];
  for (int i = 0; i < 3; i++)
    r[i] = (rk_entry){.index = last + 5 + (uint64_t)i, .term = term, .len = 100, .data = payload};
  m.index = last + 4;
  m.entries.v = r;
  m.entries.len = 3;
  cr_assert_eq(mr_raft_step(f, &m), RK_OK);
  cr_assert_eq(mr_raft_last_index(f), last + 7);
  r[1].term = r[2].term = term + 1; /* a later leader's version of the last two */
  m.term = term + 1;
  m.from = 3;
  m.index = last + 5;
  m.entries.v = r + 1;
  m.entries.len = 2;
  cr_assert_eq(mr_raft_step(f, &m), RK_OK);
  cr_assert_eq(mr_raft_counters(f)->unstable_full, 2, "one stays, two replace two: fits");
  cr_assert_eq(mr_raft_last_index(f), last + 7);
  uint64_t t7 = 0;
  cr_assert_eq(mr_raft_term_at(f, last + 7, &t7), RK_OK);
  cr_assert_eq(t7, term + 1);
  h_free(h);
}

/* A read answer a follower never asked for (or already has) is not taken:
 * taken, a peer's stream of them would grow its read states without end. */
Test(bad_input, an_unasked_read_answer_is_not_taken) {
  harness *h = elected();
  mr_raft *f = h_raft(h, 2);
  uint64_t term = mr_raft_term(f);
  mr_msg resp = {.type = MR_MSG_READ_INDEX_RESP,
                 .from = 1,
                 .to = 2,
                 .term = term,
                 .ctx = 77,
                 .index = UINT64_MAX};
  cr_assert_eq(mr_raft_step(f, &resp), RK_OK);
  cr_assert_eq(mr_raft_pending_reads(f), 0, "not asked: no read state");
  cr_assert_eq(mr_raft_counters(f)->malformed, 1);
  /* Asked: the answer is taken once. */
  cr_assert_eq(mr_raft_read_index(f, 77), RK_OK);
  resp.index = mr_raft_commit(f);
  cr_assert_eq(mr_raft_step(f, &resp), RK_OK);
  cr_assert_eq(mr_raft_pending_reads(f), 1);
  cr_assert_eq(mr_raft_step(f, &resp), RK_OK);
  cr_assert_eq(mr_raft_pending_reads(f), 1, "a second answer adds nothing");
  cr_assert_eq(mr_raft_counters(f)->malformed, 2);
  h_free(h);
}

/* Random garbage at every role: never an assertion, invariants hold. */
Test(bad_input, random_messages_never_assert) {
  harness *h = elected();
  h->sm_tolerate = 1; /* forged leaders can make replicas disagree: not our model */
  rk_rand rng;
  rk_rand_seed(&rng, 7);
  uint8_t payload[8] = {0};
  for (int k = 0; k < 3000; k++) {
    uint64_t to = 1 + rk_rand_below(&rng, 3);
    mr_msg m = {0};
    m.type = (uint8_t)rk_rand_below(&rng, MR_MSG_TYPE_MAX_ + 2);
    m.from = rk_rand_below(&rng, 5);
    m.to = rk_rand_chance(&rng, 0.9) ? to : 4;
    /* Mostly small values, sometimes the extremes a hostile peer sends. */
    int extreme = rk_rand_chance(&rng, 0.05);
    m.term = extreme ? UINT64_MAX - rk_rand_below(&rng, 3) : rk_rand_below(&rng, 4);
    m.index =
        rk_rand_chance(&rng, 0.05) ? UINT64_MAX - rk_rand_below(&rng, 3) : rk_rand_below(&rng, 6);
    m.log_term = rk_rand_chance(&rng, 0.05) ? UINT64_MAX : rk_rand_below(&rng, 4);
    m.commit = rk_rand_chance(&rng, 0.05) ? UINT64_MAX : rk_rand_below(&rng, 8);
    m.reject = (uint8_t)rk_rand_below(&rng, 2);
    m.reject_hint = rk_rand_below(&rng, 6);
    m.ctx = rk_rand_below(&rng, 4);
    rk_entry e[2];
    if (m.type == MR_MSG_APP && rk_rand_chance(&rng, 0.5)) {
      for (int i = 0; i < 2; i++)
        e[i] = (rk_entry){.index = m.index + 1 + (uint64_t)i + rk_rand_below(&rng, 2),
                          .term = rk_rand_below(&rng, 4),
                          .type = (uint32_t)rk_rand_below(&rng, 3),
                          .len = (uint32_t)rk_rand_below(&rng, 8),
                          .data = payload};
      m.entries.v = e;
      m.entries.len = 1 + rk_rand_below(&rng, 2);
    }
    (void)mr_raft_step(h_raft(h, to), &m); /* borrowed: nothing to free */
    mr_raft_check_invariants(h_raft(h, to));
    if (k % 50 == 0) h_tick_all(h, 1);
  }
  h_drop_all(h);
  h_tick_all(h, 30);
  for (uint64_t i = 1; i <= 3; i++) mr_raft_check_invariants(h_raft(h, i));
  h_free(h);
}
