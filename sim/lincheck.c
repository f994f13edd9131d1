/* lincheck.c — Wing & Gong / Lowe linearizability search, one key at a time.
 *
 * Per key, the operations that matter (ok=false and null gets dropped) are
 * numbered 0..n-1 in call order and turned into 2n entries (call, return),
 * sorted by time; at equal times calls come first (closed intervals), and the
 * returns of null-outcome operations sit at +infinity, after every other entry.
 * The entries form a doubly linked list. The search (Lowe 2017, §3; the same
 * loop as Porcupine's checkSingle):
 *
 *   e := first entry
 *   loop:
 *     list empty                    -> linearizable
 *     e is a call of op i:  if i is legal in state s and (L ∪ {i}, s') is new
 *                           in the cache: push (e, s), linearize i, lift its
 *                           call and return out of the list, e := first entry;
 *                           otherwise e := next(e)
 *     e is a return of op i (i not yet linearized, so it cannot be placed
 *     before its own return):
 *                           i optional (null) -> linearizable: every required
 *                             op returned earlier, so all are linearized and
 *                             the optional rest may never take effect;
 *                           stack empty -> violation;
 *                           else pop (e', s), unlinearize, unlift e',
 *                             e := next(e')
 *
 * The cache holds every (linearized set, state) pair ever pushed; a pair seen
 * before has been explored from, so it is pruned. The set is stored compactly:
 * ops are numbered by call, so the set is {0..H-1} minus a few holes (ops
 * called but still pending); a cache key is [state, H, nholes, holes...] in
 * 32-bit words. Its hash is a Zobrist xor of the members plus the state,
 * kept incrementally.
 */
#include "sim/lincheck.h"

#include "common/rk_assert.h"
#include "common/rk_err.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define ABSENT (-1)
#define NIL    (-1)

typedef enum lkind { LK_PUT, LK_DEL, LK_GET, LK_CAS_SWAP, LK_CAS_NOSWAP } lkind;

typedef struct lop {
  uint32_t rec; /* index of the record in the history */
  uint8_t kind; /* lkind */
  bool optional;
  int32_t a;     /* put: value; get: value read; cas: expected (ABSENT ok) */
  int32_t b;     /* cas: new value */
  uint64_t ret;  /* return used by the search; UINT64_MAX when optional */
  uint32_t twin; /* optional: previous interchangeable optional op, or NO_TWIN */
} lop;

#define NO_TWIN UINT32_MAX

/* One model step: is op legal in state s, and the state after it. */
static bool lop_step(const lop *o, int32_t s, int32_t *ns) {
  switch ((lkind)o->kind) {
  case LK_PUT: *ns = o->a; return true;
  case LK_DEL: *ns = ABSENT; return true;
  case LK_GET: *ns = s; return s == o->a;
  case LK_CAS_SWAP: *ns = o->b; return s == o->a;
  case LK_CAS_NOSWAP: *ns = s; return s != o->a;
  }
  RK_UNREACHABLE();
}

