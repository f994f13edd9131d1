/* The client library's routing, retry and outcome rules, against the fake
 * cluster of fake.h (no network, fake clock). */
#include "fake.h"

#include "common/rk_err.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static rkc_client *cl;

static void open_client(uint32_t timeout_ms) {
  static const char *eps[] = {"127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"};
  rkc_options o;
  rkc_options_default(&o);
  o.endpoints = eps;
  o.n_endpoints = 3;
  o.timeout_ms = timeout_ms;
  cr_assert_eq(rkc_open(&cl, &o), RK_OK);
}

static void setup(void) {
  fake_setup();
  open_client(2000);
}

static void teardown(void) {
  rkc_close(cl);
  cl = NULL;
  fake_teardown();
}

TestSuite(client, .init = setup, .fini = teardown);

static int put_s(const char *k, const char *v) { return rkc_put(cl, k, strlen(k), v, strlen(v)); }

static int get_s(const char *k, char *out, size_t cap) {
  rkc_buf b;
  int found = 0;
  int rc = rkc_get(cl, k, strlen(k), &b, &found);
  if (rc == RK_OK) snprintf(out, cap, "%s", found ? (const char *)b.data : "<absent>");
  rkc_buf_free(&b);
  return rc;
}

Test(client, put_get_del_through_the_leader) {
  char v[64];
  cr_assert_eq(put_s("1234", "a"), RK_OK, "%s", rkc_last(cl)->detail);
  cr_assert_eq(rkc_last(cl)->node_id, 1);
  cr_assert_eq(rkc_last(cl)->range_id, 1);
  cr_assert_eq(get_s("1234", v, sizeof v), RK_OK);
  cr_assert_str_eq(v, "a");
  cr_assert_eq(rkc_del(cl, "1234", 4), RK_OK);
  cr_assert_eq(get_s("1234", v, sizeof v), RK_OK);
  cr_assert_str_eq(v, "<absent>");
  cr_assert_eq(fk.violations, 0);
}

Test(client, routes_each_key_to_its_range) {
  const char *keys[] = {"", "0", "3fff", "4000", "7fffffff", "8000", "bfff", "c000", "ffff", "zz"};
  for (size_t i = 1; i < sizeof keys / sizeof keys[0]; i++) {
    cr_assert_eq(put_s(keys[i], "x"), RK_OK);
    cr_assert_eq(rkc_last(cl)->range_id, (uint64_t)fake_range_of(keys[i]) + 1, "key %s", keys[i]);
  }
  cr_assert_eq(fk.violations, 0);
}

Test(client, follows_the_leader_hint_and_remembers_it) {
  fk.leader[0] = 3;
  cr_assert_eq(put_s("0001", "v"), RK_OK);
  cr_assert_eq(rkc_last(cl)->node_id, 3);
  cr_assert_leq(rkc_last(cl)->attempts, 2); /* at most one redirect */
  int before = fk.nodes[0].data_requests + fk.nodes[1].data_requests;
  cr_assert_eq(put_s("0002", "v"), RK_OK);
  cr_assert_eq(rkc_last(cl)->attempts, 1, "the cached leader is used directly");
  cr_assert_eq(fk.nodes[0].data_requests + fk.nodes[1].data_requests, before);
}

Test(client, without_hints_tries_every_replica) {
  fk.leader[1] = 2;
  for (int i = 0; i < FAKE_NODES; i++) fk.nodes[i].hint = 0;
  cr_assert_eq(put_s("4001", "v"), RK_OK, "%s", rkc_last(cl)->detail);
  cr_assert_eq(rkc_last(cl)->node_id, 2);
}

Test(client, no_leader_anywhere_is_a_definite_no_quorum) {
  for (int i = 0; i < FAKE_RANGES; i++) fk.leader[i] = 0;
  uint64_t t0 = fk.now_ns;
  int rc = put_s("9000", "v");
  cr_assert_eq(rc, RK_ENOQUORUM, "got %s", rk_errname(rc));
  cr_assert_not(rkc_outcome_unknown(rc));
  cr_assert_not(rkc_last(cl)->outcome_unknown);
  cr_assert_not_null(strstr(rkc_last(cl)->detail, "no leader reachable within the deadline"));
  /* It kept trying until the deadline (less the last 100 ms, see below),
   * pausing between rounds. */
  cr_assert_geq(fk.now_ns - t0, (2000ull - 100) * 1000000u);
  cr_assert_gt(rkc_last(cl)->attempts, 3);
  cr_assert_gt(fk.slept_ms, 0);
}

