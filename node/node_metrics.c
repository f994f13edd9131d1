/* node_metrics.c — GET /metrics in Prometheus' text exposition format
 * (version 0.0.4), on --metrics-listen.
 *
 * A tiny HTTP/1.0-style responder on the node's own loop: the listener and
 * each connection are fds watched by the transport's epoll. A connection
 * sends one request (at most NODE_METRICS_REQ_MAX bytes, within
 * NODE_METRICS_IDLE_MS) and gets one response, then is closed. At most
 * NODE_METRICS_MAX_CONNS are open; more are refused at accept. Nothing here
 * can block the loop for long: the response (a few KiB) gets at most
 * NODE_METRICS_SEND_MS to leave.
 */
#include "node/node_int.h"

#include "common/rk_err.h"
#include "common/rk_log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

/* ---- the exposition -------------------------------------------------------------------- */

typedef struct metric_out {
  FILE *f;
} metric_out;

static void metric(metric_out *o, const char *name, const char *type, const char *help,
                   uint64_t value) {
  fprintf(o->f, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, type, name,
          (unsigned long long)value);
}

/* The body of a /metrics response; malloc'd into *body. */
static int metrics_body(node *n, char **body, size_t *len) {
  metric_out o = {.f = open_memstream(body, len)};
  if (o.f == NULL) return RK_ENOMEM;
  node_totals t;
  node_collect_totals(n, &t);
  mr_host_stats hs;
  mr_host_stats_get(n->host, &hs);
  eng_wal_stats ws;
  eng_wal_get_stats(n->wal, &ws);
  tp_net_stats ns;
  tp_net_get_stats(n->net, &ns);
  fprintf(o.f,
          "# HELP rangekv_node_info This node's id and zone.\n# TYPE rangekv_node_info gauge\n");
  fprintf(o.f, "rangekv_node_info{node=\"%u\",zone=\"", n->cfg.node_id);
  for (const char *z = n->cfg.zone ? n->cfg.zone : ""; *z; z++) { /* label escaping */
    if (*z == '\\' || *z == '"')
      fprintf(o.f, "\\%c", *z);
    else if (*z == '\n')
      fputs("\\n", o.f);
    else
      fputc(*z, o.f);
  }
  fputs("\"} 1\n", o.f);
  metric(&o, "rangekv_uptime_seconds", "gauge", "Seconds since the node started.",
         (node_now_ms() - n->start_ms) / 1000);
  metric(&o, "rangekv_replicas", "gauge", "Range replicas on this node.", hs.groups);
  metric(&o, "rangekv_leaders", "gauge", "Ranges this node leads.", t.leaders);
  metric(&o, "rangekv_quiesced", "gauge", "Replicas quiesced (not ticked).", hs.quiesced);
  metric(&o, "rangekv_max_term", "gauge", "Highest Raft term of any replica here.", t.max_term);
  metric(&o, "rangekv_log_entries", "gauge", "Entries held in the replicas' logs.", t.log_entries);
  metric(&o, "rangekv_applied_entries_total", "counter", "Raft entries applied since start.",
         n->applied_entries);
  metric(&o, "rangekv_raft_campaigns_total", "counter", "Replicas that became candidates.",
         hs.campaigns);
  metric(&o, "rangekv_raft_messages_sent_total", "counter",
         "Raft messages sent (coalesced heartbeats not included).", hs.msgs_sent);
  metric(&o, "rangekv_raft_heartbeats_sent_total", "counter",
         "Coalesced heartbeat and response entries sent.", hs.hbs_sent);
  metric(&o, "rangekv_raft_nodes_down_total", "counter", "Peer nodes seen going silent.",
         hs.nodes_down);
  metric(&o, "rangekv_raft_quorum_stepdowns_total", "counter",
         "Leaders stepped down: no live majority of their replicas' nodes.", hs.quorum_stepdowns);
  metric(&o, "rangekv_raft_bad_input_total", "counter",
         "Raft messages refused as impossible (unknown type, not a member, malformed, bad "
         "snapshot, oversized entry, index beyond the log); since the replica started.",
         t.raft_bad_input);
  metric(&o, "rangekv_raft_appends_dropped_total", "counter",
         "AppendEntries a follower cut short or dropped for holding too much unpersisted; since "
         "the replica started.",
         t.raft_appends_dropped);
  metric(&o, "rangekv_wal_bytes_written_total", "counter", "Bytes written to the WAL.",
         ws.bytes_written);
  metric(&o, "rangekv_wal_fsyncs_total", "counter", "WAL fdatasyncs.", ws.fsyncs);
  metric(&o, "rangekv_wal_batches_total", "counter", "WAL batches written.", ws.batches);
  metric(&o, "rangekv_wal_entries_total", "counter", "Entries appended to the WAL.", ws.entries);
  metric(&o, "rangekv_wal_segments", "gauge", "WAL segment files live.", ws.segments_live);
  metric(&o, "rangekv_wal_spares", "gauge", "Retired WAL segment files kept for reuse.", ws.spares);
  metric(&o, "rangekv_wal_segments_recycled_total", "counter",
         "WAL segments made from spare files.", ws.segments_recycled);
  metric(&o, "rangekv_snapshots_sent_total", "counter", "Range snapshots streamed to others.",
         n->snapshots_sent);
  metric(&o, "rangekv_snapshots_installed_total", "counter", "Range snapshots installed.",
         n->snapshots_installed);
  metric(&o, "rangekv_snapshots_dropped_total", "counter",
         "Snapshot streams abandoned or refused, sending or receiving.", n->snapshots_dropped);
  metric(&o, "rangekv_snapshots_too_big_total", "counter",
         "Snapshots abandoned over the size limit.", n->snapshots_too_big);
  metric(&o, "rangekv_snapshot_streams", "gauge", "Range snapshot streams being sent now.", n->ntx);
  metric(&o, "rangekv_snapshot_aborts_sent_total", "counter",
         "Snapshot streams this node dropped and told their sender so.", n->snap_aborts_sent);
  metric(&o, "rangekv_snapshot_staged_bytes", "gauge",
         "Image bytes of received snapshots on disk in <data-dir>/snap, installing included.",
         n->rx_bytes);
  metric(&o, "rangekv_peer_frames_dropped_total", "counter",
         "Frames to peers dropped (queue full or peer down).", ns.frames_dropped);
  metric(&o, "rangekv_peer_bad_frames_total", "counter",
         "Malformed frames from peers (transport and Raft batches).",
         ns.bad_frames + n->bad_frames);
  metric(&o, "rangekv_peer_connects_total", "counter", "Peer connections established.",
         ns.peer_connects);
  metric(&o, "rangekv_peer_timeouts_total", "counter",
         "Peer connections closed after --peer-timeout-ms with nothing acknowledged.",
         ns.peer_timeouts);
  metric(&o, "rangekv_clients_open", "gauge", "Client connections open.", ns.clients_open);
  metric(&o, "rangekv_metrics_requests_total", "counter",
         "Requests to this endpoint (this one included).", n->metrics_requests);
  if (fclose(o.f) != 0) return RK_ENOMEM;
  return RK_OK;
}