static uint64_t mix64(uint64_t x) {
  x += UINT64_C(0x9E3779B97F4A7C15);
  x = (x ^ (x >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
  x = (x ^ (x >> 27)) * UINT64_C(0x94D049BB133111EB);
  return x ^ (x >> 31);
}

/* ---- the cache of visited configurations ----------------------------------- */

typedef struct cache {
  uint64_t *hash;
  size_t *off; /* SIZE_MAX = empty slot */
  size_t cap;  /* power of two */
  size_t count;
  uint32_t *arena; /* keys: [state, H, nholes, holes...] */
  size_t alen, acap;
} cache;

static int cache_init(cache *c, size_t want) {
  memset(c, 0, sizeof(*c));
  size_t cap = 64;
  while (cap < want) cap *= 2;
  c->hash = malloc(cap * sizeof(*c->hash));
  c->off = malloc(cap * sizeof(*c->off));
  if (!c->hash || !c->off) return RK_ENOMEM;
  for (size_t i = 0; i < cap; i++) c->off[i] = SIZE_MAX;
  c->cap = cap;
  return RK_OK;
}

static void cache_free(cache *c) {
  free(c->hash);
  free(c->off);
  free(c->arena);
  memset(c, 0, sizeof(*c));
}

static int cache_grow(cache *c) {
  size_t ncap = c->cap * 2;
  uint64_t *nh = malloc(ncap * sizeof(*nh));
  size_t *no = malloc(ncap * sizeof(*no));
  if (!nh || !no) {
    free(nh);
    free(no);
    return RK_ENOMEM;
  }
  for (size_t i = 0; i < ncap; i++) no[i] = SIZE_MAX;
  for (size_t i = 0; i < c->cap; i++) {
    if (c->off[i] == SIZE_MAX) continue;
    size_t j = c->hash[i] & (ncap - 1);
    while (no[j] != SIZE_MAX) j = (j + 1) & (ncap - 1);
    nh[j] = c->hash[i];
    no[j] = c->off[i];
  }
  free(c->hash);
  free(c->off);
  c->hash = nh;
  c->off = no;
  c->cap = ncap;
  return RK_OK;
}

/* Insert key (klen words) unless present. Returns 1 inserted, 0 present,
 * -RK_ENOMEM. */
static int cache_insert(cache *c, uint64_t h, const uint32_t *key, size_t klen) {
  size_t j = h & (c->cap - 1);
  while (c->off[j] != SIZE_MAX) {
    if (c->hash[j] == h) {
      const uint32_t *k = c->arena + c->off[j];
      if (k[2] + 3 == klen && memcmp(k, key, klen * sizeof(*key)) == 0) return 0;
    }
    j = (j + 1) & (c->cap - 1);
  }
  if (c->alen + klen > c->acap) {
    size_t ncap = c->acap ? c->acap * 2 : 1024;
    while (ncap < c->alen + klen) ncap *= 2;
    uint32_t *na = realloc(c->arena, ncap * sizeof(*na));
    if (!na) return -RK_ENOMEM;
    c->arena = na;
    c->acap = ncap;
  }
  memcpy(c->arena + c->alen, key, klen * sizeof(*key));
  c->hash[j] = h;
  c->off[j] = c->alen;
  c->alen += klen;
  c->count++;
  if (c->count * 2 >= c->cap && cache_grow(c) != RK_OK) return -RK_ENOMEM;
  return 1;
}

/* ---- one key ---------------------------------------------------------------- */

typedef struct frame {
  int32_t e;     /* the call entry lifted */
  int32_t state; /* state before it */
  uint32_t h;    /* H before it */
} frame;

/* Value flags, for explanations. */
enum { V_WRITTEN = 1, V_FALSE_WRITTEN = 2, V_OBSERVED = 4 };

typedef struct key_ctx {
  const sim_hist *hist;
  const uint32_t *recs; /* the key's record indices, sorted by call */
  size_t nrecs;
  /* values of this key, sorted, interned as their index */
  const char **vals;
  uint8_t *vflags;
  size_t nvals;
  int32_t junk; /* the one value standing for all values nobody observes */
  lop *ops;
  size_t n;
  /* entries 0..2n-1; head sentinel = 2n */
  int32_t *next, *prev, *match;
  uint32_t *eop;
  uint8_t *eret;
  uint64_t *bits;
  uint64_t *sum;       /* bit w set iff bits[w] has a zero (an op not linearized) */
  uint32_t first_zero; /* lowest op not linearized */
  uint32_t hi;         /* 1 + highest op linearized (0 if none) */
  uint64_t zob;
  frame *stack;
  uint32_t *scratch;
  cache c;
  /* explanation of a violation: the deepest point where an op was stuck */
  int64_t best_depth;
  uint32_t best_blocked, best_last; /* op indexes; best_last = UINT32_MAX if none */
  uint32_t best_writer;             /* the op that wrote best_state when it is junk */
  int32_t best_state;
  uint64_t states;
} key_ctx;

static int cmp_str_ptr(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int32_t val_id(const key_ctx *k, const char *s) {
  if (!s) return ABSENT;
  const char **f = bsearch(&s, k->vals, k->nvals, sizeof(*k->vals), cmp_str_ptr);
  RK_ASSERT(f != NULL);
  return (int32_t)(f - k->vals);
}

static bool bit_get(const uint64_t *b, uint32_t i) { return b[i >> 6] >> (i & 63) & 1; }

/* Linearize op i: returns the previous H for the undo. */
static uint32_t lin_set(key_ctx *k, uint32_t i) {
  RK_ASSERT(!bit_get(k->bits, i));
  k->bits[i >> 6] |= UINT64_C(1) << (i & 63);
  if (k->bits[i >> 6] == ~UINT64_C(0)) k->sum[i >> 12] &= ~(UINT64_C(1) << (i >> 6 & 63));
  k->zob ^= mix64(i);
  uint32_t old = k->hi;
  if (i + 1 > k->hi) k->hi = i + 1;
  if (i == k->first_zero)
    while (k->first_zero < k->n && bit_get(k->bits, k->first_zero)) k->first_zero++;
  return old;
}

static void lin_clear(key_ctx *k, uint32_t i, uint32_t old_hi) {
  RK_ASSERT(bit_get(k->bits, i));
  k->bits[i >> 6] &= ~(UINT64_C(1) << (i & 63));
  k->sum[i >> 12] |= UINT64_C(1) << (i >> 6 & 63);
  k->zob ^= mix64(i);
  k->hi = old_hi;
  if (i < k->first_zero) k->first_zero = i;
}

/* Build the compact key of (current set, state) into scratch; returns words.
 * Only words with a hole are visited, found through the summary bitmap. */
static size_t make_key(key_ctx *k, int32_t state) {
  uint32_t *s = k->scratch;
  size_t n = 3;
  uint32_t lo = k->first_zero, hi = k->hi;
  if (lo < hi) {
    uint32_t w0 = lo >> 6, w1 = (hi - 1) >> 6;
    for (uint32_t sw = w0 >> 6; sw <= w1 >> 6; sw++) {
      uint64_t sm = k->sum[sw];
      if (sw == w0 >> 6) sm &= ~UINT64_C(0) << (w0 & 63);
      if (sw == w1 >> 6 && (w1 & 63) != 63) sm &= (UINT64_C(1) << ((w1 & 63) + 1)) - 1;
      while (sm) {
        uint32_t w = sw * 64 + (uint32_t)__builtin_ctzll(sm);
        sm &= sm - 1;
        uint64_t m = ~k->bits[w];
        if (w == w0) m &= ~UINT64_C(0) << (lo & 63);
        if (w == w1 && (hi & 63)) m &= (UINT64_C(1) << (hi & 63)) - 1;
        while (m) {
          s[n++] = w * 64 + (uint32_t)__builtin_ctzll(m);
          m &= m - 1;
        }
      }
    }
  }
  s[0] = (uint32_t)state;
  s[1] = hi;
  s[2] = (uint32_t)(n - 3);
  return n;
}

static void unlink_e(key_ctx *k, int32_t e) {
  k->next[k->prev[e]] = k->next[e];
  if (k->next[e] != NIL) k->prev[k->next[e]] = k->prev[e];
}

static void relink_e(key_ctx *k, int32_t e) {
  k->next[k->prev[e]] = e;
  if (k->next[e] != NIL) k->prev[k->next[e]] = e;
}

typedef struct ent_sort {
  uint64_t t;
  uint32_t is_ret;
  uint32_t op;
} ent_sort;

static int cmp_ent(const void *a, const void *b) {
  const ent_sort *x = a, *y = b;
  if (x->t != y->t) return x->t < y->t ? -1 : 1;
  if (x->is_ret != y->is_ret) return x->is_ret < y->is_ret ? -1 : 1;
  return x->op < y->op ? -1 : x->op > y->op;
}

static int cmp_twin(const void *a, const void *b) {
  const lop *x = *(const lop *const *)a, *y = *(const lop *const *)b;
  if (x->kind != y->kind) return x->kind < y->kind ? -1 : 1;
  if (x->a != y->a) return x->a < y->a ? -1 : 1;
  if (x->b != y->b) return x->b < y->b ? -1 : 1;
  return x < y ? -1 : x > y; /* ops are in call order in their array */
}

/* Build values, ops and the entry list for one key.
 *
 * Four reductions, each keeping a witness whenever one exists:
 *  1. Values that no kept operation reads (get) or compares (cas expected)
 *     are indistinguishable to every operation: they become one value, JUNK.
 *  2. A null write whose value is written by no one else and read by an
 *     ok=true get, or expected by a swapped cas, must have taken effect
 *     before that reader returned: it becomes required, with that return.
 *  3. Optional ops with the same effect (same kind and values after 1) are
 *     interchangeable once called: swapping two in a linearization keeps it
 *     legal. So they are only linearized in call order (a later twin waits
 *     for the earlier one), which turns 2^m subsets into m+1 prefixes.
 *  4. (below) optional writes of JUNK are dropped when nothing can use them. */
static int key_build(key_ctx *k) {
  const sim_hist_rec *v = k->hist->v;
  size_t nv = 0;
  k->vals = malloc((2 * k->nrecs + 1) * sizeof(*k->vals));
  k->ops = malloc((k->nrecs + 1) * sizeof(*k->ops));
  if (!k->vals || !k->ops) return RK_ENOMEM;
  for (size_t j = 0; j < k->nrecs; j++) {
    const sim_hist_rec *r = &v[k->recs[j]];
    bool has_value = r->op == SIM_HIST_PUT || (r->op == SIM_HIST_GET && r->ok == SIM_HIST_TRUE);
    if (has_value && r->value) k->vals[nv++] = r->value;
    if (r->op == SIM_HIST_CAS) {
      if (r->expected) k->vals[nv++] = r->expected;
      k->vals[nv++] = r->new_value;
    }
  }
  qsort(k->vals, nv, sizeof(*k->vals), cmp_str_ptr);
  size_t u = 0;
  for (size_t j = 0; j < nv; j++)
    if (u == 0 || strcmp(k->vals[u - 1], k->vals[j]) != 0) k->vals[u++] = k->vals[j];
  k->nvals = u;
  k->junk = (int32_t)u;
  k->vflags = calloc(u + 1, 1);
  uint32_t *writers = calloc(u + 1, sizeof(*writers));
  uint64_t *need_by = malloc((u + 1) * sizeof(*need_by));
  const lop **tw = NULL;
  int rc = RK_ENOMEM;
  if (!k->vflags || !writers || !need_by) goto out;
  for (size_t i = 0; i <= u; i++) need_by[i] = UINT64_MAX;

  /* Who writes, reads and requires each value (kept operations only). */
  for (size_t j = 0; j < k->nrecs; j++) {
    const sim_hist_rec *r = &v[k->recs[j]];
    int32_t wrote = ABSENT;
    if (r->op == SIM_HIST_PUT) wrote = val_id(k, r->value);
    if (r->op == SIM_HIST_CAS) wrote = val_id(k, r->new_value);
    if (wrote != ABSENT) k->vflags[wrote] |= r->ok == SIM_HIST_FALSE ? V_FALSE_WRITTEN : V_WRITTEN;
    if (r->ok == SIM_HIST_FALSE || (r->ok == SIM_HIST_NULL && r->op == SIM_HIST_GET)) continue;
    if (wrote != ABSENT) writers[wrote]++;
    int32_t seen = ABSENT;
    bool requires = false;
    if (r->op == SIM_HIST_GET) {
      seen = val_id(k, r->value);
      requires = true;
    }
    if (r->op == SIM_HIST_CAS) {
      seen = val_id(k, r->expected);
      requires = r->ok == SIM_HIST_TRUE && r->swapped;
    }
    if (seen != ABSENT) {
      k->vflags[seen] |= V_OBSERVED;
      if (requires && r->ret < need_by[seen]) need_by[seen] = r->ret;
    }
  }

  size_t n = 0, nopt = 0;
  bool any_noswap = false;
  for (size_t j = 0; j < k->nrecs; j++) {
    const sim_hist_rec *r = &v[k->recs[j]];
    if (r->ok == SIM_HIST_FALSE) continue;                         /* no effect */
    if (r->ok == SIM_HIST_NULL && r->op == SIM_HIST_GET) continue; /* says nothing */
    lop *o = &k->ops[n++];
    o->rec = k->recs[j];
    o->optional = r->ok == SIM_HIST_NULL;
    o->ret = o->optional ? UINT64_MAX : r->ret;
    o->twin = NO_TWIN;
    o->a = o->b = ABSENT;
    int32_t wrote = ABSENT;
    switch (r->op) {
    case SIM_HIST_PUT:
      o->kind = LK_PUT;
      wrote = val_id(k, r->value);
      break;
    case SIM_HIST_DELETE: o->kind = LK_DEL; break;
    case SIM_HIST_GET:
      o->kind = LK_GET;
      o->a = val_id(k, r->value);
      break;
    case SIM_HIST_CAS:
      /* A null cas either swapped or did nothing; doing nothing is the
       * same as never taking effect, so it is an optional swap. */
      o->kind = (r->ok == SIM_HIST_NULL || r->swapped) ? LK_CAS_SWAP : LK_CAS_NOSWAP;
      o->a = val_id(k, r->expected);
      wrote = val_id(k, r->new_value);
      break;
    }
    if (wrote != ABSENT) {
      if (o->optional && writers[wrote] == 1 && need_by[wrote] != UINT64_MAX &&
          need_by[wrote] >= r->call) {
        o->optional = false; /* reduction 2 */
        o->ret = need_by[wrote];
      }
      if (!(k->vflags[wrote] & V_OBSERVED)) wrote = k->junk; /* reduction 1 */
      if (o->kind == LK_PUT)
        o->a = wrote;
      else
        o->b = wrote;
    }
    if (o->kind == LK_CAS_NOSWAP && !o->optional) any_noswap = true;
  }
  /* Reduction 4: with no required failed cas on the key, an optional op that
   * writes JUNK is never needed: between it and the next write only a failed
   * cas could act on JUNK (gets never read it, swapped cases never expect
   * it), so a linearization with it stays legal without it. Dropped. */
  size_t kept = 0;
  for (size_t i = 0; i < n; i++) {
    const lop *o = &k->ops[i];
    bool junk_write =
        (o->kind == LK_PUT && o->a == k->junk) || (o->kind == LK_CAS_SWAP && o->b == k->junk);
    if (o->optional && junk_write && !any_noswap) continue;
    k->ops[kept++] = *o;
    nopt += o->optional;
  }
  n = kept;
  k->n = n;

  /* Reduction 3: chain each optional op to its previous twin. */
  tw = malloc((nopt + 1) * sizeof(*tw));
  if (!tw) goto out;
  size_t m = 0;
  for (size_t i = 0; i < n; i++)
    if (k->ops[i].optional) tw[m++] = &k->ops[i];
  qsort(tw, m, sizeof(*tw), cmp_twin);
  for (size_t i = 1; i < m; i++)
    if (tw[i - 1]->kind == tw[i]->kind && tw[i - 1]->a == tw[i]->a && tw[i - 1]->b == tw[i]->b)
      k->ops[tw[i] - k->ops].twin = (uint32_t)(tw[i - 1] - k->ops);
  rc = RK_OK;
out:
  free(writers);
  free(need_by);
  free(tw);
  return rc;
}

static int key_entries(key_ctx *k) {
  const sim_hist_rec *v = k->hist->v;
  size_t n = k->n;
  if (n > INT32_MAX / 2 - 1) return RK_ETOOLARGE;

  size_t ne = 2 * n;
  ent_sort *es = malloc((ne + 1) * sizeof(*es));
  k->next = malloc((ne + 1) * sizeof(int32_t));
  k->prev = malloc((ne + 1) * sizeof(int32_t));
  k->match = malloc((ne + 1) * sizeof(int32_t));
  k->eop = malloc((ne + 1) * sizeof(uint32_t));
  k->eret = malloc(ne + 1);
  k->bits = calloc(n / 64 + 1, sizeof(uint64_t));
  k->sum = malloc((n / 4096 + 1) * sizeof(uint64_t));
  if (k->sum) memset(k->sum, 0xff, (n / 4096 + 1) * sizeof(uint64_t));
  k->stack = malloc((n + 1) * sizeof(*k->stack));
  k->scratch = malloc((n + 4) * sizeof(uint32_t));
  int32_t *pos = malloc((ne + 1) * sizeof(int32_t));
  int rc = RK_ENOMEM;
  if (!es || !k->next || !k->prev || !k->match || !k->eop || !k->eret || !k->bits || !k->sum ||
      !k->stack || !k->scratch || !pos)
    goto out;
  for (uint32_t i = 0; i < n; i++) {
    const sim_hist_rec *r = &v[k->ops[i].rec];
    es[2 * i] = (ent_sort){.t = r->call, .is_ret = 0, .op = i};
    es[2 * i + 1] = (ent_sort){.t = k->ops[i].ret, .is_ret = 1, .op = i};
  }
  qsort(es, ne, sizeof(*es), cmp_ent);
  int32_t head = (int32_t)ne;
  k->next[head] = ne ? 0 : NIL;
  k->prev[head] = NIL;
  for (uint32_t e = 0; e < ne; e++) {
    k->eop[e] = es[e].op;
    k->eret[e] = (uint8_t)es[e].is_ret;
    k->prev[e] = e == 0 ? head : (int32_t)e - 1;
    k->next[e] = e + 1 < ne ? (int32_t)e + 1 : NIL;
    pos[2 * es[e].op + es[e].is_ret] = (int32_t)e;
  }
  for (uint32_t i = 0; i < n; i++) {
    k->match[pos[2 * i]] = pos[2 * i + 1];
    k->match[pos[2 * i + 1]] = pos[2 * i];
    RK_ASSERT(pos[2 * i] < pos[2 * i + 1]);
  }
  rc = RK_OK;
out:
  free(es);
  free(pos);
  return rc;
}

static void key_free(key_ctx *k) {
  free(k->vals);
  free(k->vflags);
  free(k->ops);
  free(k->next);
  free(k->prev);
  free(k->match);
  free(k->eop);
  free(k->eret);
  free(k->bits);
  free(k->sum);
  free(k->stack);
  free(k->scratch);
  cache_free(&k->c);
}

/* The search. Returns RK_OK with *verdict set, or RK_ENOMEM. */
static int key_search(key_ctx *k, uint64_t budget, sim_lin_verdict *verdict) {
  int rc = cache_init(&k->c, 4 * k->n + 64);
  if (rc != RK_OK) return rc;
  const int32_t head = (int32_t)(2 * k->n);
  int32_t state = ABSENT;
  size_t sp = 0;
  k->best_depth = -1;
  int32_t e = k->next[head];
  for (;;) {
    if (e == NIL) {
      RK_ASSERT(k->next[head] == NIL);
      *verdict = SIM_LIN_LINEARIZABLE;
      return RK_OK;
    }
    uint32_t i = k->eop[e];
    if (!k->eret[e]) {
      int32_t ns;
      const lop *o = &k->ops[i];
      /* An optional op that would leave the register as it is can be left
       * out of any linearization that has it, so it is never placed. */
      if ((o->twin == NO_TWIN || bit_get(k->bits, o->twin)) && lop_step(o, state, &ns) &&
          !(o->optional && ns == state)) {
        uint32_t old_hi = lin_set(k, i);
        size_t klen = make_key(k, ns);
        int ins = cache_insert(&k->c, k->zob ^ mix64((uint64_t)(uint32_t)ns << 32 | 0xABCDu),
                               k->scratch, klen);
        if (ins < 0) return RK_ENOMEM;
        if (ins == 1) {
          if (++k->states > budget) {
            *verdict = SIM_LIN_UNKNOWN;
            return RK_OK;
          }
          k->stack[sp++] = (frame){.e = e, .state = state, .h = old_hi};
          state = ns;
          unlink_e(k, e);
          unlink_e(k, k->match[e]);
          e = k->next[head];
          continue;
        }
        lin_clear(k, i, old_hi);
      }
      e = k->next[e];
      RK_ASSERT(e != NIL); /* a call's return is always later in the list */
      continue;
    }
    /* A return whose op is not linearized. */
    if (k->ops[i].optional) {
      *verdict = SIM_LIN_LINEARIZABLE;
      return RK_OK;
    }
    if ((int64_t)sp > k->best_depth) {
      k->best_depth = (int64_t)sp;
      k->best_blocked = i;
      k->best_state = state;
      k->best_last = sp ? k->eop[k->stack[sp - 1].e] : UINT32_MAX;
      /* For the message: which write left the unobserved value (bounded walk). */
      k->best_writer = UINT32_MAX;
      for (size_t d = sp; state == k->junk && d > 0 && sp - d < 4096; d--) {
        const lop *w = &k->ops[k->eop[k->stack[d - 1].e]];
        if ((w->kind == LK_PUT && w->a == k->junk) || (w->kind == LK_CAS_SWAP && w->b == k->junk)) {
          k->best_writer = k->eop[k->stack[d - 1].e];
          break;
        }
      }
    }
    if (sp == 0) {
      *verdict = SIM_LIN_VIOLATION;
      return RK_OK;
    }
    frame f = k->stack[--sp];
    lin_clear(k, k->eop[f.e], f.h);
    state = f.state;
    relink_e(k, k->match[f.e]);
    relink_e(k, f.e);
    e = k->next[f.e];
  }
}

/* ---- explanations ------------------------------------------------------------ */

typedef struct sbuf {
  char *p;
  size_t cap, len;
} sbuf;

__attribute__((format(printf, 2, 3))) static void sb_printf(sbuf *b, const char *fmt, ...) {
  if (b->len + 1 >= b->cap) return;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  b->len += (size_t)n;
  if (b->len >= b->cap) b->len = b->cap - 1;
}

/* A quoted, shortened, printable rendering of a value (NULL = absent). */
static void sb_val(sbuf *b, const char *s) {
  if (!s) {
    sb_printf(b, "absent");
    return;
  }
  sb_printf(b, "\"");
  size_t i = 0;
  for (; s[i] && i < 48; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\')
      sb_printf(b, "\\%c", c);
    else if (c < 0x20 || c >= 0x7f)
      sb_printf(b, "\\x%02x", c);
    else
      sb_printf(b, "%c", c);
  }
  sb_printf(b, "%s\"", s[i] ? "..." : "");
}

static void sb_rec(sbuf *b, const sim_hist_rec *r) {
  switch (r->op) {
  case SIM_HIST_PUT:
    sb_printf(b, "put ");
    sb_val(b, r->value);
    break;
  case SIM_HIST_DELETE: sb_printf(b, "delete"); break;
  case SIM_HIST_GET:
    sb_printf(b, "get -> ");
    sb_val(b, r->value);
    break;
  case SIM_HIST_CAS:
    sb_printf(b, "cas ");
    sb_val(b, r->expected);
    sb_printf(b, " -> ");
    sb_val(b, r->new_value);
    if (r->ok == SIM_HIST_TRUE) sb_printf(b, r->swapped ? " swapped" : " not swapped");
    break;
  }
  if (r->ok == SIM_HIST_NULL)
    sb_printf(b, " (client %llu, [%llu, inf), outcome unknown)", (unsigned long long)r->client,
              (unsigned long long)r->call);
  else
    sb_printf(b, " (client %llu, [%llu, %llu])", (unsigned long long)r->client,
              (unsigned long long)r->call, (unsigned long long)r->ret);
}

static void explain_violation(key_ctx *k, char *msg, size_t cap) {
  sbuf b = {.p = msg, .cap = cap};
  const sim_hist_rec *blocked = &k->hist->v[k->ops[k->best_blocked].rec];
  sb_rec(&b, blocked);
  sb_printf(&b, " cannot be linearized: in the longest partial linearization (%lld of %zu ops",
            (long long)k->best_depth, k->n);
  if (k->best_last != UINT32_MAX) {
    sb_printf(&b, ", last ");
    sb_rec(&b, &k->hist->v[k->ops[k->best_last].rec]);
  }
  sb_printf(&b, ") the key holds ");
  if (k->best_state == k->junk && k->best_writer != UINT32_MAX) {
    const sim_hist_rec *w = &k->hist->v[k->ops[k->best_writer].rec];
    sb_val(&b, w->op == SIM_HIST_PUT ? w->value : w->new_value);
  } else if (k->best_state == k->junk) {
    sb_printf(&b, "a value no operation reads");
  } else
    sb_val(&b, k->best_state == ABSENT ? NULL : k->vals[k->best_state]);
  sb_printf(&b, " when it must take effect");
  /* Point at values nobody could have written. */
  const char *seen = NULL;
  if (blocked->op == SIM_HIST_GET) seen = blocked->value;
  if (blocked->op == SIM_HIST_CAS && blocked->swapped) seen = blocked->expected;
  if (seen) {
    uint8_t fl = k->vflags[val_id(k, seen)];
    if (!(fl & V_WRITTEN) && (fl & V_FALSE_WRITTEN)) {
      sb_printf(&b, "; only an ok=false write wrote ");
      sb_val(&b, seen);
      sb_printf(&b, ": a false outcome that took effect");
    } else if (!(fl & V_WRITTEN)) {
      sb_printf(&b, "; no operation on this key writes ");
      sb_val(&b, seen);
    }
  }
}

/* ---- the whole history --------------------------------------------------------- */

typedef struct rec_sort {
  const char *key;
  uint64_t call;
  uint32_t idx;
} rec_sort;

static int cmp_rec(const void *a, const void *b) {
  const rec_sort *x = a, *y = b;
  int c = strcmp(x->key, y->key);
  if (c) return c;
  if (x->call != y->call) return x->call < y->call ? -1 : 1;
  return x->idx < y->idx ? -1 : x->idx > y->idx;
}

void sim_lin_opts_default(sim_lin_opts *o) {
  memset(o, 0, sizeof(*o));
  o->max_states_per_key = SIM_LIN_DEFAULT_MAX_STATES;
}

const char *sim_lin_verdict_name(sim_lin_verdict v) {
  switch (v) {
  case SIM_LIN_LINEARIZABLE: return "LINEARIZABLE";
  case SIM_LIN_VIOLATION: return "VIOLATION";
  case SIM_LIN_UNKNOWN: return "UNKNOWN";
  }
  return "?";
}

/* The key for printing: non-printable bytes as \xHH, shortened to fit. */
static void copy_key(char *dst, const char *key) {
  sbuf b = {.p = dst, .cap = SIM_LIN_KEY_MAX};
  dst[0] = '\0';
  for (size_t i = 0; key[i]; i++) {
    unsigned char c = (unsigned char)key[i];
    if (b.len + 8 >= b.cap) {
      sb_printf(&b, "...");
      break;
    }
    if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\')
      sb_printf(&b, "\\x%02x", c);
    else
      sb_printf(&b, "%c", c);
  }
}

int sim_lin_check(const sim_hist *h, const sim_lin_opts *o, sim_lin_result *out) {
  sim_lin_opts def;
  if (!o) {
    sim_lin_opts_default(&def);
    o = &def;
  }
  memset(out, 0, sizeof(*out));
  out->verdict = SIM_LIN_LINEARIZABLE;
  out->stats.ops = h->len;
  if (h->len > UINT32_MAX) return RK_ETOOLARGE;
  for (size_t i = 0; i < h->len; i++)
    if (sim_hist_validate(&h->v[i], NULL) != RK_OK) return RK_EINVAL;
  uint32_t *idx = malloc((h->len + 1) * sizeof(*idx));
  rec_sort *rs = malloc((h->len + 1) * sizeof(*rs));
  if (!idx || !rs) {
    free(idx);
    free(rs);
    return RK_ENOMEM;
  }
  for (size_t i = 0; i < h->len; i++)
    rs[i] = (rec_sort){.key = h->v[i].key, .call = h->v[i].call, .idx = (uint32_t)i};
  qsort(rs, h->len, sizeof(*rs), cmp_rec);
  for (size_t i = 0; i < h->len; i++) idx[i] = rs[i].idx;
  free(rs);

  int rc = RK_OK;
  bool unknown_set = false;
  for (size_t s = 0; s < h->len;) {
    size_t t = s + 1;
    while (t < h->len && strcmp(h->v[idx[s]].key, h->v[idx[t]].key) == 0) t++;
    key_ctx k;
    memset(&k, 0, sizeof(k));
    k.hist = h;
    k.recs = idx + s;
    k.nrecs = t - s;
    sim_lin_verdict v = SIM_LIN_LINEARIZABLE;
    rc = key_build(&k);
    if (rc == RK_OK) rc = key_entries(&k);
    if (rc == RK_OK) rc = key_search(&k, o->max_states_per_key, &v);
    out->stats.keys++;
    out->stats.ops_checked += k.n;
    out->stats.states += k.states;
    if (k.states > out->stats.max_states) out->stats.max_states = k.states;
    if (rc == RK_OK && v == SIM_LIN_VIOLATION) {
      out->verdict = SIM_LIN_VIOLATION;
      copy_key(out->key, h->v[idx[s]].key);
      explain_violation(&k, out->message, sizeof(out->message));
    } else if (rc == RK_OK && v == SIM_LIN_UNKNOWN) {
      out->stats.keys_unknown++;
      if (!unknown_set) {
        unknown_set = true;
        out->verdict = SIM_LIN_UNKNOWN;
        copy_key(out->key, h->v[idx[s]].key);
        size_t nopt = 0;
        for (size_t i = 0; i < k.n; i++) nopt += k.ops[i].optional;
        snprintf(out->message, sizeof(out->message),
                 "search gave up after %llu states (budget %llu per key) on %zu ops, %zu of them "
                 "with unknown outcome; no violation found",
                 (unsigned long long)k.states, (unsigned long long)o->max_states_per_key, k.n,
                 nopt);
      }
    }
    key_free(&k);
    if (rc != RK_OK || out->verdict == SIM_LIN_VIOLATION) break;
    s = t;
  }
  free(idx);
  return rc;
}

int sim_lin_check_file(const char *path, FILE *report) {
  sim_hist h;
  sim_hist_init(&h);
  sim_hist_err err = {0};
  int rc = sim_hist_read_file(path, &h, &err);
  if (rc != RK_OK) {
    if (report) {
      if (err.line)
        fprintf(report, "lincheck: error: %s:%zu: %s\n", path, err.line, err.msg);
      else
        fprintf(report, "lincheck: error: %s: %s\n", path, err.msg);
    }
    sim_hist_free(&h);
    return 2;
  }
  sim_lin_result res;
  rc = sim_lin_check(&h, NULL, &res);
  sim_hist_free(&h);
  if (rc != RK_OK) {
    if (report) fprintf(report, "lincheck: error: %s: %s\n", path, rk_strerror(rc));
    return 2;
  }
  if (report) {
    const sim_lin_stats *s = &res.stats;
    fprintf(report, "lincheck: %s", sim_lin_verdict_name(res.verdict));
    if (res.verdict != SIM_LIN_LINEARIZABLE) fprintf(report, " key=\"%s\"", res.key);
    fprintf(report, " keys=%llu ops=%llu checked=%llu states=%llu\n", (unsigned long long)s->keys,
            (unsigned long long)s->ops, (unsigned long long)s->ops_checked,
            (unsigned long long)s->states);
    if (res.message[0]) fprintf(report, "lincheck: %s\n", res.message);
  }
  return res.verdict == SIM_LIN_LINEARIZABLE ? 0 : res.verdict == SIM_LIN_VIOLATION ? 1 : 2;
}