/* A write is not sent again with almost nothing of its deadline left: it
 * would come back RK_ETIMEOUT (unknown) from a healthy new leader that
 * may well commit it, where the honest answer is "not taken" (and the
 * node would be shunned for nothing). Retries need 100 ms (a tenth of
 * the deadline if that is less). */
Test(client, a_write_is_not_retried_in_the_last_moments_of_its_deadline) {
  for (int i = 0; i < FAKE_RANGES; i++) fk.leader[i] = 0;
  uint64_t t0 = fk.now_ns;
  cr_assert_eq(put_s("9000", "v"), RK_ENOQUORUM);
  cr_assert_gt(fk.last_data_ns, t0);
  cr_assert_leq(fk.last_data_ns, t0 + (2000ull - 100) * 1000000u,
                "a write went out %llu ms before its deadline",
                (unsigned long long)((t0 + 2000ull * 1000000u - fk.last_data_ns) / 1000000u));
}

Test(client, every_node_down_is_a_definite_no_quorum) {
  for (int i = 0; i < FAKE_NODES; i++) fk.nodes[i].mode = FAKE_DOWN;
  int rc = put_s("9000", "v");
  cr_assert_eq(rc, RK_ENOQUORUM);
  cr_assert_eq(rkc_last(cl)->attempts, 0);
}

Test(client, a_leader_timeout_makes_a_write_unknown_and_it_is_not_resent) {
  fk.nodes[0].mode = FAKE_TIMEOUT;
  int rc = put_s("1000", "v");
  cr_assert_eq(rc, RK_ETIMEOUT);
  cr_assert(rkc_outcome_unknown(rc));
  cr_assert(rkc_last(cl)->outcome_unknown);
  cr_assert_eq(fk.nodes[0].data_requests, 1, "an unknown write must never be re-sent");
}

Test(client, a_proposal_dropped_is_unknown_too) {
  /* The node side's RK_EPROPOSALDROPPED and any unlisted code: unknown. */
  cr_assert_eq(rkc_classify(RK_EPROPOSALDROPPED), RKC_UNKNOWN);
  cr_assert_eq(rkc_classify(RK_ESTOPPED), RKC_UNKNOWN);
  cr_assert_eq(rkc_classify(RK_ENOTLEADER), RKC_REDIRECT);
  cr_assert_eq(rkc_classify(RK_ETOOLARGE), RKC_FINAL);
  cr_assert(rkc_outcome_unknown(RK_EPROPOSALDROPPED));
  cr_assert(rkc_outcome_unknown(RK_ECLOSED));
  cr_assert_not(rkc_outcome_unknown(RK_ENOQUORUM));
  cr_assert_not(rkc_outcome_unknown(RK_ETOOLARGE));
  cr_assert_not(rkc_outcome_unknown(RK_OK));
}

Test(client, a_silent_leader_makes_a_write_unknown_after_one_send) {
  fk.nodes[0].mode = FAKE_SILENT;
  int rc = put_s("1000", "v");
  cr_assert_eq(rc, RK_ETIMEOUT);
  cr_assert_eq(fk.nodes[0].data_requests, 1);
}

/* Node 1, the cached leader of "1000"'s range, has stalled: a write to it
 * comes back unknown, and the next write in that range reaches node
 * `now_leader` without anything more sent to node 1. */
static void stalled_leader_is_avoided(uint32_t now_leader) {
  cr_assert_eq(put_s("1000", "w"), RK_ETIMEOUT);
  int before = fk.nodes[0].data_requests;
  int rc = put_s("1001", "x");
  cr_assert_eq(rc, RK_OK, "%s: %s", rk_errname(rc), rkc_last(cl)->detail);
  cr_assert_eq(rkc_last(cl)->node_id, now_leader);
  cr_assert_eq(fk.nodes[0].data_requests, before, "nothing more was sent to the stalled node");
}

