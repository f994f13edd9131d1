/* Concurrent clients on shared keys while a node is killed (-9) and
 * restarted mid-run, stopped (SIGSTOP) and continued, or cut off from the
 * other nodes by a silent network partition and healed (network
 * namespaces, netns.h; the clients still reach every node, so requests
 * keep going to the cut-off one). Every operation is recorded in the HISTORY.md format
 * (../shared/HISTORY.md; sim/history.h) and judged by the project's
 * linearizability checker (sim/lincheck.h). Every acknowledged write of a
 * write-once key is read back at the end. The mix on shared keys: 40 %
 * put, 37 % get, 5 % scan, 5 % delete, 8 % cas, the rest write-once keys.
 * A scan spans two shared keys (and the write-once keys between them, often
 * across ranges); each shared key in its span is recorded as a get over the
 * scan's whole interval — found with its value, or absent — so the checker
 * judges the scan path too (HISTORY.md has no scan operation). The second test compacts the
 * logs past the dead node, so it comes back through range snapshots while
 * the clients run. */
#include "itest.h"
#include "netns.h"

#include "sim/history.h"
#include "sim/lincheck.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#define H_CLIENTS 4
#define H_KEYS    6   /* shared keys: contended */
#define H_ONCE    400 /* write-once keys per client, at most */

static itn hnet;

static void fini(void) {
  it_fini();
  itn_teardown(&hnet);
}

TestSuite(history, .fini = fini);

typedef struct hclient {
  unsigned id;
  pthread_t th;
  sim_hist h;
  uint64_t t0;
  _Atomic int *stop;
  unsigned once_acked[H_ONCE]; /* write-once keys acknowledged */
  unsigned n_once_acked, n_once;
  unsigned ops, oks, unknown, scans;
  int add_err;
  int open_err; /* its client did not open: the main thread fails the test */
} hclient;

static uint64_t rel_now(const hclient *c) { return itc_now_ns() - c->t0; }

static void record(hclient *c, const sim_hist_rec *r) {
  if (sim_hist_add(&c->h, r) != RK_OK) c->add_err++;
}

static sim_hist_ok outcome(int rc) {
  if (rc == RK_OK) return SIM_HIST_TRUE;
  return rkc_outcome_unknown(rc) ? SIM_HIST_NULL : SIM_HIST_FALSE;
}

