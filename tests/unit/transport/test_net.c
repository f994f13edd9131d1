/* Node-to-node transport tests: real sockets on 127.0.0.1, port 0, two (or
 * three) tp_net instances in this one process driven alternately. Every wait
 * is a loop of short tp_net_poll calls bounded by a deadline; nothing asserts
 * on timing. */
#include "common/rk_clock.h"
#include "common/rk_err.h"
#include "transport/net.h"
#include "transport/net_int.h"
#include "transport/resolve.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define CLUSTER 0x5eedull

typedef struct tnode {
  tp_net *n;
  uint32_t id;
  char peer_addr[TP_ADDR_MAX];
  int ups;
  uint32_t last_up;
  char up_client_addr[TP_ADDR_MAX];
  int frames;
  uint32_t last_from;
  uint16_t last_type;
  uint8_t *last; /* copy of the last payload */
  uint32_t last_len;
  uint32_t next_seq; /* for in-order checks: payloads start with a u32 seq */
  int out_of_order;
  int client_frames;
  uint64_t last_client;
  uint32_t last_client_len;
} tnode;

static void on_client_frame(void *ctx, uint64_t conn, uint16_t type, const uint8_t *p,
                            uint32_t len) {
  tnode *t = ctx;
  (void)type;
  (void)p;
  t->client_frames++;
  t->last_client = conn;
  t->last_client_len = len;
}

static void on_peer_frame(void *ctx, uint32_t node, uint16_t type, const uint8_t *p, uint32_t len) {
  tnode *t = ctx;
  t->frames++;
  t->last_from = node;
  t->last_type = type;
  free(t->last);
  t->last = malloc(len ? len : 1);
  cr_assert_not_null(t->last);
  if (len) memcpy(t->last, p, len);
  t->last_len = len;
  if (len >= 4) {
    uint32_t seq;
    memcpy(&seq, p, 4);
    if (seq != t->next_seq) t->out_of_order++;
    t->next_seq = seq + 1;
  }
}

static void on_peer_up(void *ctx, uint32_t node, const char *client_addr) {
  tnode *t = ctx;
  t->ups++;
  t->last_up = node;
  snprintf(t->up_client_addr, sizeof t->up_client_addr, "%s", client_addr ? client_addr : "");
}

static void node_start_cfg(tnode *t, const tp_net_config *cfg) {
  tp_net_callbacks cb = {.ctx = t,
                         .on_peer_frame = on_peer_frame,
                         .on_peer_up = on_peer_up,
                         .on_client_frame = on_client_frame};
  t->id = cfg->node_id;
  cr_assert_eq(tp_net_new(&t->n, cfg, &cb), RK_OK);
  snprintf(t->peer_addr, sizeof t->peer_addr, "%s", tp_net_peer_addr(t->n));
}

static void node_start(tnode *t, uint64_t cluster, uint32_t id, const char *listen) {
  memset(t, 0, sizeof *t);
  tp_net_config cfg;
  tp_net_config_default(&cfg);
  cfg.cluster_id = cluster;
  cfg.node_id = id;
  cfg.peer_listen = listen;
  cfg.client_listen = "127.0.0.1:0";
  node_start_cfg(t, &cfg);
}

static void node_stop(tnode *t) {
  tp_net_free(t->n);
  t->n = NULL;
  free(t->last);
  t->last = NULL;
}

static tp_net_stats stats(const tnode *t) {
  tp_net_stats s;
  tp_net_get_stats(t->n, &s);
  return s;
}

static uint64_t deadline_after(int ms) { return rk_clock_mono_ns() + (uint64_t)ms * 1000000ull; }

static void pump(tnode *a, tnode *b) {
  if (a && a->n) cr_assert_eq(tp_net_poll(a->n, 2), RK_OK);
  if (b && b->n) cr_assert_eq(tp_net_poll(b->n, 2), RK_OK);
}

/* Polls a and b (either may be NULL) until cond holds or ms pass. */
#define PUMP_UNTIL(cond, ms, a, b)                                                                 \
  do {                                                                                             \
    uint64_t dl_ = deadline_after(ms);                                                             \
    while (!(cond) && rk_clock_mono_ns() < dl_) pump((a), (b));                                    \
  } while (0)

static void connect_pair(tnode *a, tnode *b) {
  cr_assert_eq(tp_net_add_peer(a->n, b->id, b->peer_addr), RK_OK);
  cr_assert_eq(tp_net_add_peer(b->n, a->id, a->peer_addr), RK_OK);
  PUMP_UNTIL(tp_net_peer_connected(a->n, b->id) && tp_net_peer_connected(b->n, a->id), 5000, a, b);
  cr_assert(tp_net_peer_connected(a->n, b->id), "node %u never saw node %u", a->id, b->id);
  cr_assert(tp_net_peer_connected(b->n, a->id), "node %u never saw node %u", b->id, a->id);
}

/* A closed port: bind one, note it, close it. */
static void closed_port_addr(char *out, size_t cap) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  cr_assert_geq(fd, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
  socklen_t sl = sizeof sa;
  cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
  snprintf(out, cap, "127.0.0.1:%u", (unsigned)ntohs(sa.sin_port));
  close(fd);
}

