/* Unit tests of the simulator's parts: event order, disk crash semantics,
 * network partitions, the KV state machine and its command codec. */
#include "sim/sim_disk.h"
#include "sim/sim_heap.h"
#include "sim/sim_kv.h"
#include "sim/sim_net.h"

#include <criterion/criterion.h>
#include <string.h>

/* ---- event heap -------------------------------------------------------- */

Test(sim_heap, pops_in_time_source_seq_order) {
  sim_heap h;
  sim_heap_init(&h);
  rk_rand r;
  rk_rand_seed(&r, 7);
  for (int i = 0; i < 2000; i++) {
    sim_event e = {
        .time = rk_rand_below(&r, 50), .source = (uint32_t)rk_rand_below(&r, 4), .a = (uint64_t)i};
    sim_heap_push(&h, &e);
    if (i % 97 == 0) sim_heap_check(&h);
  }
  sim_event prev, cur;
  cr_assert(sim_heap_pop(&h, &prev));
  size_t n = 1;
  while (sim_heap_pop(&h, &cur)) {
    cr_assert(sim_event_cmp(&prev, &cur) < 0, "out of order at %zu", n);
    /* Same time and source: scheduled order (seq = push order = a). */
    if (prev.time == cur.time && prev.source == cur.source) cr_assert(prev.a < cur.a);
    prev = cur;
    n++;
  }
  cr_assert_eq(n, 2000);
  sim_heap_free(&h);
}

Test(sim_heap, time_beats_source_beats_seq) {
  sim_heap h;
  sim_heap_init(&h);
  sim_event e1 = {.time = 5, .source = 9, .a = 1};
  sim_event e2 = {.time = 5, .source = 2, .a = 2};
  sim_event e3 = {.time = 4, .source = 9, .a = 3};
  sim_event e4 = {.time = 5, .source = 2, .a = 4};
  sim_heap_push(&h, &e1);
  sim_heap_push(&h, &e2);
  sim_heap_push(&h, &e3);
  sim_heap_push(&h, &e4);
  uint64_t want[] = {3, 2, 4, 1};
  sim_event o;
  for (int i = 0; i < 4; i++) {
    cr_assert(sim_heap_pop(&h, &o));
    cr_assert_eq(o.a, want[i]);
  }
  cr_assert(!sim_heap_pop(&h, &o));
  sim_heap_free(&h);
}

/* ---- disk ---------------------------------------------------------------- */

static rk_entry ent(uint64_t i, uint64_t t, const char *s) {
  rk_entry e = {.index = i,
                .term = t,
                .type = RK_ENTRY_NORMAL,
                .len = (uint32_t)strlen(s),
                .data = (uint8_t *)(uintptr_t)s};
  return e;
}

