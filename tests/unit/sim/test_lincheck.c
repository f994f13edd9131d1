#include "common/rk_clock.h"
#include "common/rk_err.h"
#include "common/rk_rand.h"
#include "sim/history.h"
#include "sim/lincheck.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- a tiny vocabulary for hand-built histories ---------------------------- */

#define T   SIM_HIST_TRUE
#define F   SIM_HIST_FALSE
#define N   SIM_HIST_NULL
#define ABS NULL /* absent / not found */

static sim_hist H;
static sim_lin_result R;

static void setup(void) { sim_hist_init(&H); }
static void teardown(void) { sim_hist_free(&H); }

static void add(sim_hist_rec r) { cr_assert_eq(sim_hist_add(&H, &r), RK_OK); }

static void put(uint64_t c, const char *k, const char *v, uint64_t call, uint64_t ret,
                sim_hist_ok ok) {
  add((sim_hist_rec){
      .client = c, .op = SIM_HIST_PUT, .key = k, .value = v, .call = call, .ret = ret, .ok = ok});
}
static void get(uint64_t c, const char *k, const char *v, uint64_t call, uint64_t ret,
                sim_hist_ok ok) {
  add((sim_hist_rec){
      .client = c, .op = SIM_HIST_GET, .key = k, .value = v, .call = call, .ret = ret, .ok = ok});
}
static void del(uint64_t c, const char *k, uint64_t call, uint64_t ret, sim_hist_ok ok) {
  add((sim_hist_rec){
      .client = c, .op = SIM_HIST_DELETE, .key = k, .call = call, .ret = ret, .ok = ok});
}
static void cas(uint64_t c, const char *k, const char *exp, const char *nv, bool swapped,
                uint64_t call, uint64_t ret, sim_hist_ok ok) {
  add((sim_hist_rec){.client = c,
                     .op = SIM_HIST_CAS,
                     .key = k,
                     .expected = exp,
                     .new_value = nv,
                     .swapped = swapped,
                     .call = call,
                     .ret = ret,
                     .ok = ok});
}

static sim_lin_verdict check_with(uint64_t max_states) {
  sim_lin_opts o;
  sim_lin_opts_default(&o);
  if (max_states) o.max_states_per_key = max_states;
  cr_assert_eq(sim_lin_check(&H, &o, &R), RK_OK);
  return R.verdict;
}
static sim_lin_verdict check(void) { return check_with(0); }

#define ASSERT_OK()                                                                                \
  cr_assert_eq(check(), SIM_LIN_LINEARIZABLE, "expected linearizable, got %s: key %s: %s",         \
               sim_lin_verdict_name(R.verdict), R.key, R.message)
#define ASSERT_VIOLATION(k)                                                                        \
  do {                                                                                             \
    cr_assert_eq(check(), SIM_LIN_VIOLATION, "expected a violation, got %s",                       \
                 sim_lin_verdict_name(R.verdict));                                                 \
    cr_assert_str_eq(R.key, k);                                                                    \
    cr_assert(strlen(R.message) > 0);                                                              \
  } while (0)

TestSuite(lincheck, .init = setup, .fini = teardown);

/* ---- classic histories --------------------------------------------------------- */

Test(lincheck, empty_history) {
  ASSERT_OK();
  cr_assert_eq(R.stats.keys, 0);
}

Test(lincheck, sequential_history) {
  get(1, "k", ABS, 0, 1, T);
  put(1, "k", "a", 2, 3, T);
  get(1, "k", "a", 4, 5, T);
  put(2, "k", "b", 6, 7, T);
  get(1, "k", "b", 8, 9, T);
  del(2, "k", 10, 11, T);
  get(1, "k", ABS, 12, 13, T);
  cas(1, "k", ABS, "c", true, 14, 15, T);
  get(2, "k", "c", 16, 17, T);
  ASSERT_OK();
  cr_assert_eq(R.stats.keys, 1);
  cr_assert_eq(R.stats.ops, 9);
  cr_assert_eq(R.stats.ops_checked, 9);
  cr_assert(R.stats.states >= 9);
}

Test(lincheck, concurrent_writes_then_reads_either_order) {
  /* Two overlapping writes: afterwards either may have won, but all later
   * reads must agree. */
  put(1, "x", "a", 0, 10, T);
  put(2, "x", "b", 5, 15, T);
  get(3, "x", "b", 20, 30, T);
  get(3, "x", "b", 40, 50, T);
  put(1, "y", "a", 0, 10, T);
  put(2, "y", "b", 5, 15, T);
  get(3, "y", "a", 20, 30, T);
  get(4, "y", "a", 25, 35, T);
  ASSERT_OK();
}

