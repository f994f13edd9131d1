/* tests/unit/engine/eng_test.h — shared helpers for the engine tests:
 * temporary directories, deterministic payloads, synchronous append. */
#ifndef ENG_TEST_H
#define ENG_TEST_H

#include "common/rk_entry.h"
#include "common/rk_err.h"
#include "engine/wal.h"

#include <criterion/criterion.h>
#include <stddef.h>
#include <stdint.h>

/* mkdtemp under $TMPDIR (or /tmp); removed by eng_rmtree. */
char *eng_tmpdir(void);
void eng_rmtree(const char *dir);

/* Small segments so tests cross boundaries quickly. */
void eng_small_opts(eng_wal_options *o, const char *dir);
/* Opens or skips the test when io_uring is unavailable. */
eng_wal *eng_open_or_skip(const eng_wal_options *o);

/* Deterministic payload of entry (group, index, term): len in [0, maxlen]. */
uint32_t eng_payload(uint64_t group, uint64_t index, uint64_t term, uint32_t maxlen, uint8_t *buf);
/* Checks entries [lo, hi) of group equal eng_payload(.., term_of(index)). */
void eng_check_range(eng_wal *w, uint64_t group, uint64_t lo, uint64_t hi, uint64_t term,
                     uint32_t maxlen);

typedef struct eng_cb_state {
  int calls;
  int status;
} eng_cb_state;
void eng_cb(eng_wal_append_req *req, int status);

/* Appends entries [lo, hi) of group with term (payload via eng_payload) and
 * an optional hard state; waits until durable; returns the callback status. */
int eng_append_sync(eng_wal *w, uint64_t group, uint64_t lo, uint64_t hi, uint64_t term,
                    uint32_t maxlen, const rk_hard_state *hs);
/* Same without waiting: returns eng_wal_append()'s code; st observes the cb. */
int eng_append_async(eng_wal *w, eng_wal_append_req *req, eng_cb_state *st, uint64_t group,
                     uint64_t lo, uint64_t hi, uint64_t term, uint32_t maxlen,
                     const rk_hard_state *hs);
size_t eng_count_files(const char *dir, const char *suffix);

/* Reads and decodes the header of segment seq in dir (engine/wal_int.h):
 * RK_OK, RK_ENOTFOUND, or the decoder's error. */
struct wal_seg_hdr;
int eng_read_seg_hdr(const char *dir, uint64_t seq, struct wal_seg_hdr *h);

#endif
