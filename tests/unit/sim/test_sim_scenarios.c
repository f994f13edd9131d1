/* Every evidence scenario passes all its claims; the lease scenarios refuse
 * to run (exit 2) rather than pretend. */
#include "sim/sim.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

static int run(const char *name, int *passes, int *fails) {
  FILE *f = tmpfile();
  cr_assert_not_null(f);
  int rc = sim_scenario_run(name, f);
  rewind(f);
  char line[1024];
  *passes = *fails = 0;
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, "PASS ", 5) == 0) (*passes)++;
    if (strncmp(line, "FAIL ", 5) == 0) {
      (*fails)++;
      cr_log_error("%s", line);
    }
  }
  fclose(f);
  return rc;
}

#define SCENARIO_TEST(id, name)                                                                    \
  Test(sim_scenario, id) {                                                                         \
    int p, f;                                                                                      \
    int rc = run(name, &p, &f);                                                                    \
    cr_assert_eq(f, 0, "%s: %d claim(s) failed", name, f);                                         \
    cr_assert_eq(rc, 0);                                                                           \
    cr_assert(p >= 3, "%s: only %d claims", name, p);                                              \
  }

SCENARIO_TEST(replicated_write, "replicated-write")
SCENARIO_TEST(election, "election")
SCENARIO_TEST(uncommitted_truncated, "uncommitted-truncated")
SCENARIO_TEST(committed_survives, "committed-survives")
SCENARIO_TEST(partition, "partition")
SCENARIO_TEST(membership_3_to_5, "membership-3-to-5")
SCENARIO_TEST(slow_disk, "slow-disk")
SCENARIO_TEST(snapshot_catch_up, "snapshot-catch-up")
SCENARIO_TEST(prevote, "prevote")

Test(sim_scenario, lease_scenarios_refuse_to_run) {
  int p, f;
  cr_assert_eq(run("read-latency", &p, &f), 2);
  cr_assert_eq(p, 0);
  cr_assert_eq(run("clock-skew", &p, &f), 2);
  cr_assert_eq(p, 0);
  cr_assert_eq(run("no-such-scenario", &p, &f), 2);
}