static void *client_main(void *arg) {
  hclient *c = arg;
  rkc_client *cl = it_client_try(-1, 3000);
  if (cl == NULL) {
    c->open_err = 1;
    return NULL;
  }
  uint64_t rng = 0x9e3779b97f4a7c15ull * (c->id + 1);
  unsigned seq = 0;
  char key[64], val[64], last_read[H_KEYS][64];
  int have_read[H_KEYS] = {0};
  while (!atomic_load(c->stop)) {
    uint64_t x = rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    unsigned kk = (unsigned)(x >> 33) % H_KEYS;
    unsigned dice = (unsigned)(x >> 45) % 100;
    it_key(key, sizeof key, "shared", kk);
    sim_hist_rec r;
    memset(&r, 0, sizeof r);
    r.client = c->id;
    r.key = key;
    c->ops++;
    if (dice < 40) { /* put */
      snprintf(val, sizeof val, "c%u-%u", c->id, ++seq);
      r.op = SIM_HIST_PUT;
      r.value = val;
      r.call = rel_now(c);
      int rc = rkc_put(cl, key, strlen(key), val, strlen(val));
      r.ret = rel_now(c);
      r.ok = outcome(rc);
      record(c, &r);
    } else if (dice < 77) { /* get */
      rkc_buf b;
      int found = 0;
      r.op = SIM_HIST_GET;
      r.call = rel_now(c);
      int rc = rkc_get(cl, key, strlen(key), &b, &found);
      r.ret = rel_now(c);
      if (rc == RK_OK) {
        r.ok = SIM_HIST_TRUE;
        r.value = found ? (const char *)b.data : NULL;
        if (found) {
          snprintf(last_read[kk], sizeof last_read[kk], "%s", (const char *)b.data);
          have_read[kk] = 1;
        }
        record(c, &r);
      } /* a failed read says nothing: not recorded (a null get is dropped anyway) */
      rkc_buf_free(&b);
    } else if (dice < 82) { /* scan from one shared key to another, inclusive */
      unsigned k2i = (unsigned)(x >> 53) % H_KEYS;
      char lo[64], hi[64];
      it_key(lo, sizeof lo, "shared", kk);
      it_key(hi, sizeof hi, "shared", k2i);
      if (strcmp(lo, hi) > 0) {
        char t[64];
        memcpy(t, lo, sizeof t);
        memcpy(lo, hi, sizeof lo);
        memcpy(hi, t, sizeof hi);
      }
      size_t hilen = strlen(hi) + 1; /* end: hi + "\0", so hi is in */
      rkc_kvs kv;
      uint64_t call = rel_now(c);
      int rc = rkc_scan(cl, lo, strlen(lo), hi, hilen, 100000, &kv);
      uint64_t ret = rel_now(c);
      if (rc == RK_OK && !kv.more) {
        r.op = SIM_HIST_GET;
        r.ok = SIM_HIST_TRUE;
        r.call = call;
        r.ret = ret;
        for (unsigned j = 0; j < H_KEYS; j++) {
          char kj[64];
          it_key(kj, sizeof kj, "shared", j);
          if (strcmp(kj, lo) < 0 || strcmp(kj, hi) > 0) continue;
          r.key = kj;
          r.value = NULL;
          for (size_t i = 0; i < kv.n; i++)
            if (kv.v[i].key.len == strlen(kj) && memcmp(kv.v[i].key.data, kj, kv.v[i].key.len) == 0)
              r.value = (const char *)kv.v[i].value.data;
          record(c, &r);
        }
        r.key = key;
        c->scans++;
      } /* a failed or cut-short scan says nothing: not recorded */
      if (rc == RK_OK) rkc_kvs_free(&kv);
    } else if (dice < 87) { /* delete */
      r.op = SIM_HIST_DELETE;
      r.call = rel_now(c);
      int rc = rkc_del(cl, key, strlen(key));
      r.ret = rel_now(c);
      r.ok = outcome(rc);
      record(c, &r);
    } else if (dice < 95) { /* cas from the last value read (or from absent) */
      snprintf(val, sizeof val, "c%u-%u", c->id, ++seq);
      r.op = SIM_HIST_CAS;
      r.expected = have_read[kk] ? last_read[kk] : NULL;
      r.new_value = val;
      int sw = 0;
      r.call = rel_now(c);
      int rc = rkc_cas(cl, key, strlen(key), r.expected, r.expected ? strlen(r.expected) : 0, val,
                       strlen(val), &sw);
      r.ret = rel_now(c);
      r.ok = outcome(rc);
      r.swapped = sw;
      record(c, &r);
    } else if (c->n_once < H_ONCE) { /* a write-once key */
      unsigned i = c->n_once++;
      char k2[64];
      snprintf(k2, sizeof k2, "%04x-once-c%u-%u", (i * 7919u + c->id * 131u) & 0xffffu, c->id, i);
      snprintf(val, sizeof val, "c%u-once-%u", c->id, i);
      r.key = k2;
      r.op = SIM_HIST_PUT;
      r.value = val;
      r.call = rel_now(c);
      int rc = rkc_put(cl, k2, strlen(k2), val, strlen(val));
      r.ret = rel_now(c);
      r.ok = outcome(rc);
      record(c, &r);
      if (rc == RK_OK) c->once_acked[c->n_once_acked++] = i;
    }
    if (r.ok == SIM_HIST_TRUE) c->oks++;
    if (r.ok == SIM_HIST_NULL) c->unknown++;
  }
  rkc_close(cl);
  return NULL;
}

/* Waits (polling, bounded) until every client has completed `more` further
 * operations, so each phase of the run really has traffic in it. Returns 1
 * if they did, 0 at the bound. */
static int wait_ops(hclient *cs, unsigned more, uint64_t max_ns) {
  unsigned base[H_CLIENTS];
  for (int i = 0; i < H_CLIENTS; i++) base[i] = __atomic_load_n(&cs[i].ops, __ATOMIC_RELAXED);
  uint64_t until = itc_now_ns() + max_ns;
  while (itc_now_ns() < until) {
    int done = 1;
    for (int i = 0; i < H_CLIENTS; i++)
      if (__atomic_load_n(&cs[i].ops, __ATOMIC_RELAXED) < base[i] + more) done = 0;
    if (done) return 1;
    itc_sleep_ms(20);
  }
  return 0;
}

