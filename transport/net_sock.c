/* transport/net_sock.c — address parsing and small socket helpers shared by
 * the event loop (net.c) and the blocking client connection (conn.c). */
#include "transport/net_int.h"

#include "common/rk_clock.h"
#include "common/rk_err.h"
#include "common/rk_rand.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int tp_addr_split(const char *addr, char host[TP_ADDR_MAX], char port[8]) {
  if (addr == NULL) return RK_EINVAL;
  size_t len = strlen(addr);
  if (len == 0 || len >= TP_ADDR_MAX) return RK_EINVAL;
  const char *h = addr, *p;
  size_t hlen;
  if (addr[0] == '[') {
    const char *rb = strchr(addr, ']');
    if (rb == NULL || rb[1] != ':') return RK_EINVAL;
    h = addr + 1;
    hlen = (size_t)(rb - h);
    p = rb + 2;
  } else {
    const char *colon = strrchr(addr, ':');
    if (colon == NULL) return RK_EINVAL;
    hlen = (size_t)(colon - addr);
    if (memchr(addr, ':', hlen) != NULL) return RK_EINVAL; /* IPv6 needs brackets */
    p = colon + 1;
  }
  size_t plen = strlen(p);
  if (plen == 0 || plen > 5) return RK_EINVAL;
  unsigned v = 0;
  for (size_t i = 0; i < plen; i++) {
    if (p[i] < '0' || p[i] > '9') return RK_EINVAL;
    v = v * 10 + (unsigned)(p[i] - '0');
  }
  if (v > 65535) return RK_EINVAL;
  memcpy(host, h, hlen);
  host[hlen] = '\0';
  memcpy(port, p, plen + 1);
  return RK_OK;
}

/* getaddrinfo over "host:port" with these flags (AI_NUMERICSERV added):
 * RK_OK, RK_EINVAL (bad syntax), or the EAI_ code in *gai. */
static int lookup(const char *addr, int flags, struct addrinfo **res, int *gai) {
  char host[TP_ADDR_MAX], port[8];
  *res = NULL;
  *gai = 0;
  int rc = tp_addr_split(addr, host, port);
  if (rc != RK_OK) return rc;
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_protocol = IPPROTO_TCP;
  hints.ai_flags = AI_NUMERICSERV | flags;
  *gai = getaddrinfo(host[0] ? host : NULL, port, &hints, res);
  if (*gai == 0 && *res == NULL) *gai = EAI_NONAME;
  if (*gai != 0) *res = NULL;
  return RK_OK;
}

int tp_addr_lookup(const char *addr, int passive, struct addrinfo **res) {
  int gai, rc = lookup(addr, passive ? AI_PASSIVE : 0, res, &gai);
  if (rc != RK_OK) return rc;
  return gai == 0 ? RK_OK : RK_ENOTFOUND;
}

/* Keeps the first IPv4 address of res, else its first one. */
static int pick(const struct addrinfo *res, struct sockaddr_storage *ss, socklen_t *len) {
  const struct addrinfo *p = res;
  for (const struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
    if (ai->ai_family == AF_INET) {
      p = ai;
      break;
    }
  }
  if (p == NULL || p->ai_addrlen > sizeof *ss) return RK_EINVAL;
  memset(ss, 0, sizeof *ss);
  memcpy(ss, p->ai_addr, p->ai_addrlen);
  *len = p->ai_addrlen;
  return RK_OK;
}

int tp_addr_resolve(const char *addr, int passive, struct sockaddr_storage *ss, socklen_t *len) {
  struct addrinfo *res;
  int rc = tp_addr_lookup(addr, passive, &res);
  if (rc != RK_OK) return rc;
  rc = pick(res, ss, len);
  freeaddrinfo(res);
  return rc;
}

int tp_addr_resolve_numeric(const char *addr, struct sockaddr_storage *ss, socklen_t *len) {
  struct addrinfo *res;
  int gai, rc = lookup(addr, AI_NUMERICHOST, &res, &gai);
  if (rc != RK_OK) return rc;
  if (gai == EAI_NONAME) return RK_EAGAIN;
  if (gai != 0) return RK_ENOTFOUND;
  rc = pick(res, ss, len);
  freeaddrinfo(res);
  return rc;
}

int tp_addr_format(const struct sockaddr *sa, char *out, size_t cap) {
  char ip[INET6_ADDRSTRLEN];
  int w;
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
    if (inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip) == NULL) return RK_EINVAL;
    w = snprintf(out, cap, "%s:%u", ip, (unsigned)ntohs(in->sin_port));
  } else if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
    if (inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip) == NULL) return RK_EINVAL;
    w = snprintf(out, cap, "[%s]:%u", ip, (unsigned)ntohs(in6->sin6_port));
  } else {
    return RK_EINVAL;
  }
  return (w < 0 || (size_t)w >= cap) ? RK_EINVAL : RK_OK;
}

void tp_sock_nodelay(int fd) {
  int one = 1;
  (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

void tp_sock_timeout(int fd, uint32_t timeout_ms) {
  int one = 1, cnt = 3;
  int idle = (int)(timeout_ms / 4000u), intvl = (int)(timeout_ms / 8000u);
  unsigned ut = timeout_ms;
  if (idle < 1) idle = 1;
  if (intvl < 1) intvl = 1;
  (void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
  (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
  (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
  (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
  (void)setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ut, sizeof ut);
}

int tp_pick_local_port(void) {
  static rk_rand rng;
  static int seeded;
  if (!seeded) {
    rk_rand_seed(&rng, rk_clock_mono_ns() ^ ((uint64_t)getpid() << 32));
    seeded = 1;
  }
  int lo = 32768;
  FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
  if (f) {
    int a, b;
    if (fscanf(f, "%d %d", &a, &b) == 2 && a > 2048) lo = a;
    fclose(f);
  }
  int base = lo > 13024 ? lo - 12000 : 1024;
  for (int tries = 0; tries < 200; tries++) {
    int port = (int)rk_rand_range(&rng, (uint64_t)base, (uint64_t)lo - 1);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    if (ok) return port;
  }
  return -1;
}