Test(lincheck, reads_during_concurrent_writes_see_either) {
  put(1, "x", "a", 0, 100, T);
  put(2, "x", "b", 0, 100, T);
  get(3, "x", "a", 10, 20, T);
  get(3, "x", "b", 30, 40, T);
  ASSERT_OK();
}

Test(lincheck, reads_flip_flopping_between_two_writes) {
  /* a, b, a again: would need a written twice. */
  put(1, "x", "a", 0, 100, T);
  put(2, "x", "b", 0, 100, T);
  get(3, "x", "a", 10, 20, T);
  get(3, "x", "b", 30, 40, T);
  get(3, "x", "a", 50, 60, T);
  ASSERT_VIOLATION("x");
}

Test(lincheck, stale_read_after_completed_write) {
  put(1, "k7", "a", 0, 10, T);
  put(1, "k7", "b", 20, 30, T);
  get(2, "k7", "a", 40, 50, T);
  ASSERT_VIOLATION("k7");
  cr_assert(strstr(R.message, "get -> \"a\" (client 2, [40, 50])") != NULL, "%s", R.message);
  cr_assert(strstr(R.message, "holds \"b\"") != NULL, "%s", R.message);
}

Test(lincheck, read_of_a_never_written_value) {
  put(1, "k", "a", 0, 10, T);
  get(2, "k", "zzz", 5, 15, T);
  ASSERT_VIOLATION("k");
  cr_assert(strstr(R.message, "no operation on this key writes \"zzz\"") != NULL, "%s", R.message);
}

Test(lincheck, read_absent_after_completed_write) {
  put(1, "k", "a", 0, 10, T);
  get(2, "k", ABS, 11, 15, T);
  ASSERT_VIOLATION("k");
}

Test(lincheck, closed_intervals_touching_are_concurrent) {
  put(1, "k", "a", 0, 10, T);
  get(2, "k", ABS, 10, 15, T);
  get(3, "k", "a", 10, 15, T);
  ASSERT_OK();
}

Test(lincheck, non_monotonic_read) {
  /* b is seen, then the older a: a completed before b was even called. */
  put(1, "k", "a", 0, 10, T);
  put(2, "k", "b", 20, 100, T);
  get(3, "k", "b", 30, 40, T);
  get(3, "k", "a", 50, 60, T);
  ASSERT_VIOLATION("k");
}

Test(lincheck, null_write_that_later_appears) {
  put(1, "k", "a", 0, 10, T);
  put(2, "k", "b", 20, 0, N); /* timed out; took effect later */
  get(3, "k", "a", 30, 40, T);
  get(3, "k", "b", 1000, 1010, T);
  ASSERT_OK();
}

Test(lincheck, null_write_that_never_appears) {
  put(1, "k", "a", 0, 10, T);
  put(2, "k", "b", 20, 0, N);
  del(2, "k", 25, 0, N);
  get(3, "k", "a", 30, 40, T);
  get(3, "k", "a", 1000, 1010, T);
  ASSERT_OK();
}

Test(lincheck, null_write_takes_effect_at_most_once) {
  put(1, "k", "a", 0, 10, T);
  put(2, "k", "b", 20, 0, N);
  get(3, "k", "b", 30, 40, T);
  get(3, "k", "a", 50, 60, T); /* a cannot come back */
  ASSERT_VIOLATION("k");
}

Test(lincheck, null_write_cannot_take_effect_before_its_call) {
  get(3, "k", "b", 10, 20, T);
  put(2, "k", "b", 100, 0, N);
  ASSERT_VIOLATION("k");
}

Test(lincheck, null_get_carries_no_information) {
  put(1, "k", "a", 0, 10, T);
  get(2, "k", "garbage", 20, 0, N);
  ASSERT_OK();
  cr_assert_eq(R.stats.ops_checked, 1);
}

Test(lincheck, false_write_whose_value_is_read) {
  /* HISTORY.md's key rule: false means definitely no effect. */
  put(1, "k", "a", 0, 10, T);
  put(2, "k", "b", 20, 30, F);
  get(3, "k", "b", 40, 50, T);
  ASSERT_VIOLATION("k");
  cr_assert(strstr(R.message, "only an ok=false write wrote \"b\"") != NULL, "%s", R.message);
}

