/* The client's range table (route.c): built from OP_RANGES, checked to tile
 * the key space, searched by key; endpoint lists. Pure code. */
#include "client/rkc_int.h"

#include "common/rk_err.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

/* A response describing ranges with the given starts and ends. */
typedef struct tbl {
  Rangekv__RangeInfo ri[8];
  Rangekv__RangeInfo *rp[8];
  uint32_t reps[3];
  Rangekv__ClientResponse r;
} tbl;

static void mk(tbl *t, int n, const char *const *st, const char *const *en) {
  memset(t, 0, sizeof *t);
  rangekv__client_response__init(&t->r);
  t->reps[0] = 1;
  t->reps[1] = 2;
  t->reps[2] = 3;
  for (int i = 0; i < n; i++) {
    Rangekv__RangeInfo x = RANGEKV__RANGE_INFO__INIT;
    x.range_id = (uint64_t)i + 1;
    x.start_key.data = (uint8_t *)(uintptr_t)st[i];
    x.start_key.len = strlen(st[i]);
    x.end_key.data = (uint8_t *)(uintptr_t)en[i];
    x.end_key.len = strlen(en[i]);
    x.replica_nodes = t->reps;
    x.n_replica_nodes = 3;
    t->ri[i] = x;
    t->rp[i] = &t->ri[i];
  }
  t->r.ranges = t->rp;
  t->r.n_ranges = (size_t)n;
}

Test(route, lookup_finds_the_range_of_every_key) {
  /* Given out of order on purpose: the table is sorted on adoption. */
  const char *st[] = {"8000", "", "4000", "c000"};
  const char *en[] = {"c000", "4000", "8000", ""};
  tbl t;
  mk(&t, 4, st, en);
  rkc_ranges rt;
  cr_assert_eq(rkc_ranges_from_proto(&rt, &t.r), RK_OK);
  struct {
    const char *k;
    uint64_t id;
  } cases[] = {{"", 2},     {"0", 2},    {"3fff", 2}, {"3fff\xff", 2}, {"4000", 3},
               {"7fff", 3}, {"8000", 1}, {"bfff", 1}, {"c000", 4},     {"\xff\xff", 4}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const rkc_range *d = rkc_ranges_lookup(&rt, cases[i].k, strlen(cases[i].k));
    cr_assert_not_null(d);
    cr_assert_eq(d->id, cases[i].id, "key '%s' -> %llu", cases[i].k, (unsigned long long)d->id);
  }
  rkc_ranges_free(&rt);
}

Test(route, bootstrap_split_of_64_is_routed_by_hex_prefix) {
  /* The node's static split: range i starts at %04x of (i-1)*65536/R. */
  static char st[64][8], en[64][8];
  static const char *sp[64], *ep[64];
  Rangekv__RangeInfo ri[64], *rp[64];
  uint32_t reps[3] = {1, 2, 3};
  for (int i = 0; i < 64; i++) {
    if (i) snprintf(st[i], sizeof st[i], "%04x", (unsigned)(i * 65536 / 64));
    if (i < 63) snprintf(en[i], sizeof en[i], "%04x", (unsigned)((i + 1) * 65536 / 64));
    sp[i] = st[i];
    ep[i] = en[i];
    Rangekv__RangeInfo x = RANGEKV__RANGE_INFO__INIT;
    x.range_id = (uint64_t)i + 1;
    x.start_key.data = (uint8_t *)st[i];
    x.start_key.len = strlen(st[i]);
    x.end_key.data = (uint8_t *)en[i];
    x.end_key.len = strlen(en[i]);
    x.replica_nodes = reps;
    x.n_replica_nodes = 3;
    ri[i] = x;
    rp[i] = &ri[i];
  }
  Rangekv__ClientResponse r;
  rangekv__client_response__init(&r);
  r.ranges = rp;
  r.n_ranges = 64;
  rkc_ranges t;
  cr_assert_eq(rkc_ranges_from_proto(&t, &r), RK_OK);
  char k[32];
  for (unsigned v = 0; v < 65536; v += 97) {
    snprintf(k, sizeof k, "%04x%012x", v, v * 7u);
    const rkc_range *d = rkc_ranges_lookup(&t, k, strlen(k));
    cr_assert_not_null(d);
    cr_assert_eq(d->id, (uint64_t)(v * 64 / 65536) + 1, "key %s", k);
  }
  (void)sp;
  (void)ep;
  rkc_ranges_free(&t);
}

