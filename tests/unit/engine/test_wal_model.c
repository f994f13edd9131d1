/* Model-based test: random appends (with suffix overwrites), hard states,
 * compactions (inside the log and past its end, as after a snapshot),
 * purges with laggard rewrites, and reopens, checked against a simple
 * in-memory model after every few steps. Seeds are printed on failure.
 * Debug aids: MODEL_TRACE=<group> traces that group, MODEL_KEEP=1 keeps dirs. */
#include "eng_test.h"

#include "common/rk_rand.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MG   12   /* groups */
#define MAXI 4096 /* indexes per group the model can hold */
#define PLEN 120u /* max payload */

typedef struct mgroup {
  uint64_t first, last; /* last = first - 1 when empty */
  uint64_t term[MAXI];  /* term of entry i (index i) */
  uint64_t cur_term;
  int prev_known;
  uint64_t prev_term;
  int has_hs;
  rk_hard_state hs;
} mgroup;

static mgroup *model;

static void check_group(eng_wal *w, uint64_t gid, uint64_t seed, int step) {
  mgroup *m = &model[gid];
  uint64_t f, l;
  cr_assert_eq(eng_wal_first_index(w, gid, &f), RK_OK);
  cr_assert_eq(eng_wal_last_index(w, gid, &l), RK_OK);
  cr_assert_eq(f, m->first, "seed %lu step %d g%lu first %lu != %lu", (unsigned long)seed, step,
               (unsigned long)gid, (unsigned long)f, (unsigned long)m->first);
  cr_assert_eq(l, m->last, "seed %lu step %d g%lu last %lu != %lu", (unsigned long)seed, step,
               (unsigned long)gid, (unsigned long)l, (unsigned long)m->last);
  uint64_t t;
  int rc = eng_wal_term(w, gid, m->first - 1, &t);
  if (m->prev_known) {
    cr_assert_eq(rc, RK_OK, "seed %lu step %d g%lu term(first-1): %s", (unsigned long)seed, step,
                 (unsigned long)gid, rk_errname(rc));
    cr_assert_eq(t, m->prev_term, "seed %lu step %d g%lu prev term", (unsigned long)seed, step,
                 (unsigned long)gid);
  }
  if (m->last >= m->first) {
    rk_entry_vec ev;
    rk_entry_vec_init(&ev);
    cr_assert_eq(eng_wal_entries(w, gid, m->first, m->last + 1, UINT64_MAX, &ev), RK_OK);
    cr_assert_eq(ev.len, m->last - m->first + 1);
    uint8_t buf[PLEN + 1];
    for (size_t k = 0; k < ev.len; k++) {
      uint64_t i = m->first + k;
      uint32_t len = eng_payload(gid, i, m->term[i], PLEN, buf);
      cr_assert_eq(ev.v[k].term, m->term[i], "seed %lu step %d g%lu i%lu term %lu != %lu",
                   (unsigned long)seed, step, (unsigned long)gid, (unsigned long)i,
                   (unsigned long)ev.v[k].term, (unsigned long)m->term[i]);
      cr_assert_eq(ev.v[k].len, len);
      cr_assert(len == 0 || memcmp(ev.v[k].data, buf, len) == 0,
                "seed %lu step %d g%lu i%lu payload", (unsigned long)seed, step, (unsigned long)gid,
                (unsigned long)i);
    }
    rk_entry_vec_free(&ev);
  }
  rk_hard_state hs;
  int found;
  cr_assert_eq(eng_wal_hard_state(w, gid, &hs, &found), RK_OK);
  cr_assert_eq(found, m->has_hs);
  if (found) cr_assert(hs.term == m->hs.term && hs.vote == m->hs.vote && hs.commit == m->hs.commit);
}

static void check_all(eng_wal *w, uint64_t seed, int step) {
  for (uint64_t g = 1; g < MG; g++) check_group(w, g, seed, step);
  eng_wal_check_invariants(w);
}

/* What a run exercised (the test asserts each happened in some seed). */
typedef struct model_cover {
  uint64_t deleted, rewritten, recycled;
} model_cover;