Test(lincheck, false_write_never_seen) {
  put(1, "k", "a", 0, 10, T);
  put(2, "k", "b", 5, 30, F);
  del(2, "k", 35, 36, F);
  get(3, "k", "a", 40, 50, T);
  ASSERT_OK();
  cr_assert_eq(R.stats.ops_checked, 2);
}

Test(lincheck, cas_success) {
  put(1, "k", "a", 0, 10, T);
  cas(2, "k", "a", "b", true, 20, 30, T);
  get(3, "k", "b", 40, 50, T);
  cas(2, "k", "b", "c", true, 60, 70, T);
  get(3, "k", "c", 80, 90, T);
  ASSERT_OK();
}

Test(lincheck, cas_success_against_wrong_value) {
  put(1, "k", "a", 0, 10, T);
  put(1, "k", "c", 11, 12, T);
  cas(2, "k", "a", "b", true, 20, 30, T);
  ASSERT_VIOLATION("k");
}

Test(lincheck, cas_failure_when_value_matches) {
  put(1, "k", "a", 0, 10, T);
  cas(2, "k", "a", "b", false, 20, 30, T);
  ASSERT_VIOLATION("k");
}

Test(lincheck, cas_failure_when_value_differs) {
  put(1, "k", "a", 0, 10, T);
  cas(2, "k", "x", "b", false, 20, 30, T);
  cas(2, "k", ABS, "b", false, 31, 32, T);
  get(3, "k", "a", 40, 50, T);
  ASSERT_OK();
}

Test(lincheck, cas_on_absent) {
  cas(1, "k", ABS, "a", true, 0, 10, T);
  get(2, "k", "a", 20, 30, T);
  ASSERT_OK();
}

Test(lincheck, cas_expecting_absent_after_a_write) {
  put(1, "k", "a", 0, 10, T);
  cas(2, "k", ABS, "b", true, 20, 30, T);
  ASSERT_VIOLATION("k");
}

Test(lincheck, cas_with_a_failed_swap_does_not_write) {
  put(1, "k", "a", 0, 10, T);
  cas(2, "k", "x", "b", false, 20, 30, T);
  get(3, "k", "b", 40, 50, T);
  ASSERT_VIOLATION("k");
}

Test(lincheck, null_cas_may_or_may_not_swap) {
  put(1, "k", "a", 0, 10, T);
  cas(2, "k", "a", "b", false, 20, 0, N);
  get(3, "k", "a", 30, 40, T);
  get(3, "k", "b", 50, 60, T);
  ASSERT_OK();
}

Test(lincheck, null_cas_cannot_swap_from_a_wrong_value) {
  put(1, "k", "a", 0, 10, T);
  cas(2, "k", "x", "b", false, 20, 0, N);
  get(3, "k", "b", 50, 60, T);
  ASSERT_VIOLATION("k");
}

Test(lincheck, deletes) {
  put(1, "k", "a", 0, 10, T);
  del(2, "k", 20, 30, T);
  get(3, "k", ABS, 40, 50, T);
  put(1, "k", "b", 60, 70, T);
  del(2, "k", 75, 100, T); /* concurrent with both reads */
  get(3, "k", "b", 80, 85, T);
  get(3, "k", ABS, 90, 95, T);
  ASSERT_OK();
}

Test(lincheck, read_after_completed_delete) {
  put(1, "k", "a", 0, 10, T);
  del(2, "k", 20, 30, T);
  get(3, "k", "a", 40, 50, T);
  ASSERT_VIOLATION("k");
}

Test(lincheck, independent_keys) {
  /* Same value names on different keys: a value written to one key is not
   * visible on another, and a violation names its key. */
  put(1, "k1", "v", 0, 10, T);
  get(2, "k2", ABS, 20, 30, T);
  put(3, "k2", "w", 5, 6, T);
  get(2, "k1", "v", 40, 50, T);
  put(4, "k3", "v", 0, 10, T);
  ASSERT_VIOLATION("k2");
  sim_hist_free(&H);
  sim_hist_init(&H);
  put(1, "k1", "v", 0, 10, T);
  get(2, "k2", "v", 20, 30, T);
  ASSERT_VIOLATION("k2");
  sim_hist_free(&H);
  sim_hist_init(&H);
  put(1, "k1", "v", 0, 10, T);
  put(1, "k2", "w", 0, 10, T);
  get(2, "k2", "w", 20, 30, T);
  get(2, "k1", "v", 20, 30, T);
  ASSERT_OK();
  cr_assert_eq(R.stats.keys, 2);
}

