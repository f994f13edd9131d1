/* rk_hash.h — FNV-1a, 64-bit: a small, stable, non-cryptographic hash for
 * identities that must be equal on every node and every run (cluster ids
 * derived from the initial member list, trace hashes of the simulator,
 * per-index fingerprints in checkers, in-memory hash tables). Stable across
 * platforms and releases: changing it would change every trace_hash.
 * Not for adversarial keys. */
#ifndef RK_HASH_H
#define RK_HASH_H

#include <stddef.h>
#include <stdint.h>

#define RK_FNV_INIT 0xcbf29ce484222325ull

/* Continues hash h over p[0..len). Start with RK_FNV_INIT. */
uint64_t rk_fnv1a(uint64_t h, const void *p, size_t len);

#endif