/* The next write after an unknown outcome does not wait on the same
 * stalled leader again: the client forgets it and finds the new one. */
Test(client, a_silent_leader_is_forgotten_after_its_write_times_out) {
  cr_assert_eq(put_s("1000", "v"), RK_OK); /* caches node 1 as the leader */
  fk.nodes[0].mode = FAKE_SILENT;          /* it stalls ... */
  fk.leader[fake_range_of("1000")] = 2;    /* ... and node 2 takes over */
  stalled_leader_is_avoided(2);
}

/* A follower that still believes in the stalled leader (the others are
 * inside their election timeout) names it as the hint: the client must not
 * go back to it through that hint or its cached leader while it is shunned
 * (it would wait out another whole deadline for a second unknown write). */
Test(client, a_stale_hint_does_not_lead_back_to_a_shunned_node) {
  /* The client tries replicas in a random turn: 8 fresh clients, so the
   * one that asks node 2 (the stale one) first surely comes up. */
  for (int round = 0; round < 8; round++) {
    rkc_close(cl);
    open_client(2000);
    fk.nodes[0].mode = FAKE_SERVE;
    fk.nodes[1].stale_hint = 0;
    fk.leader[fake_range_of("1000")] = 1;
    cr_assert_eq(put_s("1000", "v"), RK_OK); /* caches node 1 as the leader */
    fk.nodes[0].mode = FAKE_SILENT;
    fk.leader[fake_range_of("1000")] = 3;
    fk.nodes[1].stale_hint = 1; /* node 2 still names node 1 */
    stalled_leader_is_avoided(3);
  }
}

/* But a node that was only slow, and that every other replica names as
 * the leader, is tried again at once rather than shunned for a whole
 * deadline (nobody else can serve the range). */
Test(client, a_shunned_node_every_other_replica_names_is_tried_again) {
  char out[64];
  cr_assert_eq(put_s("1000", "v"), RK_OK);
  fk.nodes[0].mode = FAKE_SILENT;                /* a write times out there: node 1 is shunned */
  cr_assert_eq(put_s("1000", "w"), RK_ETIMEOUT); /* (for 2 s, the whole next call) */
  fk.nodes[0].mode = FAKE_SERVE;                 /* it was slow, and still leads */
  int rc = get_s("1000", out, sizeof out);
  cr_assert_eq(rc, RK_OK, "%s: %s", rk_errname(rc), rkc_last(cl)->detail);
  cr_assert_eq(rkc_last(cl)->node_id, 1);
  cr_assert_str_eq(out, "v"); /* the fake never applies a silent node's write */
}

/* A new leader holds its first reads until its term's first entry commits,
 * which can outlast one read attempt (a replica being rebuilt from
 * snapshots must ack it). With the third replica down, the leader is the
 * only node that can serve: the client goes back to it once the other
 * replicas have named it or could not be reached, rather than wait out its
 * whole deadline (the integration test
 * compaction::a_node_compacted_past_catches_up_from_snapshots failed so). */
Test(client, a_slow_leader_is_tried_again_when_the_rest_name_it_or_are_down) {
  char out[64];
  cr_assert_eq(put_s("1000", "v"), RK_OK); /* caches node 1 as the leader */
  fk.nodes[2].mode = FAKE_DOWN;
  fk.nodes[0].silent_requests = 1; /* the first read outlasts its attempt */
  int rc = get_s("1000", out, sizeof out);
  cr_assert_eq(rc, RK_OK, "%s: %s", rk_errname(rc), rkc_last(cl)->detail);
  cr_assert_eq(rkc_last(cl)->node_id, 1);
  cr_assert_str_eq(out, "v");
  cr_assert_eq(fk.nodes[0].silent_requests, 0);
}

/* But a write is not sent back to a silent node on that ground: with the
 * leader stalled and the third replica down, nobody can commit it, and
 * waiting on the stalled node would turn a definite "no quorum" into an
 * unknown outcome. */