Test(lincheck, records_in_any_order) {
  get(3, "k", "b", 40, 50, T);
  put(2, "k", "b", 20, 30, T);
  get(4, "k", ABS, 0, 1, T);
  put(1, "k", "a", 0, 10, T);
  ASSERT_OK();
}

/* ---- the state budget ------------------------------------------------------------- */

/* n fully concurrent puts and one read of a value nobody wrote: to prove the
 * violation the search must try every subset of the puts. */
static void hard_history(const char *key, int n) {
  char v[16];
  for (int i = 0; i < n; i++) {
    snprintf(v, sizeof(v), "v%d", i);
    put((uint64_t)i, key, v, 0, 100, T);
  }
  get((uint64_t)n, key, "nope", 200, 210, T);
}

Test(lincheck, budget_gives_unknown_not_ok) {
  hard_history("hard", 12);
  cr_assert_eq(check(), SIM_LIN_VIOLATION);
  uint64_t full = R.stats.states;
  cr_assert(full > 1000, "states %llu", (unsigned long long)full);
  cr_assert_eq(check_with(100), SIM_LIN_UNKNOWN);
  cr_assert_str_eq(R.key, "hard");
  cr_assert_eq(R.stats.keys_unknown, 1);
  cr_assert(strstr(R.message, "budget 100") != NULL, "%s", R.message);
  /* A budget above what the search needs decides. */
  cr_assert_eq(check_with(full), SIM_LIN_VIOLATION);
}

Test(lincheck, violation_wins_over_unknown) {
  hard_history("a-hard", 12);
  put(1, "b-bad", "x", 0, 10, T);
  get(2, "b-bad", ABS, 20, 30, T);
  cr_assert_eq(check_with(100), SIM_LIN_VIOLATION);
  cr_assert_str_eq(R.key, "b-bad");
}

Test(lincheck, rejects_invalid_records) {
  /* Built by hand, bypassing sim_hist_add's validation. */
  sim_hist_rec bad = {.op = SIM_HIST_PUT, .key = "k", .value = NULL, .call = 1, .ret = 2, .ok = T};
  sim_hist h = {.v = &bad, .len = 1, .cap = 1};
  cr_assert_eq(sim_lin_check(&h, NULL, &R), RK_EINVAL);
}

/* ---- random histories from a real register ---------------------------------------- */

typedef struct gen_opts {
  uint64_t seed;
  size_t nops, nkeys, nclients;
  uint64_t max_latency; /* call..lin point and lin point..return, each */
  double p_null, p_false;
  bool mutate_impossible; /* one get reads a value nobody wrote */
  bool mutate_stale;      /* one get reads the value before the last completed put */
} gen_opts;

/* A write slot: the last state-changing ops on a key, for the stale mutation. */
typedef struct gen_write {
  bool plain; /* a put with ok=true */
  char val[24];
  uint64_t call, ret;
} gen_write;

typedef struct gen_key {
  char cur[24];
  bool present;
  gen_write last, prev;
} gen_key;

/* Clients run against one real register per key; each op takes effect at a
 * strictly increasing instant t inside its [call, return]. The result is
 * linearizable by construction; a mutation makes it certainly not. Returns
 * whether the requested mutation was planted. */
