/* sim_heap.c — binary min-heap by (time, source, seq); see sim_heap.h. */
#include "sim/sim_heap.h"

#include "common/rk_assert.h"

#include <stdlib.h>
#include <string.h>

void sim_heap_init(sim_heap *h) { memset(h, 0, sizeof *h); }

void sim_heap_free(sim_heap *h) {
  free(h->v);
  memset(h, 0, sizeof *h);
}

int sim_event_cmp(const sim_event *x, const sim_event *y) {
  if (x->time != y->time) return x->time < y->time ? -1 : 1;
  if (x->source != y->source) return x->source < y->source ? -1 : 1;
  if (x->seq != y->seq) return x->seq < y->seq ? -1 : 1;
  return 0;
}

uint64_t sim_heap_push(sim_heap *h, const sim_event *e) {
  if (h->len == h->cap) {
    size_t ncap = h->cap ? h->cap * 2 : 256;
    sim_event *nv = realloc(h->v, ncap * sizeof *nv);
    RK_ASSERTF(nv != NULL, "sim heap: out of memory at %zu events", h->len);
    h->v = nv;
    h->cap = ncap;
  }
  size_t i = h->len++;
  sim_event ev = *e;
  ev.seq = h->next_seq++;
  /* Sift up. */
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (sim_event_cmp(&h->v[p], &ev) <= 0) break;
    h->v[i] = h->v[p];
    i = p;
  }
  h->v[i] = ev;
  return ev.seq;
}

const sim_event *sim_heap_peek(const sim_heap *h) { return h->len ? &h->v[0] : NULL; }

int sim_heap_pop(sim_heap *h, sim_event *out) {
  if (h->len == 0) return 0;
  *out = h->v[0];
  sim_event last = h->v[--h->len];
  size_t n = h->len, i = 0;
  if (n == 0) return 1;
  /* Sift down. */
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    const sim_event *best = &last;
    if (l < n && sim_event_cmp(&h->v[l], best) < 0) {
      m = l;
      best = &h->v[l];
    }
    if (r < n && sim_event_cmp(&h->v[r], best) < 0) m = r;
    if (m == i) break;
    h->v[i] = h->v[m];
    i = m;
  }
  h->v[i] = last;
  return 1;
}

void sim_heap_check(const sim_heap *h) {
  for (size_t i = 1; i < h->len; i++) {
    RK_ASSERTF(sim_event_cmp(&h->v[(i - 1) / 2], &h->v[i]) < 0, "heap property broken at %zu", i);
  }
}