static void run_seed(uint64_t seed, model_cover *cov) {
  char *dir = eng_tmpdir();
  if (getenv("MODEL_TRACE")) fprintf(stderr, "dir %s\n", dir);
  eng_wal_options o;
  eng_small_opts(&o, dir);
  o.rewrite_max_group_bytes = 6 * 1024;
  o.rewrite_after_segments = 3;
  eng_wal *w = eng_open_or_skip(&o);
  model = calloc(MG, sizeof *model);
  for (int g = 0; g < MG; g++) {
    model[g].first = 1;
    model[g].last = 0;
    model[g].cur_term = 1;
    model[g].prev_known = 1;
  }
  rk_rand r;
  rk_rand_seed(&r, seed);
  eng_wal_append_req reqs[64];
  eng_cb_state sts[64];
  int nreq = 0;
  uint64_t deleted = 0, rewritten = 0, recycled = 0;
  for (int step = 0; step < 2000; step++) {
    /* group MG-1 is a laggard: rarely written, it pins old segments */
    uint64_t gid = rk_rand_chance(&r, 0.01) ? MG - 1 : rk_rand_below(&r, MG - 2) + 1;
    mgroup *m = &model[gid];
    uint64_t op = rk_rand_below(&r, 100);
    if (getenv("MODEL_TRACE") && gid == (uint64_t)atoi(getenv("MODEL_TRACE")))
      fprintf(stderr, "step %d op %lu first %lu last %lu prevk %d\n", step, (unsigned long)op,
              (unsigned long)m->first, (unsigned long)m->last, m->prev_known);
    if (op < 60) { /* append, sometimes overwriting a suffix */
      uint64_t start = m->last + 1;
      if (m->last >= m->first && rk_rand_chance(&r, 0.15)) {
        start = rk_rand_range(&r, m->first, m->last);
        m->cur_term++;
      }
      uint64_t n = rk_rand_range(&r, 1, 6);
      if (start + n >= MAXI) continue;
      rk_hard_state hs = {.term = m->cur_term, .vote = rk_rand_below(&r, 5), .commit = start};
      int with_hs = rk_rand_chance(&r, 0.3);
      if (nreq == 64) {
        cr_assert_eq(eng_wal_sync(w), RK_OK);
        for (int k = 0; k < nreq; k++) cr_assert_eq(sts[k].status, RK_OK);
        nreq = 0;
      }
      int rc = eng_append_async(w, &reqs[nreq], &sts[nreq], gid, start, start + n, m->cur_term,
                                PLEN, with_hs ? &hs : NULL);
      cr_assert_eq(rc, RK_OK, "seed %lu step %d: append %s", (unsigned long)seed, step,
                   rk_errname(rc));
      nreq++;
      for (uint64_t i = start; i < start + n; i++) m->term[i] = m->cur_term;
      m->last = start + n - 1;
      if (with_hs) {
        m->has_hs = 1;
        m->hs = hs;
      }
    } else if (op < 75) { /* compact inside the log */
      if (m->last < m->first) continue;
      uint64_t lo = rk_rand_chance(&r, 0.5) && m->last > m->first + 8 ? m->last - 8 : m->first;
      uint64_t i = rk_rand_range(&r, lo, m->last + 1);
      cr_assert_eq(eng_wal_compact(w, gid, i, 0), RK_OK);
      if (i > m->first) {
        m->prev_term = m->term[i - 1];
        m->prev_known = 1;
        m->first = i;
      }
    } else if (op < 78) { /* snapshot: compact past the end, or reset anywhere */
      int reset = rk_rand_chance(&r, 0.5);
      uint64_t i =
          reset ? rk_rand_range(&r, m->first, m->last + 20) : m->last + rk_rand_range(&r, 2, 20);
      if (i + 8 >= MAXI) continue;
      uint64_t pt = m->cur_term + 1;
      if (reset)
        cr_assert_eq(eng_wal_reset(w, gid, i, pt), RK_OK);
      else
        cr_assert_eq(eng_wal_compact(w, gid, i, pt), RK_OK);
      m->cur_term = pt;
      m->first = i;
      m->last = i - 1;
      m->prev_term = pt;
      m->prev_known = 1;
    } else if (op < 88) {
      eng_wal_purge_stats ps;
      cr_assert_eq(eng_wal_purge(w, &ps), RK_OK);
      deleted += ps.segments_deleted;
      rewritten += ps.groups_rewritten;
      if (getenv("MODEL_TRACE")) {
        eng_wal_stats st;
        eng_wal_get_stats(w, &st);
        fprintf(stderr, "purge: del %lu rew %lu big %lu segs %lu..%lu\n",
                (unsigned long)ps.segments_deleted, (unsigned long)ps.groups_rewritten,
                (unsigned long)ps.laggards_too_big, (unsigned long)st.first_segment,
                (unsigned long)st.active_segment);
      }
    } else if (op < 96) {
      cr_assert_eq(eng_wal_sync(w), RK_OK);
      for (int k = 0; k < nreq; k++) cr_assert_eq(sts[k].status, RK_OK);
      nreq = 0;
    } else { /* clean reopen */
      cr_assert_eq(eng_wal_sync(w), RK_OK);
      nreq = 0;
      eng_wal_stats st;
      eng_wal_get_stats(w, &st);
      recycled += st.segments_recycled;
      eng_wal_close(w);
      eng_wal_recovery rec;
      cr_assert_eq(eng_wal_open(&o, &w, &rec), RK_OK, "seed %lu step %d: %s", (unsigned long)seed,
                   step, rec.message);
      cr_assert_eq(rec.torn_tail + rec.corrupt, 0);
      check_all(w, seed, step);
    }
    if (step % 25 == 0) check_all(w, seed, step);
  }
  cr_assert_eq(eng_wal_sync(w), RK_OK);
  check_all(w, seed, -1);
  eng_wal_stats st;
  eng_wal_get_stats(w, &st);
  recycled += st.segments_recycled;
  cov->deleted += deleted;
  cov->rewritten += rewritten;
  cov->recycled += recycled;
  eng_wal_close(w);
  free(model);
  if (!getenv("MODEL_KEEP")) eng_rmtree(dir);
  free(dir);
}

