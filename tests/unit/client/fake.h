/* tests/unit/client/fake.h — an in-memory fake cluster behind the client's
 * connection seam (client/rkc_int.h rkc_conn_ops): N nodes, a range table of
 * 4 ranges ("", "4000", "8000", "c000") each replicated on every node, one
 * shared key-value map, a fake clock that sleeps and timeouts advance, and
 * per-node behaviours (leader, follower with/without hint, timeout, silent,
 * crash on request, down). Lets the tests drive every routing and outcome
 * rule without a network. */
#ifndef RK_TEST_CLIENT_FAKE_H
#define RK_TEST_CLIENT_FAKE_H

#include "client/rkc_int.h"

#include <stdint.h>

#define FAKE_NODES  3
#define FAKE_RANGES 4
#define FAKE_KEYS   512

typedef enum fake_mode {
  FAKE_SERVE = 0, /* serves ranges it leads; else ENOTLEADER with the hint */
  FAKE_TIMEOUT,   /* answers every data request with RK_ETIMEOUT */
  FAKE_SILENT,    /* never answers data requests */
  FAKE_CRASH,     /* closes the connection when a data request arrives */
  FAKE_DOWN,      /* refuses connections; open connections are closed */
} fake_mode;

typedef struct fake_node {
  uint32_t id;
  char addr[32];
  fake_mode mode;
  int hint;              /* include the leader hint in ENOTLEADER (default 1) */
  uint32_t stale_hint;   /* nonzero: the hint names this node, not the leader */
  int silent_requests;   /* this many data requests get no answer, then it serves */
  uint64_t answer_range; /* nonzero: served answers name this range, not the one asked */
  int data_requests, ranges_requests, opens;
  uint64_t epoch; /* bumped by fake_restart: older connections are dead */
} fake_node;

typedef struct fake_cluster {
  fake_node nodes[FAKE_NODES];
  uint32_t leader[FAKE_RANGES]; /* per range, 0 = none */
  int advertise_leader;         /* OP_RANGES names leaders (default 0) */
  uint64_t now_ns;
  uint64_t slept_ms;
  int n_keys;
  char keys[FAKE_KEYS][64], vals[FAKE_KEYS][64];
  int violations; /* scan bounds outside the named range, etc. */
  int requests_total;
  uint64_t last_data_ns; /* fake clock at the latest data request */
  uint32_t answer_ms;    /* every answer takes this long (fake clock) */
} fake_cluster;

extern fake_cluster fk;

void fake_setup(void);    /* resets fk, installs the fake ops */
void fake_teardown(void); /* restores the real transport */
void fake_restart(uint32_t node);
int fake_range_of(const char *key); /* 0-based */

#endif
