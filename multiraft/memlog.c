/* memlog.c — in-memory log storage (layout in memlog.h). */
#include "multiraft/memlog.h"

#include "common/rk_assert.h"
#include "common/rk_err.h"

#include <stdlib.h>
#include <string.h>

void mr_memlog_init(mr_memlog *ml) {
  memset(ml, 0, sizeof *ml);
  rk_entry_vec_init(&ml->ents);
}

void mr_memlog_free(mr_memlog *ml) {
  rk_entry_vec_free(&ml->ents);
  free(ml->snap.data);
  memset(ml, 0, sizeof *ml);
}

uint64_t mr_memlog_first_index(const mr_memlog *ml) { return ml->snap_index + 1; }
uint64_t mr_memlog_last_index(const mr_memlog *ml) { return ml->snap_index + ml->ents.len; }

static uint64_t st_first(void *ctx) { return mr_memlog_first_index(ctx); }
static uint64_t st_last(void *ctx) { return mr_memlog_last_index(ctx); }

static int st_term(void *ctx, uint64_t i, uint64_t *term) {
  const mr_memlog *ml = ctx;
  if (i < ml->snap_index) return RK_ECOMPACTED;
  if (i == ml->snap_index) {
    *term = ml->snap_term;
    return RK_OK;
  }
  if (i > mr_memlog_last_index(ml)) return RK_EUNAVAILABLE;
  const rk_entry *e = &ml->ents.v[i - ml->snap_index - 1];
  RK_ASSERT(e->index == i);
  *term = e->term;
  return RK_OK;
}

static int st_entries(void *ctx, uint64_t lo, uint64_t hi, uint64_t max_bytes, rk_entry_vec *out) {
  const mr_memlog *ml = ctx;
  if (lo <= ml->snap_index) return RK_ECOMPACTED;
  if (hi > mr_memlog_last_index(ml) + 1) return RK_EUNAVAILABLE;
  uint64_t bytes = 0;
  RK_ASSERT(lo < hi);
  for (uint64_t i = lo; i < hi; i++) {
    const rk_entry *e = &ml->ents.v[i - ml->snap_index - 1];
    RK_ASSERT(e->index == i);
    if (i > lo && bytes + e->len > max_bytes) break;
    if (rk_entry_vec_push(out, e) != RK_OK) return RK_ENOMEM;
    bytes += e->len;
  }
  return RK_OK;
}

static int st_snapshot(void *ctx, mr_snapshot *out) {
  const mr_memlog *ml = ctx;
  if (ml->snap.index == 0) return RK_EUNAVAILABLE;
  *out = ml->snap;
  out->data = NULL;
  if (ml->snap.len > 0) {
    out->data = malloc(ml->snap.len);
    if (!out->data) return RK_ENOMEM;
    memcpy(out->data, ml->snap.data, ml->snap.len);
  }
  return RK_OK;
}

static const mr_storage_ops memlog_ops = {
    .first_index = st_first,
    .last_index = st_last,
    .term = st_term,
    .entries = st_entries,
    .snapshot = st_snapshot,
};

mr_storage mr_memlog_storage(mr_memlog *ml) { return (mr_storage){.ops = &memlog_ops, .ctx = ml}; }

int mr_memlog_append(mr_memlog *ml, const rk_entry *e, size_t n) {
  if (n == 0) return RK_OK;
  uint64_t at = e[0].index;
  if (at <= ml->snap_index || at > mr_memlog_last_index(ml) + 1) return RK_EINVAL;
  rk_entry_vec_truncate(&ml->ents, (size_t)(at - ml->snap_index - 1));
  for (size_t k = 0; k < n; k++) {
    RK_ASSERT(e[k].index == at + k);
    int rc = rk_entry_vec_push(&ml->ents, &e[k]);
    if (rc != RK_OK) return rc;
  }
  RK_ASSERT(mr_memlog_last_index(ml) == at + n - 1);
  return RK_OK;
}

int mr_memlog_create_snapshot(mr_memlog *ml, uint64_t index, const mr_conf *conf, const void *data,
                              uint32_t len) {
  if (index <= ml->snap.index || index < ml->snap_index || index > mr_memlog_last_index(ml))
    return RK_EINVAL;
  uint64_t term;
  int rc = st_term(ml, index, &term);
  if (rc != RK_OK) return rc;
  uint8_t *copy = NULL;
  if (len > 0) {
    copy = malloc(len);
    if (!copy) return RK_ENOMEM;
    memcpy(copy, data, len);
  }
  free(ml->snap.data);
  ml->snap = (mr_snapshot){.index = index, .term = term, .conf = *conf, .len = len, .data = copy};
  return RK_OK;
}

int mr_memlog_compact(mr_memlog *ml, uint64_t index) {
  if (index <= ml->snap_index) return RK_OK;
  if (index > ml->snap.index || index > mr_memlog_last_index(ml)) return RK_EINVAL;
  uint64_t term;
  int rc = st_term(ml, index, &term);
  RK_ASSERT(rc == RK_OK);
  size_t drop = (size_t)(index - ml->snap_index);
  for (size_t k = 0; k < drop; k++) free(ml->ents.v[k].data);
  memmove(ml->ents.v, ml->ents.v + drop, (ml->ents.len - drop) * sizeof(rk_entry));
  ml->ents.len -= drop;
  ml->ents.bytes = 0;
  for (size_t k = 0; k < ml->ents.len; k++) ml->ents.bytes += ml->ents.v[k].len;
  ml->snap_index = index;
  ml->snap_term = term;
  RK_ASSERT(ml->ents.len == 0 || ml->ents.v[0].index == index + 1);
  return RK_OK;
}

int mr_memlog_apply_snapshot(mr_memlog *ml, const mr_snapshot *s) {
  uint8_t *copy = NULL;
  if (s->len > 0) {
    copy = malloc(s->len);
    if (!copy) return RK_ENOMEM;
    memcpy(copy, s->data, s->len);
  }
  rk_entry_vec_clear(&ml->ents);
  free(ml->snap.data);
  ml->snap = *s;
  ml->snap.data = copy;
  ml->snap_index = s->index;
  ml->snap_term = s->term;
  return RK_OK;
}

void mr_memlog_set_hard_state(mr_memlog *ml, const rk_hard_state *hs) { ml->hs = *hs; }
