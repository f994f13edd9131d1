#include "common/rk_entry.h"

#include "common/rk_assert.h"
#include "common/rk_err.h"

#include <stdlib.h>
#include <string.h>

void rk_entry_vec_init(rk_entry_vec *ev) { memset(ev, 0, sizeof *ev); }

int rk_entry_vec_push(rk_entry_vec *ev, const rk_entry *e) {
  RK_ASSERT(e->len == 0 || e->data != NULL);
  if (ev->len == ev->cap) {
    size_t ncap = ev->cap ? ev->cap * 2 : 8;
    rk_entry *nv = realloc(ev->v, ncap * sizeof *nv);
    if (nv == NULL) return RK_ENOMEM;
    ev->v = nv;
    ev->cap = ncap;
  }
  rk_entry *d = &ev->v[ev->len];
  *d = *e;
  d->data = NULL;
  if (e->len > 0) {
    d->data = malloc(e->len);
    if (d->data == NULL) return RK_ENOMEM;
    memcpy(d->data, e->data, e->len);
  }
  ev->len++;
  ev->bytes += e->len;
  return RK_OK;
}

void rk_entry_vec_truncate(rk_entry_vec *ev, size_t n) {
  RK_ASSERT(n <= ev->len);
  for (size_t i = n; i < ev->len; i++) {
    ev->bytes -= ev->v[i].len;
    free(ev->v[i].data);
  }
  ev->len = n;
}

void rk_entry_vec_clear(rk_entry_vec *ev) { rk_entry_vec_truncate(ev, 0); }

void rk_entry_vec_free(rk_entry_vec *ev) {
  rk_entry_vec_clear(ev);
  free(ev->v);
  memset(ev, 0, sizeof *ev);
}