Test(net, config_and_addresses) {
  tp_net_config cfg;
  tp_net_config_default(&cfg);
  tp_net *n = NULL;
  cr_assert_eq(tp_net_new(&n, &cfg, NULL), RK_EINVAL, "cluster and node ids are required");
  cr_assert_null(n);
  cfg.cluster_id = CLUSTER;
  cfg.node_id = 1;
  cfg.peer_listen = "not-an-address";
  cr_assert_eq(tp_net_new(&n, &cfg, NULL), RK_EIO);
  cfg.peer_listen = "127.0.0.1:0";
  cfg.client_listen = "localhost:0";
  cr_assert_eq(tp_net_new(&n, &cfg, NULL), RK_OK);
  cr_assert_eq(strncmp(tp_net_peer_addr(n), "127.0.0.1:", 10), 0, "%s", tp_net_peer_addr(n));
  cr_assert_neq(strcmp(tp_net_peer_addr(n), "127.0.0.1:0"), 0, "port 0 reports the bound port");
  cr_assert_eq(strncmp(tp_net_client_addr(n), "127.0.0.1:", 10), 0, "%s", tp_net_client_addr(n));
  cr_assert_eq(tp_net_add_peer(n, 1, "127.0.0.1:1"), RK_EINVAL, "self");
  cr_assert_eq(tp_net_add_peer(n, 0, "127.0.0.1:1"), RK_EINVAL);
  cr_assert_eq(tp_net_add_peer(n, 2, "no-port"), RK_EINVAL);
  cr_assert_eq(tp_net_add_peer(n, 2, "127.0.0.1:99999"), RK_EINVAL);
  cr_assert_eq(tp_net_add_peer(n, 2, "127.0.0.1:1"), RK_OK);
  cr_assert_eq(tp_net_add_peer(n, 2, "127.0.0.1:2"), RK_EEXIST);
  uint8_t b = 0;
  cr_assert_eq(tp_net_send_peer(n, 9, TP_FRAME_RAFT_BATCH, &b, 1), RK_ENOTFOUND);
  cr_assert_eq(tp_net_send_peer(n, 2, TP_FRAME_HANDSHAKE, &b, 1), RK_EINVAL);
  cr_assert_eq(tp_net_send_client(n, 1, TP_FRAME_CLIENT_RESPONSE, &b, 1), RK_ECLOSED);
  tp_net_close_client(n, 1); /* unknown: no-op */
  tp_net_free(n);

  /* The same port twice cannot be bound. */
  tnode a;
  node_start(&a, CLUSTER, 1, "127.0.0.1:0");
  cfg.peer_listen = a.peer_addr;
  cfg.client_listen = NULL;
  cr_assert_eq(tp_net_new(&n, &cfg, NULL), RK_EIO);
  node_stop(&a);
}

Test(net, peers_connect_and_exchange_frames) {
  tnode a, b;
  node_start(&a, CLUSTER, 1, "127.0.0.1:0");
  node_start(&b, CLUSTER, 2, "127.0.0.1:0");
  connect_pair(&a, &b);
  cr_assert_eq(a.ups, 1);
  cr_assert_eq(b.ups, 1);
  cr_assert_eq(a.last_up, 2);
  cr_assert_eq(b.last_up, 1);
  cr_assert_str_eq(a.up_client_addr, tp_net_client_addr(b.n),
                   "the handshake carries the client addr");
  cr_assert_str_eq(b.up_client_addr, tp_net_client_addr(a.n));

  cr_assert_eq(tp_net_send_peer(a.n, 2, TP_FRAME_RAFT_BATCH, (const uint8_t *)"\0\0\0\0from-1", 10),
               RK_OK);
  PUMP_UNTIL(b.frames == 1, 3000, &a, &b);
  cr_assert_eq(b.frames, 1);
  cr_assert_eq(b.last_from, 1);
  cr_assert_eq(b.last_type, TP_FRAME_RAFT_BATCH);
  cr_assert_eq(b.last_len, 10);
  cr_assert_eq(memcmp(b.last + 4, "from-1", 6), 0);

  cr_assert_eq(tp_net_send_peer(b.n, 1, TP_FRAME_HEARTBEAT_BATCH, NULL, 0), RK_OK);
  PUMP_UNTIL(a.frames == 1, 3000, &a, &b);
  cr_assert_eq(a.frames, 1);
  cr_assert_eq(a.last_from, 2);
  cr_assert_eq(a.last_type, TP_FRAME_HEARTBEAT_BATCH);
  cr_assert_eq(a.last_len, 0);

  /* Many frames, some large (several reads and partial writes each), in order. */
  uint32_t big = 3u << 20;
  uint8_t *buf = malloc(big);
  cr_assert_not_null(buf);
  for (uint32_t i = 0; i < big; i++) buf[i] = (uint8_t)(i * 2654435761u >> 13);
  b.next_seq = 1;
  b.out_of_order = 0;
  for (uint32_t seq = 1; seq <= 50; seq++) {
    memcpy(buf, &seq, 4);
    uint32_t len = seq % 10 == 0 ? big : 100 + seq;
    cr_assert_eq(tp_net_send_peer(a.n, 2, TP_FRAME_RAFT_BATCH, buf, len), RK_OK);
  }
  PUMP_UNTIL(b.frames == 51, 5000, &a, &b);
  cr_assert_eq(b.frames, 51);
  cr_assert_eq(b.out_of_order, 0);
  cr_assert_eq(b.last_len, big);
  cr_assert_eq(memcmp(b.last + 4, buf + 4, big - 4), 0, "a large frame arrives intact");
  free(buf);

  tp_net_stats sa = stats(&a), sb = stats(&b);
  cr_assert_eq(sa.peer_connects, 1);
  cr_assert_eq(sb.peer_connects, 1);
  cr_assert_eq(sa.bad_frames + sb.bad_frames + sa.bad_handshakes + sb.bad_handshakes, 0);
  cr_assert_eq(sa.frames_dropped, 0);
  cr_assert_geq(sb.frames_in, 51);
  node_stop(&a);
  node_stop(&b);
}

