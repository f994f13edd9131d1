/* Client-port tests: a tp_net node runs its loop in a server thread (the
 * blocking tp_conn calls need someone to answer); the test thread plays
 * clients — real tp_conn ones and raw sockets writing bad bytes. All sockets
 * on 127.0.0.1, port 0. Waits are bounded loops on a condition. */
#include "common/rk_clock.h"
#include "common/rk_err.h"
#include "transport/net.h"
#include "transport/net_int.h"

#include <criterion/criterion.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CLUSTER 0xc1c1ull

typedef struct server {
  tp_net *n;
  pthread_t th;
  atomic_int stop;
  char client_addr[TP_ADDR_MAX];
  char peer_addr[TP_ADDR_MAX];
  pthread_mutex_t mu; /* guards everything below */
  tp_net_stats st;    /* snapshot after every poll */
  uint64_t conns[16]; /* ids seen in on_client_frame, in order of first frame */
  int nconns;
  uint64_t closed[16];
  int nclosed;
  int frames;
  int flood_result; /* rk code of the last send in a flood */
} server;

static void note_conn(server *s, uint64_t conn) {
  for (int i = 0; i < s->nconns; i++)
    if (s->conns[i] == conn) return;
  if (s->nconns < 16) s->conns[s->nconns++] = conn;
}

/* Echoes every request as a response; "flood" answers with 64 KiB responses
 * until the transport refuses; "close" makes the node close the connection. */
static void on_client_frame(void *ctx, uint64_t conn, uint16_t type, const uint8_t *p,
                            uint32_t len) {
  server *s = ctx;
  (void)type;
  pthread_mutex_lock(&s->mu);
  note_conn(s, conn);
  s->frames++;
  pthread_mutex_unlock(&s->mu);
  if (len == 5 && memcmp(p, "flood", 5) == 0) {
    static uint8_t big[64 << 10];
    int rc = RK_OK;
    for (int i = 0; i < 100000 && rc == RK_OK; i++)
      rc = tp_net_send_client(s->n, conn, TP_FRAME_CLIENT_RESPONSE, big, sizeof big);
    pthread_mutex_lock(&s->mu);
    s->flood_result = rc;
    pthread_mutex_unlock(&s->mu);
    return;
  }
  if (len == 5 && memcmp(p, "close", 5) == 0) {
    tp_net_close_client(s->n, conn);
    return;
  }
  int rc = tp_net_send_client(s->n, conn, TP_FRAME_CLIENT_RESPONSE, p, len);
  cr_assert_eq(rc, RK_OK);
}

static void on_client_closed(void *ctx, uint64_t conn) {
  server *s = ctx;
  pthread_mutex_lock(&s->mu);
  if (s->nclosed < 16) s->closed[s->nclosed++] = conn;
  pthread_mutex_unlock(&s->mu);
}

static void *server_main(void *arg) {
  server *s = arg;
  while (!atomic_load(&s->stop)) {
    if (tp_net_poll(s->n, 5) != RK_OK) abort();
    pthread_mutex_lock(&s->mu);
    tp_net_get_stats(s->n, &s->st);
    pthread_mutex_unlock(&s->mu);
  }
  return NULL;
}

static void server_start_cfg(server *s, tp_net_config *cfg) {
  memset(s, 0, sizeof *s);
  pthread_mutex_init(&s->mu, NULL);
  tp_net_callbacks cb = {
      .ctx = s, .on_client_frame = on_client_frame, .on_client_closed = on_client_closed};
  cr_assert_eq(tp_net_new(&s->n, cfg, &cb), RK_OK);
  snprintf(s->client_addr, sizeof s->client_addr, "%s", tp_net_client_addr(s->n));
  snprintf(s->peer_addr, sizeof s->peer_addr, "%s", tp_net_peer_addr(s->n));
  cr_assert_eq(pthread_create(&s->th, NULL, server_main, s), 0);
}

static void server_config(tp_net_config *cfg) {
  tp_net_config_default(cfg);
  cfg->cluster_id = CLUSTER;
  cfg->node_id = 1;
  cfg->peer_listen = "127.0.0.1:0";
  cfg->client_listen = "127.0.0.1:0";
}

static void server_start(server *s) {
  tp_net_config cfg;
  server_config(&cfg);
  server_start_cfg(s, &cfg);
}

static void server_stop(server *s) {
  atomic_store(&s->stop, 1);
  pthread_join(s->th, NULL);
  tp_net_free(s->n);
  pthread_mutex_destroy(&s->mu);
}

