/* transport/net.c — the node's TCP event loop (see net.h for the contract).
 *
 * One epoll instance, level-triggered, non-blocking sockets. Every epoll
 * registration carries a pointer to an object whose first member is an
 * ev_src tag: a listener, a connection or a watched fd.
 *
 * Connection lifecycle (state -> what moves it on):
 *
 *   dial:   CONNECTING --connect done, our handshake queued--> HANDSHAKE
 *   accept:                                                    HANDSHAKE
 *   HANDSHAKE --their handshake verified--> OPEN     (on_peer_up / client id)
 *   any     --EOF, error, bad input, timeout, replaced--> DEAD
 *
 *   Lists: n->pend holds CONNECTING/HANDSHAKE (they have a deadline),
 *   n->open holds OPEN, n->dead holds DEAD until the end of tp_net_poll.
 *
 * Handshake order: the dialer (lower node id) or the client speaks first;
 * the acceptor answers with its own handshake only once the other side's
 * is verified — or when only the cluster id was wrong, so that the other
 * side can say "wrong cluster" instead of "connection closed". A dialer thus
 * never sees a peer "up" that refused it.
 *
 * Lifetime rule: a DEAD connection's socket is closed at once, its send queue
 * freed, but the struct and its read buffer live until reap() at the end of
 * tp_net_poll, because a callback running on a frame that points into that
 * buffer may be what closed it, and later events of the same epoll batch may
 * still name it. on_client_closed is called from reap(), never from inside
 * tp_net_send_client/tp_net_close_client.
 *
 * Write path: sends append a frame (header + copied payload) to the
 * connection's queue and put the connection on n->flush; the queue is written
 * with sendmsg (gathering up to TP_IOV_MAX frames) at the start and end of
 * each tp_net_poll, so frames queued by one loop iteration leave in as few
 * syscalls as possible. EPOLLOUT is armed only while a queue is non-empty
 * after such a write.
 */
#include "transport/net_loop_int.h"

#include "common/rk_assert.h"
#include "common/rk_err.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

uint32_t tp_net_handshake_timeout_ms_ = TP_HANDSHAKE_TIMEOUT_MS;

/* ---- peers: dialing ----------------------------------------------------- */

static void peer_unresolved(tp_net *n, peer *p, int rc, uint64_t now) {
  RK_WARN("transport", "cannot resolve peer %u address %s: %s", p->node, p->addr, rk_strerror(rc));
  tp_nc_schedule_dial(n, p, now);
}

/* Hands p's host name to the resolver thread (started on first use). */
static int peer_lookup(tp_net *n, peer *p) {
  if (n->res == NULL) {
    tp_resolver *r;
    int rc = tp_resolver_new(&r);
    if (rc != RK_OK) return rc;
    n->res_ev.kind = EV_RESOLVER;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &n->res_ev};
    if (epoll_ctl(n->epfd, EPOLL_CTL_ADD, tp_resolver_fd(r), &ev) != 0) {
      rc = rk_err_from_errno(errno);
      tp_resolver_free(r);
      return rc;
    }
    n->res = r;
  }
  int rc = tp_resolver_submit(n->res, p->node, p->addr);
  if (rc == RK_OK) p->resolving = 1;
  return rc;
}

