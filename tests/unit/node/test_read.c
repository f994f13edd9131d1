/* What a node's tick does with a pending read (node_read_next): the rule
 * that re-issues a ReadIndex its core dropped at a term change. */
#include "node/node_int.h"

#include <criterion/criterion.h>

typedef struct read_case {
  int issued;
  uint64_t issued_term, deadline_ms; /* the pending read */
  int leader;
  uint64_t term, now_ms; /* the tick */
  node_read_step want;
  const char *why;
} read_case;

static const read_case cases[] = {
    {1, 7, 1000, 1, 7, 500, NODE_READ_WAIT, "out in this term: waits"},
    /* Deposed and re-elected between two ticks: the core dropped it with
     * its old term, so it goes out again (else it waits out its deadline). */
    {1, 7, 1000, 1, 9, 500, NODE_READ_ISSUE, "from an earlier term: issued again"},
    {0, 9, 1000, 1, 9, 500, NODE_READ_ISSUE, "not taken by the core (no-op pending): again"},
    {1, 7, 1000, 0, 0, 500, NODE_READ_NOT_LEADER, "not leading any more"},
    {1, 7, 1000, 0, 0, 2000, NODE_READ_NOT_LEADER, "not leading, even past its deadline"},
    {1, 7, 1000, 1, 7, 1000, NODE_READ_TIMED_OUT, "at its deadline"},
    {1, 7, 1000, 1, 9, 1500, NODE_READ_TIMED_OUT, "past its deadline: not issued again"},
};

Test(read_step, every_rule_of_a_pending_read) {
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const read_case *c = &cases[i];
    node_read rd = {
        .issued = c->issued, .issued_term = c->issued_term, .deadline_ms = c->deadline_ms};
    cr_assert_eq(node_read_next(&rd, c->leader, c->term, c->now_ms), c->want, "%s", c->why);
  }
}