/* Soak runs (docs/wal.md): RK_WAL_MODEL_SEEDS=N runs N seeds in each model
 * test instead of the few CI runs, starting at seed offset
 * RK_WAL_MODEL_FIRST (default 0; a 120 s test timeout bounds one process,
 * so a long soak is a loop over offsets); RK_WAL_MODEL_SEED=S replays seed
 * S of random_operations_match_the_model alone. */
static uint64_t model_first(void) {
  const char *e = getenv("RK_WAL_MODEL_FIRST");
  return e ? strtoull(e, NULL, 10) : 0;
}

static uint64_t model_seeds(uint64_t dflt) {
  const char *e = getenv("RK_WAL_MODEL_SEEDS");
  uint64_t n = e ? strtoull(e, NULL, 10) : 0;
  return n ? n : dflt;
}

Test(wal_model, random_operations_match_the_model, .timeout = 120) {
  model_cover cov = {0};
  const char *one = getenv("RK_WAL_MODEL_SEED");
  if (one) {
    run_seed(strtoull(one, NULL, 10), &cov);
    return;
  }
  for (uint64_t seed = 1 + model_first(); seed <= model_first() + model_seeds(4); seed++)
    run_seed(seed, &cov);
  /* Seeds a soak run once failed on (replay lost term(first - 1)): 9, a
   * fresh group rewritten from index 1; 33, a group rewritten from its
   * compaction mark's boundary after the purge dropped the start of the
   * run it replaced. */
  static const uint64_t regressions[] = {9, 33};
  for (size_t k = 0; k < sizeof regressions / sizeof regressions[0]; k++)
    if (regressions[k] > model_first() + model_seeds(4)) run_seed(regressions[k], &cov);
  cr_assert_gt(cov.deleted, 0, "the runs never purged a segment");
  cr_assert_gt(cov.recycled, 0, "the runs never recycled a segment");
  cr_assert_gt(cov.rewritten, 0, "the runs never rewrote a laggard");
}

#ifdef RK_TEST_HOOKS
/* 1 if the WAL's view of every group equals model m (no assertions). */
static int matches(eng_wal *w, const mgroup *m) {
  for (uint64_t g = 1; g < MG; g++) {
    const mgroup *x = &m[g];
    uint64_t f, l;
    if (eng_wal_first_index(w, g, &f) != RK_OK || eng_wal_last_index(w, g, &l) != RK_OK) return 0;
    if (f != x->first || l != x->last) return 0;
    if (x->last >= x->first) {
      rk_entry_vec ev;
      rk_entry_vec_init(&ev);
      int ok = eng_wal_entries(w, g, x->first, x->last + 1, UINT64_MAX, &ev) == RK_OK &&
               ev.len == x->last - x->first + 1;
      uint8_t buf[PLEN + 1];
      for (size_t k = 0; ok && k < ev.len; k++) {
        uint64_t i = x->first + k;
        uint32_t len = eng_payload(g, i, x->term[i], PLEN, buf);
        ok = ev.v[k].term == x->term[i] && ev.v[k].len == len &&
             (len == 0 || memcmp(ev.v[k].data, buf, len) == 0);
      }
      rk_entry_vec_free(&ev);
      if (!ok) return 0;
    }
    rk_hard_state hs;
    int found;
    if (eng_wal_hard_state(w, g, &hs, &found) != RK_OK || found != x->has_hs) return 0;
    if (found && (hs.term != x->hs.term || hs.vote != x->hs.vote || hs.commit != x->hs.commit))
      return 0;
  }
  return 1;
}