Test(client, a_write_is_not_sent_back_to_a_silent_node_because_the_rest_is_down) {
  cr_assert_eq(put_s("1000", "v"), RK_OK); /* caches node 1 as the leader */
  fk.nodes[0].mode = FAKE_SILENT;
  fk.nodes[2].mode = FAKE_DOWN;
  cr_assert_eq(put_s("1000", "w"), RK_ETIMEOUT); /* unknown: node 1 is shunned */
  int sent = fk.nodes[0].data_requests;
  int rc = put_s("1000", "x");
  cr_assert_eq(rc, RK_ENOQUORUM, "%s: %s", rk_errname(rc), rkc_last(cl)->detail);
  cr_assert_not(rkc_last(cl)->outcome_unknown);
  cr_assert_eq(fk.nodes[0].data_requests, sent, "the write went to the silent node");
}

Test(client, a_crash_after_sending_makes_a_write_unknown) {
  fk.nodes[0].mode = FAKE_CRASH;
  int rc = put_s("1000", "v");
  cr_assert_eq(rc, RK_ECLOSED);
  cr_assert(rkc_last(cl)->outcome_unknown);
  cr_assert_eq(fk.nodes[0].data_requests, 1);
}

Test(client, reads_are_retried_on_another_replica_after_a_timeout) {
  cr_assert_eq(put_s("2000", "v1"), RK_OK);
  fk.nodes[0].mode = FAKE_SILENT; /* the leader stalls ... */
  fk.leader[0] = 2;               /* ... and node 2 takes over */
  char v[64];
  int rc = get_s("2000", v, sizeof v);
  cr_assert_eq(rc, RK_OK, "%s: %s", rk_errname(rc), rkc_last(cl)->detail);
  cr_assert_str_eq(v, "v1");
  cr_assert_eq(rkc_last(cl)->node_id, 2);
}

Test(client, a_read_that_only_times_out_returns_timeout) {
  for (int i = 0; i < FAKE_NODES; i++) fk.nodes[i].mode = FAKE_TIMEOUT;
  char v[64];
  cr_assert_eq(get_s("2000", v, sizeof v), RK_ETIMEOUT);
}

Test(client, a_dead_leader_is_skipped_for_the_new_one) {
  cr_assert_eq(put_s("c001", "v"), RK_OK); /* caches node 1 as leader of range 4 */
  fk.nodes[0].mode = FAKE_DOWN;
  fk.leader[3] = 2;
  cr_assert_eq(put_s("c002", "v"), RK_OK, "%s", rkc_last(cl)->detail);
  cr_assert_eq(rkc_last(cl)->node_id, 2);
}

Test(client, a_restarted_node_costs_a_reconnect_not_an_unknown_outcome) {
  cr_assert_eq(put_s("0100", "a"), RK_OK);
  int opens = fk.nodes[0].opens;
  fake_restart(1); /* the cached connection is now dead */
  cr_assert_eq(put_s("0100", "b"), RK_OK, "%s", rkc_last(cl)->detail);
  cr_assert_eq(rkc_last(cl)->attempts, 1);
  cr_assert_eq(fk.nodes[0].opens, opens + 1);
}

Test(client, limits_are_checked_before_sending) {
  char *big = malloc(RKC_VALUE_MAX + 1);
  memset(big, 'x', RKC_VALUE_MAX + 1);
  cr_assert_eq(rkc_put(cl, big, RKC_KEY_MAX + 1, "v", 1), RK_ETOOLARGE);
  cr_assert_eq(rkc_put(cl, "k", 1, big, RKC_VALUE_MAX + 1), RK_ETOOLARGE);
  cr_assert_not(rkc_last(cl)->outcome_unknown);
  cr_assert_eq(rkc_put(cl, "", 0, "v", 1), RK_EINVAL);
  cr_assert_eq(fk.requests_total, 0, "nothing was sent");
  /* Exactly at the limits is fine. */
  cr_assert_eq(rkc_put(cl, big, RKC_KEY_MAX, big, RKC_VALUE_MAX), RK_OK);
  free(big);
}