static void peer_dial(tp_net *n, peer *p, uint64_t now) {
  RK_ASSERT(p->dialer && p->conn == NULL && !p->resolving);
  struct sockaddr_storage ss;
  socklen_t sl;
  int rc;
  if (p->have_addr) {
    /* A name's fresh lookup, used once: every dial looks the name up again,
     * so a peer that moved is found at its new address. */
    ss = p->ss;
    sl = p->sl;
    p->have_addr = 0;
    rc = RK_OK;
  } else {
    rc = tp_addr_resolve_numeric(p->addr, &ss, &sl);
    if (rc == RK_EAGAIN) {
      rc = peer_lookup(n, p);
      if (rc == RK_OK) return; /* dials when the lookup is back */
    }
  }
  if (rc != RK_OK) {
    peer_unresolved(n, p, rc, now);
    return;
  }
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    RK_WARN("transport", "socket() for peer %u: %s", p->node, strerror(errno));
    tp_nc_schedule_dial(n, p, now);
    return;
  }
  tp_sock_nodelay(fd);
  tp_sock_timeout(fd, n->peer_timeout_ms);
  conn_state st = CS_CONNECTING;
  if (connect(fd, (struct sockaddr *)&ss, sl) == 0) {
    st = CS_HANDSHAKE;
  } else if (errno != EINPROGRESS && errno != EINTR) {
    RK_DEBUG("transport", "connect to peer %u at %s: %s", p->node, p->addr, strerror(errno));
    close(fd);
    tp_nc_schedule_dial(n, p, now);
    return;
  }
  conn *c = tp_nc_new(n, fd, CK_PEER_OUT, st, now);
  if (c == NULL) {
    close(fd);
    tp_nc_schedule_dial(n, p, now);
    return;
  }
  c->peer = p;
  p->conn = c;
  RK_DEBUG("transport", "dialing peer %u at %s", p->node, p->addr);
  if (st == CS_HANDSHAKE) {
    if (tp_nc_send_handshake(n, c) != RK_OK)
      tp_nc_close(n, c, RK_LOG_WARN, "out of memory queueing the handshake");
    else
      tp_nc_flush(n, c);
  }
}

/* Lookups that came back: each peer dials at once, or backs off. */
static void resolver_on_readable(tp_net *n) {
  tp_resolved r;
  while (tp_resolver_take(n->res, &r)) {
    peer *p = tp_nc_find_peer(n, r.tag);
    RK_ASSERT(p != NULL && p->resolving && p->conn == NULL);
    p->resolving = 0;
    if (r.rc != RK_OK) {
      peer_unresolved(n, p, r.rc, now_ns());
      continue;
    }
    p->ss = r.ss;
    p->sl = r.len;
    p->have_addr = 1;
    peer_dial(n, p, now_ns());
  }
}

/* ---- listeners ---------------------------------------------------------- */

static int listener_arm(tp_net *n, listener *l, uint32_t events) {
  struct epoll_event ev = {.events = events, .data.ptr = &l->ev};
  return epoll_ctl(n->epfd, EPOLL_CTL_MOD, l->fd, &ev) == 0 ? RK_OK : rk_err_from_errno(errno);
}

static int listener_open(tp_net *n, listener *l, int is_peer, const char *addr) {
  const char *what = is_peer ? "peer" : "client";
  struct sockaddr_storage ss;
  socklen_t sl;
  int rc = tp_addr_resolve(addr, 1, &ss, &sl);
  if (rc != RK_OK) {
    RK_ERROR("transport", "cannot listen for %ss on %s: %s", what, addr, rk_strerror(rc));
    return RK_EIO;
  }
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) goto fail;
  int one = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) goto fail_fd;
  if (bind(fd, (struct sockaddr *)&ss, sl) != 0) goto fail_fd;
  if (listen(fd, SOMAXCONN) != 0) goto fail_fd;
  sl = sizeof ss;
  if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) goto fail_fd;
  if (tp_addr_format((struct sockaddr *)&ss, l->addr, sizeof l->addr) != RK_OK) {
    errno = EINVAL;
    goto fail_fd;
  }
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &l->ev};
  if (epoll_ctl(n->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) goto fail_fd;
  l->fd = fd;
  l->is_peer = is_peer;
  RK_INFO("transport", "listening for %ss on %s", what, l->addr);
  return RK_OK;
fail_fd:;
  int e = errno;
  close(fd);
  errno = e;
fail:
  RK_ERROR("transport", "cannot listen for %ss on %s: %s", what, addr, strerror(errno));
  return RK_EIO;
}

static void listener_on_readable(tp_net *n, listener *l) {
  uint64_t now = now_ns();
  for (int i = 0; i < TP_ACCEPT_BUDGET; i++) {
    int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      /* EMFILE, ENFILE, ENOBUFS, ENOMEM...: the listener stays readable, so
       * rest it a little rather than spin. */
      RK_WARN("transport", "accept on %s: %s (pausing %d ms)", l->addr, strerror(errno),
              TP_LISTEN_PAUSE_MS);
      if (listener_arm(n, l, 0) == RK_OK)
        l->paused_until = now + (uint64_t)TP_LISTEN_PAUSE_MS * NS_PER_MS;
      return;
    }
    tp_sock_nodelay(fd);
    tp_sock_timeout(fd, l->is_peer ? n->peer_timeout_ms : n->client_timeout_ms);
    if (tp_nc_new(n, fd, l->is_peer ? CK_PEER_IN : CK_CLIENT, CS_HANDSHAKE, now) == NULL) close(fd);
  }
}

