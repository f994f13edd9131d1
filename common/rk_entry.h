/* rk_entry.h — the Raft log entry and hard state, shared by the Raft core
 * (multiraft/) and the WAL (engine/), so entries move between them without
 * conversion. The engine knows nothing else about Raft.
 *
 * Ownership: an rk_entry does not own `data` unless the container that holds
 * it says so (rk_entry_vec owns the payloads it copies in).
 */
#ifndef RK_ENTRY_H
#define RK_ENTRY_H

#include <stddef.h>
#include <stdint.h>

typedef enum rk_entry_type {
  RK_ENTRY_NORMAL = 0,      /* application command (or empty: the leader no-op) */
  RK_ENTRY_CONF_CHANGE = 1, /* membership change, decoded by multiraft/ */
} rk_entry_type;

typedef struct rk_entry {
  uint64_t index;
  uint64_t term;
  uint32_t type; /* rk_entry_type */
  uint32_t len;  /* bytes in data */
  uint8_t *data; /* may be NULL when len == 0 */
} rk_entry;

/* Raft's persistent per-group state (Raft paper Fig. 2: currentTerm,
 * votedFor; commit is persisted too so restarts need not re-learn it). */
typedef struct rk_hard_state {
  uint64_t term;
  uint64_t vote; /* replica id voted for in `term`, 0 = none */
  uint64_t commit;
} rk_hard_state;

/* A growable array of entries that owns copies of their payloads. */
typedef struct rk_entry_vec {
  rk_entry *v;
  size_t len;
  size_t cap;
  uint64_t bytes; /* sum of payload lengths */
} rk_entry_vec;

void rk_entry_vec_init(rk_entry_vec *ev);
/* Appends a copy of e (payload copied). Returns RK_OK or RK_ENOMEM. */
int rk_entry_vec_push(rk_entry_vec *ev, const rk_entry *e);
/* Frees payloads, keeps the array allocation. */
void rk_entry_vec_clear(rk_entry_vec *ev);
/* Drops entries [n, len), freeing their payloads. */
void rk_entry_vec_truncate(rk_entry_vec *ev, size_t n);
void rk_entry_vec_free(rk_entry_vec *ev);

#endif
