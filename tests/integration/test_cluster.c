/* A 3-node cluster of real processes through the client library: reads and
 * writes, failover after kill -9 of a leader, catch-up after its restart, and
 * a node cut off alone refusing writes with "no quorum". */
#include "itest.h"

#include "rangekv.pb-c.h"
#include "transport/frame.h"
#include "transport/net.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>

itc_cluster itc;

static void fini(void) { it_fini(); }

TestSuite(cluster, .fini = fini);

/* A scan whose rows outgrow one answer: 20 rows of a longest key (4096
 * bytes) and a largest value (1 MiB), 20 MiB in all, more than a frame may
 * carry. Each node answer stops at its byte budget (NODE_SCAN_MAX_BYTES),
 * the client resumes just after the last key — a 4097-byte start key the
 * node must take for a scan — and every row arrives, whole and in order. */
Test(cluster, a_scan_larger_than_a_frame_arrives_whole) {
  it_start(3);
  rkc_client *c = it_client(-1, 20000);
  enum { ROWS = 20, VBYTES = 1 << 20 };
  static char key[RKC_KEY_MAX + 1], val[VBYTES];
  for (unsigned i = 0; i < ROWS; i++) {
    memset(key, 'x', RKC_KEY_MAX);
    snprintf(key, 16, "zz-scan-%02u", i);
    key[strlen(key)] = '-';
    memset(val, 'a' + (int)i, VBYTES);
    /* 20 MiB through a 200 ms election timeout (slower still under ASan)
     * can see a leader change: a write of unknown outcome is written again
     * (the same value, so twice is harmless), within one bound. */
    uint64_t until = itc_now_ns() + 60ull * 1000000000ull;
    int rc;
    while (rkc_outcome_unknown(rc = rkc_put(c, key, RKC_KEY_MAX, val, VBYTES)) &&
           itc_now_ns() < until)
      ;
    cr_assert_eq(rc, RK_OK, "put row %u: %s: %s", i, rk_strerror(rc), rkc_last(c)->detail);
  }
  rkc_kvs kv;
  int rc = rkc_scan(c, "zz-scan-", 8, "zz-scan-~", 9, 1000, &kv);
  cr_assert_eq(rc, RK_OK, "scan: %s: %s", rk_strerror(rc), rkc_last(c)->detail);
  cr_assert_eq(kv.n, ROWS);
  cr_assert_not(kv.more);
  for (unsigned i = 0; i < ROWS; i++) {
    char want[16];
    snprintf(want, sizeof want, "zz-scan-%02u-", i);
    cr_assert_eq(kv.v[i].key.len, RKC_KEY_MAX, "row %u", i);
    cr_assert(memcmp(kv.v[i].key.data, want, strlen(want)) == 0, "row %u out of order", i);
    cr_assert_eq(kv.v[i].value.len, VBYTES, "row %u", i);
    const char *v = (const char *)kv.v[i].value.data;
    cr_assert(v[0] == 'a' + (int)i && v[VBYTES - 1] == 'a' + (int)i, "row %u's value", i);
  }
  rkc_kvs_free(&kv);
  rkc_close(c);
}

