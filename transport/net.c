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
#include "transport/net.h"

#include "common/rk_assert.h"
#include "common/rk_clock.h"
#include "common/rk_err.h"
#include "common/rk_log.h"
#include "transport/net_int.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define TP_RBUF_MIN              (16u << 10) /* first read buffer */
#define TP_RBUF_KEEP             (64u << 10) /* larger empty buffers are released */
#define TP_READ_BUDGET           (1u << 20)  /* bytes read per readiness event (fairness) */
#define TP_ACCEPT_BUDGET         64          /* accepts per readiness event */
#define TP_IOV_MAX               64          /* frames gathered per sendmsg */
#define TP_EVENTS                64          /* epoll events per wait */
#define TP_LISTEN_PAUSE_MS       100         /* listener rest after EMFILE and friends */
#define TP_HS_FRAME_MAX          256         /* our encoded handshake frame */
#define TP_HANDSHAKE_MAX_PAYLOAD 1024u       /* frame limit before the handshake */

#define NS_PER_MS 1000000ull

uint32_t tp_net_handshake_timeout_ms_ = TP_HANDSHAKE_TIMEOUT_MS;

/* ---- intrusive circular list ------------------------------------------- */

typedef struct tp_list {
  struct tp_list *prev, *next;
} tp_list;

static void list_init(tp_list *l) { l->prev = l->next = l; }
static int list_empty(const tp_list *l) { return l->next == l; }
static void list_add_tail(tp_list *head, tp_list *e) {
  e->prev = head->prev;
  e->next = head;
  head->prev->next = e;
  head->prev = e;
}
static void list_del(tp_list *e) {
  e->prev->next = e->next;
  e->next->prev = e->prev;
  list_init(e);
}
#define LIST_ENTRY(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* ---- objects ------------------------------------------------------------ */

typedef enum ev_kind { EV_LISTENER = 1, EV_CONN, EV_WATCH } ev_kind;
typedef struct ev_src {
  ev_kind kind;
} ev_src;

typedef struct listener {
  ev_src ev; /* first member: epoll data points here */
  int fd;
  int is_peer;
  uint64_t paused_until; /* 0: not paused */
  char addr[TP_ADDR_MAX];
} listener;

typedef struct wq_item {
  struct wq_item *next;
  size_t len, off; /* bytes in data[], bytes of it already written */
  uint8_t data[];
} wq_item;

typedef enum conn_kind { CK_PEER_OUT, CK_PEER_IN, CK_CLIENT } conn_kind;
typedef enum conn_state { CS_CONNECTING, CS_HANDSHAKE, CS_OPEN, CS_DEAD } conn_state;

typedef struct peer peer;

typedef struct conn {
  ev_src ev; /* first member */
  int fd;
  conn_kind kind;
  conn_state state;
  uint32_t events;      /* what epoll currently watches */
  peer *peer;           /* peers: set at dial, or once an inbound handshake is verified */
  uint64_t id;          /* clients: id given at handshake (0 before) */
  uint64_t deadline_ns; /* CONNECTING/HANDSHAKE: must be OPEN by then */
  uint8_t *rbuf;
  size_t rlen, rcap;
  size_t need; /* size of the frame being assembled, once its header is in */
  wq_item *wq_head, *wq_tail;
  uint64_t wq_bytes;
  uint64_t wq_frames;
  tp_list link;  /* n->pend, n->open or n->dead */
  tp_list flink; /* n->flush, or self-linked */
} conn;

struct peer {
  uint32_t node;
  int dialer; /* we have the lower id: we dial it */
  char addr[TP_ADDR_MAX];
  conn *conn; /* dialer: the outbound attempt or connection; acceptor: the OPEN one */
  uint32_t backoff_ms;
  uint64_t next_dial_ns; /* dialer with conn == NULL: when to dial */
};

typedef struct watch {
  ev_src ev; /* first member */
  int fd;
  int dead;
  tp_net_fd_fn fn;
  void *ctx;
  struct watch *next_dead;
} watch;

typedef struct client_slot {
  uint64_t id;
  conn *c;
} client_slot;

