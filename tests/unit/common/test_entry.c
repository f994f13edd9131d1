#include "common/rk_entry.h"
#include "common/rk_err.h"

#include <criterion/criterion.h>
#include <string.h>

Test(entry_vec, push_copies_payload_and_truncate_frees) {
  rk_entry_vec ev;
  rk_entry_vec_init(&ev);
  char buf[8] = "abcdefg";
  for (uint64_t i = 1; i <= 100; i++) {
    rk_entry e = {.index = i, .term = 1, .type = RK_ENTRY_NORMAL, .len = 7, .data = (uint8_t *)buf};
    cr_assert_eq(rk_entry_vec_push(&ev, &e), RK_OK);
  }
  buf[0] = 'X'; /* the vector holds copies */
  cr_assert_eq(ev.len, 100);
  cr_assert_eq(ev.bytes, 700);
  cr_assert_eq(memcmp(ev.v[99].data, "abcdefg", 7), 0);
  rk_entry_vec_truncate(&ev, 10);
  cr_assert_eq(ev.len, 10);
  cr_assert_eq(ev.bytes, 70);
  rk_entry empty = {.index = 11, .term = 2, .len = 0, .data = NULL};
  cr_assert_eq(rk_entry_vec_push(&ev, &empty), RK_OK);
  cr_assert_null(ev.v[10].data);
  rk_entry_vec_free(&ev);
  cr_assert_eq(ev.len, 0);
}

#include "common/rk_hash.h"

/* Pinned: trace hashes and derived cluster ids depend on these exact values
 * (the published FNV-1a 64 test vectors). */
Test(hash, fnv1a_matches_the_published_vectors) {
  cr_assert_eq(rk_fnv1a(RK_FNV_INIT, "", 0), 0xcbf29ce484222325ull);
  cr_assert_eq(rk_fnv1a(RK_FNV_INIT, "a", 1), 0xaf63dc4c8601ec8cull);
  cr_assert_eq(rk_fnv1a(RK_FNV_INIT, "foobar", 6), 0x85944171f73967e8ull);
  cr_assert_eq(rk_fnv1a(rk_fnv1a(RK_FNV_INIT, "foo", 3), "bar", 3), 0x85944171f73967e8ull,
               "incremental equals one-shot");
}