static tp_net_stats server_stats(server *s) {
  pthread_mutex_lock(&s->mu);
  tp_net_stats st = s->st;
  pthread_mutex_unlock(&s->mu);
  return st;
}

static int server_nclosed(server *s) {
  pthread_mutex_lock(&s->mu);
  int n = s->nclosed;
  pthread_mutex_unlock(&s->mu);
  return n;
}

static void nap(void) {
  struct timespec ts = {0, 1000000};
  nanosleep(&ts, NULL);
}

/* Re-evaluates cond (under no lock: use the accessors) until true or ms. */
#define WAIT_UNTIL(cond, ms)                                                                       \
  do {                                                                                             \
    uint64_t dl_ = rk_clock_mono_ns() + (uint64_t)(ms)*1000000ull;                                 \
    while (!(cond) && rk_clock_mono_ns() < dl_) nap();                                             \
  } while (0)

static int raw_connect(const char *addr) {
  struct sockaddr_storage ss;
  socklen_t sl;
  cr_assert_eq(tp_addr_resolve(addr, 0, &ss, &sl), RK_OK);
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  cr_assert_geq(fd, 0);
  cr_assert_eq(connect(fd, (struct sockaddr *)&ss, sl), 0);
  return fd;
}

static void raw_write(int fd, const void *p, size_t len) {
  cr_assert_eq(send(fd, p, len, MSG_NOSIGNAL), (ssize_t)len);
}

/* Reads until EOF/reset (1) or the deadline (0). */
static int raw_wait_closed(int fd, int ms) {
  uint64_t dl = rk_clock_mono_ns() + (uint64_t)ms * 1000000ull;
  uint8_t buf[4096];
  while (rk_clock_mono_ns() < dl) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 10) <= 0) continue;
    ssize_t r = recv(fd, buf, sizeof buf, 0);
    if (r <= 0) return 1;
  }
  return 0;
}

static void echo_ok(tp_conn *c, const char *msg) {
  uint32_t len = (uint32_t)strlen(msg);
  cr_assert_eq(tp_conn_send(c, TP_FRAME_CLIENT_REQUEST, (const uint8_t *)msg, len, 2000), RK_OK);
  uint16_t type;
  const uint8_t *p;
  uint32_t plen;
  cr_assert_eq(tp_conn_recv(c, &type, &p, &plen, 5000), RK_OK);
  cr_assert_eq(type, TP_FRAME_CLIENT_RESPONSE);
  cr_assert_eq(plen, len);
  cr_assert_eq(memcmp(p, msg, len), 0);
}

Test(net_client, request_response_round_trip) {
  server s;
  server_start(&s);
  tp_conn *c;
  tp_handshake hs;
  cr_assert_eq(tp_conn_open(&c, s.client_addr, CLUSTER, 3000, &hs), RK_OK);
  cr_assert_eq(hs.cluster_id, CLUSTER);
  cr_assert_eq(hs.node_id, 1);
  cr_assert_str_eq(hs.client_addr, s.client_addr, "the node advertises its client address");
  echo_ok(c, "ping");
  echo_ok(c, "a second request");

  /* Several requests in flight, then their responses in order. */
  char msg[32];
  for (int i = 0; i < 20; i++) {
    snprintf(msg, sizeof msg, "req-%d", i);
    cr_assert_eq(
        tp_conn_send(c, TP_FRAME_CLIENT_REQUEST, (const uint8_t *)msg, (uint32_t)strlen(msg), 2000),
        RK_OK);
  }
  for (int i = 0; i < 20; i++) {
    uint16_t type;
    const uint8_t *p;
    uint32_t len;
    cr_assert_eq(tp_conn_recv(c, &type, &p, &len, 5000), RK_OK);
    snprintf(msg, sizeof msg, "req-%d", i);
    cr_assert_eq(len, strlen(msg));
    cr_assert_eq(memcmp(p, msg, len), 0);
  }

  /* A large request and its large echo. */
  uint32_t big = 5u << 20;
  uint8_t *buf = malloc(big);
  cr_assert_not_null(buf);
  for (uint32_t i = 0; i < big; i++) buf[i] = (uint8_t)(i * 31u + 7u);
  cr_assert_eq(tp_conn_send(c, TP_FRAME_CLIENT_REQUEST, buf, big, 10000), RK_OK);
  uint16_t type;
  const uint8_t *p;
  uint32_t len;
  cr_assert_eq(tp_conn_recv(c, &type, &p, &len, 10000), RK_OK);
  cr_assert_eq(len, big);
  cr_assert_eq(memcmp(p, buf, big), 0);
  free(buf);
  echo_ok(c, "small after big");

  /* A second client gets the next id; ids are never reused. */
  tp_conn *c2;
  cr_assert_eq(tp_conn_open(&c2, s.client_addr, 0, 3000, NULL), RK_OK, "cluster 0 = any");
  echo_ok(c2, "from two");
  tp_conn_close(c);
  WAIT_UNTIL(server_nclosed(&s) == 1, 3000);
  cr_assert_eq(server_nclosed(&s), 1);
  tp_conn_close(c2);
  WAIT_UNTIL(server_nclosed(&s) == 2, 3000);
  pthread_mutex_lock(&s.mu);
  cr_assert_eq(s.nconns, 2);
  cr_assert_eq(s.conns[0], 1, "conn ids start at 1");
  cr_assert_eq(s.conns[1], 2);
  cr_assert_eq(s.closed[0], 1);
  cr_assert_eq(s.closed[1], 2);
  pthread_mutex_unlock(&s.mu);
  WAIT_UNTIL(server_stats(&s).clients_open == 0, 3000);
  tp_net_stats st = server_stats(&s);
  cr_assert_eq(st.clients_total, 2);
  cr_assert_eq(st.clients_open, 0);
  cr_assert_eq(st.bad_frames + st.bad_handshakes, 0);
  server_stop(&s);
}

