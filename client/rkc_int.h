/* client/rkc_int.h — client library internals, shared by the client/ sources and the
 * unit tests (tests/unit/client), which replace the connection layer with an
 * in-memory fake cluster through rkc_conn_ops. */
#ifndef RK_CLIENT_INT_H
#define RK_CLIENT_INT_H

#include "client/rk_client.h"
#include "transport/handshake.h"
#include "transport/net.h"

#include "rangekv.pb-c.h"

/* The connection seam: the real one is transport/net.h's blocking tp_conn. */
typedef struct rkc_conn_ops {
  int (*open)(tp_conn **out, const char *addr, uint64_t cluster_id, int timeout_ms,
              tp_handshake *server);
  void (*close)(tp_conn *c);
  int (*send)(tp_conn *c, uint16_t type, const uint8_t *payload, uint32_t len, int timeout_ms);
  int (*recv)(tp_conn *c, uint16_t *type, const uint8_t **payload, uint32_t *len, int timeout_ms);
  /* The clock (CLOCK_MONOTONIC ns) and the pause between retries. */
  uint64_t (*now_ns)(void);
  void (*sleep_ms)(uint32_t ms);
} rkc_conn_ops;

/* Tests swap this (NULL restores the real transport). Not thread-safe: set
 * it before opening clients. */
void rkc_set_conn_ops(const rkc_conn_ops *ops);
extern const rkc_conn_ops *rkc_ops_;

/* One node (or a seed endpoint whose id is not known yet). */
typedef struct rkc_peer {
  char addr[RKC_ADDR_MAX];
  uint32_t node_id; /* 0 until learned (handshake or range table) */
  tp_conn *conn;    /* NULL: not connected */
} rkc_peer;

struct rkc_client {
  rkc_options opt;
  uint64_t cluster_id;
  rkc_peer *peers;
  size_t n_peers, cap_peers;
  size_t n_seeds;   /* peers[0..n_seeds) are the configured endpoints */
  rkc_ranges table; /* cached; n == 0 until first fetched */
  uint64_t next_id;
  uint64_t rng;     /* splitmix64 state for backoff jitter and replica choice */
  size_t seed_turn; /* which peer to ask for the table next */
  rkc_call_info last;
};

/* route.c: building a table from an OP_RANGES answer. Validates it
 * (rkc_ranges_check). RK_ECORRUPT / RK_ENOMEM. */
int rkc_ranges_from_proto(rkc_ranges *t, const Rangekv__ClientResponse *r);
/* Deep copy (dst is overwritten, not freed). */
int rkc_ranges_copy(rkc_ranges *dst, const rkc_ranges *src);
/* -1, 0, 1 comparing byte strings (shorter prefix first). */
int rkc_key_cmp(const void *a, size_t alen, const void *b, size_t blen);
const rkc_node *rkc_ranges_node(const rkc_ranges *t, uint32_t id);

/* Classification of a node's answer code (see rk_client.h). */
typedef enum rkc_class {
  RKC_DONE = 0, /* RK_OK */
  RKC_REDIRECT, /* not the leader / wrong node: follow the hint or next replica */
  RKC_REFRESH,  /* unknown range / key moved: refresh the table, retry */
  RKC_RETRY,    /* refused before proposing (busy): pause, retry */
  RKC_FINAL,    /* definite failure: return the code as is */
  RKC_UNKNOWN,  /* may have been proposed */
} rkc_class;
rkc_class rkc_classify(int code);

#endif