Test(net, three_nodes_full_mesh) {
  tnode t[3];
  for (uint32_t i = 0; i < 3; i++) node_start(&t[i], CLUSTER, i + 1, "127.0.0.1:0");
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < 3; j++)
      if (i != j) cr_assert_eq(tp_net_add_peer(t[i].n, t[j].id, t[j].peer_addr), RK_OK);
  uint64_t dl = deadline_after(5000);
  int all = 0;
  while (!all && rk_clock_mono_ns() < dl) {
    for (int i = 0; i < 3; i++) cr_assert_eq(tp_net_poll(t[i].n, 1), RK_OK);
    all = 1;
    for (int i = 0; i < 3; i++)
      for (int j = 0; j < 3; j++)
        if (i != j && !tp_net_peer_connected(t[i].n, t[j].id)) all = 0;
  }
  cr_assert(all, "a full mesh of 3 nodes forms");
  for (int i = 0; i < 3; i++) cr_assert_eq(stats(&t[i]).peer_connects, 2);
  for (int i = 0; i < 3; i++) node_stop(&t[i]);
}

Test(net, reconnect_after_acceptor_restarts_on_same_port) {
  tnode a, b;
  tp_net_config cfg;
  node_start(&a, CLUSTER, 1, "127.0.0.1:0");
  node_start(&b, CLUSTER, 2, "127.0.0.1:0");
  connect_pair(&a, &b);
  char baddr[TP_ADDR_MAX];
  snprintf(baddr, sizeof baddr, "%s", b.peer_addr);

  node_stop(&b);
  PUMP_UNTIL(!tp_net_peer_connected(a.n, 2), 3000, &a, NULL);
  cr_assert(!tp_net_peer_connected(a.n, 2), "the dialer notices the acceptor is gone");
  uint8_t x[4] = {0};
  cr_assert_eq(tp_net_send_peer(a.n, 2, TP_FRAME_RAFT_BATCH, x, 4), RK_EAGAIN);

  /* Let a fail a few dials against the closed port (backoff grows). */
  uint64_t before = deadline_after(300);
  while (rk_clock_mono_ns() < before) pump(&a, NULL);

  memset(&b, 0, sizeof b);
  tp_net_config_default(&cfg);
  cfg.cluster_id = CLUSTER;
  cfg.node_id = 2;
  cfg.peer_listen = baddr;
  node_start_cfg(&b, &cfg);
  cr_assert_str_eq(b.peer_addr, baddr);
  cr_assert_eq(tp_net_add_peer(b.n, 1, a.peer_addr), RK_OK);
  PUMP_UNTIL(tp_net_peer_connected(a.n, 2) && tp_net_peer_connected(b.n, 1), 8000, &a, &b);
  cr_assert(tp_net_peer_connected(a.n, 2), "the dialer reconnects");
  cr_assert(tp_net_peer_connected(b.n, 1));
  cr_assert_eq(a.ups, 2, "on_peer_up on every successful handshake");
  cr_assert_eq(tp_net_send_peer(a.n, 2, TP_FRAME_RAFT_BATCH, x, 4), RK_OK);
  PUMP_UNTIL(b.frames == 1, 3000, &a, &b);
  cr_assert_eq(b.frames, 1);
  tp_net_stats sa = stats(&a);
  cr_assert_eq(sa.peer_connects, 2);
  cr_assert_eq(sa.peer_disconnects, 1);
  cr_assert_geq(sa.frames_dropped, 1);
  node_stop(&a);
  node_stop(&b);
}