/* ---- timers ------------------------------------------------------------- */

static void run_timers(tp_net *n, uint64_t now) {
  for (tp_list *e = n->pend.next; e != &n->pend;) {
    conn *c = LIST_ENTRY(e, conn, link);
    e = e->next; /* closing c moves it to n->dead; nothing else changes */
    if (now >= c->deadline_ns) {
      n->st.handshake_timeouts++;
      tp_nc_close(n, c, RK_LOG_WARN, "no handshake within %u ms", n->handshake_timeout_ms);
    }
  }
  for (size_t i = 0; i < n->npeers; i++) {
    peer *p = n->peers[i];
    if (p->dialer && p->conn == NULL && !p->resolving && now >= p->next_dial_ns)
      peer_dial(n, p, now);
  }
  listener *ls[2] = {&n->lpeer, &n->lclient};
  for (int i = 0; i < 2; i++) {
    listener *l = ls[i];
    if (l->fd >= 0 && l->paused_until != 0 && now >= l->paused_until) {
      if (listener_arm(n, l, EPOLLIN) == RK_OK) l->paused_until = 0;
    }
  }
}

static uint64_t next_deadline(tp_net *n) {
  uint64_t next = UINT64_MAX;
  for (tp_list *e = n->pend.next; e != &n->pend; e = e->next) {
    const conn *c = LIST_ENTRY(e, conn, link);
    if (c->deadline_ns < next) next = c->deadline_ns;
  }
  for (size_t i = 0; i < n->npeers; i++) {
    const peer *p = n->peers[i];
    if (p->dialer && p->conn == NULL && !p->resolving && p->next_dial_ns < next)
      next = p->next_dial_ns;
  }
  if (n->lpeer.paused_until != 0 && n->lpeer.paused_until < next) next = n->lpeer.paused_until;
  if (n->lclient.paused_until != 0 && n->lclient.paused_until < next)
    next = n->lclient.paused_until;
  return next;
}

static void flush_all(tp_net *n) {
  while (!list_empty(&n->flush)) tp_nc_flush(n, LIST_ENTRY(n->flush.next, conn, flink));
}

/* Frees what died; tells the node about closed clients. */
static void reap(tp_net *n) {
  while (!list_empty(&n->dead)) {
    conn *c = LIST_ENTRY(n->dead.next, conn, link);
    list_del(&c->link);
    if (c->kind == CK_CLIENT && c->id != 0 && n->cb.on_client_closed)
      n->cb.on_client_closed(n->cb.ctx, c->id);
    free(c->rbuf);
    free(c);
  }
  while (n->dead_watches) {
    watch *w = n->dead_watches;
    n->dead_watches = w->next_dead;
    free(w);
  }
}

/* ---- public API --------------------------------------------------------- */

void tp_net_config_default(tp_net_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->max_payload = TP_FRAME_DEFAULT_MAX_PAYLOAD;
  cfg->peer_queue_bytes = 64ull << 20;
  cfg->client_queue_bytes = 64ull << 20;
  cfg->reconnect_min_ms = 50;
  cfg->reconnect_max_ms = 2000;
  cfg->peer_timeout_ms = 10000;
  cfg->client_timeout_ms = 60000;
}

