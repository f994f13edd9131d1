/* sim_disk.c — simulated disk with fsync and power-loss semantics; see
 * sim_disk.h for the model. */
#include "sim/sim_disk.h"

#include "common/rk_assert.h"

#include <stdlib.h>
#include <string.h>

static void *xrealloc(void *p, size_t n) {
  void *q = realloc(p, n);
  RK_ASSERTF(q != NULL || n == 0, "sim disk: out of memory (%zu bytes)", n);
  return q;
}

void sim_blob_set(sim_blob *b, const void *p, size_t len) {
  free(b->p);
  b->p = NULL;
  b->len = len;
  if (len) {
    b->p = xrealloc(NULL, len);
    memcpy(b->p, p, len);
  }
}

void sim_snap_copy(sim_snap *dst, const sim_snap *src) {
  dst->index = src->index;
  dst->term = src->term;
  sim_blob_set(&dst->meta, src->meta.p, src->meta.len);
  sim_blob_set(&dst->data, src->data.p, src->data.len);
}

void sim_snap_free(sim_snap *s) {
  free(s->meta.p);
  free(s->data.p);
  memset(s, 0, sizeof *s);
}

static void view_free(sim_log_view *v) {
  sim_snap_free(&v->snap);
  rk_entry_vec_free(&v->ents);
  memset(v, 0, sizeof *v);
}

static void view_copy(sim_log_view *dst, const sim_log_view *src) {
  sim_snap_copy(&dst->snap, &src->snap);
  rk_entry_vec_clear(&dst->ents);
  for (size_t i = 0; i < src->ents.len; i++)
    RK_ASSERT(rk_entry_vec_push(&dst->ents, &src->ents.v[i]) == 0);
  dst->hs = src->hs;
}

uint64_t sim_view_first(const sim_log_view *v) { return v->snap.index + 1; }
uint64_t sim_view_last(const sim_log_view *v) { return v->snap.index + v->ents.len; }

uint64_t sim_view_term(const sim_log_view *v, uint64_t i) {
  if (i == v->snap.index) return v->snap.term;
  if (i < v->snap.index || i > sim_view_last(v)) return 0;
  return v->ents.v[i - v->snap.index - 1].term;
}

const rk_entry *sim_view_entry(const sim_log_view *v, uint64_t i) {
  if (i <= v->snap.index || i > sim_view_last(v)) return NULL;
  return &v->ents.v[i - v->snap.index - 1];
}

/* ---- applying one write to one view -------------------------------------- */

static void view_append(sim_log_view *v, const rk_entry *e, size_t n) {
  if (n == 0) return;
  uint64_t first = e[0].index;
  /* Entries at or below the snapshot are already covered by it. */
  size_t skip = 0;
  while (skip < n && e[skip].index <= v->snap.index) skip++;
  if (skip == n) return;
  first = e[skip].index;
  RK_ASSERTF(first <= sim_view_last(v) + 1, "sim disk: append at %llu leaves a gap after %llu",
             (unsigned long long)first, (unsigned long long)sim_view_last(v));
  rk_entry_vec_truncate(&v->ents, (size_t)(first - v->snap.index - 1));
  for (size_t i = skip; i < n; i++) {
    RK_ASSERT(i == skip || e[i].index == e[i - 1].index + 1);
    RK_ASSERT(rk_entry_vec_push(&v->ents, &e[i]) == 0);
  }
}

static void view_install(sim_log_view *v, const sim_snap *s) {
  sim_snap_copy(&v->snap, s);
  rk_entry_vec_clear(&v->ents);
  if (v->hs.commit < s->index) v->hs.commit = s->index;
}

static void view_compact(sim_log_view *v, const sim_snap *s) {
  if (s->index <= v->snap.index) return;
  /* Keep the entries above the snapshot (if the log reaches that far). */
  rk_entry_vec keep;
  rk_entry_vec_init(&keep);
  for (uint64_t i = s->index + 1; i <= sim_view_last(v); i++)
    RK_ASSERT(rk_entry_vec_push(&keep, sim_view_entry(v, i)) == 0);
  rk_entry_vec_free(&v->ents);
  v->ents = keep;
  sim_snap_copy(&v->snap, s);
}