Test(net_client, recv_times_out_and_connection_stays_usable) {
  server s;
  server_start(&s);
  tp_conn *c;
  cr_assert_eq(tp_conn_open(&c, s.client_addr, CLUSTER, 3000, NULL), RK_OK);
  uint16_t type;
  const uint8_t *p;
  uint32_t len;
  cr_assert_eq(tp_conn_recv(c, &type, &p, &len, 50), RK_ETIMEOUT);
  cr_assert_eq(tp_conn_recv(c, &type, &p, &len, 0), RK_ETIMEOUT);
  echo_ok(c, "still works");
  tp_conn_close(c);
  server_stop(&s);
}

Test(net_client, node_closes_connection) {
  server s;
  server_start(&s);
  tp_conn *c;
  cr_assert_eq(tp_conn_open(&c, s.client_addr, CLUSTER, 3000, NULL), RK_OK);
  cr_assert_eq(tp_conn_send(c, TP_FRAME_CLIENT_REQUEST, (const uint8_t *)"close", 5, 2000), RK_OK);
  uint16_t type;
  const uint8_t *p;
  uint32_t len;
  cr_assert_eq(tp_conn_recv(c, &type, &p, &len, 5000), RK_ECLOSED);
  cr_assert_eq(tp_conn_recv(c, &type, &p, &len, 100), RK_ECLOSED);
  tp_conn_close(c);
  WAIT_UNTIL(server_nclosed(&s) == 1, 3000);
  cr_assert_eq(server_nclosed(&s), 1, "on_client_closed also when the node closed it");
  server_stop(&s);
}

Test(net_client, open_closed_port_is_eclosed) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
  socklen_t sl = sizeof sa;
  cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
  close(fd);
  char addr[TP_ADDR_MAX];
  snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned)ntohs(sa.sin_port));
  tp_conn *c = (tp_conn *)&fd;
  cr_assert_eq(tp_conn_open(&c, addr, CLUSTER, 2000, NULL), RK_ECLOSED);
  cr_assert_null(c);
  cr_assert_eq(tp_conn_open(&c, "bad address", CLUSTER, 2000, NULL), RK_EINVAL);
}

/* A listener that accepts but never answers: the handshake wait times out. */
Test(net_client, open_silent_listener_times_out) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
  cr_assert_eq(listen(fd, 4), 0);
  socklen_t sl = sizeof sa;
  cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
  char addr[TP_ADDR_MAX];
  snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned)ntohs(sa.sin_port));
  tp_conn *c;
  cr_assert_eq(tp_conn_open(&c, addr, CLUSTER, 100, NULL), RK_ETIMEOUT);
  close(fd);
}

