/* transport/resolve.h — peer host names resolved off the event loop
 * (prefix tp_resolver_).
 *
 * getaddrinfo on a host name can block for the system resolver's whole
 * timeout (seconds per attempt, several attempts) while DNS is slow or
 * down. On a node's one event loop that would stall every range it hosts,
 * so tp_net resolves numeric addresses inline and hands names to this
 * resolver: a few worker threads take lookups in submission order, and
 * results are posted back through an eventfd the loop watches. One lookup
 * stuck on a dead DNS server holds only its own worker. The threads start
 * with the resolver and own nothing the loop touches: requests and results
 * cross under one mutex.
 *
 * Loop contract (one thread):
 *   tp_resolver_submit(r, tag, addr)      a lookup is queued
 *   tp_resolver_fd(r) readable            then tp_resolver_take until 0
 *   tp_resolver_free(r)                   does not wait for a lookup in
 *                                         progress: the workers finish and
 *                                         the last one frees what is left
 */
#ifndef RK_TRANSPORT_RESOLVE_H
#define RK_TRANSPORT_RESOLVE_H

#include <stdint.h>
#include <sys/socket.h>

typedef struct tp_resolver tp_resolver;

/* One finished lookup. rc is RK_OK (ss/len set), RK_ENOTFOUND or RK_EINVAL. */
typedef struct tp_resolved {
  uint64_t tag;
  int rc;
  struct sockaddr_storage ss;
  socklen_t len;
} tp_resolved;

/* RK_OK, RK_ENOMEM, or the errno-mapped failure of eventfd/pthread_create. */
int tp_resolver_new(tp_resolver **out);
void tp_resolver_free(tp_resolver *r);
/* Readable while results wait to be taken (level-triggered: watch EPOLLIN). */
int tp_resolver_fd(const tp_resolver *r);
/* Queues a lookup of addr ("host:port", as tp_addr_split takes) under tag.
 * RK_OK or RK_ENOMEM. */
int tp_resolver_submit(tp_resolver *r, uint64_t tag, const char *addr);
/* 1 and *out filled with the oldest finished lookup, or 0 if none. */
int tp_resolver_take(tp_resolver *r, tp_resolved *out);

/* Test hook: what the worker calls to resolve (default tp_addr_resolve).
 * Set before the resolver is created; tests use it to hold a lookup. */
extern int (*tp_resolver_lookup_)(const char *addr, int passive, struct sockaddr_storage *ss,
                                  socklen_t *len);

#endif
