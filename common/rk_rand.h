/* rk_rand.h — the only source of randomness in rangekv.
 *
 * xoshiro256** (Blackman & Vigna), seeded through splitmix64 so that any
 * 64-bit seed, including 0, gives a well-mixed state. Deterministic per seed on
 * every platform: the simulator's replayability rests on it. Not for
 * cryptography. 32 bytes of state; copy it freely to fork a stream.
 */
#ifndef RK_RAND_H
#define RK_RAND_H

#include <stdint.h>

typedef struct rk_rand {
  uint64_t s[4];
} rk_rand;

/* One splitmix64 step: advances *state and returns the mixed output. */
uint64_t rk_splitmix64(uint64_t *state);
void rk_rand_seed(rk_rand *r, uint64_t seed);
uint64_t rk_rand_u64(rk_rand *r);
/* Uniform in [0, n); n must be > 0. Unbiased (Lemire's method). */
uint64_t rk_rand_below(rk_rand *r, uint64_t n);
/* Uniform in [lo, hi]; requires lo <= hi. */
uint64_t rk_rand_range(rk_rand *r, uint64_t lo, uint64_t hi);
/* Uniform double in [0, 1) with 53 random bits. */
double rk_rand_double(rk_rand *r);
/* True with probability p (clamped to [0, 1]). */
int rk_rand_chance(rk_rand *r, double p);
/* A child generator whose stream is independent of the parent's future. */
void rk_rand_fork(rk_rand *parent, rk_rand *child);

#endif
