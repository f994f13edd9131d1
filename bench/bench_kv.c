/* bench/bench_kv.c — a closed-loop key-value workload against a running
 * cluster through the client library: `rangekv bench kv` and the workload
 * of `rangekv demo`.
 *
 * C client threads, each with its own rkc_client, loop: pick a key (uniform
 * or Zipfian over K keys), read it (probability read_ratio) or write a value
 * of value_bytes, and record the latency into the histogram of the range the
 * key routed to (rkc_last()->range_id) and the total one. Keys are
 * "%016llx" of a 64-bit hash of the key number, so they spread evenly over
 * the bootstrap split (4-hex-digit prefixes) and a Zipfian hot set is not
 * one range.
 *
 * Histograms are log-linear (16 sub-buckets per power of two of
 * microseconds: <= 6.25% error), updated with relaxed atomics so threads
 * share them; percentiles come from the bucket counts. The live progress
 * line takes the difference of two snapshots of the total histogram, so its
 * p99 is the last second's.
 */
#include "bench/bench.h"

#include "client/rk_client.h"
#include "common/rk_clock.h"
#include "common/rk_err.h"
#include "common/rk_rand.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- histogram ------------------------------------------------------------------ */

#define HSUB  16
#define HGRP  40
#define HBINS (HGRP * HSUB)

typedef struct hist {
  _Atomic uint64_t b[HBINS];
  _Atomic uint64_t n;
} hist;

static unsigned hist_bin(uint64_t us) {
  if (us < HSUB) return (unsigned)us;
  unsigned msb = 63u - (unsigned)__builtin_clzll(us);
  unsigned grp = msb - 3; /* us in [2^msb, 2^(msb+1)): grp >= 1 */
  unsigned sub = (unsigned)(us >> (msb - 4)) & (HSUB - 1);
  unsigned i = grp * HSUB + sub;
  return i < HBINS ? i : HBINS - 1;
}

/* The upper edge of bin i, in microseconds. */
static uint64_t hist_edge(unsigned i) {
  if (i < HSUB) return i;
  unsigned grp = i / HSUB, sub = i % HSUB;
  unsigned msb = grp + 3;
  return ((uint64_t)(HSUB + sub + 1) << (msb - 4)) - 1;
}

static void hist_add(hist *h, uint64_t us) {
  atomic_fetch_add_explicit(&h->b[hist_bin(us)], 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&h->n, 1, memory_order_relaxed);
}

/* p-quantile of counts c[0..HBINS) totalling n. */
static uint64_t quantile(const uint64_t *c, uint64_t n, double p) {
  if (n == 0) return 0;
  uint64_t want = (uint64_t)(p * (double)n);
  if (want >= n) want = n - 1;
  uint64_t seen = 0;
  for (unsigned i = 0; i < HBINS; i++) {
    seen += c[i];
    if (seen > want) return hist_edge(i);
  }
  return hist_edge(HBINS - 1);
}

static void hist_snap(hist *h, uint64_t *c, uint64_t *n) {
  *n = 0;
  for (unsigned i = 0; i < HBINS; i++) {
    c[i] = atomic_load_explicit(&h->b[i], memory_order_relaxed);
    *n += c[i];
  }
}

/* ---- Zipf (Gray et al., "Quickly generating billion-record synthetic
 * databases", 1994, as in YCSB). libm is not linked, so pow is ours. ---- */

static double bk_exp(double x) {
  /* x = k ln2 + r, |r| <= ln2/2; e^r by Taylor; 2^k through the exponent bits. */
  const double ln2 = 0.6931471805599453;
  double kf = x / ln2;
  long k = (long)(kf < 0 ? kf - 0.5 : kf + 0.5);
  double r = x - (double)k * ln2, term = 1, sum = 1;
  for (int i = 1; i < 24; i++) {
    term *= r / i;
    sum += term;
  }
  if (k > 1023) k = 1023;
  if (k < -1022) return 0;
  union {
    double d;
    uint64_t u;
  } s = {.u = (uint64_t)(k + 1023) << 52};
  return sum * s.d;
}