Test(net_client, wrong_cluster_is_told) {
  server s;
  server_start(&s);
  tp_conn *c;
  tp_handshake hs;
  cr_assert_eq(tp_conn_open(&c, s.client_addr, CLUSTER + 1, 3000, &hs), RK_EWRONGCLUSTER);
  WAIT_UNTIL(server_stats(&s).bad_handshakes >= 1, 3000);
  cr_assert_eq(server_stats(&s).bad_handshakes, 1);
  /* The node keeps serving the right cluster. */
  cr_assert_eq(tp_conn_open(&c, s.client_addr, CLUSTER, 3000, NULL), RK_OK);
  echo_ok(c, "right cluster");
  tp_conn_close(c);
  server_stop(&s);
}

Test(net_client, client_on_peer_port_is_refused) {
  server s;
  server_start(&s);
  tp_conn *c;
  cr_assert_eq(tp_conn_open(&c, s.peer_addr, CLUSTER, 3000, NULL), RK_ECLOSED);
  WAIT_UNTIL(server_stats(&s).bad_handshakes >= 1, 3000);
  cr_assert_eq(server_stats(&s).bad_handshakes, 1);
  server_stop(&s);
}

/* Garbage, a wrong magic, a bad checksum, an oversize header, a request
 * before the handshake: each closes only its own connection. */
Test(net_client, bad_input_closes_only_that_connection) {
  server s;
  tp_net_config cfg;
  server_config(&cfg);
  cfg.max_payload = 64u << 10;
  server_start_cfg(&s, &cfg);
  tp_conn *good;
  cr_assert_eq(tp_conn_open(&good, s.client_addr, CLUSTER, 3000, NULL), RK_OK);
  echo_ok(good, "before");

  uint8_t hs[256];
  size_t hslen;
  tp_handshake me = {.cluster_id = CLUSTER, .protocol_version = TP_PROTOCOL_VERSION};
  cr_assert_eq(tp_handshake_encode(&me, hs, sizeof hs, &hslen), RK_OK);
  uint8_t frame[64];
  const uint8_t body[8] = "12345678";
  memcpy(frame + TP_FRAME_HEADER_SIZE, body, sizeof body);
  cr_assert_eq(tp_frame_encode_header(frame, TP_FRAME_CLIENT_REQUEST, body, sizeof body,
                                      TP_FRAME_DEFAULT_MAX_PAYLOAD),
               RK_OK);
  size_t flen = TP_FRAME_HEADER_SIZE + sizeof body;

  uint64_t bad_frames = 0, bad_hs = 0;
  for (int round = 0; round < 7; round++) {
    int fd = raw_connect(s.client_addr);
    switch (round) {
    case 0: raw_write(fd, "GET / HTTP/1.0\r\n\r\n", 18); break; /* wrong magic */
    case 1: {
      uint8_t junk[100];
      for (int i = 0; i < 100; i++) junk[i] = (uint8_t)(i * 37 + 11);
      raw_write(fd, hs, hslen);
      raw_write(fd, junk, sizeof junk);
      break;
    }
    case 2: { /* bad checksum after a good handshake */
      uint8_t f[64];
      memcpy(f, frame, flen);
      f[flen - 1] ^= 1;
      raw_write(fd, hs, hslen);
      raw_write(fd, f, flen);
      break;
    }
    case 3: { /* header announcing 1 MiB over a 64 KiB limit */
      uint8_t h[TP_FRAME_HEADER_SIZE];
      uint8_t *pl = calloc(1, 1u << 20);
      cr_assert_not_null(pl);
      cr_assert_eq(tp_frame_encode_header(h, TP_FRAME_CLIENT_REQUEST, pl, 1u << 20,
                                          TP_FRAME_DEFAULT_MAX_PAYLOAD),
                   RK_OK);
      free(pl);
      raw_write(fd, hs, hslen);
      raw_write(fd, h, sizeof h);
      break;
    }
    case 4: raw_write(fd, frame, flen); break; /* a request instead of a handshake */
    case 5: {                                  /* a second handshake */
      raw_write(fd, hs, hslen);
      raw_write(fd, hs, hslen);
      break;
    }
    case 6: { /* before the handshake, 8 KiB is already too large */
      uint8_t h[TP_FRAME_HEADER_SIZE];
      uint8_t *pl = calloc(1, 8u << 10);
      cr_assert_not_null(pl);
      cr_assert_eq(
          tp_frame_encode_header(h, TP_FRAME_HANDSHAKE, pl, 8u << 10, TP_FRAME_DEFAULT_MAX_PAYLOAD),
          RK_OK);
      free(pl);
      raw_write(fd, h, sizeof h);
      break;
    }
    }
    if (round == 4)
      bad_hs++;
    else
      bad_frames++;
    cr_assert(raw_wait_closed(fd, 5000), "round %d: the node closes the connection", round);
    close(fd);
    WAIT_UNTIL(server_stats(&s).bad_frames == bad_frames &&
                   server_stats(&s).bad_handshakes == bad_hs,
               3000);
    tp_net_stats st = server_stats(&s);
    cr_assert_eq(st.bad_frames, bad_frames, "round %d", round);
    cr_assert_eq(st.bad_handshakes, bad_hs, "round %d", round);
    echo_ok(good, "still serving");
  }

  /* tp_conn itself: an oversize request closes that connection. */
  tp_conn *c;
  cr_assert_eq(tp_conn_open(&c, s.client_addr, CLUSTER, 3000, NULL), RK_OK);
  uint8_t *pl = calloc(1, 100u << 10);
  cr_assert_not_null(pl);
  int rc = tp_conn_send(c, TP_FRAME_CLIENT_REQUEST, pl, 100u << 10, 3000);
  cr_assert(rc == RK_OK || rc == RK_ECLOSED, "rc %d", rc);
  free(pl);
  uint16_t type;
  const uint8_t *p;
  uint32_t len;
  cr_assert_eq(tp_conn_recv(c, &type, &p, &len, 5000), RK_ECLOSED);
  tp_conn_close(c);
  echo_ok(good, "after");
  tp_conn_close(good);
  server_stop(&s);
}