Test(sim_disk, unsynced_writes_are_lost_on_crash) {
  sim_disk d;
  sim_disk_init(&d);
  uint32_t s = sim_disk_group(&d, 42);
  rk_entry e[3] = {ent(1, 1, "a"), ent(2, 1, "b"), ent(3, 1, "c")};
  sim_disk_append(&d, s, e, 2);
  rk_hard_state hs = {.term = 1, .vote = 2, .commit = 0};
  sim_disk_set_hardstate(&d, s, &hs);
  uint64_t b = sim_disk_sync_begin(&d);
  sim_disk_sync_done(&d, b);
  cr_assert_eq(sim_view_last(sim_disk_view(&d, s, 1)), 2);
  /* Unsynced: entry 3 and a new term. Reads see them. */
  sim_disk_append(&d, s, &e[2], 1);
  rk_hard_state hs2 = {.term = 5, .vote = 0, .commit = 2};
  sim_disk_set_hardstate(&d, s, &hs2);
  cr_assert_eq(sim_view_last(sim_disk_view(&d, s, 0)), 3);
  cr_assert_eq(sim_disk_view(&d, s, 0)->hs.term, 5);
  cr_assert_eq(sim_disk_unsynced(&d), 2);
  /* A crash keeps a prefix of the unsynced writes: never the hard state
   * without the append before it, never more than was written. */
  int saw_lost = 0, saw_kept = 0;
  for (uint64_t seed = 1; seed <= 64; seed++) {
    sim_disk c;
    sim_disk_init(&c);
    uint32_t cs = sim_disk_group(&c, 42);
    sim_disk_append(&c, cs, e, 2);
    sim_disk_set_hardstate(&c, cs, &hs);
    sim_disk_sync_done(&c, sim_disk_sync_begin(&c));
    sim_disk_append(&c, cs, &e[2], 1);
    sim_disk_set_hardstate(&c, cs, &hs2);
    rk_rand r;
    rk_rand_seed(&r, seed);
    sim_disk_crash(&c, &r, 0);
    const sim_log_view *v = sim_disk_view(&c, cs, 0);
    cr_assert_eq(sim_disk_unsynced(&c), 0);
    cr_assert(sim_view_last(v) == 2 || sim_view_last(v) == 3);
    if (v->hs.term == 5)
      cr_assert_eq(sim_view_last(v), 3, "hard state survived without the append before it");
    else
      cr_assert_eq(v->hs.term, 1);
    /* The synced part always survives. */
    cr_assert_eq(sim_view_term(v, 2), 1);
    cr_assert_eq(memcmp(sim_view_entry(v, 2)->data, "b", 1), 0);
    if (sim_view_last(v) == 2)
      saw_lost = 1;
    else
      saw_kept = 1;
    sim_disk_free(&c);
  }
  cr_assert(saw_lost && saw_kept, "crash never varied what survived");
  sim_disk_free(&d);
}

Test(sim_disk, crash_can_tear_the_last_append) {
  int torn_seen = 0;
  for (uint64_t seed = 1; seed <= 200 && !torn_seen; seed++) {
    sim_disk d;
    sim_disk_init(&d);
    uint32_t s = sim_disk_group(&d, 1);
    rk_entry e[4] = {ent(1, 1, "a"), ent(2, 1, "b"), ent(3, 1, "c"), ent(4, 1, "d")};
    sim_disk_append(&d, s, e, 4);
    rk_rand r;
    rk_rand_seed(&r, seed);
    sim_disk_crash(&d, &r, 1);
    uint64_t last = sim_view_last(sim_disk_view(&d, s, 0));
    cr_assert(last <= 4);
    if (last > 0 && last < 4) torn_seen = 1;
    /* Whatever survived is a prefix, intact. */
    for (uint64_t i = 1; i <= last; i++)
      cr_assert_eq(sim_view_entry(sim_disk_view(&d, s, 0), i)->data[0], (uint8_t)('a' + i - 1));
    sim_disk_free(&d);
  }
  cr_assert(torn_seen, "no torn write in 200 crashes");
}

Test(sim_disk, overwrite_suffix_and_snapshot) {
  sim_disk d;
  sim_disk_init(&d);
  uint32_t s = sim_disk_group(&d, 1);
  rk_entry e[3] = {ent(1, 1, "a"), ent(2, 1, "b"), ent(3, 1, "c")};
  sim_disk_append(&d, s, e, 3);
  rk_entry n2 = ent(2, 2, "B");
  sim_disk_append(&d, s, &n2, 1);
  const sim_log_view *v = sim_disk_view(&d, s, 0);
  cr_assert_eq(sim_view_last(v), 2);
  cr_assert_eq(sim_view_term(v, 2), 2);
  sim_snap sn = {.index = 1, .term = 1};
  sim_disk_compact(&d, s, &sn);
  cr_assert_eq(sim_view_first(v), 2);
  cr_assert_eq(sim_view_term(v, 1), 1);
  cr_assert_eq(sim_view_term(v, 2), 2);
  sim_snap big = {.index = 10, .term = 3};
  sim_disk_install_snapshot(&d, s, &big);
  cr_assert_eq(sim_view_last(v), 10);
  cr_assert_eq(sim_view_first(v), 11);
  /* Nothing synced: a crash that keeps nothing returns to the empty log. */
  sim_disk_sync_done(&d, 0);
  cr_assert_eq(sim_view_last(sim_disk_view(&d, s, 1)), 0);
  sim_disk_free(&d);
}

/* ---- network --------------------------------------------------------------- */