static double bk_ln(double x) {
  union {
    double d;
    uint64_t u;
  } v = {.d = x};
  long e = (long)((v.u >> 52) & 0x7ff) - 1023;
  v.u = (v.u & ((UINT64_C(1) << 52) - 1)) | (UINT64_C(1023) << 52); /* mantissa in [1, 2) */
  double z = (v.d - 1) / (v.d + 1), z2 = z * z, term = z, sum = 0;
  for (int i = 1; i < 60; i += 2) {
    sum += term / i;
    term *= z2;
  }
  return 2 * sum + (double)e * 0.6931471805599453;
}

static double bk_pow(double b, double e) { return b <= 0 ? 0 : bk_exp(e * bk_ln(b)); }

typedef struct zipf {
  uint64_t n;
  double theta, alpha, zetan, eta, half_pow_theta;
} zipf;

static void zipf_init(zipf *z, uint64_t n, double theta) {
  z->n = n;
  z->theta = theta;
  double zeta = 0;
  for (uint64_t i = 1; i <= n; i++) zeta += 1.0 / bk_pow((double)i, theta);
  double zeta2 = 1.0 + 1.0 / bk_pow(2.0, theta);
  z->zetan = zeta;
  z->alpha = 1.0 / (1.0 - theta);
  z->eta = (1 - bk_pow(2.0 / (double)n, 1 - theta)) / (1 - zeta2 / zeta);
  z->half_pow_theta = 1.0 + bk_pow(0.5, theta);
}

static uint64_t zipf_next(const zipf *z, rk_rand *r) {
  double u = rk_rand_double(r), uz = u * z->zetan;
  if (uz < 1.0) return 0;
  if (uz < z->half_pow_theta) return 1;
  uint64_t v = (uint64_t)((double)z->n * bk_pow(z->eta * u - z->eta + 1, z->alpha));
  return v < z->n ? v : z->n - 1;
}

/* ---- the workload ------------------------------------------------------------------ */

void bench_kv_key(uint64_t i, char out[BENCH_KV_KEY_LEN + 1]) {
  uint64_t s = i ^ UINT64_C(0x5bd1e9955bd1e995);
  snprintf(out, BENCH_KV_KEY_LEN + 1, "%016llx", (unsigned long long)rk_splitmix64(&s));
}

typedef struct range_stat {
  hist h;
  _Atomic uint64_t errors;
} range_stat;

typedef struct shared {
  const bench_kv_opts *o;
  const char *const *eps;
  size_t neps;
  zipf z;
  range_stat *ranges; /* [0, nranges): by range id - 1 */
  size_t nranges;
  hist total;
  _Atomic uint64_t ops, errors, unknown, reads, writes;
  _Atomic int stop;
} shared;

typedef struct worker {
  shared *s;
  unsigned idx;
  pthread_t th;
  int started;
} worker;

static void *worker_main(void *arg) {
  worker *w = arg;
  shared *s = w->s;
  const bench_kv_opts *o = s->o;
  rkc_options co;
  rkc_options_default(&co);
  co.endpoints = s->eps;
  co.n_endpoints = s->neps;
  if (o->timeout_ms) co.timeout_ms = (uint32_t)o->timeout_ms;
  rkc_client *c;
  if (rkc_open(&c, &co) != RK_OK) return NULL;
  rk_rand r;
  rk_rand_seed(&r, o->seed * 1000003u + w->idx);
  size_t vb = (size_t)o->value_bytes;
  char *val = malloc(vb + 1);
  if (val == NULL) {
    rkc_close(c);
    return NULL;
  }
  memset(val, 'v', vb);
  val[vb] = 0;
  uint64_t seq = 0;
  char key[BENCH_KV_KEY_LEN + 1];
  while (!atomic_load_explicit(&s->stop, memory_order_relaxed)) {
    uint64_t ki = o->zipf > 0 ? zipf_next(&s->z, &r) : rk_rand_below(&r, o->keys);
    bench_kv_key(ki, key);
    int is_read = rk_rand_double(&r) < o->read_ratio;
    uint64_t t0 = rk_clock_mono_ns();
    int rc;
    if (is_read) {
      rkc_buf b;
      int found;
      rc = rkc_get(c, key, BENCH_KV_KEY_LEN, &b, &found);
      rkc_buf_free(&b);
    } else {
      /* A unique prefix per write so histories could name it. */
      char tag[32];
      int tl = snprintf(tag, sizeof tag, "c%u-%llu", w->idx, (unsigned long long)++seq);
      if (tl > 0 && (size_t)tl <= vb) memcpy(val, tag, (size_t)tl);
      rc = rkc_put(c, key, BENCH_KV_KEY_LEN, val, vb);
    }
    uint64_t us = (rk_clock_mono_ns() - t0) / 1000;
    uint64_t rid = rkc_last(c)->range_id;
    range_stat *rs = rid >= 1 && rid <= s->nranges ? &s->ranges[rid - 1] : NULL;
    if (rc == RK_OK) {
      hist_add(&s->total, us);
      if (rs) hist_add(&rs->h, us);
      atomic_fetch_add_explicit(&s->ops, 1, memory_order_relaxed);
      atomic_fetch_add_explicit(is_read ? &s->reads : &s->writes, 1, memory_order_relaxed);
    } else {
      atomic_fetch_add_explicit(&s->errors, 1, memory_order_relaxed);
      if (rkc_outcome_unknown(rc)) atomic_fetch_add_explicit(&s->unknown, 1, memory_order_relaxed);
      if (rs) atomic_fetch_add_explicit(&rs->errors, 1, memory_order_relaxed);
      if (o->verbose_errors)
        fprintf(stderr, "bench kv: %s %s: %s: %s\n", is_read ? "get" : "put", key, rk_strerror(rc),
                rkc_last(c)->detail);
    }
  }
  free(val);
  rkc_close(c);
  return NULL;
}