Test(cluster, writes_and_reads_through_the_client) {
  it_start(3);
  rkc_client *c = it_client(-1, 10000);
  char k[64], v[64];
  for (unsigned i = 0; i < 100; i++) {
    it_key(k, sizeof k, "rw", i);
    snprintf(v, sizeof v, "v%u", i);
    IT_PUT_OK(c, k, v);
  }
  for (unsigned i = 0; i < 100; i++) {
    it_key(k, sizeof k, "rw", i);
    snprintf(v, sizeof v, "v%u", i);
    IT_GET_IS(c, k, v);
  }
  /* Deletes and compare-and-set. */
  it_key(k, sizeof k, "rw", 7);
  cr_assert_eq(rkc_del(c, k, strlen(k)), RK_OK, "%s", rkc_last(c)->detail);
  IT_GET_IS(c, k, (const char *)NULL);
  int sw = -1;
  cr_assert_eq(rkc_cas(c, k, strlen(k), NULL, 0, "new", 3, &sw), RK_OK, "%s", rkc_last(c)->detail);
  cr_assert_eq(sw, 1);
  cr_assert_eq(rkc_cas(c, k, strlen(k), "old", 3, "newer", 5, &sw), RK_OK);
  cr_assert_eq(sw, 0);
  IT_GET_IS(c, k, "new");
  /* A scan over the whole key space sees all 100 keys in order, across ranges. */
  rkc_kvs kv;
  cr_assert_eq(rkc_scan(c, "", 0, "", 0, 1000, &kv), RK_OK, "%s", rkc_last(c)->detail);
  cr_assert_eq(kv.n, 100);
  for (size_t i = 1; i < kv.n; i++)
    cr_assert_lt(strcmp((const char *)kv.v[i - 1].key.data, (const char *)kv.v[i].key.data), 0);
  rkc_kvs_free(&kv);
  /* The range table and every node's status. */
  rkc_ranges t;
  cr_assert_eq(rkc_ranges_get(c, &t), RK_OK);
  cr_assert_eq(t.n, IT_RANGES);
  cr_assert_eq(t.n_nodes, 3);
  cr_assert_eq(rkc_ranges_check(&t), RK_OK);
  rkc_ranges_free(&t);
  rkc_node_status *st;
  size_t n;
  cr_assert_eq(rkc_status(c, &st, &n), RK_OK);
  cr_assert_eq(n, 3);
  uint64_t leaders = 0;
  for (size_t i = 0; i < n; i++) {
    cr_assert_eq(st[i].err, RK_OK, "node %u: %s", st[i].node_id, rk_strerror(st[i].err));
    cr_assert_eq(st[i].replicas, IT_RANGES, "node %u", st[i].node_id);
    leaders += st[i].leaders;
  }
  cr_assert_leq(leaders, IT_RANGES, "two leaders of one range in one term would be a bug");
  free(st);
  /* Limits are enforced before sending. */
  static char big[RKC_KEY_MAX + 2];
  memset(big, 'a', sizeof big - 1);
  cr_assert_eq(rkc_put(c, big, RKC_KEY_MAX + 1, "v", 1), RK_ETOOLARGE);
  rkc_close(c);
}

/* Writes n keys; every one must be acknowledged. */
static void write_keys(rkc_client *c, const char *tag, unsigned n) {
  char k[64];
  for (unsigned i = 0; i < n; i++) {
    it_key(k, sizeof k, tag, i);
    IT_PUT_OK(c, k, k);
  }
}

static void read_keys(rkc_client *c, const char *tag, unsigned n) {
  char k[64];
  for (unsigned i = 0; i < n; i++) {
    it_key(k, sizeof k, tag, i);
    IT_GET_IS(c, k, k);
  }
}

Test(cluster, kill9_of_a_leader_then_restart_loses_nothing) {
  it_start(3);
  rkc_client *c = it_client(-1, 15000);
  write_keys(c, "a", 60);
  /* The node that led the last key's range. */
  char k[64];
  it_key(k, sizeof k, "a", 59);
  IT_PUT_OK(c, k, k);
  uint32_t leader = rkc_last(c)->node_id;
  int li = itc_index_of(&itc, leader);
  cr_assert_geq(li, 0);
  uint64_t t_kill = itc_now_ns();
  itc_kill9(&itc, li);
  /* A new leader serves that range within the client's deadline (15 s,
   * dozens of election timeouts): the write goes through, and no
   * acknowledged write is lost. */
  IT_PUT_OK(c, k, k);
  cr_assert_neq(rkc_last(c)->node_id, leader);
  cr_log_info("failover: node %u killed; range %llu served by node %u after %.0f ms "
              "(election timeout %d ms)",
              leader, (unsigned long long)rkc_last(c)->range_id, rkc_last(c)->node_id,
              (double)(itc_now_ns() - t_kill) / 1e6, IT_TICK_MS * IT_ELECTION_TICKS);
  write_keys(c, "b", 30);
  read_keys(c, "a", 60);
  read_keys(c, "b", 30);
  /* Restart it: it must catch up. Proof: stop one of the other two; every
   * commit now needs the restarted node, and every acknowledged write must
   * still read back. */
  char err[512];
  cr_assert_eq(itc_restart(&itc, li, err, sizeof err), 0, "%s", err);
  write_keys(c, "c", 20);
  int other = (li + 1) % 3;
  itc_kill9(&itc, other);
  write_keys(c, "d", 20);
  read_keys(c, "a", 60);
  read_keys(c, "b", 30);
  read_keys(c, "c", 20);
  read_keys(c, "d", 20);
  cr_assert_eq(itc_restart(&itc, other, err, sizeof err), 0, "%s", err);
  rkc_close(c);
}