static bool gen_history(sim_hist *h, const gen_opts *g) {
  rk_rand r;
  rk_rand_seed(&r, g->seed);
  gen_key *keys = calloc(g->nkeys, sizeof(*keys));
  uint64_t *free_at = calloc(g->nclients, sizeof(*free_at));
  uint64_t *seq = calloc(g->nclients, sizeof(*seq));
  size_t *freec = calloc(g->nclients, sizeof(*freec));
  cr_assert(keys && free_at && seq && freec);
  bool mutated = !(g->mutate_impossible || g->mutate_stale);
  uint64_t t = 0;
  for (size_t i = 0; i < g->nops; i++) {
    t += 1 + rk_rand_below(&r, 3);
    size_t nfree = 0;
    uint64_t soonest = UINT64_MAX;
    for (size_t c = 0; c < g->nclients; c++) {
      if (free_at[c] <= t) freec[nfree++] = c;
      if (free_at[c] < soonest) soonest = free_at[c];
    }
    if (nfree == 0) {
      t = soonest;
      for (size_t c = 0; c < g->nclients; c++)
        if (free_at[c] <= t) freec[nfree++] = c;
    }
    size_t c = freec[rk_rand_below(&r, nfree)];
    uint64_t back = rk_rand_below(&r, g->max_latency + 1);
    uint64_t call = t - back < free_at[c] || back > t ? free_at[c] : t - back;
    uint64_t ret = t + rk_rand_below(&r, g->max_latency + 1);
    free_at[c] = ret + 1;
    size_t ki = rk_rand_below(&r, g->nkeys);
    gen_key *k = &keys[ki];
    char key[16], val[24], exp[24];
    snprintf(key, sizeof(key), "key%zu", ki);
    snprintf(val, sizeof(val), "c%zu-%llu", c, (unsigned long long)++seq[c]);
    sim_hist_ok ok = T;
    double u = rk_rand_double(&r);
    if (u < g->p_null)
      ok = N;
    else if (u < g->p_null + g->p_false)
      ok = F;
    bool applies = ok == T || (ok == N && rk_rand_chance(&r, 0.5));
    sim_hist_rec rec = {.client = c, .key = key, .call = call, .ret = ok == N ? 0 : ret, .ok = ok};
    bool writes = false;
    uint64_t dice = rk_rand_below(&r, 10);
    if (dice < 4) {
      rec.op = SIM_HIST_GET;
      rec.value = k->present ? k->cur : NULL;
      if (ok == T && !mutated && g->mutate_impossible && i >= g->nops / 2) {
        rec.value = "never-written";
        mutated = true;
      } else if (ok == T && !mutated && g->mutate_stale && i >= g->nops / 2 && k->prev.plain &&
                 k->last.plain && k->prev.ret < k->last.call && k->last.ret < call) {
        /* The value before a put that completed before this get was called,
         * itself written by a put that completed before that put began:
         * values are unique, so nothing can bring it back. */
        rec.value = k->prev.val;
        mutated = true;
      }
    } else if (dice < 7) {
      rec.op = SIM_HIST_PUT;
      rec.value = val;
      writes = applies;
      if (applies) {
        snprintf(k->cur, sizeof(k->cur), "%s", val);
        k->present = true;
      }
    } else if (dice < 8) {
      rec.op = SIM_HIST_DELETE;
      writes = applies;
      if (applies) k->present = false;
    } else {
      rec.op = SIM_HIST_CAS;
      rec.new_value = val;
      if (rk_rand_chance(&r, 0.6)) {
        rec.expected = k->present ? (snprintf(exp, sizeof(exp), "%s", k->cur), exp) : NULL;
      } else if (rk_rand_chance(&r, 0.5)) {
        rec.expected = NULL;
      } else {
        snprintf(exp, sizeof(exp), "c%zu-%llu", (size_t)rk_rand_below(&r, g->nclients),
                 (unsigned long long)rk_rand_below(&r, seq[c] + 1));
        rec.expected = exp;
      }
      bool match = rec.expected ? (k->present && strcmp(k->cur, rec.expected) == 0) : !k->present;
      rec.swapped = match;
      if (applies && match) {
        writes = true;
        snprintf(k->cur, sizeof(k->cur), "%s", val);
        k->present = true;
      }
      if (ok == N) writes = true; /* may have swapped, as far as the checker knows */
    }
    if (ok == N && rec.op != SIM_HIST_GET) writes = true;
    if (writes) {
      k->prev = k->last;
      k->last = (gen_write){.plain = ok == T && rec.op == SIM_HIST_PUT, .call = call, .ret = ret};
      snprintf(k->last.val, sizeof(k->last.val), "%s", rec.op == SIM_HIST_PUT ? val : "");
    }
    cr_assert_eq(sim_hist_add(h, &rec), RK_OK);
  }
  free(keys);
  free(free_at);
  free(seq);
  free(freec);
  return mutated;
}

static size_t count_ok_gets(const sim_hist *h) {
  size_t n = 0;
  for (size_t i = 0; i < h->len; i++) n += h->v[i].op == SIM_HIST_GET && h->v[i].ok == T;
  return n;
}