/* The dialer restarts: the acceptor replaces the old connection. */
Test(net, dialer_restart_replaces_connection) {
  tnode a, b;
  node_start(&a, CLUSTER, 1, "127.0.0.1:0");
  node_start(&b, CLUSTER, 2, "127.0.0.1:0");
  connect_pair(&a, &b);
  node_stop(&a); /* b may or may not notice the EOF before the new one comes */
  node_start(&a, CLUSTER, 1, "127.0.0.1:0");
  cr_assert_eq(tp_net_add_peer(a.n, 2, b.peer_addr), RK_OK);
  PUMP_UNTIL(tp_net_peer_connected(a.n, 2) && b.ups == 2, 5000, &a, &b);
  cr_assert_eq(b.ups, 2);
  cr_assert_eq(tp_net_send_peer(b.n, 1, TP_FRAME_RAFT_BATCH, (const uint8_t *)"\0\0\0\0", 4),
               RK_OK);
  PUMP_UNTIL(a.frames == 1, 3000, &a, &b);
  cr_assert_eq(a.frames, 1, "the acceptor talks over the new connection");
  cr_assert_eq(stats(&b).peer_disconnects, 1);
  node_stop(&a);
  node_stop(&b);
}

Test(net, wrong_cluster_peer_is_refused) {
  tnode a, b;
  node_start(&a, 1111, 1, "127.0.0.1:0");
  node_start(&b, 2222, 2, "127.0.0.1:0");
  cr_assert_eq(tp_net_add_peer(a.n, 2, b.peer_addr), RK_OK);
  cr_assert_eq(tp_net_add_peer(b.n, 1, a.peer_addr), RK_OK);
  PUMP_UNTIL(stats(&a).bad_handshakes >= 2 && stats(&b).bad_handshakes >= 2, 5000, &a, &b);
  cr_assert_geq(stats(&b).bad_handshakes, 2, "the acceptor refuses (and again after a redial)");
  cr_assert_geq(stats(&a).bad_handshakes, 2, "the dialer sees the other cluster id");
  uint8_t x[4] = {0};
  cr_assert_eq(tp_net_send_peer(a.n, 2, TP_FRAME_RAFT_BATCH, x, 4), RK_EAGAIN);
  cr_assert_eq(tp_net_send_peer(b.n, 1, TP_FRAME_RAFT_BATCH, x, 4), RK_EAGAIN);
  cr_assert_eq(a.ups + b.ups, 0);
  cr_assert_eq(a.frames + b.frames, 0);
  cr_assert_eq(stats(&a).peer_connects + stats(&b).peer_connects, 0);
  node_stop(&a);
  node_stop(&b);
}

Test(net, undeclared_peer_is_refused) {
  tnode a, b;
  char nowhere[TP_ADDR_MAX];
  closed_port_addr(nowhere, sizeof nowhere);
  node_start(&a, CLUSTER, 1, "127.0.0.1:0");
  node_start(&b, CLUSTER, 2, "127.0.0.1:0");
  cr_assert_eq(tp_net_add_peer(a.n, 2, b.peer_addr), RK_OK);
  cr_assert_eq(tp_net_add_peer(b.n, 3, nowhere), RK_OK); /* b does not know node 1 */
  PUMP_UNTIL(stats(&b).bad_handshakes >= 2, 5000, &a, &b);
  cr_assert_geq(stats(&b).bad_handshakes, 2);
  cr_assert_eq(a.ups + b.ups, 0, "the acceptor does not answer a refused peer");
  cr_assert(!tp_net_peer_connected(a.n, 2));
  node_stop(&a);
  node_stop(&b);
}

/* The dialer checks that the acceptor is the node it meant to reach. */
Test(net, dialer_refuses_wrong_node_at_address) {
  tnode a, b;
  node_start(&a, CLUSTER, 1, "127.0.0.1:0");
  node_start(&b, CLUSTER, 2, "127.0.0.1:0");
  cr_assert_eq(tp_net_add_peer(a.n, 3, b.peer_addr), RK_OK); /* node 2 listens there */
  cr_assert_eq(tp_net_add_peer(b.n, 1, a.peer_addr), RK_OK);
  PUMP_UNTIL(stats(&a).bad_handshakes >= 1, 5000, &a, &b);
  cr_assert_geq(stats(&a).bad_handshakes, 1);
  cr_assert_eq(a.ups, 0);
  cr_assert(!tp_net_peer_connected(a.n, 3));
  node_stop(&a);
  node_stop(&b);
}

/* A higher id dialing a lower one breaks the lower-dials rule: refused. */
Test(net, higher_id_must_not_dial) {
  tnode a;
  node_start(&a, CLUSTER, 1, "127.0.0.1:0");
  cr_assert_eq(tp_net_add_peer(a.n, 2, "127.0.0.1:1"), RK_OK); /* a dials 2 */
  tp_net_config cfg;
  tp_net_config_default(&cfg);
  cfg.cluster_id = CLUSTER;
  cfg.node_id = 2;
  tnode b;
  memset(&b, 0, sizeof b);
  /* b has no listener and pretends to be a dialer by declaring itself to a
   * "node 3" that lives at a's address: b dials (2 < 3), a sees node 2. */
  node_start_cfg(&b, &cfg);
  cr_assert_eq(tp_net_add_peer(b.n, 3, a.peer_addr), RK_OK);
  PUMP_UNTIL(stats(&a).bad_handshakes >= 1, 5000, &a, &b);
  cr_assert_geq(stats(&a).bad_handshakes, 1);
  cr_assert_eq(a.ups + b.ups, 0);
  node_stop(&a);
  node_stop(&b);
}