static void view_apply(sim_log_view *v, const sim_write *w) {
  switch (w->kind) {
  case SIM_W_APPEND: view_append(v, w->ents.v, w->ents.len); break;
  case SIM_W_HARDSTATE: v->hs = w->hs; break;
  case SIM_W_SNAPSHOT: view_install(v, &w->snap); break;
  case SIM_W_COMPACT: view_compact(v, &w->snap); break;
  default: RK_UNREACHABLE();
  }
}

/* ---- the disk -------------------------------------------------------------- */

void sim_disk_init(sim_disk *d) {
  memset(d, 0, sizeof *d);
  d->next_seq = 1;
}

static void write_free(sim_write *w) {
  rk_entry_vec_free(&w->ents);
  sim_snap_free(&w->snap);
}

void sim_disk_free(sim_disk *d) {
  for (size_t i = 0; i < d->nlogs; i++) {
    view_free(&d->logs[i].cur);
    view_free(&d->logs[i].dur);
  }
  for (size_t i = 0; i < d->qlen; i++) write_free(&d->q[i]);
  free(d->logs);
  free(d->ix);
  free(d->q);
  memset(d, 0, sizeof *d);
}

/* group id -> slot: open addressing over slot + 1 (0 = empty), load <= 1/2,
 * so lookups stay O(1) with 10^4 groups per node. */
static size_t ix_home(const sim_disk *d, uint64_t group) {
  uint64_t x = group * 0x9e3779b97f4a7c15ull;
  return (size_t)(x ^ (x >> 29)) & (d->ixcap - 1);
}

static void ix_put(sim_disk *d, uint64_t group, uint32_t slot) {
  size_t i = ix_home(d, group);
  while (d->ix[i] != 0) i = (i + 1) & (d->ixcap - 1);
  d->ix[i] = slot + 1;
}

int sim_disk_find(const sim_disk *d, uint64_t group) {
  if (d->ixcap == 0) return -1;
  for (size_t i = ix_home(d, group); d->ix[i] != 0; i = (i + 1) & (d->ixcap - 1))
    if (d->logs[d->ix[i] - 1].group == group) return (int)(d->ix[i] - 1);
  return -1;
}

uint32_t sim_disk_group(sim_disk *d, uint64_t group) {
  int f = sim_disk_find(d, group);
  if (f >= 0) return (uint32_t)f;
  if (d->nlogs == d->caplogs) {
    d->caplogs = d->caplogs ? 2 * d->caplogs : 8;
    d->logs = xrealloc(d->logs, d->caplogs * sizeof *d->logs);
  }
  if ((d->nlogs + 1) * 2 > d->ixcap) {
    free(d->ix);
    d->ixcap = d->ixcap ? 2 * d->ixcap : 16;
    d->ix = calloc(d->ixcap, sizeof *d->ix);
    RK_ASSERT(d->ix != NULL);
    for (size_t i = 0; i < d->nlogs; i++) ix_put(d, d->logs[i].group, (uint32_t)i);
  }
  sim_glog *g = &d->logs[d->nlogs];
  memset(g, 0, sizeof *g);
  g->group = group;
  ix_put(d, group, (uint32_t)d->nlogs);
  return (uint32_t)d->nlogs++;
}

static sim_write *queue(sim_disk *d, uint32_t slot, uint32_t kind) {
  RK_ASSERT(slot < d->nlogs);
  if (d->qlen == d->qcap) {
    d->qcap = d->qcap ? 2 * d->qcap : 64;
    d->q = xrealloc(d->q, d->qcap * sizeof *d->q);
  }
  sim_write *w = &d->q[d->qlen++];
  memset(w, 0, sizeof *w);
  w->seq = d->next_seq++;
  w->rec = d->cur_rec ? d->cur_rec : w->seq;
  w->slot = slot;
  w->kind = kind;
  d->stats.writes++;
  return w;
}

void sim_disk_append(sim_disk *d, uint32_t slot, const rk_entry *ents, size_t n) {
  if (n == 0) return;
  sim_write *w = queue(d, slot, SIM_W_APPEND);
  for (size_t i = 0; i < n; i++) RK_ASSERT(rk_entry_vec_push(&w->ents, &ents[i]) == 0);
  d->stats.entries_written += n;
  view_apply(&d->logs[slot].cur, w);
}