Test(lincheck, random_register_histories_are_linearizable) {
  for (uint64_t seed = 1; seed <= 60; seed++) {
    sim_hist_free(&H);
    sim_hist_init(&H);
    gen_opts g = {.seed = seed,
                  .nops = 1500,
                  .nkeys = 1 + seed % 8,
                  .nclients = 2 + seed % 9,
                  .max_latency = 5 + seed % 40,
                  .p_null = seed % 3 ? 0.03 : 0.0,
                  .p_false = 0.05};
    gen_history(&H, &g);
    cr_assert(count_ok_gets(&H) > 100);
    cr_assert_eq(check(), SIM_LIN_LINEARIZABLE, "seed %llu: %s key %s: %s",
                 (unsigned long long)seed, sim_lin_verdict_name(R.verdict), R.key, R.message);
  }
}

Test(lincheck, random_histories_with_an_impossible_read_are_violations) {
  for (uint64_t seed = 1; seed <= 60; seed++) {
    sim_hist_free(&H);
    sim_hist_init(&H);
    gen_opts g = {.seed = seed,
                  .nops = 1500,
                  .nkeys = 2 + seed % 7,
                  .nclients = 2 + seed % 9,
                  .max_latency = 5 + seed % 40,
                  .p_null = seed % 3 ? 0.03 : 0.0,
                  .p_false = 0.05,
                  .mutate_impossible = true};
    cr_assert(gen_history(&H, &g), "seed %llu: no read to mutate", (unsigned long long)seed);
    cr_assert_eq(check(), SIM_LIN_VIOLATION, "seed %llu: %s", (unsigned long long)seed,
                 sim_lin_verdict_name(R.verdict));
    cr_assert(strstr(R.message, "never-written") != NULL, "%s", R.message);
  }
}

Test(lincheck, random_histories_with_a_stale_read_are_violations) {
  size_t planted = 0;
  for (uint64_t seed = 1; seed <= 60; seed++) {
    sim_hist_free(&H);
    sim_hist_init(&H);
    gen_opts g = {.seed = seed,
                  .nops = 1500,
                  .nkeys = 2 + seed % 4,
                  .nclients = 2 + seed % 5,
                  .max_latency = 3 + seed % 10,
                  .p_null = seed % 3 ? 0.02 : 0.0,
                  .p_false = 0.05,
                  .mutate_stale = true};
    if (!gen_history(&H, &g)) continue;
    planted++;
    cr_assert_eq(check(), SIM_LIN_VIOLATION, "seed %llu: %s", (unsigned long long)seed,
                 sim_lin_verdict_name(R.verdict));
  }
  cr_assert(planted >= 40, "only %zu seeds had a stale read to plant", planted);
}

/* ---- files ------------------------------------------------------------------------ */

static char *check_file_report(const char *text, int *code) {
  char path[] = "/tmp/rk_lin_XXXXXX";
  int fd = mkstemp(path);
  cr_assert(fd >= 0);
  cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
  close(fd);
  char *buf = NULL;
  size_t len = 0;
  FILE *rep = open_memstream(&buf, &len);
  *code = sim_lin_check_file(path, rep);
  fclose(rep);
  unlink(path);
  return buf;
}

Test(lincheck, check_file_exit_codes_and_report) {
  int code;
  char *rep = check_file_report(
      "{\"client\":1,\"op\":\"put\",\"key\":\"k7\",\"value\":\"c1-42\",\"call\":1000,"
      "\"return\":1800,\"ok\":true}\n"
      "{\"client\":2,\"op\":\"get\",\"key\":\"k7\",\"value\":\"c1-42\",\"call\":1500,"
      "\"return\":2100,\"ok\":true}\n",
      &code);
  cr_assert_eq(code, 0, "%s", rep);
  cr_assert(strncmp(rep, "lincheck: LINEARIZABLE keys=1 ops=2", 35) == 0, "%s", rep);
  free(rep);
  rep = check_file_report(
      "{\"client\":1,\"op\":\"put\",\"key\":\"k7\",\"value\":\"c1-42\",\"call\":1000,"
      "\"return\":1800,\"ok\":false}\n"
      "{\"client\":2,\"op\":\"get\",\"key\":\"k7\",\"value\":\"c1-42\",\"call\":1500,"
      "\"return\":2100,\"ok\":true}\n",
      &code);
  cr_assert_eq(code, 1, "%s", rep);
  cr_assert(strstr(rep, "lincheck: VIOLATION key=\"k7\"") != NULL, "%s", rep);
  free(rep);
  rep = check_file_report("# header\n\n{\"client\":1,\"op\":\"put\"}\n", &code);
  cr_assert_eq(code, 2, "%s", rep);
  cr_assert(strstr(rep, ":3: missing field") != NULL, "%s", rep);
  free(rep);
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  cr_assert_eq(sim_lin_check_file("/nonexistent/history.jsonl", f), 2);
  fclose(f);
  cr_assert(strstr(buf, "lincheck: error: /nonexistent/history.jsonl") != NULL, "%s", buf);
  free(buf);
}