Test(net, queue_bound_while_peer_down) {
  tnode a;
  char nowhere[TP_ADDR_MAX];
  closed_port_addr(nowhere, sizeof nowhere);
  memset(&a, 0, sizeof a);
  tp_net_config cfg;
  tp_net_config_default(&cfg);
  cfg.cluster_id = CLUSTER;
  cfg.node_id = 1;
  cfg.peer_listen = "127.0.0.1:0";
  cfg.max_payload = 1u << 20;
  node_start_cfg(&a, &cfg);
  cr_assert_eq(tp_net_add_peer(a.n, 2, nowhere), RK_OK);
  uint8_t *buf = calloc(1, (1u << 20) + 1);
  cr_assert_not_null(buf);
  for (int i = 0; i < 100; i++) {
    pump(&a, NULL);
    cr_assert_eq(tp_net_send_peer(a.n, 2, TP_FRAME_RAFT_BATCH, buf, 1000), RK_EAGAIN);
  }
  cr_assert_eq(tp_net_send_peer(a.n, 2, TP_FRAME_RAFT_BATCH, buf, (1u << 20) + 1), RK_ETOOLARGE);
  tp_net_stats s = stats(&a);
  cr_assert_eq(s.frames_dropped, 100);
  cr_assert_eq(s.peer_connects, 0);
  cr_assert_eq(tp_net_peer_queued_bytes(a.n, 2), 0);
  free(buf);
  node_stop(&a);
}

Test(net, queue_bound_when_peer_stops_reading) {
  tnode a, b;
  memset(&a, 0, sizeof a);
  tp_net_config cfg;
  tp_net_config_default(&cfg);
  cfg.cluster_id = CLUSTER;
  cfg.node_id = 1;
  cfg.peer_listen = "127.0.0.1:0";
  const uint64_t qmax = 256u << 10;
  cfg.peer_queue_bytes = qmax;
  node_start_cfg(&a, &cfg);
  node_start(&b, CLUSTER, 2, "127.0.0.1:0");
  connect_pair(&a, &b);

  /* b stops polling: its kernel buffers fill, then a's queue, then drops. */
  enum { FRAME = 64 << 10 };
  uint8_t *buf = calloc(1, FRAME);
  cr_assert_not_null(buf);
  uint32_t accepted = 0;
  int dropped = 0;
  for (int i = 0; i < 8192 && !dropped; i++) {
    uint32_t seq = accepted;
    memcpy(buf, &seq, 4);
    int rc = tp_net_send_peer(a.n, 2, TP_FRAME_RAFT_BATCH, buf, FRAME);
    cr_assert(rc == RK_OK || rc == RK_EAGAIN, "rc %d", rc);
    if (rc == RK_OK) accepted++;
    if (rc == RK_EAGAIN) dropped = 1;
    cr_assert_leq(tp_net_peer_queued_bytes(a.n, 2), qmax, "the send queue stays within its bound");
    cr_assert_eq(tp_net_poll(a.n, 0), RK_OK);
  }
  cr_assert(dropped, "a peer that does not read makes sends drop (accepted %u)", accepted);
  cr_assert_geq(stats(&a).frames_dropped, 1);
  cr_assert(tp_net_peer_connected(a.n, 2), "dropping is not disconnecting");

  /* b reads again: every accepted frame arrives, in order. */
  PUMP_UNTIL(b.frames == (int)accepted, 10000, &a, &b);
  cr_assert_eq(b.frames, (int)accepted);
  cr_assert_eq(b.out_of_order, 0);
  cr_assert_eq(tp_net_peer_queued_bytes(a.n, 2), 0);
  cr_assert_eq(tp_net_send_peer(a.n, 2, TP_FRAME_RAFT_BATCH, buf, FRAME), RK_OK);
  free(buf);
  node_stop(&a);
  node_stop(&b);
}

typedef struct watch_ctx {
  int fd;
  int calls;
} watch_ctx;

static void on_watch(void *ctx) {
  watch_ctx *w = ctx;
  uint64_t v;
  cr_assert_eq(read(w->fd, &v, sizeof v), (ssize_t)sizeof v);
  w->calls++;
}