struct tp_net {
  uint64_t cluster_id;
  uint32_t node_id;
  uint32_t max_payload;
  uint64_t peer_qmax, client_qmax;
  uint32_t reconnect_min_ms, reconnect_max_ms;
  uint32_t handshake_timeout_ms;
  tp_net_callbacks cb;
  int epfd;
  listener lpeer, lclient; /* fd -1 when absent */
  uint8_t hs_frame[TP_HS_FRAME_MAX];
  size_t hs_len;

  peer **peers;
  size_t npeers, cap_peers;
  client_slot *clients; /* sorted by id (ids only grow, so appends keep it sorted) */
  size_t nclients, cap_clients;
  watch **watches;
  size_t nwatches, cap_watches;
  watch *dead_watches;

  tp_list pend, open, dead, flush;
  uint64_t next_client_id;
  int in_poll;
  tp_net_stats st;
};

/* ---- small helpers ------------------------------------------------------ */

static uint64_t now_ns(void) { return rk_clock_mono_ns(); }

static const char *conn_name(const conn *c, char *buf, size_t cap) {
  switch (c->kind) {
  case CK_PEER_OUT: snprintf(buf, cap, "peer %u (dialed)", c->peer->node); break;
  case CK_PEER_IN:
    if (c->peer)
      snprintf(buf, cap, "peer %u (accepted)", c->peer->node);
    else
      snprintf(buf, cap, "inbound peer connection (fd %d)", c->fd);
    break;
  case CK_CLIENT:
    if (c->id)
      snprintf(buf, cap, "client %llu", (unsigned long long)c->id);
    else
      snprintf(buf, cap, "inbound client connection (fd %d)", c->fd);
    break;
  }
  return buf;
}

static peer *find_peer(const tp_net *n, uint64_t node) {
  for (size_t i = 0; i < n->npeers; i++)
    if (n->peers[i]->node == node) return n->peers[i];
  return NULL;
}

