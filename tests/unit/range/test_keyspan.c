#include "common/rk_err.h"
#include "common/rk_rand.h"
#include "range/keyspan.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const range_node three[] = {{1, "a"}, {2, "b"}, {3, "c"}};

Test(keyspan, bootstrap_tiles_the_key_space) {
  range_table t;
  cr_assert_eq(range_table_bootstrap(&t, 64, three, 3), RK_OK);
  cr_assert_eq(t.n, 64);
  cr_assert_eq(t.v[0].start_len, 0);
  cr_assert_eq(t.v[63].end_len, 0);
  cr_assert_eq(memcmp(t.v[1].start, "0400", 4), 0);
  cr_assert_eq(memcmp(t.v[63].start, "fc00", 4), 0);
  for (size_t i = 0; i + 1 < t.n; i++) {
    cr_assert_eq(t.v[i].end_len, 4);
    cr_assert_eq(memcmp(t.v[i].end, t.v[i + 1].start, 4), 0);
  }
  /* Every key falls in exactly one range, the one lookup returns. */
  const char *keys[] = {"", "0", "03ff", "0400", "0400zz", "7fff", "ffff", "zzz", "\xff\xff"};
  for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
    const range_desc *d = range_table_lookup(&t, keys[k], strlen(keys[k]));
    int holders = 0;
    for (size_t i = 0; i < t.n; i++)
      holders += range_desc_contains(&t.v[i], keys[k], strlen(keys[k]));
    cr_assert_eq(holders, 1, "key '%s'", keys[k]);
    cr_assert(range_desc_contains(d, keys[k], strlen(keys[k])));
  }
  cr_assert_eq(range_table_lookup(&t, "0400", 4)->id, 2);
  cr_assert_eq(range_table_lookup(&t, "03ff", 4)->id, 1);
  range_table_free(&t);
}

Test(keyspan, random_hex_keys_spread_evenly) {
  range_table t;
  cr_assert_eq(range_table_bootstrap(&t, 16, three, 3), RK_OK);
  rk_rand r;
  rk_rand_seed(&r, 3);
  int count[16] = {0};
  for (int i = 0; i < 16000; i++) {
    char k[17];
    snprintf(k, sizeof k, "%016llx", (unsigned long long)rk_rand_u64(&r));
    count[range_table_lookup(&t, k, 16)->id - 1]++;
  }
  for (int i = 0; i < 16; i++)
    cr_assert(count[i] > 800 && count[i] < 1200, "range %d: %d", i + 1, count[i]);
  range_table_free(&t);
}

Test(keyspan, placement_spreads_zones_and_load) {
  const range_node six[] = {{1, "a"}, {2, "a"}, {3, "b"}, {4, "b"}, {5, "c"}, {6, "c"}};
  range_table t;
  cr_assert_eq(range_table_bootstrap(&t, 60, six, 6), RK_OK);
  int per_node[7] = {0};
  for (size_t i = 0; i < t.n; i++) {
    cr_assert_eq(t.v[i].n_replicas, 3);
    char zones[3];
    for (int k = 0; k < 3; k++) {
      uint32_t n = t.v[i].replicas[k];
      per_node[n]++;
      zones[k] = six[n - 1].zone[0];
    }
    cr_assert(zones[0] != zones[1] && zones[1] != zones[2] && zones[0] != zones[2],
              "range %zu replicas share a zone", i + 1);
  }
  for (int n = 1; n <= 6; n++) cr_assert_eq(per_node[n], 30, "node %d holds %d", n, per_node[n]);
  range_table_free(&t);
}

Test(keyspan, small_clusters_and_bad_arguments) {
  range_table t;
  const range_node one[] = {{7, NULL}};
  cr_assert_eq(range_table_bootstrap(&t, 4, one, 1), RK_OK);
  cr_assert_eq(t.v[2].n_replicas, 1);
  cr_assert_eq(t.v[2].replicas[0], 7);
  cr_assert(range_desc_has_node(&t.v[2], 7));
  cr_assert(!range_desc_has_node(&t.v[2], 8));
  cr_assert_null(range_table_get(&t, 5));
  cr_assert_eq(range_table_get(&t, 4)->id, 4);
  range_table_free(&t);
  const range_node dup[] = {{1, "a"}, {1, "b"}};
  cr_assert_eq(range_table_bootstrap(&t, 4, dup, 2), RK_EINVAL);
  cr_assert_eq(range_table_bootstrap(&t, 0, three, 3), RK_EINVAL);
  cr_assert_eq(range_table_bootstrap(&t, 70000, three, 3), RK_EINVAL);
}

Test(keyspan, descriptors_round_trip_and_corruption_is_detected) {
  range_table t;
  cr_assert_eq(range_table_bootstrap(&t, 8, three, 3), RK_OK);
  range_desc *back = calloc(t.n, sizeof *back);
  for (size_t i = 0; i < t.n; i++) {
    uint8_t buf[RANGE_DESC_MAX_BYTES];
    size_t n = range_desc_encode(&t.v[i], buf, sizeof buf);
    cr_assert_eq(range_desc_decode(buf, n, &back[i]), RK_OK);
    cr_assert_eq(memcmp(&back[i], &t.v[i], sizeof back[i]), 0);
    /* Every truncation is corruption, never a crash. */
    for (size_t cut = 0; cut < n; cut++) {
      range_desc d;
      cr_assert_eq(range_desc_decode(buf, cut, &d), RK_ECORRUPT, "cut %zu", cut);
    }
  }
  range_table t2;
  cr_assert_eq(range_table_adopt(&t2, back, t.n), RK_OK);
  cr_assert_eq(range_table_lookup(&t2, "9999", 4)->id, range_table_lookup(&t, "9999", 4)->id);
  /* A gap between descriptors is refused. */
  range_desc *gap = calloc(t.n, sizeof *gap);
  memcpy(gap, t.v, t.n * sizeof *gap);
  gap[3].end[0] = 'f';
  range_table t3;
  cr_assert_eq(range_table_adopt(&t3, gap, t.n), RK_ECORRUPT);
  free(gap);
  range_table_free(&t2);
  range_table_free(&t);
}
