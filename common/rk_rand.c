#include "common/rk_rand.h"

#include "common/rk_assert.h"

uint64_t rk_splitmix64(uint64_t *state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

void rk_rand_seed(rk_rand *r, uint64_t seed) {
  uint64_t sm = seed;
  for (int i = 0; i < 4; i++) r->s[i] = rk_splitmix64(&sm);
  /* The all-zero state is the one xoshiro cannot leave; splitmix64 cannot
   * produce four zeros in a row, but the invariant is cheap to state. */
  RK_ASSERT((r->s[0] | r->s[1] | r->s[2] | r->s[3]) != 0);
}

/* __extension__ keeps -Wpedantic quiet about the GCC/Clang 128-bit type. */
__extension__ typedef unsigned __int128 rk_u128;

static inline uint64_t rk_rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t rk_rand_u64(rk_rand *r) {
  uint64_t *s = r->s;
  const uint64_t result = rk_rotl(s[1] * 5, 7) * 9;
  const uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rk_rotl(s[3], 45);
  return result;
}

uint64_t rk_rand_below(rk_rand *r, uint64_t n) {
  RK_ASSERT(n > 0);
  /* Lemire: multiply-shift with rejection of the biased low zone. */
  rk_u128 m = (rk_u128)rk_rand_u64(r) * n;
  uint64_t lo = (uint64_t)m;
  if (lo < n) {
    uint64_t threshold = (0 - n) % n;
    while (lo < threshold) {
      m = (rk_u128)rk_rand_u64(r) * n;
      lo = (uint64_t)m;
    }
  }
  return (uint64_t)(m >> 64);
}

uint64_t rk_rand_range(rk_rand *r, uint64_t lo, uint64_t hi) {
  RK_ASSERT(lo <= hi);
  if (lo == 0 && hi == UINT64_MAX) return rk_rand_u64(r);
  return lo + rk_rand_below(r, hi - lo + 1);
}

double rk_rand_double(rk_rand *r) { return (double)(rk_rand_u64(r) >> 11) * 0x1.0p-53; }

int rk_rand_chance(rk_rand *r, double p) {
  if (p <= 0.0) return 0;
  if (p >= 1.0) return 1;
  return rk_rand_double(r) < p;
}

void rk_rand_fork(rk_rand *parent, rk_rand *child) { rk_rand_seed(child, rk_rand_u64(parent)); }