/* Every operation is its own batch (synced); at a random point the next
 * batch is torn at a random byte and the process "dies". After reopening,
 * the log must equal the model either before or after the torn operation:
 * nothing acknowledged is lost, nothing half-applied is visible. */
Test(wal_model, random_crash_points_lose_only_the_torn_batch, .timeout = 120) {
  for (uint64_t seed = 100 + model_first(); seed < 100 + model_first() + model_seeds(8); seed++) {
    char *dir = eng_tmpdir();
    eng_wal_options o;
    eng_small_opts(&o, dir);
    o.rewrite_after_segments = 3;
    o.rewrite_max_group_bytes = 6 * 1024;
    eng_wal *w = eng_open_or_skip(&o);
    mgroup *cur = calloc(MG, sizeof *cur), *before = calloc(MG, sizeof *before);
    for (int g = 0; g < MG; g++) {
      cur[g].first = 1;
      cur[g].cur_term = 1;
      cur[g].prev_known = 1;
    }
    rk_rand r;
    rk_rand_seed(&r, seed);
    int crash_at = (int)rk_rand_range(&r, 50, 400);
    int crashed = 0;
    for (int step = 0; step <= crash_at && !crashed; step++) {
      uint64_t gid = rk_rand_below(&r, MG - 1) + 1;
      mgroup *m = &cur[gid];
      uint64_t op = rk_rand_below(&r, 100);
      memcpy(before, cur, MG * sizeof *cur);
      if (step == crash_at) {
        eng_wal_hooks h;
        eng_wal_hooks_default(&h);
        h.crash = ENG_WAL_CRASH_TORN_WRITE;
        h.crash_batch = eng_wal_next_batch_seq(w);
        h.crash_torn_bytes = (uint32_t)rk_rand_below(&r, 700);
        eng_wal_set_hooks(w, &h);
        op = 0; /* the torn operation is an append */
      }
      if (op < 70) {
        uint64_t start = m->last + 1;
        if (m->last >= m->first && rk_rand_chance(&r, 0.2)) {
          start = rk_rand_range(&r, m->first, m->last);
          m->cur_term++;
        }
        uint64_t n = rk_rand_range(&r, 1, 6);
        if (start + n >= MAXI) continue;
        rk_hard_state hs = {.term = m->cur_term, .vote = 1, .commit = start};
        int with_hs = rk_rand_chance(&r, 0.3);
        eng_wal_append_req req;
        eng_cb_state cs;
        cr_assert_eq(eng_append_async(w, &req, &cs, gid, start, start + n, m->cur_term, PLEN,
                                      with_hs ? &hs : NULL),
                     RK_OK);
        for (uint64_t i = start; i < start + n; i++) m->term[i] = m->cur_term;
        m->last = start + n - 1;
        if (with_hs) {
          m->has_hs = 1;
          m->hs = hs;
        }
        int rc = eng_wal_sync(w);
        if (step == crash_at) {
          cr_assert_eq(rc, RK_ESTOPPED);
          cr_assert_eq(cs.calls, 0);
          crashed = 1;
        } else {
          cr_assert_eq(rc, RK_OK);
          cr_assert_eq(cs.status, RK_OK);
        }
      } else if (op < 85) {
        if (m->last < m->first) continue;
        uint64_t i = rk_rand_range(&r, m->first, m->last + 1);
        cr_assert_eq(eng_wal_compact(w, gid, i, 0), RK_OK);
        if (i > m->first) {
          m->prev_term = m->term[i - 1];
          m->first = i;
        }
        cr_assert_eq(eng_wal_sync(w), RK_OK);
      } else {
        cr_assert_eq(eng_wal_purge(w, NULL), RK_OK);
        cr_assert_eq(eng_wal_sync(w), RK_OK);
      }
    }
    cr_assert(crashed, "seed %lu: no crash happened", (unsigned long)seed);
    eng_wal_close(w);
    eng_wal_recovery rec;
    cr_assert_eq(eng_wal_open(&o, &w, &rec), RK_OK, "seed %lu: %s", (unsigned long)seed,
                 rec.message);
    cr_assert_eq(rec.corrupt, 0);
    int was_before = matches(w, before), was_after = matches(w, cur);
    cr_assert(was_before || was_after,
              "seed %lu: recovered state is neither before nor after the torn batch (torn %d)",
              (unsigned long)seed, rec.torn_tail);
    eng_wal_check_invariants(w);
    eng_wal_close(w);
    free(cur);
    free(before);
    eng_rmtree(dir);
    free(dir);
  }
}
#endif