/* ---- speed (printed, never asserted) -------------------------------------------- */

Test(lincheck, speed_100k_ops_1000_keys) {
  gen_opts g = {.seed = 7,
                .nops = 100000,
                .nkeys = 1000,
                .nclients = 10,
                .max_latency = 50,
                .p_null = 0.01,
                .p_false = 0.01};
  gen_history(&H, &g);
  char path[] = "/tmp/rk_lin_speed_XXXXXX";
  int fd = mkstemp(path);
  cr_assert(fd >= 0);
  FILE *f = fdopen(fd, "w");
  cr_assert_eq(sim_hist_write(f, &H), RK_OK);
  fclose(f);
  sim_hist_free(&H);
  sim_hist_init(&H);
  uint64_t t0 = rk_clock_mono_ns(), c0 = rk_clock_cpu_ns();
  sim_hist_err err = {0};
  cr_assert_eq(sim_hist_read_file(path, &H, &err), RK_OK);
  uint64_t t1 = rk_clock_mono_ns(), c1 = rk_clock_cpu_ns();
  ASSERT_OK();
  uint64_t t2 = rk_clock_mono_ns(), c2 = rk_clock_cpu_ns();
  unlink(path);
  cr_assert_eq(R.stats.ops, 100000);
  double rs = (double)(t1 - t0) / 1e9, cs = (double)(t2 - t1) / 1e9;
  double rc = (double)(c1 - c0) / 1e9, cc = (double)(c2 - c1) / 1e9;
  fprintf(stderr,
          "lincheck speed: %llu ops, %llu keys, %llu states: read %.3f s wall, %.3f s cpu "
          "(%.0f ops/cpu-s); check %.3f s wall, %.3f s cpu (%.0f ops/cpu-s)\n",
          (unsigned long long)R.stats.ops, (unsigned long long)R.stats.keys,
          (unsigned long long)R.stats.states, rs, rc, (double)R.stats.ops / rc, cs, cc,
          (double)R.stats.ops / cc);
}

/* ---- differential test against brute force ----------------------------------------- */

/* Exhaustive reference: try every order (and, for null outcomes, every
 * subset) of one key's ops. Written independently of lincheck.c's model. */
typedef struct bf_op {
  sim_hist_op op;
  bool optional;
  const char *value, *expected, *new_value;
  bool swapped;
  uint64_t call, ret;
} bf_op;

static bool bf_eq(const char *a, const char *b) { return a && b ? strcmp(a, b) == 0 : a == b; }

static bool bf_search(const bf_op *ops, size_t n, unsigned placed, const char *state) {
  bool done = true;
  for (size_t j = 0; j < n; j++)
    if (!(placed >> j & 1) && !ops[j].optional) done = false;
  if (done) return true;
  for (size_t i = 0; i < n; i++) {
    if (placed >> i & 1) continue;
    bool blocked = false; /* a required op that returned before i was called */
    for (size_t j = 0; j < n; j++)
      if (!(placed >> j & 1) && j != i && !ops[j].optional && ops[j].ret < ops[i].call)
        blocked = true;
    if (blocked) continue;
    const bf_op *o = &ops[i];
    const char *next = state;
    bool legal = true;
    switch (o->op) {
    case SIM_HIST_PUT: next = o->value; break;
    case SIM_HIST_DELETE: next = NULL; break;
    case SIM_HIST_GET: legal = bf_eq(state, o->value); break;
    case SIM_HIST_CAS:
      if (o->optional)
        next = bf_eq(state, o->expected) ? o->new_value : state;
      else if (o->swapped) {
        legal = bf_eq(state, o->expected);
        next = o->new_value;
      } else {
        legal = !bf_eq(state, o->expected);
      }
      break;
    }
    if (legal && bf_search(ops, n, placed | 1u << i, next)) return true;
  }
  return false;
}