/* ---- HTTP -------------------------------------------------------------------------------- */

static void conn_close(node *n, node_metrics_conn *c) {
  (void)tp_net_unwatch_fd(n->net, c->fd);
  close(c->fd);
  c->fd = -1;
  c->len = 0;
}

static void respond(node *n, node_metrics_conn *c, const char *status, const char *type,
                    const char *body, size_t blen) {
  char head[256];
  int hl = snprintf(head, sizeof head,
                    "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                    "Connection: close\r\n\r\n",
                    status, type, blen);
  /* A few KiB, which the socket buffer takes at once; a scraper too slow
   * to make room within NODE_METRICS_SEND_MS loses its answer rather than
   * hold the loop. */
  uint64_t until = node_now_ms() + NODE_METRICS_SEND_MS;
  struct iovec iov[2] = {{.iov_base = head, .iov_len = (size_t)hl},
                         {.iov_base = (void *)(uintptr_t)body, .iov_len = blen}};
  struct msghdr m = {.msg_iov = iov, .msg_iovlen = 2};
  while (m.msg_iovlen > 0) {
    ssize_t w = sendmsg(c->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
      uint64_t now = node_now_ms();
      struct pollfd pfd = {.fd = c->fd, .events = POLLOUT};
      if (now >= until || poll(&pfd, 1, (int)(until - now)) <= 0) break;
      continue;
    }
    if (w <= 0) break; /* the scraper went away: its loss */
    size_t left = (size_t)w;
    while (m.msg_iovlen > 0 && left >= m.msg_iov[0].iov_len) {
      left -= m.msg_iov[0].iov_len;
      m.msg_iov++;
      m.msg_iovlen--;
    }
    if (m.msg_iovlen > 0) {
      m.msg_iov[0].iov_base = (char *)m.msg_iov[0].iov_base + left;
      m.msg_iov[0].iov_len -= left;
    }
  }
  conn_close(n, c);
}

int node_metrics_route(const char *req, size_t len) {
  /* Only the request line matters: "GET /metrics[?...] HTTP/1.x". */
  const char *eol = memchr(req, '\n', len);
  if (eol == NULL) return 400;
  size_t ll = (size_t)(eol - req), ml = 0;
  while (ml < ll && req[ml] >= 'A' && req[ml] <= 'Z') ml++;
  if (ml == 0 || ml == ll || req[ml] != ' ') return 400; /* no method token */
  if (ml != 3 || memcmp(req, "GET", 3) != 0) return 405;
  const char *path = req + 4, *sp = memchr(path, ' ', ll - 4);
  if (sp == NULL) return 400;
  size_t pl = (size_t)(sp - path);
  if ((pl == 8 && memcmp(path, "/metrics", 8) == 0) ||
      (pl > 8 && memcmp(path, "/metrics?", 9) == 0))
    return 200;
  return 404;
}