static void stop_clients(hclient *cs, _Atomic int *stop) {
  atomic_store(stop, 1);
  for (int i = 0; i < H_CLIENTS; i++) pthread_join(cs[i].th, NULL);
}

/* The status of every node; NULL (and *n 0) if it could not be had. */
static rkc_node_status *status_all(size_t *n) {
  rkc_client *c = it_client(-1, 5000);
  rkc_node_status *st = NULL;
  *n = 0;
  if (rkc_status(c, &st, n) != RK_OK) {
    free(st);
    st = NULL;
    *n = 0;
  }
  rkc_close(c);
  return st;
}

/* Polls until a live node's logs hold fewer entries than it applied since
 * the victim stopped applying (victim_applied), by a margin: some range was
 * compacted past the victim, which will need a snapshot. */
static int wait_compacted_past(int victim, uint64_t victim_applied, uint64_t max_ns) {
  uint64_t until = itc_now_ns() + max_ns;
  while (itc_now_ns() < until) {
    size_t n = 0;
    rkc_node_status *st = status_all(&n);
    int past = 0;
    for (size_t i = 0; i < n; i++)
      if ((int)i != victim && st[i].err == RK_OK && st[i].have_indexes &&
          st[i].sum_applied > victim_applied + st[i].log_entries + 50)
        past = 1;
    free(st);
    if (past) return 1;
    itc_sleep_ms(50);
  }
  return 0;
}

/* rounds: faults one after another, on the next node each time; cut: the
 * fault is a silent partition (the cluster runs in network namespaces). */