int tp_net_new(tp_net **out, const tp_net_config *cfg, const tp_net_callbacks *cb) {
  *out = NULL;
  /* A payload limit under 1 KiB could not even carry a handshake. */
  if (cfg->cluster_id == 0 || cfg->node_id == 0 || cfg->max_payload > TP_FRAME_MAX_PAYLOAD_CAP ||
      (cfg->max_payload != 0 && cfg->max_payload < TP_HANDSHAKE_MAX_PAYLOAD))
    return RK_EINVAL;
  tp_net *n = calloc(1, sizeof *n);
  if (n == NULL) return RK_ENOMEM;
  tp_net_config d;
  tp_net_config_default(&d);
  n->cluster_id = cfg->cluster_id;
  n->node_id = cfg->node_id;
  /* Zero means "default" for the numbers, so a zeroed config still works. */
  n->max_payload = cfg->max_payload ? cfg->max_payload : d.max_payload;
  n->peer_qmax = cfg->peer_queue_bytes ? cfg->peer_queue_bytes : d.peer_queue_bytes;
  n->client_qmax = cfg->client_queue_bytes ? cfg->client_queue_bytes : d.client_queue_bytes;
  n->reconnect_min_ms = cfg->reconnect_min_ms ? cfg->reconnect_min_ms : d.reconnect_min_ms;
  n->reconnect_max_ms = cfg->reconnect_max_ms ? cfg->reconnect_max_ms : d.reconnect_max_ms;
  if (n->reconnect_max_ms < n->reconnect_min_ms) n->reconnect_max_ms = n->reconnect_min_ms;
  n->peer_timeout_ms = cfg->peer_timeout_ms ? cfg->peer_timeout_ms : d.peer_timeout_ms;
  n->client_timeout_ms = cfg->client_timeout_ms ? cfg->client_timeout_ms : d.client_timeout_ms;
  n->handshake_timeout_ms = tp_net_handshake_timeout_ms_;
  if (cb) n->cb = *cb;
  n->next_client_id = 1;
  n->lpeer.ev.kind = n->lclient.ev.kind = EV_LISTENER;
  n->lpeer.fd = n->lclient.fd = -1;
  list_init(&n->pend);
  list_init(&n->open);
  list_init(&n->dead);
  list_init(&n->flush);
  int rc;
  n->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (n->epfd < 0) {
    rc = rk_err_from_errno(errno);
    free(n);
    return rc;
  }
  if (cfg->peer_listen && (rc = listener_open(n, &n->lpeer, 1, cfg->peer_listen)) != RK_OK)
    goto fail;
  if (cfg->client_listen && (rc = listener_open(n, &n->lclient, 0, cfg->client_listen)) != RK_OK)
    goto fail;
  tp_handshake hs;
  memset(&hs, 0, sizeof hs);
  hs.cluster_id = n->cluster_id;
  hs.node_id = n->node_id;
  hs.protocol_version = TP_PROTOCOL_VERSION;
  const char *adv = cfg->client_advertise ? cfg->client_advertise : n->lclient.addr;
  if (strlen(adv) >= sizeof hs.client_addr) {
    RK_ERROR("transport", "client advertise address too long: %s", adv);
    rc = RK_EINVAL;
    goto fail;
  }
  strcpy(hs.client_addr, adv);
  rc = tp_handshake_encode(&hs, n->hs_frame, sizeof n->hs_frame, &n->hs_len);
  if (rc != RK_OK) goto fail;
  *out = n;
  return RK_OK;
fail:
  tp_net_free(n);
  return rc;
}

static void conn_free_list(tp_list *head) {
  while (!list_empty(head)) {
    conn *c = LIST_ENTRY(head->next, conn, link);
    list_del(&c->link);
    if (c->fd >= 0) close(c->fd);
    tp_nc_wq_free(c);
    free(c->rbuf);
    free(c);
  }
}

void tp_net_free(tp_net *n) {
  if (n == NULL) return;
  RK_ASSERT(!n->in_poll);
  conn_free_list(&n->pend);
  conn_free_list(&n->open);
  conn_free_list(&n->dead);
  for (size_t i = 0; i < n->npeers; i++) free(n->peers[i]);
  free(n->peers);
  free(n->clients);
  for (size_t i = 0; i < n->nwatches; i++) free(n->watches[i]);
  free(n->watches);
  while (n->dead_watches) {
    watch *w = n->dead_watches;
    n->dead_watches = w->next_dead;
    free(w);
  }
  if (n->lpeer.fd >= 0) close(n->lpeer.fd);
  if (n->lclient.fd >= 0) close(n->lclient.fd);
  if (n->epfd >= 0) close(n->epfd);
  tp_resolver_free(n->res); /* a lookup in progress finishes on its own */
  free(n);
}

