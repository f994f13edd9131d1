/* transport/net_int.h — internals shared by net.c (the node's event loop),
 * conn.c (the blocking client connection) and the transport unit tests.
 * Nothing outside transport/ and tests/unit/transport/ includes this.
 */
#ifndef RK_TRANSPORT_NET_INT_H
#define RK_TRANSPORT_NET_INT_H

#include <stddef.h>
#include <stdint.h>
#include <netdb.h>
#include <sys/socket.h>

#include "transport/net.h"

/* An inbound connection (peer or client port) and an outbound dial must
 * complete their handshake within this long, or they are closed. */
#define TP_HANDSHAKE_TIMEOUT_MS 5000
/* The value tp_net_new uses; tests lower it (each Criterion test runs in its
 * own process). */
extern uint32_t tp_net_handshake_timeout_ms_;

/* Splits "host:port" / "[v6]:port" / ":port" into host (may be "") and
 * port (decimal, 0..65535). RK_EINVAL if it is not of that shape. */
int tp_addr_split(const char *addr, char host[TP_ADDR_MAX], char port[8]);
/* getaddrinfo over a "host:port" (TCP). passive: an empty host means the
 * wildcard address, else loopback. RK_EINVAL (bad syntax), RK_ENOTFOUND
 * (cannot resolve). The caller frees *res with freeaddrinfo. */
int tp_addr_lookup(const char *addr, int passive, struct addrinfo **res);
/* tp_addr_resolve (net.h) for a numeric host only ("" is loopback): never
 * asks DNS. RK_EAGAIN if the host is a name, which needs a lookup. */
int tp_addr_resolve_numeric(const char *addr, struct sockaddr_storage *ss, socklen_t *len);
/* TCP_NODELAY; failure only costs latency, so it is not reported. */
void tp_sock_nodelay(int fd);
/* Closes the connection once the other end's kernel has acknowledged
 * nothing for timeout_ms: TCP_USER_TIMEOUT, and keepalive probes (from a
 * quarter of it idle, then every eighth, at least 1 s apart) so an idle
 * connection is checked too. Best effort like TCP_NODELAY: without it a
 * vanished host is noticed late, not wrongly. */
void tp_sock_timeout(int fd, uint32_t timeout_ms);

#endif
