/* transport/conn.c — the blocking client connection (tp_conn_, see net.h).
 *
 * One non-blocking socket driven with poll(2) against a deadline, so every
 * call is bounded by its timeout. Receiving keeps bytes that arrived after a
 * frame (or a partial frame when a timeout struck) in the conn's buffer, so a
 * timed-out tp_conn_recv leaves the connection usable. A send that times out
 * after writing part of a frame leaves the stream unusable: the conn is then
 * marked broken and every later call returns RK_ECLOSED.
 *
 * Frames up to TP_FRAME_DEFAULT_MAX_PAYLOAD are accepted from the node.
 * A negative timeout_ms waits without bound.
 */
#include "transport/net.h"

#include "common/rk_clock.h"
#include "common/rk_err.h"
#include "transport/net_int.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define CONN_RBUF_MIN  (16u << 10)
#define CONN_RBUF_KEEP (1u << 20) /* a larger buffer is shrunk once empty */
#define NS_PER_MS      1000000ull

struct tp_conn {
  int fd;
  int broken; /* the stream is unusable: every call returns RK_ECLOSED */
  uint32_t max_payload;
  uint8_t *rbuf;
  size_t rcap, rlen, roff;
  size_t last; /* bytes of the frame handed out by the previous recv */
};

static uint64_t deadline_of(int timeout_ms) {
  if (timeout_ms < 0) return UINT64_MAX;
  return rk_clock_mono_ns() + (uint64_t)timeout_ms * NS_PER_MS;
}

/* Waits for `events` on fd until the deadline: RK_OK or RK_ETIMEOUT. */
static int wait_fd(int fd, short events, uint64_t deadline) {
  for (;;) {
    int t = -1;
    if (deadline != UINT64_MAX) {
      uint64_t now = rk_clock_mono_ns();
      if (now >= deadline) return RK_ETIMEOUT;
      uint64_t ms = (deadline - now + NS_PER_MS - 1) / NS_PER_MS;
      t = ms > INT_MAX ? INT_MAX : (int)ms;
    }
    struct pollfd pfd = {.fd = fd, .events = events};
    int r = poll(&pfd, 1, t);
    if (r > 0) return RK_OK; /* readable, writable, or an error the next call reports */
    if (r < 0 && errno != EINTR) return rk_err_from_errno(errno);
  }
}

/* Non-blocking connect to one address within the deadline. */
static int connect_one(const struct addrinfo *ai, uint64_t deadline, int *out) {
  int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return rk_err_from_errno(errno);
  if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
    if (errno != EINPROGRESS && errno != EINTR) {
      close(fd);
      return RK_ECLOSED;
    }
    int rc = wait_fd(fd, POLLOUT, deadline);
    if (rc != RK_OK) {
      close(fd);
      return rc;
    }
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err != 0) {
      close(fd);
      return RK_ECLOSED;
    }
  }
  tp_sock_nodelay(fd);
  *out = fd;
  return RK_OK;
}

/* Writes all iov bytes before the deadline. */
static int send_all(tp_conn *c, struct iovec *iov, int cnt, uint64_t deadline) {
  size_t sent = 0;
  while (cnt > 0) {
    struct msghdr mh;
    memset(&mh, 0, sizeof mh);
    mh.msg_iov = iov;
    mh.msg_iovlen = (size_t)cnt;
    ssize_t w = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        int rc = wait_fd(c->fd, POLLOUT, deadline);
        if (rc != RK_OK) {
          if (sent > 0) c->broken = 1; /* half a frame is on the wire */
          return rc;
        }
        continue;
      }
      c->broken = 1;
      return RK_ECLOSED;
    }
    sent += (size_t)w;
    size_t left = (size_t)w;
    while (cnt > 0 && left >= iov->iov_len) {
      left -= iov->iov_len;
      iov++;
      cnt--;
    }
    if (cnt > 0) {
      iov->iov_base = (uint8_t *)iov->iov_base + left;
      iov->iov_len -= left;
    }
  }
  return RK_OK;
}