const char *tp_net_peer_addr(const tp_net *n) { return n->lpeer.addr; }
const char *tp_net_client_addr(const tp_net *n) { return n->lclient.addr; }

int tp_net_add_peer(tp_net *n, uint32_t node, const char *addr) {
  char host[TP_ADDR_MAX], port[8];
  if (node == 0 || node == n->node_id) return RK_EINVAL;
  if (tp_addr_split(addr, host, port) != RK_OK) return RK_EINVAL;
  if (tp_nc_find_peer(n, node)) return RK_EEXIST;
  if (n->npeers == n->cap_peers) {
    size_t cap = n->cap_peers ? 2 * n->cap_peers : 8;
    peer **t = realloc(n->peers, cap * sizeof *t);
    if (t == NULL) return RK_ENOMEM;
    n->peers = t;
    n->cap_peers = cap;
  }
  peer *p = calloc(1, sizeof *p);
  if (p == NULL) return RK_ENOMEM;
  p->node = node;
  p->dialer = n->node_id < node;
  strcpy(p->addr, addr); /* fits: tp_addr_split checked the length */
  p->backoff_ms = n->reconnect_min_ms;
  p->next_dial_ns = now_ns(); /* dial at the next tp_net_poll */
  n->peers[n->npeers++] = p;
  return RK_OK;
}

static int check_frame_args(const tp_net *n, uint16_t type, const uint8_t *payload, uint32_t len) {
  if (type == TP_FRAME_HANDSHAKE || type == 0 || type > TP_FRAME_TYPE_MAX_) return RK_EINVAL;
  if (len > 0 && payload == NULL) return RK_EINVAL;
  if (len > n->max_payload) return RK_ETOOLARGE;
  return RK_OK;
}

int tp_net_send_peer(tp_net *n, uint32_t node, uint16_t type, const uint8_t *payload,
                     uint32_t len) {
  peer *p = tp_nc_find_peer(n, node);
  if (p == NULL) return RK_ENOTFOUND;
  int rc = check_frame_args(n, type, payload, len);
  if (rc != RK_OK) return rc;
  conn *c = p->conn;
  if (c == NULL || c->state != CS_OPEN) {
    n->st.frames_dropped++;
    return RK_EAGAIN;
  }
  uint8_t hdr[TP_FRAME_HEADER_SIZE];
  rc = tp_frame_encode_header(hdr, type, payload, len, n->max_payload);
  RK_ASSERT(rc == RK_OK);
  rc = tp_nc_enqueue(n, c, hdr, sizeof hdr, payload, len, n->peer_qmax);
  if (rc != RK_OK) {
    n->st.frames_dropped++;
    return RK_EAGAIN;
  }
  return RK_OK;
}

int tp_net_send_client(tp_net *n, uint64_t id, uint16_t type, const uint8_t *payload,
                       uint32_t len) {
  conn *c = tp_nc_client_find(n, id);
  if (c == NULL) return RK_ECLOSED;
  RK_ASSERT(c->state == CS_OPEN);
  int rc = check_frame_args(n, type, payload, len);
  if (rc != RK_OK) return rc;
  uint8_t hdr[TP_FRAME_HEADER_SIZE];
  rc = tp_frame_encode_header(hdr, type, payload, len, n->max_payload);
  RK_ASSERT(rc == RK_OK);
  rc = tp_nc_enqueue(n, c, hdr, sizeof hdr, payload, len, n->client_qmax);
  if (rc == RK_OK) return RK_OK;
  if (rc == RK_EAGAIN) {
    n->st.clients_overflowed++;
    tp_nc_close(n, c, RK_LOG_WARN, "not reading: over %llu queued bytes",
                (unsigned long long)n->client_qmax);
  } else if (rc == RK_ENOMEM) {
    /* A client response is never dropped silently: the client must see the
     * connection fail instead. */
    tp_nc_close(n, c, RK_LOG_WARN, "out of memory queueing a response");
  }
  return RK_ECLOSED;
}

void tp_net_close_client(tp_net *n, uint64_t id) {
  conn *c = tp_nc_client_find(n, id);
  if (c == NULL) return;
  tp_nc_flush(n, c); /* best effort: let a final error response out */
  tp_nc_close(n, c, RK_LOG_INFO, "closed by the node");
}