Test(sim_net, symmetric_and_oneway_partitions) {
  sim_net n;
  sim_net_init(&n, 5, 3);
  rk_rand r;
  rk_rand_seed(&r, 1);
  uint64_t d[2];
  cr_assert_eq(sim_net_route(&n, &r, 0, 1, d), 1);
  cr_assert(d[0] >= n.lat_us[0][1]);
  sim_net_partition(&n, 0x3); /* {0,1} | {2,3,4} */
  cr_assert_eq(sim_net_route(&n, &r, 0, 1, d), 1);
  cr_assert_eq(sim_net_route(&n, &r, 0, 2, d), 0);
  cr_assert_eq(sim_net_route(&n, &r, 3, 1, d), 0);
  cr_assert_eq(sim_net_route(&n, &r, 3, 4, d), 1);
  sim_net_heal(&n);
  cr_assert_eq(sim_net_route(&n, &r, 0, 2, d), 1);
  sim_net_block_oneway(&n, 2, 0);
  cr_assert_eq(sim_net_route(&n, &r, 2, 0, d), 0);
  cr_assert_eq(sim_net_route(&n, &r, 0, 2, d), 1);
  sim_net_heal(&n);
  sim_net_isolate(&n, 4);
  for (uint32_t i = 0; i < 4; i++) {
    cr_assert_eq(sim_net_route(&n, &r, i, 4, d), 0);
    cr_assert_eq(sim_net_route(&n, &r, 4, i, d), 0);
  }
}

Test(sim_net, loss_and_duplication_happen_at_their_rates) {
  sim_net n;
  sim_net_init(&n, 3, 1);
  n.p_loss = 0.2;
  n.p_dup = 0.1;
  rk_rand r;
  rk_rand_seed(&r, 3);
  uint64_t d[2];
  int copies[3] = {0, 0, 0};
  for (int i = 0; i < 10000; i++) copies[sim_net_route(&n, &r, 0, 1, d)]++;
  cr_assert(copies[0] > 1700 && copies[0] < 2300, "lost %d", copies[0]);
  cr_assert(copies[2] > 500 && copies[2] < 1100, "duplicated %d", copies[2]);
}

/* ---- kv ----------------------------------------------------------------------- */

Test(sim_kv, codec_roundtrip_and_cas) {
  uint8_t buf[128];
  sim_cmd c = {.op = SIM_OP_CAS,
               .client = 3,
               .opno = 17,
               .key = "k1",
               .klen = 2,
               .has_expected = 0,
               .value = "c3-17",
               .vlen = 5};
  size_t n = sim_cmd_encode(&c, buf, sizeof buf);
  cr_assert(n > 0);
  sim_cmd d;
  cr_assert_eq(sim_cmd_decode(buf, n, &d), 0);
  cr_assert_eq(d.client, 3);
  cr_assert_eq(d.opno, 17);
  cr_assert_eq(sim_cmd_decode(buf, n - 1, &d), -1);
  sim_kv kv;
  sim_kv_init(&kv);
  cr_assert_eq(sim_kv_apply(&kv, &c), 1); /* absent -> swapped */
  cr_assert_str_eq(sim_kv_get(&kv, "k1"), "c3-17");
  cr_assert_eq(sim_kv_apply(&kv, &c), 0); /* present -> not swapped */
  sim_cmd p = {.op = SIM_OP_PUT, .key = "k0", .klen = 2, .value = "x", .vlen = 1};
  sim_kv_apply(&kv, &p);
  size_t il;
  uint8_t *img = sim_kv_image(&kv, &il);
  sim_kv kv2;
  sim_kv_init(&kv2);
  cr_assert_eq(sim_kv_restore(&kv2, img, il), 0);
  cr_assert_eq(sim_kv_digest(&kv), sim_kv_digest(&kv2));
  sim_cmd del = {.op = SIM_OP_DELETE, .key = "k1", .klen = 2};
  sim_kv_apply(&kv2, &del);
  cr_assert_null(sim_kv_get(&kv2, "k1"));
  cr_assert_neq(sim_kv_digest(&kv), sim_kv_digest(&kv2));
  free(img);
  sim_kv_free(&kv);
  sim_kv_free(&kv2);
}