static int recv_frame(tp_conn *c, uint16_t *type, const uint8_t **payload, uint32_t *len,
                      uint64_t deadline) {
  if (c->broken) return RK_ECLOSED;
  c->roff += c->last;
  c->last = 0;
  for (;;) {
    tp_frame f;
    size_t used = 0;
    int rc = tp_frame_decode(c->rbuf + c->roff, c->rlen - c->roff, c->max_payload, &f, &used);
    if (rc == RK_OK) {
      *type = f.type;
      *payload = f.payload;
      *len = f.length;
      c->last = used;
      return RK_OK;
    }
    if (rc != RK_EAGAIN) {
      c->broken = 1;
      return rc;
    }
    /* Need more bytes: make room at the front, grow to the frame's size. */
    if (c->roff > 0) {
      memmove(c->rbuf, c->rbuf + c->roff, c->rlen - c->roff);
      c->rlen -= c->roff;
      c->roff = 0;
    }
    if (c->rlen == 0 && c->rcap > CONN_RBUF_KEEP) {
      uint8_t *b = realloc(c->rbuf, CONN_RBUF_MIN);
      if (b) {
        c->rbuf = b;
        c->rcap = CONN_RBUF_MIN;
      }
    }
    if (used > c->rcap) {
      uint8_t *b = realloc(c->rbuf, used);
      if (b == NULL) return RK_ENOMEM;
      c->rbuf = b;
      c->rcap = used;
    }
    ssize_t r = recv(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, MSG_DONTWAIT);
    if (r > 0) {
      c->rlen += (size_t)r;
      continue;
    }
    if (r == 0) {
      c->broken = 1;
      return RK_ECLOSED;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      c->broken = 1;
      return RK_ECLOSED;
    }
    rc = wait_fd(c->fd, POLLIN, deadline);
    if (rc != RK_OK) return rc;
  }
}

int tp_conn_open(tp_conn **out, const char *addr, uint64_t cluster_id, int timeout_ms,
                 tp_handshake *server) {
  *out = NULL;
  uint64_t deadline = deadline_of(timeout_ms);
  struct addrinfo *res;
  int rc = tp_addr_lookup(addr, 0, &res);
  if (rc == RK_ENOTFOUND) return RK_ECLOSED;
  if (rc != RK_OK) return rc;
  int fd = -1;
  rc = RK_ECLOSED;
  for (const struct addrinfo *ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
    rc = connect_one(ai, deadline, &fd);
    if (rc == RK_ETIMEOUT) break;
  }
  freeaddrinfo(res);
  if (fd < 0) return rc;

  tp_conn *c = calloc(1, sizeof *c);
  if (c == NULL) {
    close(fd);
    return RK_ENOMEM;
  }
  c->fd = fd;
  c->max_payload = TP_FRAME_DEFAULT_MAX_PAYLOAD;
  c->rbuf = malloc(CONN_RBUF_MIN);
  if (c->rbuf == NULL) {
    rc = RK_ENOMEM;
    goto fail;
  }
  c->rcap = CONN_RBUF_MIN;

  tp_handshake hs;
  memset(&hs, 0, sizeof hs);
  hs.cluster_id = cluster_id;
  hs.node_id = 0;
  hs.protocol_version = TP_PROTOCOL_VERSION;
  uint8_t buf[256];
  size_t hlen;
  rc = tp_handshake_encode(&hs, buf, sizeof buf, &hlen);
  if (rc != RK_OK) goto fail;
  struct iovec iov = {.iov_base = buf, .iov_len = hlen};
  rc = send_all(c, &iov, 1, deadline);
  if (rc != RK_OK) goto fail;

  uint16_t type;
  const uint8_t *payload;
  uint32_t plen;
  rc = recv_frame(c, &type, &payload, &plen, deadline);
  if (rc != RK_OK) goto fail;
  tp_handshake got;
  if (type != TP_FRAME_HANDSHAKE || tp_handshake_decode(payload, plen, &got) != RK_OK ||
      got.node_id == 0 || got.cluster_id == 0) {
    rc = RK_EMALFORMED;
    goto fail;
  }
  if (cluster_id != 0 && got.cluster_id != cluster_id) {
    rc = RK_EWRONGCLUSTER;
    goto fail;
  }
  if (got.protocol_version != TP_PROTOCOL_VERSION) {
    rc = RK_EUNSUPPORTED;
    goto fail;
  }
  if (server) *server = got;
  *out = c;
  return RK_OK;
fail:
  tp_conn_close(c);
  return rc;
}

void tp_conn_close(tp_conn *c) {
  if (c == NULL) return;
  close(c->fd);
  free(c->rbuf);
  free(c);
}

int tp_conn_send(tp_conn *c, uint16_t type, const uint8_t *payload, uint32_t len, int timeout_ms) {
  if (c->broken) return RK_ECLOSED;
  if (type == TP_FRAME_HANDSHAKE || type == 0 || type > TP_FRAME_TYPE_MAX_) return RK_EINVAL;
  if (len > 0 && payload == NULL) return RK_EINVAL;
  uint8_t hdr[TP_FRAME_HEADER_SIZE];
  int rc = tp_frame_encode_header(hdr, type, payload, len, c->max_payload);
  if (rc != RK_OK) return rc;
  /* iov_base is not const in POSIX; sendmsg only reads it. */
  struct iovec iov[2] = {{.iov_base = hdr, .iov_len = sizeof hdr},
                         {.iov_base = (void *)(uintptr_t)payload, .iov_len = len}};
  return send_all(c, iov, len ? 2 : 1, deadline_of(timeout_ms));
}

int tp_conn_recv(tp_conn *c, uint16_t *type, const uint8_t **payload, uint32_t *len,
                 int timeout_ms) {
  return recv_frame(c, type, payload, len, deadline_of(timeout_ms));
}
