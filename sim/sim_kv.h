/* sim_kv.h — the replicated key-value state machine the simulator applies
 * committed entries to, and the command encoding carried in entries.
 *
 * Command (entry payload, little endian), RK_ENTRY_NORMAL entries only:
 *   off  size  field
 *   0    1     op: 1 put, 2 delete, 3 cas
 *   1    4     client id
 *   5    8     client op number (unique per client)
 *   13   2     key length K
 *   15   K     key
 *   +0   1     cas: 1 if an expected value follows, 0 = expect absent
 *   +1   2     expected length E (0 unless the flag is 1)
 *   +3   E     expected value
 *   +0   2     value length V (put: value, cas: new value, delete: 0)
 *   +2   V     value
 * An empty payload is the leader's no-op and does nothing.
 *
 * The store keeps keys sorted, so its image (snapshot) is deterministic:
 *   u32 count, then per key: u16 K, key, u16 V, value.
 */
#ifndef SIM_KV_H
#define SIM_KV_H

#include <stddef.h>
#include <stdint.h>

enum { SIM_OP_PUT = 1, SIM_OP_DELETE = 2, SIM_OP_CAS = 3, SIM_OP_GET = 4 };

typedef struct sim_cmd {
  uint8_t op;
  uint32_t client;
  uint64_t opno;
  const char *key;
  size_t klen;
  int has_expected;
  const char *expected;
  size_t elen;
  const char *value;
  size_t vlen;
} sim_cmd;

/* The longest command a client of the simulator proposes: the nodes'
 * max_entry_bytes. */
#define SIM_CMD_MAX 256u

/* Encodes into buf (cap bytes). Returns the length, or 0 if it does not fit. */
size_t sim_cmd_encode(const sim_cmd *c, uint8_t *buf, size_t cap);
/* Decodes; pointers point into buf. Returns 0 on success, -1 if malformed. */
int sim_cmd_decode(const uint8_t *buf, size_t len, sim_cmd *out);

typedef struct sim_kv_pair {
  char *key;
  char *val;
} sim_kv_pair;

typedef struct sim_kv {
  sim_kv_pair *v;
  size_t len, cap;
  uint64_t sum; /* sum of every pair's hash: sim_kv_state() */
} sim_kv;

void sim_kv_init(sim_kv *kv);
void sim_kv_free(sim_kv *kv);
/* Applies a decoded command. Returns 1 if it changed the store (cas: swapped). */
int sim_kv_apply(sim_kv *kv, const sim_cmd *c);
/* The value of key (NUL-terminated) or NULL. */
const char *sim_kv_get(const sim_kv *kv, const char *key);
/* Image for snapshots: malloc'd, *len set. */
uint8_t *sim_kv_image(const sim_kv *kv, size_t *len);
/* Replaces the contents by an image. Returns 0, or -1 if malformed. */
int sim_kv_restore(sim_kv *kv, const uint8_t *p, size_t len);
/* FNV-1a over the image: equal stores have equal digests. */
uint64_t sim_kv_digest(const sim_kv *kv);
/* The same promise in O(1), kept up to date by every change: the sum of a
 * hash of each (key, value) pair. The checker records it after every applied
 * index and compares restored snapshots with it. */
uint64_t sim_kv_state(const sim_kv *kv);

/* 64-bit FNV-1a, the simulator's one hash (trace hash, digests).
 * Written here rather than using XXH3 so sim/ needs no extra library. */
/* The trace and image hashes are common/rk_hash.h's FNV-1a. */
#include "common/rk_hash.h"
#define SIM_FNV_INIT RK_FNV_INIT
#define sim_fnv      rk_fnv1a

#endif