Test(net, watched_fd_runs_its_callback) {
  tnode a;
  node_start(&a, CLUSTER, 1, "127.0.0.1:0");
  watch_ctx w = {.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)};
  cr_assert_geq(w.fd, 0);
  cr_assert_eq(tp_net_watch_fd(a.n, w.fd, on_watch, &w), RK_OK);
  cr_assert_eq(tp_net_watch_fd(a.n, w.fd, on_watch, &w), RK_EEXIST);
  uint64_t one = 1;
  cr_assert_eq(write(w.fd, &one, sizeof one), (ssize_t)sizeof one);
  PUMP_UNTIL(w.calls == 1, 3000, &a, NULL);
  cr_assert_eq(w.calls, 1);
  cr_assert_eq(write(w.fd, &one, sizeof one), (ssize_t)sizeof one);
  PUMP_UNTIL(w.calls == 2, 3000, &a, NULL);
  cr_assert_eq(w.calls, 2);

  /* A blocking wait returns as soon as the watched fd fires. */
  cr_assert_eq(write(w.fd, &one, sizeof one), (ssize_t)sizeof one);
  cr_assert_eq(tp_net_poll(a.n, 10000), RK_OK);
  cr_assert_eq(w.calls, 3);

  cr_assert_eq(tp_net_unwatch_fd(a.n, w.fd), RK_OK);
  cr_assert_eq(tp_net_unwatch_fd(a.n, w.fd), RK_ENOTFOUND);
  cr_assert_eq(write(w.fd, &one, sizeof one), (ssize_t)sizeof one);
  for (int i = 0; i < 5; i++) cr_assert_eq(tp_net_poll(a.n, 0), RK_OK);
  cr_assert_eq(w.calls, 3, "no callback after unwatch");
  close(w.fd);
  node_stop(&a);
}

static int raw_connect(const char *addr) {
  struct sockaddr_storage ss;
  socklen_t sl;
  cr_assert_eq(tp_addr_resolve(addr, 0, &ss, &sl), RK_OK);
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  cr_assert_geq(fd, 0);
  int rc = connect(fd, (struct sockaddr *)&ss, sl);
  cr_assert(rc == 0 || errno == EINPROGRESS);
  return fd;
}

/* 1 once the other side closed fd (EOF or reset). Never blocks. */
static int raw_closed(int fd) {
  uint8_t buf[512];
  ssize_t r;
  while ((r = recv(fd, buf, sizeof buf, MSG_DONTWAIT)) > 0) {
  }
  return r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

Test(net, silent_connections_time_out) {
  tp_net_handshake_timeout_ms_ = 200;
  tnode a;
  node_start(&a, CLUSTER, 1, "127.0.0.1:0");
  /* Inbound on both ports, saying nothing. */
  int c1 = raw_connect(tp_net_client_addr(a.n));
  int c2 = raw_connect(a.peer_addr);
  PUMP_UNTIL(stats(&a).handshake_timeouts >= 2, 5000, &a, NULL);
  cr_assert_eq(stats(&a).handshake_timeouts, 2);
  PUMP_UNTIL(raw_closed(c1) && raw_closed(c2), 3000, &a, NULL);
  cr_assert(raw_closed(c1) && raw_closed(c2));
  close(c1);
  close(c2);

  /* Outbound: a listener that never answers (the kernel completes the
   * connect from its backlog): the dialer gives up and dials again. */
  int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  cr_assert_eq(bind(l, (struct sockaddr *)&sa, sizeof sa), 0);
  cr_assert_eq(listen(l, 16), 0);
  socklen_t sl = sizeof sa;
  cr_assert_eq(getsockname(l, (struct sockaddr *)&sa, &sl), 0);
  char addr[TP_ADDR_MAX];
  snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned)ntohs(sa.sin_port));
  cr_assert_eq(tp_net_add_peer(a.n, 2, addr), RK_OK);
  PUMP_UNTIL(stats(&a).handshake_timeouts >= 4, 5000, &a, NULL);
  cr_assert_geq(stats(&a).handshake_timeouts, 4, "timed out, redialed, timed out again");
  cr_assert_eq(a.ups, 0);
  close(l);
  node_stop(&a);
}

static int open_fds(void) {
  int n = 0;
  for (int fd = 0; fd < 1024; fd++)
    if (fcntl(fd, F_GETFD) >= 0) n = fd + 1;
  return n;
}

/* Out of file descriptors: accept fails, the listener rests instead of
 * spinning, and accepts again once descriptors are available. */
Test(net, accept_survives_fd_exhaustion) {
  tnode a;
  node_start(&a, CLUSTER, 1, "127.0.0.1:0");
  int fds[4];
  for (int i = 0; i < 4; i++) fds[i] = raw_connect(tp_net_client_addr(a.n));
  struct rlimit old;
  cr_assert_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
  struct rlimit low = old;
  low.rlim_cur = (rlim_t)open_fds() + 1; /* room for one accepted socket */
  cr_assert_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
  for (int i = 0; i < 20; i++) cr_assert_eq(tp_net_poll(a.n, 5), RK_OK);
  cr_assert_eq(stats(&a).clients_total, 1, "one accepted, then EMFILE");
  cr_assert_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
  PUMP_UNTIL(stats(&a).clients_total == 4, 5000, &a, NULL);
  cr_assert_eq(stats(&a).clients_total, 4, "accepting resumes");
  for (int i = 0; i < 4; i++) close(fds[i]);
  node_stop(&a);
}

