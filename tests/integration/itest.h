/* tests/integration/itest.h — small vocabulary shared by the integration
 * tests: one cluster per test, started in .init and always stopped in .fini
 * (which Criterion runs after a failed assertion too). */
#ifndef RK_TEST_ITEST_H
#define RK_TEST_ITEST_H

#include "cluster.h"

#include "client/rk_client.h"
#include "common/rk_err.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

/* Short ticks keep the suite fast: election timeout 10 x 20 ms. */
#define IT_TICK_MS        20
#define IT_ELECTION_TICKS 10
#define IT_RANGES         8
/* What a node logs when the kernel closed a connection for silence
 * (transport/net_conn.c close_io_error). */
#define IT_GAVE_UP_LINE "the kernel gave up on it"

extern itc_cluster itc;

static inline void it_start(int n) {
  char err[512];
  if (itc_start(&itc, n, IT_RANGES, IT_TICK_MS, IT_ELECTION_TICKS, err, sizeof err) != 0)
    cr_assert_fail("cluster did not start: %s", err);
}

static inline void it_fini(void) { itc_stop_all(&itc); }

/* A client over every node (only < 0) or over node `only` alone; NULL if
 * rkc_open fails. The endpoint strings are locals (rkc_open copies them):
 * client threads open theirs while the main thread opens its own, and a
 * shared static buffer once let one of them read an endpoint another was
 * rewriting (EINVAL). For threads: a cr_assert off the test's own thread
 * longjmps across that thread's stack. */
static inline rkc_client *it_client_try(int only, uint32_t timeout_ms) {
  char buf[ITC_MAX_NODES][RKC_ADDR_MAX];
  const char *eps[ITC_MAX_NODES];
  size_t n = 0;
  for (int i = 0; i < itc.n; i++) {
    if (only >= 0 && i != only) continue;
    snprintf(buf[n], sizeof buf[n], "%.31s", itc.nodes[i].client);
    eps[n] = buf[n];
    n++;
  }
  rkc_options o;
  rkc_options_default(&o);
  o.endpoints = eps;
  o.n_endpoints = n;
  o.timeout_ms = timeout_ms;
  o.connect_timeout_ms = 500;
  o.read_attempt_ms = 500;
  rkc_client *c = NULL;
  return rkc_open(&c, &o) == RK_OK ? c : NULL;
}

/* it_client_try that must succeed (the test's own thread only). */
static inline rkc_client *it_client(int only, uint32_t timeout_ms) {
  rkc_client *c = it_client_try(only, timeout_ms);
  cr_assert_not_null(c, "rkc_open failed");
  return c;
}

/* Hex keys spread over the bootstrap split. */
static inline void it_key(char *buf, size_t cap, const char *tag, unsigned i) {
  snprintf(buf, cap, "%04x-%s-%u", (i * 40503u) & 0xffffu, tag, i);
}

#define IT_PUT_OK(c, k, v)                                                                         \
  do {                                                                                             \
    int rc_ = rkc_put((c), (k), strlen(k), (v), strlen(v));                                        \
    cr_assert_eq(rc_, RK_OK, "put %s: %s: %s", (k), rk_strerror(rc_), rkc_last(c)->detail);        \
  } while (0)

/* get that must succeed and return want (NULL: absent). */
#define IT_GET_IS(c, k, want)                                                                      \
  do {                                                                                             \
    rkc_buf b_;                                                                                    \
    int f_ = 0;                                                                                    \
    int rc_ = rkc_get((c), (k), strlen(k), &b_, &f_);                                              \
    cr_assert_eq(rc_, RK_OK, "get %s: %s: %s", (k), rk_strerror(rc_), rkc_last(c)->detail);        \
    if ((want) == NULL) {                                                                          \
      cr_assert_not(f_, "get %s: found '%s', want absent", (k), (const char *)b_.data);            \
    } else {                                                                                       \
      cr_assert(f_, "get %s: absent, want '%s'", (k), (const char *)(want));                       \
      cr_assert_str_eq((const char *)b_.data, (const char *)(want), "get %s", (k));                \
    }                                                                                              \
    rkc_buf_free(&b_);                                                                             \
  } while (0)

#endif