void sim_disk_set_hardstate(sim_disk *d, uint32_t slot, const rk_hard_state *hs) {
  sim_write *w = queue(d, slot, SIM_W_HARDSTATE);
  w->hs = *hs;
  view_apply(&d->logs[slot].cur, w);
}

void sim_disk_install_snapshot(sim_disk *d, uint32_t slot, const sim_snap *s) {
  sim_write *w = queue(d, slot, SIM_W_SNAPSHOT);
  sim_snap_copy(&w->snap, s);
  view_apply(&d->logs[slot].cur, w);
}

void sim_disk_compact(sim_disk *d, uint32_t slot, const sim_snap *s) {
  sim_write *w = queue(d, slot, SIM_W_COMPACT);
  sim_snap_copy(&w->snap, s);
  view_apply(&d->logs[slot].cur, w);
}

void sim_disk_bootstrap(sim_disk *d, uint32_t slot, const sim_snap *s, const rk_hard_state *hs) {
  RK_ASSERT(slot < d->nlogs);
  sim_glog *g = &d->logs[slot];
  view_install(&g->cur, s);
  view_install(&g->dur, s);
  g->cur.hs = g->dur.hs = *hs;
}

void sim_disk_record_begin(sim_disk *d) { d->cur_rec = d->next_seq; }
void sim_disk_record_end(sim_disk *d) { d->cur_rec = 0; }

uint64_t sim_disk_sync_begin(sim_disk *d) {
  d->cur_rec = 0;
  d->stats.syncs++;
  return d->next_seq - 1;
}

size_t sim_disk_unsynced(const sim_disk *d) { return d->qlen; }

void sim_disk_sync_done(sim_disk *d, uint64_t barrier) {
  size_t k = 0;
  while (k < d->qlen && d->q[k].seq <= barrier) {
    view_apply(&d->logs[d->q[k].slot].dur, &d->q[k]);
    write_free(&d->q[k]);
    k++;
  }
  memmove(d->q, d->q + k, (d->qlen - k) * sizeof *d->q);
  d->qlen -= k;
}

void sim_disk_crash(sim_disk *d, rk_rand *rng, int torn) {
  /* Count records (consecutive writes with one rec id). */
  size_t nrec = 0;
  for (size_t k = 0; k < d->qlen; k++)
    if (k == 0 || d->q[k].rec != d->q[k - 1].rec) nrec++;
  /* A prefix of the records reached the disk: any length; the record after
   * it may be torn. */
  size_t keep = nrec ? (size_t)rk_rand_below(rng, nrec + 1) : 0;
  int tear = torn && keep < nrec && rk_rand_chance(rng, 0.5);
  size_t r = 0, k = 0;
  for (; k < d->qlen; k++) {
    if (k > 0 && d->q[k].rec != d->q[k - 1].rec) r++;
    if (r >= keep) break;
    view_apply(&d->logs[d->q[k].slot].dur, &d->q[k]);
  }
  if (tear && k < d->qlen) {
    d->stats.torn++;
    sim_write *w = &d->q[k];
    int alone = (k + 1 == d->qlen || d->q[k + 1].rec != w->rec);
    if (alone && w->kind == SIM_W_APPEND) {
      /* Only the first m entries made it; a checksum rejects the rest. */
      size_t m = (size_t)rk_rand_below(rng, w->ents.len);
      rk_entry_vec_truncate(&w->ents, m);
      view_apply(&d->logs[w->slot].dur, w);
    }
  }
  d->stats.lost_writes += d->qlen - k;
  for (size_t i = 0; i < d->qlen; i++) write_free(&d->q[i]);
  d->qlen = 0;
  d->cur_rec = 0;
  for (size_t i = 0; i < d->nlogs; i++) view_copy(&d->logs[i].cur, &d->logs[i].dur);
}

const sim_log_view *sim_disk_view(const sim_disk *d, uint32_t slot, int durable) {
  RK_ASSERT(slot < d->nlogs);
  return durable ? &d->logs[slot].dur : &d->logs[slot].cur;
}
