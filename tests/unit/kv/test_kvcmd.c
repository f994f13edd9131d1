#include "common/rk_err.h"
#include "common/rk_rand.h"
#include "kv/kvcmd.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

static kv_cmd mk(uint8_t op, const char *k, const char *v, const char *e, int absent) {
  kv_cmd c = {.op = op,
              .expect_absent = (uint8_t)absent,
              .key = (const uint8_t *)k,
              .klen = (uint32_t)strlen(k)};
  if (v) c.value = (const uint8_t *)v, c.vlen = (uint32_t)strlen(v);
  if (e) c.expected = (const uint8_t *)e, c.elen = (uint32_t)strlen(e);
  return c;
}

Test(kvcmd, round_trip_every_op) {
  kv_cmd cs[] = {mk(KV_PUT, "k1", "value", NULL, 0), mk(KV_DEL, "k2", NULL, NULL, 0),
                 mk(KV_CAS, "k3", "new", "old", 0), mk(KV_CAS, "k4", "first", NULL, 1),
                 mk(KV_PUT, "k5", "", NULL, 0)};
  for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
    cr_assert_eq(kv_cmd_validate(&cs[i]), RK_OK, "cmd %zu", i);
    uint8_t buf[64];
    size_t n = kv_cmd_encode(&cs[i], buf, sizeof buf);
    cr_assert_eq(n, kv_cmd_size(&cs[i]));
    kv_cmd d;
    cr_assert_eq(kv_cmd_decode(buf, n, &d), RK_OK);
    cr_assert_eq(d.op, cs[i].op);
    cr_assert_eq(d.expect_absent, cs[i].expect_absent);
    cr_assert_eq(d.klen, cs[i].klen);
    cr_assert_eq(memcmp(d.key, cs[i].key, d.klen), 0);
    cr_assert_eq(d.vlen, cs[i].vlen);
    if (d.vlen) cr_assert_eq(memcmp(d.value, cs[i].value, d.vlen), 0);
    cr_assert_eq(d.elen, cs[i].elen);
    if (d.elen) cr_assert_eq(memcmp(d.expected, cs[i].expected, d.elen), 0);
  }
}

Test(kvcmd, limits_and_shapes_are_validated) {
  kv_cmd c = mk(KV_PUT, "", "v", NULL, 0);
  cr_assert_eq(kv_cmd_validate(&c), RK_EINVAL, "empty key");
  c = mk(9, "k", NULL, NULL, 0);
  cr_assert_eq(kv_cmd_validate(&c), RK_EINVAL, "unknown op");
  c = mk(KV_DEL, "k", "v", NULL, 0);
  cr_assert_eq(kv_cmd_validate(&c), RK_EINVAL, "delete with a value");
  c = mk(KV_PUT, "k", "v", NULL, 1);
  cr_assert_eq(kv_cmd_validate(&c), RK_EINVAL, "absent flag on a put");
  char *big = malloc(KV_MAX_VALUE + 2);
  memset(big, 'x', KV_MAX_VALUE + 1);
  big[KV_MAX_VALUE + 1] = 0;
  c = mk(KV_PUT, "k", big, NULL, 0);
  cr_assert_eq(kv_cmd_validate(&c), RK_ETOOLARGE);
  big[KV_MAX_KEY + 1] = 0;
  c = mk(KV_PUT, big, "v", NULL, 0);
  cr_assert_eq(kv_cmd_validate(&c), RK_ETOOLARGE);
  big[KV_MAX_KEY] = 0;
  c = mk(KV_PUT, big, "v", NULL, 0);
  cr_assert_eq(kv_cmd_validate(&c), RK_OK, "exactly the key limit is fine");
  free(big);
}

Test(kvcmd, hostile_payloads_are_malformed_never_a_crash) {
  uint8_t buf[64];
  kv_cmd c = mk(KV_CAS, "key", "new", "old", 0);
  size_t n = kv_cmd_encode(&c, buf, sizeof buf);
  kv_cmd d;
  for (size_t cut = 0; cut < n; cut++) cr_assert_eq(kv_cmd_decode(buf, cut, &d), RK_EMALFORMED);
  uint8_t huge[KV_CMD_HEADER] = {KV_PUT, 0,    0xff, 0xff, 0xff, 0xff, 0xff,
                                 0xff,   0xff, 0xff, 0,    0,    0,    0};
  cr_assert_eq(kv_cmd_decode(huge, sizeof huge, &d), RK_EMALFORMED, "lengths beyond the payload");
  rk_rand r;
  rk_rand_seed(&r, 11);
  for (int i = 0; i < 50000; i++) {
    size_t len = rk_rand_below(&r, sizeof buf);
    for (size_t j = 0; j < len; j++) buf[j] = (uint8_t)rk_rand_u64(&r);
    if (len > 0) buf[0] = (uint8_t)(1 + rk_rand_below(&r, 3));
    int rc = kv_cmd_decode(buf, len, &d);
    cr_assert(rc == RK_OK || rc == RK_EMALFORMED);
    if (rc == RK_OK) cr_assert_eq(kv_cmd_size(&d), len);
  }
}