Test(route, tables_that_do_not_tile_the_key_space_are_refused) {
  tbl t;
  rkc_ranges rt;
  const char *gap_s[] = {"", "5"}, *gap_e[] = {"4", ""};
  mk(&t, 2, gap_s, gap_e);
  cr_assert_eq(rkc_ranges_from_proto(&rt, &t.r), RK_ECORRUPT);
  const char *ovl_s[] = {"", "3"}, *ovl_e[] = {"4", ""};
  mk(&t, 2, ovl_s, ovl_e);
  cr_assert_eq(rkc_ranges_from_proto(&rt, &t.r), RK_ECORRUPT);
  const char *nostart_s[] = {"a"}, *nostart_e[] = {""};
  mk(&t, 1, nostart_s, nostart_e);
  cr_assert_eq(rkc_ranges_from_proto(&rt, &t.r), RK_ECORRUPT);
  const char *noend_s[] = {"", "4"}, *noend_e[] = {"4", "9"};
  mk(&t, 2, noend_s, noend_e);
  cr_assert_eq(rkc_ranges_from_proto(&rt, &t.r), RK_ECORRUPT);
  const char *empty_s[] = {"", "4", "4"}, *empty_e[] = {"4", "4", ""};
  mk(&t, 3, empty_s, empty_e);
  cr_assert_eq(rkc_ranges_from_proto(&rt, &t.r), RK_ECORRUPT);
  mk(&t, 0, NULL, NULL);
  cr_assert_eq(rkc_ranges_from_proto(&rt, &t.r), RK_ECORRUPT);
  const char *one_s[] = {""}, *one_e[] = {""};
  mk(&t, 1, one_s, one_e);
  t.ri[0].n_replica_nodes = 0;
  cr_assert_eq(rkc_ranges_from_proto(&rt, &t.r), RK_ECORRUPT, "a range without replicas");
  t.ri[0].n_replica_nodes = 3;
  cr_assert_eq(rkc_ranges_from_proto(&rt, &t.r), RK_OK);
  rkc_ranges_free(&rt);
}

Test(route, key_compare_is_bytewise_with_prefix_first) {
  cr_assert_lt(rkc_key_cmp("", 0, "a", 1), 0);
  cr_assert_lt(rkc_key_cmp("a", 1, "ab", 2), 0);
  cr_assert_gt(rkc_key_cmp("\xff", 1, "a", 1), 0);
  cr_assert_eq(rkc_key_cmp("ab", 2, "ab", 2), 0);
  cr_assert_lt(rkc_key_cmp("a\0", 2, "a\x01", 2), 0);
}

Test(route, endpoint_lists) {
  char a[4][RKC_ADDR_MAX];
  size_t n;
  cr_assert_eq(rkc_parse_endpoints("127.0.0.1:1,localhost:22", a, 4, &n), RK_OK);
  cr_assert_eq(n, 2);
  cr_assert_str_eq(a[0], "127.0.0.1:1");
  cr_assert_str_eq(a[1], "localhost:22");
  cr_assert_eq(rkc_parse_endpoints("[::1]:80", a, 4, &n), RK_OK);
  const char *bad[] = {"",
                       ",",
                       "a:1,",
                       "a",
                       "a:",
                       ":1",
                       "a:1x",
                       "a:1,b:2,c:3,d:4,e:5",
                       "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:1"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    cr_assert_eq(rkc_parse_endpoints(bad[i], a, 4, &n), RK_EINVAL, "'%s'", bad[i]);
  cr_assert_eq(rkc_parse_endpoints(NULL, a, 4, &n), RK_EINVAL);
}

Test(route, open_validates_its_options) {
  rkc_options o;
  rkc_options_default(&o);
  rkc_client *c = NULL;
  cr_assert_eq(rkc_open(&c, &o), RK_EINVAL);
  const char *eps[] = {""};
  o.endpoints = eps;
  o.n_endpoints = 1;
  cr_assert_eq(rkc_open(&c, &o), RK_EINVAL);
  const char *ok[] = {"127.0.0.1:1"};
  o.endpoints = ok;
  cr_assert_eq(rkc_open(&c, &o), RK_OK);
  cr_assert_eq(rkc_last(c)->err, RK_OK);
  rkc_close(c);
}
