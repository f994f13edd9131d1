/* bench kv's key encoding: 16 lowercase hex digits, distinct, spread evenly
 * over the bootstrap split (4-hex-digit prefixes), so a benchmark or the demo
 * loads every range. Deterministic: the hash is fixed. */
#include "bench/bench.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

static int cmp_key(const void *a, const void *b) { return strcmp(a, b); }

Test(bench_kv, keys_are_hex_distinct_and_spread_over_64_ranges) {
  enum { N = 64000, R = 64 };
  static char keys[N][BENCH_KV_KEY_LEN + 1];
  unsigned per[R] = {0};
  for (unsigned i = 0; i < N; i++) {
    bench_kv_key(i, keys[i]);
    cr_assert_eq(strlen(keys[i]), BENCH_KV_KEY_LEN);
    for (int k = 0; k < BENCH_KV_KEY_LEN; k++)
      cr_assert((keys[i][k] >= '0' && keys[i][k] <= '9') ||
                    (keys[i][k] >= 'a' && keys[i][k] <= 'f'),
                "key %s", keys[i]);
    /* Range of the key in the R-range bootstrap split: its first 4 hex digits. */
    unsigned prefix =
        (unsigned)strtoul((char[5]){keys[i][0], keys[i][1], keys[i][2], keys[i][3], 0}, NULL, 16);
    per[prefix * R / 65536]++;
  }
  for (int r = 0; r < R; r++)
    cr_assert(per[r] > N / R / 2 && per[r] < N / R * 3 / 2, "range %d got %u of %u keys", r + 1,
              per[r], N);
  qsort(keys, N, sizeof keys[0], cmp_key);
  for (unsigned i = 1; i < N; i++) cr_assert_str_neq(keys[i - 1], keys[i]);
  /* Same number, same key. */
  char a[BENCH_KV_KEY_LEN + 1], b[BENCH_KV_KEY_LEN + 1];
  bench_kv_key(12345, a);
  bench_kv_key(12345, b);
  cr_assert_str_eq(a, b);
}