static watch *find_watch(const tp_net *n, int fd, size_t *idx) {
  for (size_t i = 0; i < n->nwatches; i++) {
    if (n->watches[i]->fd == fd) {
      if (idx) *idx = i;
      return n->watches[i];
    }
  }
  return NULL;
}

int tp_net_watch_fd(tp_net *n, int fd, tp_net_fd_fn fn, void *ctx) {
  if (fd < 0 || fn == NULL) return RK_EINVAL;
  if (find_watch(n, fd, NULL)) return RK_EEXIST;
  if (n->nwatches == n->cap_watches) {
    size_t cap = n->cap_watches ? 2 * n->cap_watches : 4;
    watch **t = realloc(n->watches, cap * sizeof *t);
    if (t == NULL) return RK_ENOMEM;
    n->watches = t;
    n->cap_watches = cap;
  }
  watch *w = calloc(1, sizeof *w);
  if (w == NULL) return RK_ENOMEM;
  w->ev.kind = EV_WATCH;
  w->fd = fd;
  w->fn = fn;
  w->ctx = ctx;
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &w->ev};
  if (epoll_ctl(n->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
    int rc = rk_err_from_errno(errno);
    free(w);
    return rc;
  }
  n->watches[n->nwatches++] = w;
  return RK_OK;
}

int tp_net_unwatch_fd(tp_net *n, int fd) {
  size_t i;
  watch *w = find_watch(n, fd, &i);
  if (w == NULL) return RK_ENOTFOUND;
  (void)epoll_ctl(n->epfd, EPOLL_CTL_DEL, fd, NULL); /* EBADF if already closed: fine */
  n->watches[i] = n->watches[--n->nwatches];
  w->dead = 1; /* an event already fetched for it is skipped */
  w->next_dead = n->dead_watches;
  n->dead_watches = w;
  return RK_OK;
}

int tp_net_poll(tp_net *n, int timeout_ms) {
  RK_ASSERTF(!n->in_poll, "tp_net_poll is not reentrant (called from a callback?)");
  n->in_poll = 1;
  uint64_t now = now_ns();
  run_timers(n, now);
  flush_all(n);
  reap(n);

  int t = timeout_ms;
  uint64_t next = next_deadline(n);
  if (next != UINT64_MAX) {
    now = now_ns();
    uint64_t ms = next > now ? (next - now + NS_PER_MS - 1) / NS_PER_MS : 0;
    if (ms > INT_MAX) ms = INT_MAX;
    if (t < 0 || ms < (uint64_t)t) t = (int)ms;
  }
  struct epoll_event evs[TP_EVENTS];
  int rc = RK_OK;
  int nev = epoll_wait(n->epfd, evs, TP_EVENTS, t);
  if (nev < 0) {
    if (errno != EINTR) rc = rk_err_from_errno(errno);
    nev = 0;
  }
  for (int i = 0; i < nev; i++) {
    ev_src *s = evs[i].data.ptr;
    switch (s->kind) {
    case EV_LISTENER: listener_on_readable(n, (listener *)(void *)s); break;
    case EV_CONN: tp_nc_on_event(n, (conn *)(void *)s, evs[i].events); break;
    case EV_RESOLVER: resolver_on_readable(n); break;
    case EV_WATCH: {
      watch *w = (watch *)(void *)s;
      if (!w->dead) w->fn(w->ctx);
      break;
    }
    default: RK_UNREACHABLE();
    }
  }
  run_timers(n, now_ns());
  flush_all(n);
  reap(n);
  flush_all(n); /* what on_client_closed callbacks queued */
  n->in_poll = 0;
  return rc;
}

void tp_net_get_stats(const tp_net *n, tp_net_stats *s) { *s = n->st; }

int tp_net_peer_connected(const tp_net *n, uint32_t node) {
  const peer *p = tp_nc_find_peer(n, node);
  return p != NULL && p->conn != NULL && p->conn->state == CS_OPEN;
}

uint64_t tp_net_peer_queued_bytes(const tp_net *n, uint32_t node) {
  const peer *p = tp_nc_find_peer(n, node);
  return (p && p->conn) ? p->conn->wq_bytes : 0;
}