static void on_conn(void *ctx) {
  node_metrics_conn *c = ctx;
  node *n = c->n;
  ssize_t r = read(c->fd, c->buf + c->len, sizeof c->buf - c->len);
  if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (r <= 0 || node_stopping(n)) {
    conn_close(n, c);
    return;
  }
  c->len += (size_t)r;
  int complete =
      memmem(c->buf, c->len, "\r\n\r\n", 4) != NULL || memmem(c->buf, c->len, "\n\n", 2) != NULL;
  if (!complete && c->len < sizeof c->buf) return;
  int code = complete ? node_metrics_route(c->buf, c->len) : 431;
  n->metrics_requests++;
  if (code == 200) {
    char *body = NULL;
    size_t blen = 0;
    if (metrics_body(n, &body, &blen) == RK_OK) {
      respond(n, c, "200 OK", "text/plain; version=0.0.4; charset=utf-8", body, blen);
      free(body);
      return;
    }
    free(body);
    respond(n, c, "500 Internal Server Error", "text/plain", "out of memory\n", 14);
    return;
  }
  const char *st = code == 404   ? "404 Not Found"
                   : code == 405 ? "405 Method Not Allowed"
                   : code == 431 ? "431 Request Header Fields Too Large"
                                 : "400 Bad Request";
  char msg[96];
  int ml = snprintf(msg, sizeof msg, "%s (this endpoint serves GET /metrics)\n", st);
  respond(n, c, st, "text/plain", msg, (size_t)ml);
}

static void on_accept(void *ctx) {
  node *n = ctx;
  for (;;) {
    int fd = accept4(n->metrics_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      /* Out of descriptors: the pending connection keeps the listener
       * readable, so stop watching it until the next tick rather than
       * spin the loop. Anything else (EAGAIN) waits for readiness. */
      if ((errno == EMFILE || errno == ENFILE) && n->metrics_paused == 0) {
        (void)tp_net_unwatch_fd(n->net, n->metrics_fd);
        n->metrics_paused = 1;
      }
      return;
    }
    node_metrics_conn *c = NULL;
    for (size_t i = 0; i < NODE_METRICS_MAX_CONNS && c == NULL; i++)
      if (n->mconn[i].fd < 0) c = &n->mconn[i];
    if (c == NULL || tp_net_watch_fd(n->net, fd, on_conn, c) != RK_OK) {
      close(fd); /* too many scrapers at once */
      continue;
    }
    c->fd = fd;
    c->n = n;
    c->len = 0;
    c->opened_ms = node_now_ms();
  }
}

int node_metrics_start(node *n, char *bound, size_t cap) {
  n->metrics_fd = -1;
  for (size_t i = 0; i < NODE_METRICS_MAX_CONNS; i++) n->mconn[i].fd = -1;
  if (n->cfg.metrics_listen[0] == '\0') return RK_OK;
  struct sockaddr_storage ss;
  socklen_t sl = 0;
  int rc = tp_addr_resolve(n->cfg.metrics_listen, 1, &ss, &sl);
  if (rc != RK_OK) return rc;
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return rk_err_from_errno(errno);
  int one = 1;
  (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd, (struct sockaddr *)&ss, sl) != 0 || listen(fd, 16) != 0) {
    rc = rk_err_from_errno(errno);
    close(fd);
    return rc;
  }
  sl = sizeof ss;
  if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
    (void)tp_addr_format((struct sockaddr *)&ss, bound, cap);
  rc = tp_net_watch_fd(n->net, fd, on_accept, n);
  if (rc != RK_OK) {
    close(fd);
    return rc;
  }
  n->metrics_fd = fd;
  return RK_OK;
}

void node_metrics_tick(node *n) {
  uint64_t now = node_now_ms();
  if (n->metrics_paused && tp_net_watch_fd(n->net, n->metrics_fd, on_accept, n) == RK_OK)
    n->metrics_paused = 0;
  for (size_t i = 0; i < NODE_METRICS_MAX_CONNS; i++)
    if (n->mconn[i].fd >= 0 && now - n->mconn[i].opened_ms > NODE_METRICS_IDLE_MS)
      conn_close(n, &n->mconn[i]);
}

void node_metrics_stop(node *n) {
  if (n->net == NULL) return;
  for (size_t i = 0; i < NODE_METRICS_MAX_CONNS; i++)
    if (n->mconn[i].fd >= 0) conn_close(n, &n->mconn[i]);
  if (n->metrics_fd >= 0) {
    (void)tp_net_unwatch_fd(n->net, n->metrics_fd);
    close(n->metrics_fd);
    n->metrics_fd = -1;
  }
}
