/* GET /metrics on real nodes (--metrics-listen 127.0.0.1:0: each node binds
 * a free port and names it in its ready line). The exposition parses, the
 * gauges agree with the cluster (every node holds every range's replica;
 * the leaders sum to the range count), and requests other than GET
 * /metrics get their HTTP error. */
#include "itest.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static void fini(void) { it_fini(); }

TestSuite(metrics, .fini = fini);

/* The port in node i's "metrics=127.0.0.1:PORT" ready line, 0 if none. */
static unsigned metrics_port(int i) {
  FILE *f = fopen(itc.nodes[i].out_path, "r");
  if (f == NULL) return 0;
  char line[512];
  unsigned port = 0;
  while (fgets(line, sizeof line, f)) {
    const char *m = strstr(line, " metrics=127.0.0.1:");
    if (m) port = (unsigned)atoi(m + strlen(" metrics=127.0.0.1:"));
  }
  fclose(f);
  return port;
}

/* Sends req to port, returns the whole response (malloc'd, NUL-ended). */
static char *http(unsigned port, const char *req) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  cr_assert_geq(fd, 0);
  struct timeval tv = {.tv_sec = 5};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0, "connect to metrics port %u", port);
  cr_assert_eq(write(fd, req, strlen(req)), (ssize_t)strlen(req));
  size_t cap = 1 << 16, len = 0;
  char *buf = malloc(cap);
  cr_assert_not_null(buf);
  ssize_t r;
  while ((r = read(fd, buf + len, cap - 1 - len)) > 0) len += (size_t)r;
  close(fd);
  buf[len] = '\0';
  return buf;
}

/* The value of an unlabelled sample `name` in body; -1 if absent. Every
 * sample line must be "name value" or "name{labels} value" with a number. */
static long long sample(const char *body, const char *name) {
  long long v = -1;
  const char *p = strstr(body, "\r\n\r\n");
  cr_assert_not_null(p, "a header/body boundary");
  for (p += 4; *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : p + strlen(p)) {
    if (*p == '#' || *p == '\n') continue;
    const char *sp = strchr(p, ' ');
    cr_assert_not_null(sp, "a sample line with a value: %.40s", p);
    char *end = NULL;
    long long x = strtoll(sp + 1, &end, 10);
    cr_assert(end != sp + 1 && (*end == '\n' || *end == '\0'), "a number: %.40s", p);
    size_t nl = strlen(name);
    if ((size_t)(sp - p) == nl && memcmp(p, name, nl) == 0) v = x;
  }
  return v;
}

Test(metrics, every_node_serves_metrics_that_agree_with_the_cluster) {
  itc.extra[0] = "--metrics-listen";
  itc.extra[1] = "127.0.0.1:0";
  itc.n_extra = 2;
  it_start(3);
  /* Every range has a leader once a write to each went through. */
  rkc_client *c = it_client(-1, 10000);
  char k[64];
  for (unsigned i = 0; i < 64; i++) {
    it_key(k, sizeof k, "m", i);
    IT_PUT_OK(c, k, "v");
  }
  rkc_close(c);
  long long leaders = 0;
  uint64_t until = itc_now_ns() + 20000000000ull;
  do {
    leaders = 0;
    for (int i = 0; i < 3; i++) {
      unsigned port = metrics_port(i);
      cr_assert_neq(port, 0, "node %d names its metrics address", i + 1);
      char *r = http(port, "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
      cr_assert(strncmp(r, "HTTP/1.1 200 OK\r\n", 17) == 0, "%.60s", r);
      cr_assert_not_null(strstr(r, "Content-Type: text/plain; version=0.0.4"));
      cr_assert_eq(sample(r, "rangekv_replicas"), IT_RANGES);
      cr_assert_gt(sample(r, "rangekv_wal_fsyncs_total"), 0);
      cr_assert_geq(sample(r, "rangekv_applied_entries_total"), 0);
      cr_assert_eq(sample(r, "rangekv_snapshots_installed_total"), 0);
      cr_assert_eq(sample(r, "rangekv_snapshot_staged_bytes"), 0);
      cr_assert_eq(sample(r, "rangekv_snapshot_streams"), 0);
      cr_assert_eq(sample(r, "rangekv_snapshot_aborts_sent_total"), 0);
      cr_assert_eq(sample(r, "rangekv_peer_timeouts_total"), 0, "no peer went silent");
      cr_assert_eq(sample(r, "rangekv_raft_bad_input_total"), 0, "healthy peers send nothing bad");
      cr_assert_eq(sample(r, "rangekv_raft_appends_dropped_total"), 0);
      cr_assert_geq(sample(r, "rangekv_metrics_requests_total"), 1, "this request counts");
      char info[64];
      snprintf(info, sizeof info, "rangekv_node_info{node=\"%u\"", itc.nodes[i].id);
      cr_assert_not_null(strstr(r, info));
      leaders += sample(r, "rangekv_leaders");
      free(r);
    }
    if (leaders != IT_RANGES) itc_sleep_ms(50);
  } while (leaders != IT_RANGES && itc_now_ns() < until);
  cr_assert_eq(leaders, IT_RANGES, "every range led by exactly one node");
  unsigned port = metrics_port(0);
  char *r = http(port, "GET /other HTTP/1.1\r\n\r\n");
  cr_assert(strncmp(r, "HTTP/1.1 404 ", 13) == 0, "%.60s", r);
  free(r);
  r = http(port, "DELETE /metrics HTTP/1.1\r\n\r\n");
  cr_assert(strncmp(r, "HTTP/1.1 405 ", 13) == 0, "%.60s", r);
  free(r);
  r = http(port, "\x01\x02 junk\r\n\r\n");
  cr_assert(strncmp(r, "HTTP/1.1 400 ", 13) == 0, "%.60s", r);
  free(r);
  static char big[4096 + 1]; /* exactly the limit: nothing left unread at close */
  memset(big, 'a', sizeof big - 1);
  r = http(port, big); /* no end of headers within the limit */
  cr_assert(strncmp(r, "HTTP/1.1 431 ", 13) == 0, "%.60s", r);
  free(r);
}