Test(net, address_parsing) {
  char host[TP_ADDR_MAX], port[8];
  cr_assert_eq(tp_addr_split("127.0.0.1:80", host, port), RK_OK);
  cr_assert_str_eq(host, "127.0.0.1");
  cr_assert_str_eq(port, "80");
  cr_assert_eq(tp_addr_split("[::1]:0", host, port), RK_OK);
  cr_assert_str_eq(host, "::1");
  cr_assert_str_eq(port, "0");
  cr_assert_eq(tp_addr_split(":7000", host, port), RK_OK);
  cr_assert_str_eq(host, "");
  cr_assert_eq(tp_addr_split("localhost:65535", host, port), RK_OK);
  const char *bad[] = {
      "",       "host",     "host:",
      "::1:80", "[::1]80",  "h:65536",
      "h:12a",  "h:123456", "a-very-long-host-name-that-goes-on-and-on-and-on-and-on-and-on:1"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    cr_assert_eq(tp_addr_split(bad[i], host, port), RK_EINVAL, "%s", bad[i]);
  cr_assert_eq(tp_addr_split(NULL, host, port), RK_EINVAL);

  struct sockaddr_storage ss;
  socklen_t sl;
  char out[TP_ADDR_MAX];
  cr_assert_eq(tp_addr_resolve("localhost:1234", 0, &ss, &sl), RK_OK);
  cr_assert_eq(tp_addr_format((struct sockaddr *)&ss, out, sizeof out), RK_OK);
  cr_assert_str_eq(out, "127.0.0.1:1234", "IPv4 is preferred");
  cr_assert_eq(tp_addr_resolve("[::1]:9", 0, &ss, &sl), RK_OK);
  cr_assert_eq(tp_addr_format((struct sockaddr *)&ss, out, sizeof out), RK_OK);
  cr_assert_str_eq(out, "[::1]:9");
  cr_assert_eq(tp_addr_resolve("no.such.host.invalid:1", 0, &ss, &sl), RK_ENOTFOUND);

  tp_net_config cfg;
  tp_net_config_default(&cfg);
  cfg.cluster_id = CLUSTER;
  cfg.node_id = 1;
  cfg.max_payload = 100;
  tp_net *n;
  cr_assert_eq(tp_net_new(&n, &cfg, NULL), RK_EINVAL, "too small to carry a handshake");
  cfg.max_payload = TP_FRAME_MAX_PAYLOAD_CAP + 1;
  cr_assert_eq(tp_net_new(&n, &cfg, NULL), RK_EINVAL);
}

/* A client that dribbles its bytes one at a time: frames are reassembled
 * across any number of reads. */
Test(net, frames_arrive_byte_by_byte) {
  tnode a;
  node_start(&a, CLUSTER, 1, "127.0.0.1:0");
  int fd = raw_connect(tp_net_client_addr(a.n));
  uint8_t buf[512];
  size_t hlen;
  tp_handshake me = {.cluster_id = CLUSTER, .protocol_version = TP_PROTOCOL_VERSION};
  cr_assert_eq(tp_handshake_encode(&me, buf, sizeof buf, &hlen), RK_OK);
  const char *body = "one byte at a time";
  uint32_t blen = (uint32_t)strlen(body);
  memcpy(buf + hlen + TP_FRAME_HEADER_SIZE, body, blen);
  cr_assert_eq(tp_frame_encode_header(buf + hlen, TP_FRAME_CLIENT_REQUEST,
                                      buf + hlen + TP_FRAME_HEADER_SIZE, blen,
                                      TP_FRAME_DEFAULT_MAX_PAYLOAD),
               RK_OK);
  size_t total = hlen + TP_FRAME_HEADER_SIZE + blen;
  for (size_t i = 0; i < total; i++) {
    uint64_t dl = deadline_after(3000);
    while (send(fd, buf + i, 1, MSG_NOSIGNAL) != 1 && rk_clock_mono_ns() < dl) pump(&a, NULL);
    for (int k = 0; k < 3; k++) cr_assert_eq(tp_net_poll(a.n, 0), RK_OK);
  }
  PUMP_UNTIL(a.client_frames == 1, 3000, &a, NULL);
  cr_assert_eq(a.client_frames, 1);
  cr_assert_eq(a.last_client, 1);
  cr_assert_eq(a.last_client_len, blen);
  cr_assert_eq(stats(&a).bad_frames + stats(&a).bad_handshakes, 0);
  close(fd);
  node_stop(&a);
}

/* ---- dialing by host name (resolve.h) ----------------------------------- */

static int release_pipe[2] = {-1, -1};
static atomic_int lookups;
static char lookup_target[TP_ADDR_MAX];

/* Stands in for getaddrinfo on the resolver's workers: a name under
 * "hangs." is counted and waits until the test writes a byte to
 * release_pipe (never, if it does not), then answers with lookup_target's
 * address; any other name is looked up as usual. */
static int held_lookup(const char *addr, int passive, struct sockaddr_storage *ss, socklen_t *len) {
  if (strncmp(addr, "hangs.", 6) != 0) return tp_addr_resolve(addr, passive, ss, len);
  atomic_fetch_add(&lookups, 1);
  char c;
  while (read(release_pipe[0], &c, 1) < 0 && errno == EINTR) {
  }
  return tp_addr_resolve(lookup_target, passive, ss, len);
}

static int failed_lookup(const char *addr, int passive, struct sockaddr_storage *ss,
                         socklen_t *len) {
  (void)addr, (void)passive, (void)ss, (void)len;
  atomic_fetch_add(&lookups, 1);
  return RK_ENOTFOUND;
}

/* "name:port" with the port of a numeric "ip:port". */
static void named_addr(char *out, size_t cap, const char *name, const char *numeric) {
  const char *colon = strrchr(numeric, ':');
  cr_assert_not_null(colon);
  snprintf(out, cap, "%s%s", name, colon);
}

static void pump3(tnode *a, tnode *b, tnode *c) {
  pump(a, b);
  pump(c, NULL);
}

Test(net, a_peer_named_by_host_name_is_dialed) {
  tnode a, b;
  node_start(&a, CLUSTER, 1, "127.0.0.1:0");
  node_start(&b, CLUSTER, 2, "127.0.0.1:0");
  char name[TP_ADDR_MAX];
  named_addr(name, sizeof name, "localhost", b.peer_addr);
  cr_assert_eq(tp_net_add_peer(a.n, 2, name), RK_OK);
  cr_assert_eq(tp_net_add_peer(b.n, 1, a.peer_addr), RK_OK);
  PUMP_UNTIL(tp_net_peer_connected(a.n, 2) && tp_net_peer_connected(b.n, 1), 5000, &a, &b);
  cr_assert(tp_net_peer_connected(a.n, 2), "dialed %s", name);
  cr_assert_eq(tp_net_send_peer(a.n, 2, TP_FRAME_RAFT_BATCH, (const uint8_t *)"\0\0\0\0x", 5),
               RK_OK);
  PUMP_UNTIL(b.frames == 1, 3000, &a, &b);
  cr_assert_eq(b.frames, 1);
  node_stop(&a);
  node_stop(&b);
}

/* Node 1 dials node 2 by a name whose lookup hangs, then node 3 by another
 * name: with the lookup on the loop, the first tp_net_poll would never
 * return; with one resolver worker, node 3's lookup would wait behind it. */
Test(net, a_hung_name_lookup_does_not_stall_the_loop, .timeout = 30) {
  cr_assert_eq(pipe(release_pipe), 0);
  tnode a, b, c;
  node_start(&b, CLUSTER, 2, "127.0.0.1:0");
  node_start(&c, CLUSTER, 3, "127.0.0.1:0");
  snprintf(lookup_target, sizeof lookup_target, "%s", b.peer_addr);
  tp_resolver_lookup_ = held_lookup;
  node_start(&a, CLUSTER, 1, "127.0.0.1:0");
  char name[TP_ADDR_MAX];
  named_addr(name, sizeof name, "hangs.invalid", b.peer_addr);
  char name3[TP_ADDR_MAX];
  named_addr(name3, sizeof name3, "localhost", c.peer_addr);
  cr_assert_eq(tp_net_add_peer(a.n, 2, name), RK_OK);
  cr_assert_eq(tp_net_add_peer(a.n, 3, name3), RK_OK);
  cr_assert_eq(tp_net_add_peer(b.n, 1, a.peer_addr), RK_OK);
  cr_assert_eq(tp_net_add_peer(c.n, 1, a.peer_addr), RK_OK);
  uint64_t dl = deadline_after(5000);
  while (!(tp_net_peer_connected(a.n, 3) && atomic_load(&lookups) == 1) && rk_clock_mono_ns() < dl)
    pump3(&a, &b, &c);
  cr_assert_eq(atomic_load(&lookups), 1, "the lookup started and hangs");
  cr_assert(tp_net_peer_connected(a.n, 3), "node 3 is reached meanwhile");
  cr_assert_eq(tp_net_send_peer(a.n, 3, TP_FRAME_RAFT_BATCH, (const uint8_t *)"\0\0\0\0x", 5),
               RK_OK);
  dl = deadline_after(3000);
  while (c.frames == 0 && rk_clock_mono_ns() < dl) pump3(&a, &b, &c);
  cr_assert_eq(c.frames, 1);
  cr_assert(!tp_net_peer_connected(a.n, 2));
  cr_assert_eq(write(release_pipe[1], "x", 1), 1); /* the lookup answers */
  dl = deadline_after(5000);
  while (!(tp_net_peer_connected(a.n, 2) && tp_net_peer_connected(b.n, 1)) &&
         rk_clock_mono_ns() < dl)
    pump3(&a, &b, &c);
  cr_assert(tp_net_peer_connected(a.n, 2), "node 2 is dialed once its lookup is back");
  cr_assert_eq(atomic_load(&lookups), 1);
  node_stop(&a);
  node_stop(&b);
  node_stop(&c);
}

Test(net, a_failed_name_lookup_is_retried) {
  tp_resolver_lookup_ = failed_lookup;
  tnode a;
  node_start(&a, CLUSTER, 1, "127.0.0.1:0");
  cr_assert_eq(tp_net_add_peer(a.n, 2, "nowhere.invalid:7000"), RK_OK);
  PUMP_UNTIL(atomic_load(&lookups) >= 3, 5000, &a, NULL);
  cr_assert_geq(atomic_load(&lookups), 3, "looked up again after each failure");
  cr_assert(!tp_net_peer_connected(a.n, 2));
  node_stop(&a);
}