static size_t client_lower_bound(const tp_net *n, uint64_t id) {
  size_t lo = 0, hi = n->nclients;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (n->clients[mid].id < id)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

static conn *client_find(const tp_net *n, uint64_t id) {
  size_t i = client_lower_bound(n, id);
  return (i < n->nclients && n->clients[i].id == id) ? n->clients[i].c : NULL;
}

static int client_insert(tp_net *n, conn *c) {
  RK_ASSERT(n->nclients == 0 || n->clients[n->nclients - 1].id < c->id);
  if (n->nclients == n->cap_clients) {
    size_t cap = n->cap_clients ? 2 * n->cap_clients : 16;
    client_slot *t = realloc(n->clients, cap * sizeof *t);
    if (t == NULL) return RK_ENOMEM;
    n->clients = t;
    n->cap_clients = cap;
  }
  n->clients[n->nclients].id = c->id;
  n->clients[n->nclients].c = c;
  n->nclients++;
  return RK_OK;
}

static void client_remove(tp_net *n, uint64_t id) {
  size_t i = client_lower_bound(n, id);
  RK_ASSERT(i < n->nclients && n->clients[i].id == id);
  memmove(&n->clients[i], &n->clients[i + 1], (n->nclients - i - 1) * sizeof n->clients[0]);
  n->nclients--;
}

/* ---- connections -------------------------------------------------------- */

static void conn_close(tp_net *n, conn *c, rk_log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void peer_schedule_dial(tp_net *n, peer *p, uint64_t now) {
  RK_ASSERT(p->dialer && p->conn == NULL);
  p->next_dial_ns = now + (uint64_t)p->backoff_ms * NS_PER_MS;
  uint64_t next = (uint64_t)p->backoff_ms * 2;
  p->backoff_ms = next > n->reconnect_max_ms ? n->reconnect_max_ms : (uint32_t)next;
}

static int conn_set_events(tp_net *n, conn *c) {
  uint32_t want;
  if (c->state == CS_CONNECTING)
    want = EPOLLOUT;
  else
    want = EPOLLIN | (c->wq_head ? (uint32_t)EPOLLOUT : 0u);
  if (want == c->events) return RK_OK;
  struct epoll_event ev = {.events = want, .data.ptr = &c->ev};
  if (epoll_ctl(n->epfd, EPOLL_CTL_MOD, c->fd, &ev) != 0) return rk_err_from_errno(errno);
  c->events = want;
  return RK_OK;
}

static void wq_free(conn *c) {
  wq_item *it = c->wq_head;
  while (it) {
    wq_item *next = it->next;
    free(it);
    it = next;
  }
  c->wq_head = c->wq_tail = NULL;
  c->wq_bytes = 0;
  c->wq_frames = 0;
}

static conn *conn_new(tp_net *n, int fd, conn_kind kind, conn_state state, uint64_t now) {
  conn *c = calloc(1, sizeof *c);
  if (c == NULL) return NULL;
  c->ev.kind = EV_CONN;
  c->fd = fd;
  c->kind = kind;
  c->state = state;
  c->events = state == CS_CONNECTING ? EPOLLOUT : EPOLLIN;
  c->deadline_ns = now + (uint64_t)n->handshake_timeout_ms * NS_PER_MS;
  list_init(&c->flink);
  struct epoll_event ev = {.events = c->events, .data.ptr = &c->ev};
  if (epoll_ctl(n->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
    RK_WARN("transport", "epoll_ctl(add) failed: %s", strerror(errno));
    free(c);
    return NULL;
  }
  list_add_tail(&n->pend, &c->link);
  if (kind == CK_CLIENT) {
    n->st.clients_open++;
    n->st.clients_total++;
  }
  return c;
}

static void conn_close(tp_net *n, conn *c, rk_log_level lvl, const char *fmt, ...) {
  if (c->state == CS_DEAD) return;
  if (rk_log_enabled(lvl)) {
    char name[96], why[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    rk_log_write(lvl, "transport", "closing %s: %s", conn_name(c, name, sizeof name), why);
  }
  int was_open = c->state == CS_OPEN;
  (void)epoll_ctl(n->epfd, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  c->fd = -1;
  c->state = CS_DEAD;
  list_del(&c->link);
  list_add_tail(&n->dead, &c->link);
  list_del(&c->flink);
  if (c->kind == CK_CLIENT) {
    RK_ASSERT(n->st.clients_open > 0);
    n->st.clients_open--;
    if (c->id != 0) client_remove(n, c->id);
  } else {
    n->st.frames_dropped += c->wq_frames; /* accepted, never sent: peer down */
    if (was_open) n->st.peer_disconnects++;
    peer *p = c->peer;
    if (p && p->conn == c) {
      p->conn = NULL;
      if (p->dialer) peer_schedule_dial(n, p, now_ns());
    }
  }
  wq_free(c);
}

/* Writes as much of the queue as the socket takes. May close c. */
static void conn_flush(tp_net *n, conn *c) {
  list_del(&c->flink);
  if (c->state == CS_DEAD || c->state == CS_CONNECTING) return;
  while (c->wq_head) {
    struct iovec iov[TP_IOV_MAX];
    int cnt = 0;
    for (wq_item *it = c->wq_head; it && cnt < TP_IOV_MAX; it = it->next, cnt++) {
      iov[cnt].iov_base = it->data + it->off;
      iov[cnt].iov_len = it->len - it->off;
    }
    struct msghdr mh;
    memset(&mh, 0, sizeof mh);
    mh.msg_iov = iov;
    mh.msg_iovlen = (size_t)cnt;
    ssize_t w = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      conn_close(n, c, RK_LOG_INFO, "write failed: %s", strerror(errno));
      return;
    }
    n->st.bytes_out += (uint64_t)w;
    size_t left = (size_t)w;
    while (left > 0) {
      wq_item *it = c->wq_head;
      RK_ASSERT(it != NULL);
      size_t rest = it->len - it->off;
      if (left < rest) {
        it->off += left;
        break;
      }
      left -= rest;
      c->wq_head = it->next;
      if (c->wq_head == NULL) c->wq_tail = NULL;
      c->wq_bytes -= it->len;
      c->wq_frames--;
      n->st.frames_out++;
      free(it);
    }
  }
  int rc = conn_set_events(n, c);
  if (rc != RK_OK) conn_close(n, c, RK_LOG_WARN, "epoll_ctl failed: %s", rk_strerror(rc));
}

static void conn_mark_dirty(tp_net *n, conn *c) {
  if (list_empty(&c->flink)) list_add_tail(&n->flush, &c->flink);
}

/* Appends a ready-made frame (bytes copied). The queue limit (0: none) is
 * checked after trying to write what is already queued. RK_OK, RK_EAGAIN
 * (does not fit), RK_ENOMEM, RK_ECLOSED (c died while flushing). */
static int conn_enqueue(tp_net *n, conn *c, const uint8_t *hdr, size_t hlen, const uint8_t *payload,
                        size_t plen, uint64_t limit) {
  RK_ASSERT(c->state == CS_HANDSHAKE || c->state == CS_OPEN);
  size_t fsize = hlen + plen;
  if (limit != 0 && c->wq_bytes + fsize > limit) {
    conn_flush(n, c);
    if (c->state == CS_DEAD) return RK_ECLOSED;
    if (c->wq_bytes + fsize > limit) return RK_EAGAIN;
  }
  wq_item *it = malloc(sizeof *it + fsize);
  if (it == NULL) return RK_ENOMEM;
  it->next = NULL;
  it->len = fsize;
  it->off = 0;
  memcpy(it->data, hdr, hlen);
  if (plen > 0) memcpy(it->data + hlen, payload, plen);
  if (c->wq_tail)
    c->wq_tail->next = it;
  else
    c->wq_head = it;
  c->wq_tail = it;
  c->wq_bytes += fsize;
  c->wq_frames++;
  conn_mark_dirty(n, c);
  return RK_OK;
}

static int conn_send_handshake(tp_net *n, conn *c) {
  return conn_enqueue(n, c, n->hs_frame, n->hs_len, NULL, 0, 0);
}

static void conn_open(tp_net *n, conn *c) {
  RK_ASSERT(c->state == CS_HANDSHAKE);
  c->state = CS_OPEN;
  list_del(&c->link);
  list_add_tail(&n->open, &c->link);
}

/* The first frame from the other side. May close c. */
static void conn_on_handshake(tp_net *n, conn *c, const tp_frame *f) {
  char name[96];
  tp_handshake hs;
  if (f->type != TP_FRAME_HANDSHAKE) {
    n->st.bad_handshakes++;
    conn_close(n, c, RK_LOG_WARN, "first frame is %s, not a handshake",
               tp_frame_type_name(f->type));
    return;
  }
  if (tp_handshake_decode(f->payload, f->length, &hs) != RK_OK) {
    n->st.bad_handshakes++;
    conn_close(n, c, RK_LOG_WARN, "malformed handshake");
    return;
  }
  if (c->kind == CK_PEER_OUT) {
    peer *p = c->peer;
    int rc = tp_handshake_verify(&hs, n->cluster_id, p->node);
    if (rc != RK_OK) {
      n->st.bad_handshakes++;
      conn_close(n, c, RK_LOG_WARN,
                 "%s at %s is cluster %llu node %llu (want cluster %llu node %u)", rk_strerror(rc),
                 p->addr, (unsigned long long)hs.cluster_id, (unsigned long long)hs.node_id,
                 (unsigned long long)n->cluster_id, p->node);
      return;
    }
    conn_open(n, c);
    p->backoff_ms = n->reconnect_min_ms;
    n->st.peer_connects++;
    RK_INFO("transport", "%s up", conn_name(c, name, sizeof name));
    if (n->cb.on_peer_up)
      n->cb.on_peer_up(n->cb.ctx, p->node, hs.client_addr[0] ? hs.client_addr : NULL);
    return;
  }

  int rc = tp_handshake_verify(&hs, n->cluster_id, 0);
  peer *p = NULL;
  if (rc == RK_OK) {
    if (c->kind == CK_CLIENT) {
      if (hs.node_id != 0) rc = RK_EWRONGNODE; /* a node on the client port */
    } else {
      /* The lower id dials: an inbound peer must be declared and lower. */
      p = find_peer(n, hs.node_id);
      if (p == NULL || p->dialer) rc = RK_EWRONGNODE;
    }
  }
  if (rc != RK_OK) {
    n->st.bad_handshakes++;
    /* Tell a wrong-cluster caller who we are, so it can say so. */
    if (rc == RK_EWRONGCLUSTER && conn_send_handshake(n, c) == RK_OK) conn_flush(n, c);
    conn_close(n, c, RK_LOG_WARN, "refused handshake (%s): cluster %llu node %llu version %u",
               rk_strerror(rc), (unsigned long long)hs.cluster_id, (unsigned long long)hs.node_id,
               hs.protocol_version);
    return;
  }
  if (conn_send_handshake(n, c) != RK_OK) {
    conn_close(n, c, RK_LOG_WARN, "out of memory queueing the handshake");
    return;
  }
  if (c->kind == CK_CLIENT) {
    c->id = n->next_client_id++;
    if (client_insert(n, c) != RK_OK) {
      c->id = 0;
      conn_close(n, c, RK_LOG_WARN, "out of memory");
      return;
    }
    conn_open(n, c);
    RK_DEBUG("transport", "%s connected", conn_name(c, name, sizeof name));
    return;
  }
  if (p->conn != NULL) conn_close(n, p->conn, RK_LOG_INFO, "replaced by a new connection");
  RK_ASSERT(p->conn == NULL);
  c->peer = p;
  p->conn = c;
  conn_open(n, c);
  n->st.peer_connects++;
  RK_INFO("transport", "%s up", conn_name(c, name, sizeof name));
  if (n->cb.on_peer_up)
    n->cb.on_peer_up(n->cb.ctx, p->node, hs.client_addr[0] ? hs.client_addr : NULL);
}

static void conn_dispatch(tp_net *n, conn *c, const tp_frame *f) {
  if (c->state == CS_HANDSHAKE) {
    conn_on_handshake(n, c, f);
    return;
  }
  RK_ASSERT(c->state == CS_OPEN);
  if (f->type == TP_FRAME_HANDSHAKE) {
    n->st.bad_frames++;
    conn_close(n, c, RK_LOG_WARN, "second handshake");
    return;
  }
  if (c->kind == CK_CLIENT) {
    if (n->cb.on_client_frame)
      n->cb.on_client_frame(n->cb.ctx, c->id, f->type, f->payload, f->length);
  } else {
    if (n->cb.on_peer_frame)
      n->cb.on_peer_frame(n->cb.ctx, c->peer->node, f->type, f->payload, f->length);
  }
}

/* Makes room in a full (or absent) read buffer. Growth doubles but never past
 * the frame being assembled, so a buffer is never more than twice the bytes
 * the other side actually sent (plus TP_RBUF_MIN): announcing a huge frame
 * costs the sender, not us. */
static int rbuf_grow(tp_net *n, conn *c) {
  RK_ASSERT(c->rlen == c->rcap);
  size_t cap = c->rcap ? c->rcap * 2 : TP_RBUF_MIN;
  if (c->rcap > 0) {
    RK_ASSERT(c->need > c->rlen); /* a full buffer holds an incomplete frame */
    if (cap > c->need) cap = c->need;
  }
  RK_ASSERT(cap <= TP_FRAME_HEADER_SIZE + (size_t)n->max_payload || c->rcap == 0);
  uint8_t *b = realloc(c->rbuf, cap);
  if (b == NULL) return RK_ENOMEM;
  c->rbuf = b;
  c->rcap = cap;
  return RK_OK;
}

/* Decodes and delivers every complete frame in the read buffer. May close c. */
static void conn_process(tp_net *n, conn *c) {
  size_t off = 0;
  c->need = 0;
  while (c->state != CS_DEAD) {
    tp_frame f;
    size_t used = 0;
    /* Before the handshake only a handshake-sized frame is acceptable. */
    uint32_t limit = c->state == CS_OPEN ? n->max_payload : TP_HANDSHAKE_MAX_PAYLOAD;
    int rc = tp_frame_decode(c->rbuf + off, c->rlen - off, limit, &f, &used);
    if (rc == RK_EAGAIN) {
      c->need = used;
      break;
    }
    if (rc != RK_OK) {
      n->st.bad_frames++;
      conn_close(n, c, RK_LOG_WARN, "bad frame: %s", rk_strerror(rc));
      return;
    }
    off += used;
    n->st.frames_in++;
    conn_dispatch(n, c, &f);
  }
  if (c->state == CS_DEAD) return;
  if (off > 0) {
    memmove(c->rbuf, c->rbuf + off, c->rlen - off);
    c->rlen -= off;
  }
  if (c->rlen == 0 && c->rcap > TP_RBUF_KEEP) {
    free(c->rbuf);
    c->rbuf = NULL;
    c->rcap = 0;
  }
}

static void conn_on_readable(tp_net *n, conn *c) {
  size_t budget = TP_READ_BUDGET;
  while (c->state != CS_DEAD && budget > 0) {
    if (c->rlen == c->rcap && rbuf_grow(n, c) != RK_OK) {
      conn_close(n, c, RK_LOG_WARN, "out of memory for a read buffer");
      return;
    }
    ssize_t r = read(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen);
    if (r == 0) {
      conn_close(n, c, c->state == CS_OPEN ? RK_LOG_INFO : RK_LOG_DEBUG,
                 "closed by the other side");
      return;
    }
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      conn_close(n, c, RK_LOG_INFO, "read failed: %s", strerror(errno));
      return;
    }
    n->st.bytes_in += (uint64_t)r;
    c->rlen += (size_t)r;
    budget -= (size_t)r < budget ? (size_t)r : budget;
    conn_process(n, c);
  }
}

static void conn_finish_connect(tp_net *n, conn *c) {
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
  if (err != 0) {
    conn_close(n, c, RK_LOG_DEBUG, "connect to %s failed: %s", c->peer->addr, strerror(err));
    return;
  }
  c->state = CS_HANDSHAKE;
  if (conn_send_handshake(n, c) != RK_OK) {
    conn_close(n, c, RK_LOG_WARN, "out of memory queueing the handshake");
    return;
  }
  conn_flush(n, c);
}

static void conn_on_event(tp_net *n, conn *c, uint32_t e) {
  if (c->state == CS_DEAD) return;
  if (c->state == CS_CONNECTING) {
    if (e & (EPOLLOUT | EPOLLERR | EPOLLHUP)) conn_finish_connect(n, c);
    return;
  }
  if (e & (EPOLLIN | EPOLLERR | EPOLLHUP)) conn_on_readable(n, c);
  if (c->state != CS_DEAD && (e & EPOLLOUT)) conn_flush(n, c);
}

/* ---- peers: dialing ----------------------------------------------------- */

static void peer_dial(tp_net *n, peer *p, uint64_t now) {
  RK_ASSERT(p->dialer && p->conn == NULL);
  struct sockaddr_storage ss;
  socklen_t sl;
  int rc = tp_addr_resolve(p->addr, 0, &ss, &sl);
  if (rc != RK_OK) {
    RK_WARN("transport", "cannot resolve peer %u address %s: %s", p->node, p->addr,
            rk_strerror(rc));
    peer_schedule_dial(n, p, now);
    return;
  }
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    RK_WARN("transport", "socket() for peer %u: %s", p->node, strerror(errno));
    peer_schedule_dial(n, p, now);
    return;
  }
  tp_sock_nodelay(fd);
  conn_state st = CS_CONNECTING;
  if (connect(fd, (struct sockaddr *)&ss, sl) == 0) {
    st = CS_HANDSHAKE;
  } else if (errno != EINPROGRESS && errno != EINTR) {
    RK_DEBUG("transport", "connect to peer %u at %s: %s", p->node, p->addr, strerror(errno));
    close(fd);
    peer_schedule_dial(n, p, now);
    return;
  }
  conn *c = conn_new(n, fd, CK_PEER_OUT, st, now);
  if (c == NULL) {
    close(fd);
    peer_schedule_dial(n, p, now);
    return;
  }
  c->peer = p;
  p->conn = c;
  RK_DEBUG("transport", "dialing peer %u at %s", p->node, p->addr);
  if (st == CS_HANDSHAKE) {
    if (conn_send_handshake(n, c) != RK_OK)
      conn_close(n, c, RK_LOG_WARN, "out of memory queueing the handshake");
    else
      conn_flush(n, c);
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
    if (conn_new(n, fd, l->is_peer ? CK_PEER_IN : CK_CLIENT, CS_HANDSHAKE, now) == NULL) close(fd);
  }
}

/* ---- timers ------------------------------------------------------------- */

static void run_timers(tp_net *n, uint64_t now) {
  for (tp_list *e = n->pend.next; e != &n->pend;) {
    conn *c = LIST_ENTRY(e, conn, link);
    e = e->next; /* closing c moves it to n->dead; nothing else changes */
    if (now >= c->deadline_ns) {
      n->st.handshake_timeouts++;
      conn_close(n, c, RK_LOG_WARN, "no handshake within %u ms", n->handshake_timeout_ms);
    }
  }
  for (size_t i = 0; i < n->npeers; i++) {
    peer *p = n->peers[i];
    if (p->dialer && p->conn == NULL && now >= p->next_dial_ns) peer_dial(n, p, now);
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
    if (p->dialer && p->conn == NULL && p->next_dial_ns < next) next = p->next_dial_ns;
  }
  if (n->lpeer.paused_until != 0 && n->lpeer.paused_until < next) next = n->lpeer.paused_until;
  if (n->lclient.paused_until != 0 && n->lclient.paused_until < next)
    next = n->lclient.paused_until;
  return next;
}

static void flush_all(tp_net *n) {
  while (!list_empty(&n->flush)) conn_flush(n, LIST_ENTRY(n->flush.next, conn, flink));
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
    wq_free(c);
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
  free(n);
}

const char *tp_net_peer_addr(const tp_net *n) { return n->lpeer.addr; }
const char *tp_net_client_addr(const tp_net *n) { return n->lclient.addr; }

int tp_net_add_peer(tp_net *n, uint32_t node, const char *addr) {
  char host[TP_ADDR_MAX], port[8];
  if (node == 0 || node == n->node_id) return RK_EINVAL;
  if (tp_addr_split(addr, host, port) != RK_OK) return RK_EINVAL;
  if (find_peer(n, node)) return RK_EEXIST;
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
  peer *p = find_peer(n, node);
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
  rc = conn_enqueue(n, c, hdr, sizeof hdr, payload, len, n->peer_qmax);
  if (rc != RK_OK) {
    n->st.frames_dropped++;
    return RK_EAGAIN;
  }
  return RK_OK;
}

int tp_net_send_client(tp_net *n, uint64_t id, uint16_t type, const uint8_t *payload,
                       uint32_t len) {
  conn *c = client_find(n, id);
  if (c == NULL) return RK_ECLOSED;
  RK_ASSERT(c->state == CS_OPEN);
  int rc = check_frame_args(n, type, payload, len);
  if (rc != RK_OK) return rc;
  uint8_t hdr[TP_FRAME_HEADER_SIZE];
  rc = tp_frame_encode_header(hdr, type, payload, len, n->max_payload);
  RK_ASSERT(rc == RK_OK);
  rc = conn_enqueue(n, c, hdr, sizeof hdr, payload, len, n->client_qmax);
  if (rc == RK_OK) return RK_OK;
  if (rc == RK_EAGAIN) {
    n->st.clients_overflowed++;
    conn_close(n, c, RK_LOG_WARN, "not reading: over %llu queued bytes",
               (unsigned long long)n->client_qmax);
  } else if (rc == RK_ENOMEM) {
    /* A client response is never dropped silently: the client must see the
     * connection fail instead. */
    conn_close(n, c, RK_LOG_WARN, "out of memory queueing a response");
  }
  return RK_ECLOSED;
}

void tp_net_close_client(tp_net *n, uint64_t id) {
  conn *c = client_find(n, id);
  if (c == NULL) return;
  conn_flush(n, c); /* best effort: let a final error response out */
  conn_close(n, c, RK_LOG_INFO, "closed by the node");
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
    case EV_CONN: conn_on_event(n, (conn *)(void *)s, evs[i].events); break;
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
  const peer *p = find_peer(n, node);
  return p != NULL && p->conn != NULL && p->conn->state == CS_OPEN;
}

uint64_t tp_net_peer_queued_bytes_(const tp_net *n, uint32_t node) {
  const peer *p = find_peer(n, node);
  return (p && p->conn) ? p->conn->wq_bytes : 0;
}