/* A client that sends requests but never reads its responses is closed once
 * they exceed client_queue_bytes: the node never grows without bound. */
Test(net_client, client_not_reading_is_disconnected) {
  server s;
  tp_net_config cfg;
  server_config(&cfg);
  cfg.client_queue_bytes = 256u << 10;
  server_start_cfg(&s, &cfg);
  tp_conn *c;
  cr_assert_eq(tp_conn_open(&c, s.client_addr, CLUSTER, 3000, NULL), RK_OK);
  cr_assert_eq(tp_conn_send(c, TP_FRAME_CLIENT_REQUEST, (const uint8_t *)"flood", 5, 2000), RK_OK);
  WAIT_UNTIL(server_stats(&s).clients_overflowed == 1, 10000);
  tp_net_stats st = server_stats(&s);
  cr_assert_eq(st.clients_overflowed, 1);
  pthread_mutex_lock(&s.mu);
  cr_assert_eq(s.flood_result, RK_ECLOSED);
  pthread_mutex_unlock(&s.mu);
  WAIT_UNTIL(server_nclosed(&s) == 1, 3000);
  cr_assert_eq(server_nclosed(&s), 1);
  tp_conn_close(c);
  server_stop(&s);
}

typedef struct worker {
  const char *addr;
  int id;
  int ok;
} worker;

static void *worker_main(void *arg) {
  worker *w = arg;
  tp_conn *c;
  if (tp_conn_open(&c, w->addr, CLUSTER, 5000, NULL) != RK_OK) return NULL;
  char msg[64];
  for (int i = 0; i < 300; i++) {
    int len = snprintf(msg, sizeof msg, "worker %d request %d", w->id, i);
    if (tp_conn_send(c, TP_FRAME_CLIENT_REQUEST, (const uint8_t *)msg, (uint32_t)len, 5000) !=
        RK_OK)
      break;
    uint16_t type;
    const uint8_t *p;
    uint32_t plen;
    if (tp_conn_recv(c, &type, &p, &plen, 5000) != RK_OK) break;
    if (plen != (uint32_t)len || memcmp(p, msg, plen) != 0) break;
    w->ok++;
  }
  tp_conn_close(c);
  return NULL;
}

Test(net_client, many_clients_at_once) {
  server s;
  server_start(&s);
  enum { W = 8 };
  pthread_t th[W];
  worker w[W];
  for (int i = 0; i < W; i++) {
    w[i] = (worker){.addr = s.client_addr, .id = i};
    cr_assert_eq(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
  }
  for (int i = 0; i < W; i++) pthread_join(th[i], NULL);
  for (int i = 0; i < W; i++) cr_assert_eq(w[i].ok, 300, "worker %d", i);
  WAIT_UNTIL(server_nclosed(&s) == W, 5000);
  cr_assert_eq(server_nclosed(&s), W);
  tp_net_stats st = server_stats(&s);
  cr_assert_eq(st.clients_total, W);
  cr_assert_eq(st.bad_frames + st.bad_handshakes, 0);
  server_stop(&s);
}