static void run_history(int snapshots, int rounds, int cut) {
  uint64_t installed_before[3] = {0, 0, 0};
  if (snapshots) {
    itc.extra[0] = "--compact-entries";
    itc.extra[1] = "5";
    itc.extra[2] = "--compact-lag-entries";
    itc.extra[3] = "10";
    itc.n_extra = 4;
  }
  if (cut) {
    if (geteuid() != 0 || system("ip -V >/dev/null 2>&1") != 0)
      cr_skip_test("needs root and iproute2's ip for network namespaces");
    char nerr[512];
    if (itn_setup(&hnet, 3, nerr, sizeof nerr) != 0) cr_assert_fail("network namespaces: %s", nerr);
    for (int i = 0; i < 3; i++) {
      itc.host[i] = hnet.addr[i];
      itc.netns[i] = hnet.ns[i];
    }
    itc.extra[itc.n_extra++] = "--peer-timeout-ms";
    itc.extra[itc.n_extra++] = "1000";
  }
  it_start(3);
  static hclient cs[H_CLIENTS];
  _Atomic int stop = 0;
  uint64_t t0 = itc_now_ns();
  for (int i = 0; i < H_CLIENTS; i++) {
    memset(&cs[i], 0, sizeof cs[i]);
    cs[i].id = (unsigned)i + 1;
    cs[i].t0 = t0;
    cs[i].stop = &stop;
    sim_hist_init(&cs[i].h);
    cr_assert_eq(pthread_create(&cs[i].th, NULL, client_main, &cs[i]), 0);
  }
  wait_ops(cs, 100, 20ull * 1000000000ull); /* phase 1: all up */
  /* Round 0 kills the leader of shared key 0's range (found with a read,
   * which adds nothing to the history), so requests are in flight to it.
   * Later rounds move to the next node, and alternate kill -9 with a
   * SIGSTOP long enough for the others to move on (a stalled process). */
  rkc_client *probe = it_client(-1, 10000);
  char pk[64];
  it_key(pk, sizeof pk, "shared", 0);
  rkc_buf pb;
  int pf = 0;
  int victim = 0;
  if (rkc_get(probe, pk, strlen(pk), &pb, &pf) == RK_OK) {
    int li = itc_index_of(&itc, rkc_last(probe)->node_id);
    if (li >= 0) victim = li;
    rkc_buf_free(&pb);
  }
  rkc_close(probe);
  int rounds_past = 0, rs = 0;
  char err[512] = "";
  uint64_t installed = 0;
  for (int round = 0; round < rounds; round++, victim = (victim + 1) % 3) {
    int pause = !cut && round % 2 == 1;
    uint64_t victim_applied = 0;
    if (snapshots) {
      size_t n = 0;
      rkc_node_status *st = status_all(&n);
      cr_assert((size_t)victim < n && st[victim].have_indexes, "the victim's applied index");
      victim_applied = st[victim].sum_applied;
      installed_before[victim] = st[victim].snapshots_installed;
      free(st);
    }
    int gave_up = cut ? itc_log_count(&itc, victim, IT_GAVE_UP_LINE) : 0;
    if (cut)
      cr_assert_eq(itn_cut(&hnet, victim, 1), 0, "cutting node %u off", itc.nodes[victim].id);
    else if (pause)
      itc_sigstop(&itc, victim);
    else
      itc_kill9(&itc, victim); /* the leader dies mid-run */
    /* Phase 2: two nodes. A client whose request went to a stopped node
     * waits out its 3 s timeout, so a pause round asks for fewer ops. */
    wait_ops(cs, pause || cut ? 15 : 60, 20ull * 1000000000ull);
    /* A cut lasts until the victim has given up on a connection across it
     * (--peer-timeout-ms): its leaderships have long moved on by then. */
    for (uint64_t until = itc_now_ns() + 20000000000ull;
         cut && itc_log_count(&itc, victim, IT_GAVE_UP_LINE) == gave_up && itc_now_ns() < until;)
      itc_sleep_ms(20);
    uint64_t t2 = itc_now_ns();
    /* Whether a live node compacted past the victim: then (usually) the
     * leader of some range did too, and the victim needs a snapshot. Not
     * always: the two live nodes compact on their own clocks, and the
     * victim may catch up from the other's log first. */
    int past = snapshots && wait_compacted_past(victim, victim_applied, 20ull * 1000000000ull);
    rounds_past += past;
    if (cut) {
      cr_assert_eq(itn_cut(&hnet, victim, 0), 0, "healing node %u", itc.nodes[victim].id);
    } else if (pause) {
      itc_sigcont(&itc, victim);
    } else {
      rs = itc_restart(&itc, victim, err, sizeof err);
      if (rs != 0) { /* fail now: a later round would leave no quorum */
        stop_clients(cs, &stop);
        cr_assert_fail("round %d: restart: %s", round, err);
      }
      installed_before[victim] = 0; /* the counters restart with the node */
    }
    int moved = wait_ops(cs, 100, 20ull * 1000000000ull); /* phase 3: node back */
    uint64_t got = 0;
    for (uint64_t until = itc_now_ns() + 20000000000ull;
         past && got == 0 && itc_now_ns() < until;) {
      size_t n = 0;
      rkc_node_status *st = status_all(&n);
      if ((size_t)victim < n && st[victim].err == RK_OK &&
          st[victim].snapshots_installed > installed_before[victim])
        got = st[victim].snapshots_installed - installed_before[victim];
      free(st);
      if (got == 0) itc_sleep_ms(50);
    }
    installed += got;
    if (!moved) {
      stop_clients(cs, &stop);
      cr_assert_fail("round %d: the clients made no progress after node %u returned", round,
                     itc.nodes[victim].id);
    }
    cr_log_info("history round %d: node %u %s, logs %scut past it, %llu snapshot(s) installed on "
                "its return (t=%.1f s, phase 2 ended at %.1f s)",
                round, itc.nodes[victim].id,
                cut     ? "cut off"
                : pause ? "stopped"
                        : "killed",
                past ? "" : "not ", (unsigned long long)got, (double)(itc_now_ns() - t0) / 1e9,
                (double)(t2 - t0) / 1e9);
  }
  stop_clients(cs, &stop);
  cr_assert_eq(rs, 0, "restart: %s", err);
  if (snapshots) {
    /* Not vacuous: logs were cut past a victim, and a victim came back
     * through snapshots (every time, with one round). */
    cr_assert_gt(rounds_past, 0, "the live nodes never compacted past a stopped or dead node");
    cr_assert_gt(installed, 0, "no returning node installed a snapshot");
  }

  /* Final reads (client 0) of every shared key join the history. */
  sim_hist all;
  sim_hist_init(&all);
  rkc_client *c = it_client(-1, 15000);
  char key[64];
  for (unsigned kk = 0; kk < H_KEYS; kk++) {
    it_key(key, sizeof key, "shared", kk);
    sim_hist_rec r;
    memset(&r, 0, sizeof r);
    r.client = 0;
    r.op = SIM_HIST_GET;
    r.key = key;
    rkc_buf b;
    int found = 0;
    r.call = itc_now_ns() - t0;
    int rc = rkc_get(c, key, strlen(key), &b, &found);
    r.ret = itc_now_ns() - t0;
    cr_assert_eq(rc, RK_OK, "final get %s: %s", key, rkc_last(c)->detail);
    r.ok = SIM_HIST_TRUE;
    r.value = found ? (const char *)b.data : NULL;
    cr_assert_eq(sim_hist_add(&all, &r), RK_OK);
    rkc_buf_free(&b);
  }
  /* Every acknowledged write-once key reads back. */
  unsigned checked = 0;
  for (int i = 0; i < H_CLIENTS; i++) {
    for (unsigned j = 0; j < cs[i].n_once_acked; j++) {
      unsigned o = cs[i].once_acked[j];
      char k2[64], v[64];
      snprintf(k2, sizeof k2, "%04x-once-c%u-%u", (o * 7919u + cs[i].id * 131u) & 0xffffu, cs[i].id,
               o);
      snprintf(v, sizeof v, "c%u-once-%u", cs[i].id, o);
      IT_GET_IS(c, k2, v);
      checked++;
    }
  }
  rkc_close(c);

  unsigned ops = 0, oks = 0, unknown = 0, scans = 0;
  for (int i = 0; i < H_CLIENTS; i++) {
    cr_assert_eq(cs[i].open_err, 0, "client %u could not open its client", cs[i].id);
    cr_assert_eq(cs[i].add_err, 0, "client %u recorded an invalid record", cs[i].id);
    for (size_t j = 0; j < cs[i].h.len; j++) cr_assert_eq(sim_hist_add(&all, &cs[i].h.v[j]), RK_OK);
    ops += cs[i].ops;
    oks += cs[i].oks;
    unknown += cs[i].unknown;
    scans += cs[i].scans;
    sim_hist_free(&cs[i].h);
  }
  /* The history goes to a file next to the cluster (kept on a violation). */
  char path[600];
  snprintf(path, sizeof path, "%s/history.jsonl", itc.dir);
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f);
  cr_assert_eq(sim_hist_write(f, &all), RK_OK);
  fclose(f);
  sim_lin_result res;
  cr_assert_eq(sim_lin_check(&all, NULL, &res), RK_OK);
  cr_log_info("history: %d fault round(s); %u ops, %u ok, %u unknown, %u scans recorded, %u "
              "write-once keys read back, %zu records, verdict %s (%llu states)",
              rounds, ops, oks, unknown, scans, checked, all.len, sim_lin_verdict_name(res.verdict),
              (unsigned long long)res.stats.states);
  if (res.verdict != SIM_LIN_LINEARIZABLE) {
    itc_keep(&itc);
    cr_assert_fail("history %s: %s key=%s: %s", path, sim_lin_verdict_name(res.verdict), res.key,
                   res.message);
  }
  /* The run had acknowledged traffic in every phase (not a vacuous pass). */
  cr_assert_gt(oks, 100u);
  cr_assert_gt(checked, 0u);
  cr_assert_gt(scans, 0u);
  sim_hist_free(&all);
}

Test(history, concurrent_clients_with_a_node_killed_and_restarted_are_linearizable) {
  run_history(0, 1, 0);
}

Test(history, a_node_back_through_snapshots_mid_run_stays_linearizable) { run_history(1, 1, 0); }

/* Four faults in a row, each on the next node: kill -9, SIGSTOP, kill -9,
 * SIGSTOP, with the clients running throughout. The logs are cut past the
 * victims (in at least one round, usually every one), which come back
 * through snapshots. */
Test(history, four_faults_in_a_row_with_snapshots_stay_linearizable) { run_history(1, 4, 0); }

/* Two silent partitions in a row: first the leader of shared key 0's range
 * is cut off (it steps down, the other two elect; requests that reach it
 * meanwhile must not be served from its stale state), then the next node;
 * each healed before the next. */
Test(history, silent_partitions_of_one_node_stay_linearizable) { run_history(0, 2, 1); }