static bool bf_linearizable(const sim_hist *h) {
  bf_op ops[16];
  size_t n = 0;
  for (size_t i = 0; i < h->len; i++) {
    const sim_hist_rec *r = &h->v[i];
    if (r->ok == F || (r->ok == N && r->op == SIM_HIST_GET)) continue;
    cr_assert(n < 16);
    ops[n++] = (bf_op){.op = r->op,
                       .optional = r->ok == N,
                       .value = r->value,
                       .expected = r->expected,
                       .new_value = r->new_value,
                       .swapped = r->swapped,
                       .call = r->call,
                       .ret = r->ok == N ? UINT64_MAX : r->ret};
  }
  return bf_search(ops, n, 0, NULL);
}

Test(lincheck, agrees_with_brute_force_on_small_random_histories) {
  rk_rand r;
  rk_rand_seed(&r, 99);
  static const char *const pool[] = {"a", "b", "c", "d", "e", "f", "g", "h", NULL};
  size_t lin = 0, viol = 0;
  for (int iter = 0; iter < 60000; iter++) {
    sim_hist_free(&H);
    sim_hist_init(&H);
    /* Half the histories reuse three values; half write unique values (as
     * HISTORY.md asks), which exercises the checker's reductions. */
    bool unique = iter % 2;
    size_t n = 1 + rk_rand_below(&r, 7);
    for (size_t i = 0; i < n; i++) {
      uint64_t call = rk_rand_below(&r, 20), ret = call + rk_rand_below(&r, 10);
      uint64_t u = rk_rand_below(&r, 10);
      sim_hist_ok ok = u < 7 ? T : u < 9 ? N : F;
      const char *val = unique ? pool[i] : pool[rk_rand_below(&r, 3)];
      const char *any = unique ? (rk_rand_chance(&r, 0.3) ? NULL : pool[rk_rand_below(&r, n)])
                               : pool[rk_rand_below(&r, 4)];
      switch (rk_rand_below(&r, 4)) {
      case 0: put(i, "k", val, call, ret, ok); break;
      case 1: get(i, "k", any, call, ret, ok); break;
      case 2: del(i, "k", call, ret, ok); break;
      default: cas(i, "k", any, val, rk_rand_chance(&r, 0.5), call, ret, ok); break;
      }
    }
    bool want = bf_linearizable(&H);
    sim_lin_verdict got = check();
    cr_assert_eq(got, want ? SIM_LIN_LINEARIZABLE : SIM_LIN_VIOLATION,
                 "iteration %d: brute force says %d, lincheck %s: %s", iter, want,
                 sim_lin_verdict_name(got), R.message);
    if (want)
      lin++;
    else
      viol++;
  }
  /* Both verdicts are well represented. */
  cr_assert(lin > 5000 && viol > 5000, "lin %zu viol %zu", lin, viol);
}

Test(lincheck, offending_key_is_printable) {
  put(1, "a\"b\n\\", "x", 0, 10, T);
  get(2, "a\"b\n\\", ABS, 20, 30, T);
  ASSERT_VIOLATION("a\\x22b\\x0a\\x5c");
  char longkey[400];
  memset(longkey, 'k', sizeof(longkey) - 1);
  longkey[sizeof(longkey) - 1] = '\0';
  sim_hist_free(&H);
  sim_hist_init(&H);
  get(2, longkey, "x", 20, 30, T);
  cr_assert_eq(check(), SIM_LIN_VIOLATION);
  cr_assert_lt(strlen(R.key), SIM_LIN_KEY_MAX);
  cr_assert(strstr(R.key, "...") != NULL);
}

Test(lincheck, null_write_forced_before_its_reader) {
  /* b's writer has an unknown outcome, but b is read in [50, 60]: it took
   * effect after a was read (25..30) and before 60. Without the last read,
   * a, c, b fits. With it, c (done by 40) must follow b, so the read of b at
   * 50 would see c: a violation. */
  put(1, "k", "a", 0, 10, T);
  put(2, "k", "b", 20, 0, N);
  get(3, "k", "a", 25, 30, T);
  put(1, "k", "c", 35, 40, T);
  get(3, "k", "b", 50, 60, T);
  ASSERT_OK();
  get(3, "k", "c", 70, 80, T);
  ASSERT_VIOLATION("k");
}