Test(cluster, a_node_cut_off_alone_refuses_writes_with_no_quorum) {
  it_start(3);
  rkc_client *all = it_client(-1, 10000);
  write_keys(all, "q", 16); /* leaders elected everywhere */
  rkc_close(all);
  itc_sigstop(&itc, 1);
  itc_sigstop(&itc, 2);
  /* Node 1 alone. Until it notices (CheckQuorum steps a leader down after an
   * election timeout), a write it accepted ends UNKNOWN; after that, every
   * write must be refused definitely: RK_ENOQUORUM at the deadline. It must
   * never be acknowledged. */
  rkc_client *c = it_client(0, 2000);
  char k[64];
  it_key(k, sizeof k, "q", 3);
  int got = -1;
  uint64_t until = itc_now_ns() + 40ull * 1000000000ull;
  for (int attempt = 0; itc_now_ns() < until; attempt++) {
    char v[32];
    snprintf(v, sizeof v, "lonely%d", attempt);
    int rc = rkc_put(c, k, strlen(k), v, strlen(v));
    cr_assert_neq(rc, RK_OK, "a minority of one acknowledged a write");
    if (rc == RK_ENOQUORUM) {
      got = rc;
      cr_assert_not(rkc_last(c)->outcome_unknown);
      cr_assert_not_null(strstr(rkc_last(c)->detail, "no leader reachable"), "%s",
                         rkc_last(c)->detail);
      break;
    }
    cr_assert(rkc_outcome_unknown(rc), "unexpected %s: %s", rk_errname(rc), rkc_last(c)->detail);
  }
  cr_assert_eq(got, RK_ENOQUORUM, "no 'no quorum' answer within 40 s");
  rkc_close(c);
  /* Heal: the cluster serves again. */
  itc_sigcont(&itc, 1);
  itc_sigcont(&itc, 2);
  all = it_client(-1, 15000);
  IT_PUT_OK(all, k, "healed");
  IT_GET_IS(all, k, "healed");
  rkc_close(all);
}

Test(cluster, sigterm_is_a_clean_shutdown_and_a_restart_recovers_everything) {
  it_start(3);
  rkc_client *c = it_client(-1, 15000);
  write_keys(c, "t", 50);
  rkc_close(c);
  /* SIGTERM every node; each must exit 0 by itself (bounded wait). */
  for (int i = 0; i < 3; i++) kill(itc.nodes[i].pid, SIGTERM);
  for (int i = 0; i < 3; i++) {
    int st = 0;
    cr_assert(itc_wait_exit(itc.nodes[i].pid, 10000, &st),
              "node %u did not exit within 10 s of SIGTERM", itc.nodes[i].id);
    itc.nodes[i].pid = 0;
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "node %u: SIGTERM gave %s %d, want exit 0",
              itc.nodes[i].id, WIFEXITED(st) ? "exit" : "signal",
              WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
  }
  /* Same data dirs: every acknowledged write is there. */
  char err[512];
  for (int i = 0; i < 3; i++) cr_assert_eq(itc_restart(&itc, i, err, sizeof err), 0, "%s", err);
  c = it_client(-1, 15000);
  read_keys(c, "t", 50);
  rkc_close(c);
}

