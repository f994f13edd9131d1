/* libFuzzer target: ClientRequest decoding and the command validation a node
 * applies before proposing (kv/kvcmd.h) — what any client can send. */
#include "common/rk_err.h"
#include "kv/kvcmd.h"

#include "rangekv.pb-c.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  Rangekv__ClientRequest *req = rangekv__client_request__unpack(NULL, size, data);
  if (req == NULL) return 0;
  if (req->key.len <= KV_MAX_KEY && req->value.len <= KV_MAX_VALUE &&
      req->expected.len <= KV_MAX_VALUE) {
    kv_cmd c = {.op = (uint8_t)req->op,
                .key = req->key.data,
                .klen = (uint32_t)req->key.len,
                .value = req->value.data,
                .vlen = (uint32_t)req->value.len,
                .expected = req->expected.data,
                .elen = (uint32_t)req->expected.len,
                .expect_absent = req->expected_absent ? 1 : 0};
    if (kv_cmd_validate(&c) == RK_OK) {
      uint8_t *buf = malloc(kv_cmd_size(&c));
      if (buf) {
        size_t n = kv_cmd_encode(&c, buf, kv_cmd_size(&c));
        kv_cmd d;
        if (kv_cmd_decode(buf, n, &d) != RK_OK) __builtin_trap(); /* must round-trip */
        free(buf);
      }
    }
  }
  rangekv__client_request__free_unpacked(req, NULL);
  return 0;
}
