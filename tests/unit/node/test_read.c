/* What a node's tick does with a pending read (node_read_next): the rule
 * that re-issues a ReadIndex its core dropped at a term change. */
#include "node/node_int.h"

#include <criterion/criterion.h>

static node_read pending(int issued, uint64_t issued_term, uint64_t deadline_ms) {
  return (node_read){.issued = issued, .issued_term = issued_term, .deadline_ms = deadline_ms};
}

Test(read_step, a_read_out_in_this_term_waits) {
  node_read rd = pending(1, 7, 1000);
  cr_assert_eq(node_read_next(&rd, 1, 7, 500), NODE_READ_WAIT);
}

/* Deposed and re-elected between two ticks: the core dropped the request
 * with its old term, so it goes out again (else the read waits out its
 * deadline). */
Test(read_step, a_read_from_an_earlier_term_is_issued_again) {
  node_read rd = pending(1, 7, 1000);
  cr_assert_eq(node_read_next(&rd, 1, 9, 500), NODE_READ_ISSUE);
}

/* Refused by the core (its no-op not committed yet): tried each tick. */
Test(read_step, a_read_the_core_did_not_take_is_issued_again) {
  node_read rd = pending(0, 9, 1000);
  cr_assert_eq(node_read_next(&rd, 1, 9, 500), NODE_READ_ISSUE);
}

Test(read_step, not_leading_any_more_answers_not_leader_first) {
  node_read rd = pending(1, 7, 1000);
  cr_assert_eq(node_read_next(&rd, 0, 0, 500), NODE_READ_NOT_LEADER);
  cr_assert_eq(node_read_next(&rd, 0, 0, 2000), NODE_READ_NOT_LEADER, "even past its deadline");
}

Test(read_step, a_read_past_its_deadline_times_out) {
  node_read rd = pending(1, 7, 1000);
  cr_assert_eq(node_read_next(&rd, 1, 7, 1000), NODE_READ_TIMED_OUT);
  cr_assert_eq(node_read_next(&rd, 1, 9, 1500), NODE_READ_TIMED_OUT, "not issued again");
}