/* One request as raw bytes to node i's client port, like a client other
 * than ours could send (end: a scan's, NULL for none); returns the
 * answer's code. */
static int raw_request(int i, Rangekv__ClientOp op, uint64_t range_id, const char *key,
                       const char *end) {
  tp_conn *tc = NULL;
  cr_assert_eq(tp_conn_open(&tc, itc.nodes[i].client, 0, 5000, NULL), RK_OK);
  Rangekv__ClientRequest q = RANGEKV__CLIENT_REQUEST__INIT;
  q.id = 7;
  q.op = op;
  q.range_id = range_id;
  q.key.data = (uint8_t *)(uintptr_t)key;
  q.key.len = strlen(key);
  if (end != NULL) {
    q.end_key.data = (uint8_t *)(uintptr_t)end;
    q.end_key.len = strlen(end);
  }
  uint8_t buf[256];
  size_t len = rangekv__client_request__get_packed_size(&q);
  cr_assert_leq(len, sizeof buf);
  rangekv__client_request__pack(&q, buf);
  cr_assert_eq(tp_conn_send(tc, TP_FRAME_CLIENT_REQUEST, buf, (uint32_t)len, 5000), RK_OK);
  uint16_t type = 0;
  const uint8_t *p = NULL;
  uint32_t plen = 0;
  cr_assert_eq(tp_conn_recv(tc, &type, &p, &plen, 5000), RK_OK);
  cr_assert_eq(type, TP_FRAME_CLIENT_RESPONSE);
  Rangekv__ClientResponse *r = rangekv__client_response__unpack(NULL, plen, p);
  cr_assert_not_null(r);
  cr_assert_eq(r->id, 7);
  int code = r->code;
  rangekv__client_response__free_unpacked(r, NULL);
  tp_conn_close(tc);
  return code;
}

/* A request naming a range must name the one its key lives in, a scan's
 * start included, and a scan must end within it: clamped to the range
 * instead, a scan starting before it, or resumed from an end past it,
 * would silently skip the keys in between. */
Test(cluster, a_request_naming_the_wrong_range_is_refused) {
  it_start(1);
  const Rangekv__ClientOp get = RANGEKV__CLIENT_OP__OP_GET, scan = RANGEKV__CLIENT_OP__OP_SCAN;
  /* "zzzz" sorts after every hex key: the last range holds it, not the first. */
  cr_assert_eq(raw_request(0, get, 1, "zzzz", NULL), RK_ERANGEMOVED);
  cr_assert_eq(raw_request(0, scan, 1, "zzzz", NULL), RK_ERANGEMOVED);
  cr_assert_eq(raw_request(0, scan, IT_RANGES, "0000", NULL), RK_ERANGEMOVED,
               "starts before the range");
  cr_assert_eq(raw_request(0, scan, 1, "0000", NULL), RK_ERANGEMOVED, "ends past the range");
  cr_assert_eq(raw_request(0, scan, 1, "0000", "zzzz"), RK_ERANGEMOVED, "ends past the range");
  cr_assert_eq(raw_request(0, scan, IT_RANGES + 1, "zzzz", NULL), RK_EUNKNOWNRANGE);
  /* The right range answers, once it has a leader. */
  rkc_client *c = it_client(-1, 10000);
  size_t led = 0, total = 0;
  cr_assert_eq(rkc_wait_leaders(c, 10000, &led, &total), RK_OK, "%zu of %zu led", led, total);
  rkc_close(c);
  cr_assert_eq(raw_request(0, scan, IT_RANGES, "zzzz", NULL), RK_OK);
  cr_assert_eq(raw_request(0, scan, 1, "0000", "0001"), RK_OK, "within the range");
  cr_assert_eq(raw_request(0, scan, 0, "0000", NULL), RK_OK, "no range named: routed by key");
}