Test(client, cas_swaps_only_on_a_match) {
  int sw = -1;
  cr_assert_eq(rkc_cas(cl, "5000", 4, NULL, 0, "a", 1, &sw), RK_OK);
  cr_assert_eq(sw, 1);
  cr_assert_eq(rkc_cas(cl, "5000", 4, NULL, 0, "b", 1, &sw), RK_OK);
  cr_assert_eq(sw, 0);
  cr_assert_eq(rkc_cas(cl, "5000", 4, "a", 1, "c", 1, &sw), RK_OK);
  cr_assert_eq(sw, 1);
  char v[64];
  cr_assert_eq(get_s("5000", v, sizeof v), RK_OK);
  cr_assert_str_eq(v, "c");
}

Test(client, scan_spans_ranges_in_key_order_and_honours_the_limit) {
  const char *keys[] = {"0a", "0b", "3f", "40", "41", "42", "43", "7", "8", "b", "c0", "d", "e"};
  size_t nk = sizeof keys / sizeof keys[0];
  for (size_t i = nk; i-- > 0;) cr_assert_eq(put_s(keys[i], keys[i]), RK_OK);
  rkc_kvs kv;
  cr_assert_eq(rkc_scan(cl, "", 0, "", 0, 100, &kv), RK_OK, "%s", rkc_last(cl)->detail);
  cr_assert_eq(kv.n, nk);
  for (size_t i = 0; i < nk; i++) cr_assert_str_eq((const char *)kv.v[i].key.data, keys[i]);
  cr_assert_not(kv.more);
  rkc_kvs_free(&kv);
  /* [3f, c0) with a limit of 5. */
  cr_assert_eq(rkc_scan(cl, "3f", 2, "c0", 2, 5, &kv), RK_OK);
  cr_assert_eq(kv.n, 5);
  cr_assert_str_eq((const char *)kv.v[0].key.data, "3f");
  cr_assert_str_eq((const char *)kv.v[4].key.data, "43");
  cr_assert(kv.more);
  rkc_kvs_free(&kv);
  cr_assert_eq(rkc_scan(cl, "3f", 2, "c0", 2, 100, &kv), RK_OK);
  cr_assert_eq(kv.n, 8);
  cr_assert_str_eq((const char *)kv.v[7].key.data, "b");
  rkc_kvs_free(&kv);
  cr_assert_eq(fk.violations, 0, "a scan request crossed its range's end");
}

/* An answer for another range than the one asked is a node bug, never
 * data: reads and scans stop with a typed error; a write stops with its
 * outcome unknown (the node may have applied it), never a definite
 * failure. */
Test(client, an_answer_for_another_range_is_refused) {
  cr_assert_eq(put_s("1234", "a"), RK_OK);
  fk.nodes[0].answer_range = 3; /* node 1 leads every range; "1234" is in range 1 */
  char v[64];
  cr_assert_eq(get_s("1234", v, sizeof v), RK_EMALFORMED);
  cr_assert(strstr(rkc_last(cl)->detail, "answered for range 3, asked range 1") != NULL, "%s",
            rkc_last(cl)->detail);
  rkc_kvs kv;
  cr_assert_eq(rkc_scan(cl, "", 0, NULL, 0, 100, &kv), RK_EMALFORMED);
  cr_assert_eq(kv.n, 0);
  cr_assert_eq(put_s("1234", "b"), RK_ETIMEOUT);
  cr_assert(rkc_last(cl)->outcome_unknown);
  cr_assert(strstr(rkc_last(cl)->detail, "may or may not have been applied") != NULL, "%s",
            rkc_last(cl)->detail);
  fk.nodes[0].answer_range = 0;
  cr_assert_eq(get_s("1234", v, sizeof v), RK_OK);
}

/* Each part of a scan (a range, or a page resumed within one) has its
 * own deadline: four ranges answering in 600 ms each, 2.4 s in all, are
 * scanned whole with a 2 s timeout. */
