/* lincheck.h — per-key linearizability checker for client histories.
 *
 * Model: every key is an independent register with delete and compare-and-set.
 *   state       absent | value          (every key starts absent)
 *   put(v)      state := v
 *   delete      state := absent
 *   get -> r    legal iff r == state    (r = absent for "not found")
 *   cas(e, n)   swapped iff state == e (e = absent: must be absent);
 *               when swapped state := n; swapped=false is legal iff state != e
 * Operations on different keys commute, so the history is linearizable iff
 * each key's sub-history is (P-compositionality, Herlihy & Wing 1990); keys
 * are checked one at a time.
 *
 * Outcomes (shared/HISTORY.md):
 *   ok=true   must take effect at one instant inside [call, return];
 *   ok=false  had no effect: dropped;
 *   ok=null   may take effect at any instant after call, or never: checked as
 *             an optional operation with return = +infinity. A null get says
 *             nothing and is dropped; a null cas either swapped (state == e)
 *             or had no effect.
 * Intervals are closed: an operation returning at t and one called at t are
 * concurrent.
 *
 * Algorithm: Wing & Gong's search with Lowe's memoization ("Testing for
 * linearizability", 2017), as in Porcupine: a depth-first search that
 * linearizes, one at a time, any pending operation whose call precedes the
 * earliest remaining return, backtracking when that return is reached with its
 * operation still unlinearized; a cache of visited (linearized set, state)
 * pairs prunes every configuration seen before. See docs/lincheck.md.
 *
 * The search is exponential in the worst case: a per-key budget of distinct
 * configurations bounds it; a key that exhausts it is UNKNOWN (never
 * reported as linearizable).
 */
#ifndef SIM_LINCHECK_H
#define SIM_LINCHECK_H

#include "sim/history.h"

#include <stdint.h>
#include <stdio.h>

typedef enum sim_lin_verdict {
  SIM_LIN_LINEARIZABLE = 0,
  SIM_LIN_VIOLATION = 1,
  SIM_LIN_UNKNOWN = 2, /* a key hit the state budget; no violation found elsewhere */
} sim_lin_verdict;

typedef struct sim_lin_opts {
  /* Distinct (linearized set, state) configurations one key may visit before
   * it is UNKNOWN. Memory is about 40 bytes + 4 per pending op per state. */
  uint64_t max_states_per_key;
} sim_lin_opts;

#define SIM_LIN_DEFAULT_MAX_STATES (UINT64_C(1) << 21)

typedef struct sim_lin_stats {
  uint64_t keys;         /* distinct keys checked */
  uint64_t ops;          /* records in the history */
  uint64_t ops_checked;  /* operations searched (false ops and null gets dropped) */
  uint64_t states;       /* configurations visited, all keys */
  uint64_t max_states;   /* configurations visited by the hardest key */
  uint64_t keys_unknown; /* keys that hit the budget */
} sim_lin_stats;

#define SIM_LIN_KEY_MAX 128
#define SIM_LIN_MSG_MAX 1024

typedef struct sim_lin_result {
  sim_lin_verdict verdict;
  /* VIOLATION / UNKNOWN: the (first, in key order) offending key, printable:
   * bytes outside 0x20..0x7e, '"' and '\\' as \xHH; shortened with "...". */
  char key[SIM_LIN_KEY_MAX];
  /* One or a few lines, printable, ending without '\n'; "" when linearizable. */
  char message[SIM_LIN_MSG_MAX];
  sim_lin_stats stats;
} sim_lin_result;

void sim_lin_opts_default(sim_lin_opts *o);

/* Check h; o may be NULL for defaults. Keys are checked in byte order of
 * their names; the first violating key ends the check. Returns RK_OK (the
 * verdict is in *out), RK_EINVAL for a record that does not validate
 * (sim_hist_validate), RK_ETOOLARGE past 2^32 records or 2^30 ops on one key, or RK_ENOMEM.
 * Deterministic: same history, same result and message. */
int sim_lin_check(const sim_hist *h, const sim_lin_opts *o, sim_lin_result *out);

/* Read the history at path ("-" = stdin), check it with default options and
 * print a report to report (may be NULL): one summary line
 *   lincheck: LINEARIZABLE keys=K ops=N checked=C states=S
 *   lincheck: VIOLATION key=K ...   (followed by the explanation)
 *   lincheck: UNKNOWN key=K ...
 *   lincheck: error: FILE:LINE: why
 * Returns 0 linearizable, 1 violation, 2 error or UNKNOWN (undecided). This is
 * what `rangekv sim check-history FILE` runs. */
int sim_lin_check_file(const char *path, FILE *report);

const char *sim_lin_verdict_name(sim_lin_verdict v);

#endif