static void sleep_ms(unsigned ms) {
  struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

int bench_kv_run(const bench_kv_opts *o, bench_kv_result *res) {
  memset(res, 0, sizeof *res);
  static char addrs[RKC_MAX_ENDPOINTS][RKC_ADDR_MAX];
  static const char *eps[RKC_MAX_ENDPOINTS];
  size_t neps = 0;
  if (rkc_parse_endpoints(o->endpoints, addrs, RKC_MAX_ENDPOINTS, &neps) != RK_OK) {
    fprintf(stderr, "bench kv: bad endpoint list '%s'\n", o->endpoints ? o->endpoints : "");
    return RK_EINVAL;
  }
  for (size_t i = 0; i < neps; i++) eps[i] = addrs[i];
  if (o->keys == 0 || o->clients == 0 || (o->zipf != 0 && (o->zipf <= 0 || o->zipf >= 1)))
    return RK_EINVAL;

  /* The range table first: it sizes the per-range statistics. */
  rkc_options co;
  rkc_options_default(&co);
  co.endpoints = eps;
  co.n_endpoints = neps;
  co.timeout_ms = 10000;
  rkc_client *c;
  int rc = rkc_open(&c, &co);
  if (rc != RK_OK) return rc;
  rkc_ranges t;
  rc = rkc_ranges_get(c, &t);
  if (rc != RK_OK) {
    fprintf(stderr, "bench kv: cannot read the range table: %s: %s\n", rk_strerror(rc),
            rkc_last(c)->detail);
    rkc_close(c);
    return rc;
  }
  uint64_t maxid = 0;
  for (size_t i = 0; i < t.n; i++)
    if (t.v[i].id > maxid) maxid = t.v[i].id;
  rkc_ranges_free(&t);
  /* Measure the workload, not a fresh cluster's elections. */
  size_t led = 0, total = 0;
  if (rkc_wait_leaders(c, 30000, &led, &total) != RK_OK)
    fprintf(stderr, "bench kv: only %zu of %zu ranges have a leader after 30 s; measuring anyway\n",
            led, total);

  shared *s = calloc(1, sizeof *s);
  worker *w = calloc(o->clients, sizeof *w);
  if (s == NULL || w == NULL || maxid > 10000000) goto nomem;
  s->ranges = calloc((size_t)maxid, sizeof *s->ranges);
  if (s->ranges == NULL) goto nomem;
  s->nranges = (size_t)maxid;
  s->o = o;
  s->eps = eps;
  s->neps = neps;
  if (o->zipf > 0) zipf_init(&s->z, o->keys, o->zipf);

  uint64_t t0 = rk_clock_mono_ns();
  for (unsigned i = 0; i < o->clients; i++) {
    w[i].s = s;
    w[i].idx = i;
    if (pthread_create(&w[i].th, NULL, worker_main, &w[i]) == 0) w[i].started = 1;
  }
  /* Progress: ~1/s, the last second's rate and p99. */
  static uint64_t prev[HBINS], cur[HBINS], diff[HBINS];
  uint64_t prev_n = 0, prev_t = t0;
  memset(prev, 0, sizeof prev);
  uint64_t end = o->seconds > 0 ? t0 + (uint64_t)(o->seconds * 1e9) : UINT64_MAX;
  for (;;) {
    uint64_t now = rk_clock_mono_ns();
    if (now >= end || (o->stop && *o->stop)) break;
    uint64_t next = prev_t + 1000000000ull;
    if (now < next) {
      uint64_t wait_ms = (next - now) / 1000000 + 1;
      sleep_ms((unsigned)(wait_ms > 50 ? 50 : wait_ms)); /* stay responsive to stop */
      continue;
    }
    uint64_t n;
    hist_snap(&s->total, cur, &n);
    for (unsigned i = 0; i < HBINS; i++) diff[i] = cur[i] - prev[i];
    double dt = (double)(now - prev_t) / 1e9;
    if (o->progress) {
      double p99 = (double)quantile(diff, n - prev_n, 0.99) / 1000.0;
      fprintf(o->progress, "%s[%5.0fs] %9.0f ops/s  p99 %7.2f ms  errors %llu%s",
              o->progress_tty ? "\r\033[K" : "", (double)(now - t0) / 1e9,
              (double)(n - prev_n) / dt, p99, (unsigned long long)atomic_load(&s->errors),
              o->progress_tty ? "" : "\n");
      fflush(o->progress);
    }
    memcpy(prev, cur, sizeof prev);
    prev_n = n;
    prev_t = now;
  }
  atomic_store(&s->stop, 1);
  for (unsigned i = 0; i < o->clients; i++)
    if (w[i].started) pthread_join(w[i].th, NULL);
  uint64_t t1 = rk_clock_mono_ns();
  if (o->progress && o->progress_tty) {
    fprintf(o->progress, "\n");
    fflush(o->progress);
  }

  /* Results. */
  res->seconds = (double)(t1 - t0) / 1e9;
  uint64_t n;
  hist_snap(&s->total, cur, &n);
  res->ops = n;
  res->ops_per_sec = (double)n / res->seconds;
  res->p50_us = quantile(cur, n, 0.50);
  res->p99_us = quantile(cur, n, 0.99);
  res->p999_us = quantile(cur, n, 0.999);
  res->errors = atomic_load(&s->errors);
  res->unknown = atomic_load(&s->unknown);
  res->reads = atomic_load(&s->reads);
  res->writes = atomic_load(&s->writes);
  res->ranges = calloc(s->nranges ? s->nranges : 1, sizeof *res->ranges);
  if (res->ranges == NULL) goto nomem;
  res->nranges = s->nranges;
  for (size_t i = 0; i < s->nranges; i++) {
    bench_kv_range *br = &res->ranges[i];
    uint64_t rn;
    hist_snap(&s->ranges[i].h, cur, &rn);
    br->range_id = i + 1;
    br->ops = rn;
    br->ops_per_sec = (double)rn / res->seconds;
    br->p50_us = quantile(cur, rn, 0.50);
    br->p99_us = quantile(cur, rn, 0.99);
    br->errors = atomic_load(&s->ranges[i].errors);
  }
  /* Leaders as they stand at the end. */
  if (rkc_ranges_get(c, &t) == RK_OK) {
    for (size_t i = 0; i < t.n; i++)
      if (t.v[i].id >= 1 && t.v[i].id <= res->nranges)
        res->ranges[t.v[i].id - 1].leader = t.v[i].leader;
    rkc_ranges_free(&t);
  }
  free(s->ranges);
  free(s);
  free(w);
  rkc_close(c);
  return RK_OK;
nomem:
  if (s) free(s->ranges);
  free(s);
  free(w);
  rkc_close(c);
  return RK_ENOMEM;
}

void bench_kv_result_free(bench_kv_result *r) {
  free(r->ranges);
  memset(r, 0, sizeof *r);
}

void bench_kv_print_ranges(FILE *f, const bench_kv_result *r) {
  fprintf(f, "%-6s %-6s %10s %10s %10s %10s %8s\n", "range", "leader", "ops", "ops/s", "p50_ms",
          "p99_ms", "errors");
  for (size_t i = 0; i < r->nranges; i++) {
    const bench_kv_range *b = &r->ranges[i];
    char ld[16];
    if (b->leader)
      snprintf(ld, sizeof ld, "%u", b->leader);
    else
      snprintf(ld, sizeof ld, "-");
    fprintf(f, "%-6llu %-6s %10llu %10.0f %10.2f %10.2f %8llu\n", (unsigned long long)b->range_id,
            ld, (unsigned long long)b->ops, b->ops_per_sec, (double)b->p50_us / 1000.0,
            (double)b->p99_us / 1000.0, (unsigned long long)b->errors);
  }
}

static int write_json(const char *path, const bench_kv_opts *o, const bench_kv_result *r) {
  FILE *f = fopen(path, "w");
  if (f == NULL) {
    perror(path);
    return RK_EIO;
  }
  fprintf(f,
          "{\"clients\":%llu,\"value_bytes\":%llu,\"read_ratio\":%.3f,\"keys\":%llu,"
          "\"zipf\":%.3f,\"seconds\":%.3f,\"ops\":%llu,\"ops_per_sec\":%.1f,\"p50_us\":%llu,"
          "\"p99_us\":%llu,\"p999_us\":%llu,\"errors\":%llu,\"unknown\":%llu,\"reads\":%llu,"
          "\"writes\":%llu,\"ranges\":[",
          (unsigned long long)o->clients, (unsigned long long)o->value_bytes, o->read_ratio,
          (unsigned long long)o->keys, o->zipf, r->seconds, (unsigned long long)r->ops,
          r->ops_per_sec, (unsigned long long)r->p50_us, (unsigned long long)r->p99_us,
          (unsigned long long)r->p999_us, (unsigned long long)r->errors,
          (unsigned long long)r->unknown, (unsigned long long)r->reads,
          (unsigned long long)r->writes);
  for (size_t i = 0; i < r->nranges; i++) {
    const bench_kv_range *b = &r->ranges[i];
    fprintf(f,
            "%s{\"range\":%llu,\"leader\":%u,\"ops\":%llu,\"ops_per_sec\":%.1f,\"p50_us\":%llu,"
            "\"p99_us\":%llu,\"errors\":%llu}",
            i ? "," : "", (unsigned long long)b->range_id, b->leader, (unsigned long long)b->ops,
            b->ops_per_sec, (unsigned long long)b->p50_us, (unsigned long long)b->p99_us,
            (unsigned long long)b->errors);
  }
  fprintf(f, "]}\n");
  int bad = ferror(f);
  if (fclose(f) != 0 || bad) return RK_EIO;
  return RK_OK;
}

int bench_kv(const bench_kv_opts *o) {
  printf("bench kv: endpoints=%s clients=%llu value_bytes=%llu seconds=%.1f read_ratio=%.2f "
         "keys=%llu zipf=%.2f\n",
         o->endpoints, (unsigned long long)o->clients, (unsigned long long)o->value_bytes,
         o->seconds, o->read_ratio, (unsigned long long)o->keys, o->zipf);
  fflush(stdout);
  bench_kv_opts oo = *o;
  if (oo.progress == NULL && isatty(2)) {
    oo.progress = stderr;
    oo.progress_tty = 1;
  }
  bench_kv_result r;
  int rc = bench_kv_run(&oo, &r);
  if (rc != RK_OK) {
    fprintf(stderr, "bench kv: %s\n", rk_strerror(rc));
    return rc;
  }
  bench_kv_print_ranges(stdout, &r);
  printf("reads=%llu writes=%llu unknown_outcome=%llu seconds=%.2f\n", (unsigned long long)r.reads,
         (unsigned long long)r.writes, (unsigned long long)r.unknown, r.seconds);
  if (o->json) rc = write_json(o->json, o, &r);
  printf("bench: ops=%llu ops_per_sec=%.0f p50_us=%llu p99_us=%llu p999_us=%llu errors=%llu\n",
         (unsigned long long)r.ops, r.ops_per_sec, (unsigned long long)r.p50_us,
         (unsigned long long)r.p99_us, (unsigned long long)r.p999_us, (unsigned long long)r.errors);
  bench_kv_result_free(&r);
  return rc;
}
