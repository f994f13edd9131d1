/* memlog.h — an in-memory mr_storage for tests and the simulator.
 *
 * Models the durable part of one replica: the log, the latest snapshot and
 * the hard state. Everything written here is "persisted"; a test crash keeps
 * exactly this and loses the core's unstable state.
 *
 * Layout: snap.index = the last compacted index (0 at the start), entries
 * ents.v[k] has index snap.index + 1 + k. first_index = snap.index + 1.
 */
#ifndef MR_MEMLOG_H
#define MR_MEMLOG_H

#include "multiraft/raft.h"

typedef struct mr_memlog {
  uint64_t snap_index; /* last compacted index */
  uint64_t snap_term;
  mr_snapshot snap; /* the latest snapshot made/installed (index 0 = none); owns data */
  rk_entry_vec ents;
  rk_hard_state hs;
} mr_memlog;

void mr_memlog_init(mr_memlog *ml);
void mr_memlog_free(mr_memlog *ml);
/* The mr_storage view of ml. */
mr_storage mr_memlog_storage(mr_memlog *ml);
uint64_t mr_memlog_first_index(const mr_memlog *ml);
uint64_t mr_memlog_last_index(const mr_memlog *ml);
/* Appends n entries; the first one's index must be in [first_index,
 * last_index + 1]; every stored entry at or after it is replaced. */
int mr_memlog_append(mr_memlog *ml, const rk_entry *e, size_t n);
/* Records a snapshot of the application at index (<= last_index, term taken
 * from the log) with conf and a copy of data. Does not compact. */
int mr_memlog_create_snapshot(mr_memlog *ml, uint64_t index, const mr_conf *conf, const void *data,
                              uint32_t len);
/* Discards entries <= index (index <= the snapshot index). */
int mr_memlog_compact(mr_memlog *ml, uint64_t index);
/* Replaces the whole log with snapshot s (copied): first_index = s->index + 1. */
int mr_memlog_apply_snapshot(mr_memlog *ml, const mr_snapshot *s);
void mr_memlog_set_hard_state(mr_memlog *ml, const rk_hard_state *hs);

#endif
