/* transport/net_conn.c — one tp_net connection: handshake checks, reading
 * and decoding frames, delivering them, the send queue and its writes.
 * The loop around it (accepting, dialing, timers, reaping) is net.c. */
#include "transport/net_loop_int.h"

#include "common/rk_assert.h"
#include "common/rk_err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

/* ---- small helpers ------------------------------------------------------ */

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

peer *tp_nc_find_peer(const tp_net *n, uint64_t node) {
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

conn *tp_nc_client_find(const tp_net *n, uint64_t id) {
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

void tp_nc_schedule_dial(tp_net *n, peer *p, uint64_t now) {
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

void tp_nc_wq_free(conn *c) {
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

conn *tp_nc_new(tp_net *n, int fd, conn_kind kind, conn_state state, uint64_t now) {
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

void tp_nc_close(tp_net *n, conn *c, rk_log_level lvl, const char *fmt, ...) {
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
      if (p->dialer) tp_nc_schedule_dial(n, p, now_ns());
    }
  }
  tp_nc_wq_free(c);
}

/* An established connection fails this way only when the kernel gave up
 * on the other end (tp_sock_timeout, keepalive, retransmissions): nothing
 * acknowledged — or, since Linux 5.x, a receive window left at zero — for
 * the timeout. It reports ETIMEDOUT, or the last soft error it met sending:
 * an ICMP unreachable, or a local route or filter refusing the packets
 * (EINVAL for a blackhole route, EACCES for a prohibit one). A reset or a
 * local shutdown is ECONNRESET / EPIPE instead. */
static int gave_up(int err) {
  switch (err) {
  case ETIMEDOUT:
  case EHOSTUNREACH:
  case ENETUNREACH:
  case EHOSTDOWN:
  case ENETDOWN:
  case EINVAL:
  case EACCES:
  case EPERM: return 1;
  default: return 0;
  }
}

/* A read or write on c failed with err: closes it, saying plainly when the
 * other end stopped answering (and counting it). */
static void close_io_error(tp_net *n, conn *c, const char *op, int err) {
  if (!gave_up(err)) {
    tp_nc_close(n, c, RK_LOG_INFO, "%s failed: %s", op, strerror(err));
    return;
  }
  int client = c->kind == CK_CLIENT;
  if (client)
    n->st.client_timeouts++;
  else
    n->st.peer_timeouts++;
  tp_nc_close(n, c, RK_LOG_WARN,
              "the kernel gave up on it (%s; timeout %u ms): nothing acknowledged or a zero "
              "window that long — its host is down, the network is cut, or it stopped reading",
              strerror(err), client ? n->client_timeout_ms : n->peer_timeout_ms);
}

/* Writes as much of the queue as the socket takes. May close c. */
void tp_nc_flush(tp_net *n, conn *c) {
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
      close_io_error(n, c, "write", errno);
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
  if (rc != RK_OK) tp_nc_close(n, c, RK_LOG_WARN, "epoll_ctl failed: %s", rk_strerror(rc));
}

static void conn_mark_dirty(tp_net *n, conn *c) {
  if (list_empty(&c->flink)) list_add_tail(&n->flush, &c->flink);
}

/* Appends a ready-made frame (bytes copied). The queue limit (0: none) is
 * checked after trying to write what is already queued. RK_OK, RK_EAGAIN
 * (does not fit), RK_ENOMEM, RK_ECLOSED (c died while flushing). */
int tp_nc_enqueue(tp_net *n, conn *c, const uint8_t *hdr, size_t hlen, const uint8_t *payload,
                  size_t plen, uint64_t limit) {
  RK_ASSERT(c->state == CS_HANDSHAKE || c->state == CS_OPEN);
  size_t fsize = hlen + plen;
  if (limit != 0 && c->wq_bytes + fsize > limit) {
    tp_nc_flush(n, c);
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

int tp_nc_send_handshake(tp_net *n, conn *c) {
  return tp_nc_enqueue(n, c, n->hs_frame, n->hs_len, NULL, 0, 0);
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
    tp_nc_close(n, c, RK_LOG_WARN, "first frame is %s, not a handshake",
                tp_frame_type_name(f->type));
    return;
  }
  if (tp_handshake_decode(f->payload, f->length, &hs) != RK_OK) {
    n->st.bad_handshakes++;
    tp_nc_close(n, c, RK_LOG_WARN, "malformed handshake");
    return;
  }
  if (c->kind == CK_PEER_OUT) {
    peer *p = c->peer;
    int rc = tp_handshake_verify(&hs, n->cluster_id, p->node);
    if (rc != RK_OK) {
      n->st.bad_handshakes++;
      tp_nc_close(n, c, RK_LOG_WARN,
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
      p = tp_nc_find_peer(n, hs.node_id);
      if (p == NULL || p->dialer) rc = RK_EWRONGNODE;
    }
  }
  if (rc != RK_OK) {
    n->st.bad_handshakes++;
    /* Tell a wrong-cluster caller who we are, so it can say so. */
    if (rc == RK_EWRONGCLUSTER && tp_nc_send_handshake(n, c) == RK_OK) tp_nc_flush(n, c);
    tp_nc_close(n, c, RK_LOG_WARN, "refused handshake (%s): cluster %llu node %llu version %u",
                rk_strerror(rc), (unsigned long long)hs.cluster_id, (unsigned long long)hs.node_id,
                hs.protocol_version);
    return;
  }
  if (tp_nc_send_handshake(n, c) != RK_OK) {
    tp_nc_close(n, c, RK_LOG_WARN, "out of memory queueing the handshake");
    return;
  }
  if (c->kind == CK_CLIENT) {
    c->id = n->next_client_id++;
    if (client_insert(n, c) != RK_OK) {
      c->id = 0;
      tp_nc_close(n, c, RK_LOG_WARN, "out of memory");
      return;
    }
    conn_open(n, c);
    RK_DEBUG("transport", "%s connected", conn_name(c, name, sizeof name));
    return;
  }
  if (p->conn != NULL) tp_nc_close(n, p->conn, RK_LOG_INFO, "replaced by a new connection");
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
    tp_nc_close(n, c, RK_LOG_WARN, "second handshake");
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
      tp_nc_close(n, c, RK_LOG_WARN, "bad frame: %s", rk_strerror(rc));
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
      tp_nc_close(n, c, RK_LOG_WARN, "out of memory for a read buffer");
      return;
    }
    ssize_t r = read(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen);
    if (r == 0) {
      tp_nc_close(n, c, c->state == CS_OPEN ? RK_LOG_INFO : RK_LOG_DEBUG,
                  "closed by the other side");
      return;
    }
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      close_io_error(n, c, "read", errno);
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
    tp_nc_close(n, c, RK_LOG_DEBUG, "connect to %s failed: %s", c->peer->addr, strerror(err));
    return;
  }
  c->state = CS_HANDSHAKE;
  if (tp_nc_send_handshake(n, c) != RK_OK) {
    tp_nc_close(n, c, RK_LOG_WARN, "out of memory queueing the handshake");
    return;
  }
  tp_nc_flush(n, c);
}

void tp_nc_on_event(tp_net *n, conn *c, uint32_t e) {
  if (c->state == CS_DEAD) return;
  if (c->state == CS_CONNECTING) {
    if (e & (EPOLLOUT | EPOLLERR | EPOLLHUP)) conn_finish_connect(n, c);
    return;
  }
  if (e & (EPOLLIN | EPOLLERR | EPOLLHUP)) conn_on_readable(n, c);
  if (c->state != CS_DEAD && (e & EPOLLOUT)) tp_nc_flush(n, c);
}