Test(client, each_part_of_a_scan_has_its_own_deadline) {
  const char *keys[] = {"1000", "5000", "9000", "d000"};
  for (int i = 0; i < 4; i++) cr_assert_eq(put_s(keys[i], "v"), RK_OK);
  fk.answer_ms = 600;
  uint64_t t0 = fk.now_ns;
  rkc_kvs kv;
  int rc = rkc_scan(cl, "", 0, NULL, 0, 100, &kv);
  cr_assert_eq(rc, RK_OK, "%s: %s", rk_errname(rc), rkc_last(cl)->detail);
  cr_assert_eq(kv.n, 4);
  cr_assert_geq(fk.now_ns - t0, 2400ull * 1000000u);
  rkc_kvs_free(&kv);
}

Test(client, status_reports_every_node_and_marks_the_dead_one) {
  fk.nodes[2].mode = FAKE_DOWN;
  rkc_node_status *st;
  size_t n;
  cr_assert_eq(rkc_status(cl, &st, &n), RK_OK);
  cr_assert_eq(n, 3);
  cr_assert_eq(st[0].err, RK_OK);
  cr_assert_eq(st[0].max_term, 5);
  cr_assert_eq(st[0].sum_commit, 40);
  cr_assert_eq(st[0].sum_applied, 36);
  cr_assert_neq(st[2].err, RK_OK);
  free(st);
}

Test(client, ranges_copy_matches_the_table) {
  fk.advertise_leader = 1;
  fk.leader[2] = 2;
  rkc_ranges t;
  cr_assert_eq(rkc_ranges_get(cl, &t), RK_OK);
  cr_assert_eq(t.n, FAKE_RANGES);
  cr_assert_eq(t.n_nodes, FAKE_NODES);
  cr_assert_eq(t.v[2].leader, 2);
  cr_assert_eq(t.v[2].start_len, 4);
  cr_assert_eq(memcmp(t.v[2].start, "8000", 4), 0);
  cr_assert_eq(rkc_ranges_check(&t), RK_OK);
  rkc_ranges_free(&t);
}

Test(client, wait_leaders_returns_once_every_range_is_led_and_times_out_otherwise) {
  fk.advertise_leader = 1;
  size_t led = 0, total = 0;
  /* One range without a leader: polls (sleeping between) until the bound. */
  for (int i = 0; i < FAKE_RANGES; i++) fk.leader[i] = 1;
  fk.leader[1] = 0;
  uint64_t t0 = fk.now_ns;
  cr_assert_eq(rkc_wait_leaders(cl, 300, &led, &total), RK_ETIMEOUT);
  cr_assert_eq(total, FAKE_RANGES);
  cr_assert_eq(led, FAKE_RANGES - 1);
  cr_assert_geq(fk.now_ns - t0, 300ull * 1000000u);
  cr_assert_gt(fk.slept_ms, 0);
  /* Every range led: at once. */
  fk.leader[1] = 3;
  t0 = fk.now_ns;
  cr_assert_eq(rkc_wait_leaders(cl, 300, &led, &total), RK_OK);
  cr_assert_eq(led, FAKE_RANGES);
  cr_assert_lt(fk.now_ns - t0, 300ull * 1000000u);
  /* Every node down: the wait still ends by its own bound, not by the
   * range-table fetch's (the client's 2 s deadline). */
  for (int i = 0; i < FAKE_NODES; i++) fk.nodes[i].mode = FAKE_DOWN;
  t0 = fk.now_ns;
  cr_assert_eq(rkc_wait_leaders(cl, 300, &led, &total), RK_ETIMEOUT);
  cr_assert_leq(fk.now_ns - t0, 310ull * 1000000u, "waited %llu ms",
                (unsigned long long)((fk.now_ns - t0) / 1000000u));
}

Test(client, wrong_cluster_is_refused) {
  rkc_close(cl);
  static const char *eps[] = {"127.0.0.1:7001"};
  rkc_options o;
  rkc_options_default(&o);
  o.endpoints = eps;
  o.n_endpoints = 1;
  o.cluster_id = 5;
  cr_assert_eq(rkc_open(&cl, &o), RK_OK);
  cr_assert_eq(put_s("1", "v"), RK_EWRONGCLUSTER);
}
