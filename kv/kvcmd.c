#include "kv/kvcmd.h"

#include "common/rk_assert.h"
#include "common/rk_err.h"

#include <string.h>

static void put_u32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get_u32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int kv_cmd_validate(const kv_cmd *c) {
  if (c->op != KV_PUT && c->op != KV_DEL && c->op != KV_CAS) return RK_EINVAL;
  if (c->klen == 0) return RK_EINVAL;
  if (c->klen > KV_MAX_KEY || c->vlen > KV_MAX_VALUE || c->elen > KV_MAX_VALUE) return RK_ETOOLARGE;
  if (c->op == KV_DEL && (c->vlen != 0 || c->elen != 0)) return RK_EINVAL;
  if (c->op == KV_PUT && c->elen != 0) return RK_EINVAL;
  if (c->expect_absent && (c->op != KV_CAS || c->elen != 0)) return RK_EINVAL;
  return RK_OK;
}

size_t kv_cmd_size(const kv_cmd *c) { return KV_CMD_HEADER + (size_t)c->klen + c->vlen + c->elen; }

size_t kv_cmd_encode(const kv_cmd *c, uint8_t *buf, size_t cap) {
  RK_ASSERT(kv_cmd_validate(c) == RK_OK);
  size_t n = kv_cmd_size(c);
  RK_ASSERT(cap >= n);
  buf[0] = c->op;
  buf[1] = c->expect_absent ? 1 : 0;
  put_u32(buf + 2, c->klen);
  put_u32(buf + 6, c->vlen);
  put_u32(buf + 10, c->elen);
  size_t o = KV_CMD_HEADER;
  memcpy(buf + o, c->key, c->klen);
  o += c->klen;
  if (c->vlen) memcpy(buf + o, c->value, c->vlen);
  o += c->vlen;
  if (c->elen) memcpy(buf + o, c->expected, c->elen);
  o += c->elen;
  RK_ASSERT(o == n);
  return n;
}

int kv_cmd_decode(const uint8_t *buf, size_t len, kv_cmd *c) {
  memset(c, 0, sizeof *c);
  if (len < KV_CMD_HEADER) return RK_EMALFORMED;
  if (buf[1] & ~1u) return RK_EMALFORMED;
  c->op = buf[0];
  c->expect_absent = buf[1] & 1u;
  c->klen = get_u32(buf + 2);
  c->vlen = get_u32(buf + 6);
  c->elen = get_u32(buf + 10);
  /* 64-bit sum: three u32 lengths cannot overflow it. */
  if ((uint64_t)KV_CMD_HEADER + c->klen + c->vlen + c->elen != len) return RK_EMALFORMED;
  c->key = buf + KV_CMD_HEADER;
  c->value = c->key + c->klen;
  c->expected = c->value + c->vlen;
  if (kv_cmd_validate(c) != RK_OK) return RK_EMALFORMED;
  return RK_OK;
}
