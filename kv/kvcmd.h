/* kv/kvcmd.h — the commands the replicated key-value state machine applies
 * (prefix kv_), their limits, and their encoding inside Raft log entries.
 *
 * Limits (documented for clients; enforced before proposing and again when
 * decoding a committed entry):
 *   key     1 .. KV_MAX_KEY bytes
 *   value   0 .. KV_MAX_VALUE bytes
 *
 * Entry payload (little-endian):
 *   offset  size  field
 *        0     1  op        1 put, 2 delete, 3 compare-and-set
 *        1     1  flags     bit 0: CAS expects the key absent
 *        2     4  klen
 *        6     4  vlen      value (put) or new value (cas); 0 for delete
 *       10     4  elen      expected value (cas, unless expecting absent)
 *       14     …  key, value, expected
 * A committed entry that does not decode is skipped by every replica alike
 * (the decoder is deterministic), and counted.
 */
#ifndef KV_KVCMD_H
#define KV_KVCMD_H

#include <stddef.h>
#include <stdint.h>

#define KV_MAX_KEY    4096u
#define KV_MAX_VALUE  (1u << 20)
#define KV_CMD_HEADER 14u

typedef enum kv_op { KV_PUT = 1, KV_DEL = 2, KV_CAS = 3 } kv_op;

typedef struct kv_cmd {
  uint8_t op;
  uint8_t expect_absent; /* CAS only */
  const uint8_t *key;
  uint32_t klen;
  const uint8_t *value; /* put / cas new value */
  uint32_t vlen;
  const uint8_t *expected; /* cas, unless expect_absent */
  uint32_t elen;
} kv_cmd;

/* RK_OK, RK_EINVAL (empty key, bad op), RK_ETOOLARGE (key or value over the limit). */
int kv_cmd_validate(const kv_cmd *c);
size_t kv_cmd_size(const kv_cmd *c);
/* Encodes into buf (cap >= kv_cmd_size); returns bytes written. */
size_t kv_cmd_encode(const kv_cmd *c, uint8_t *buf, size_t cap);
/* Decodes a payload; pointers alias buf. RK_OK or RK_EMALFORMED. */
int kv_cmd_decode(const uint8_t *buf, size_t len, kv_cmd *c);

#endif
