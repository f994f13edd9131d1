/* transport/net.h — TCP for a node's single event loop (prefix tp_net_), and
 * a blocking client connection (tp_conn_) for the client library.
 *
 * tp_net owns the node's epoll instance: the node registers its other file
 * descriptors (the WAL's completion fd, the tick timerfd) with
 * tp_net_watch_fd() and drives everything with tp_net_poll(). Why epoll and
 * not io_uring for sockets: the WAL already owns a ring for its write+fsync
 * pipeline; sockets here are a handful of long-lived connections whose cost
 * is dominated by the Raft work per frame, and epoll's readiness model keeps
 * partial reads/writes and back-pressure simple and obviously correct.
 *
 * Connections and identity:
 *   - One connection per node pair: the node with the LOWER id dials, the
 *     higher one accepts. The dialer reconnects with exponential backoff
 *     (reconnect_min_ms doubling up to reconnect_max_ms).
 *   - The first frame each way is a TP_FRAME_HANDSHAKE (transport/handshake.h).
 *     The acceptor checks the cluster id and that the node id is a known
 *     peer; the dialer checks the acceptor is the node it meant to dial. A
 *     mismatch closes the connection with a log line (never a crash).
 *   - Client connections arrive on the client listener; the client's
 *     handshake has node_id 0 (cluster_id 0 or the right one); the node
 *     answers with its own handshake, then request/response frames.
 *
 * Memory is bounded. Each peer connection has a send queue of at most
 * peer_queue_bytes: a frame that does not fit is DROPPED and counted
 * (Raft tolerates lost messages; a dead or slow peer never makes us grow).
 * Frames queued while a peer is disconnected are dropped on the same rule.
 * Client connections have client_queue_bytes; a client that stops reading
 * until its responses exceed that is disconnected (its outstanding requests
 * then have unknown outcome, which clients must already handle).
 *
 * Bad input never kills the node: a malformed, oversize, wrong-magic or
 * bad-checksum frame, or a handshake from the wrong cluster/node, closes that
 * connection, logs one line and bumps a counter; everything else keeps going.
 */
#ifndef RK_TRANSPORT_NET_H
#define RK_TRANSPORT_NET_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "transport/frame.h"
#include "transport/handshake.h"

typedef struct tp_net tp_net;

typedef struct tp_net_callbacks {
  void *ctx;
  /* A frame (not a handshake) from peer node `node`, after its handshake.
   * payload is valid only during the call. */
  void (*on_peer_frame)(void *ctx, uint32_t node, uint16_t type, const uint8_t *payload,
                        uint32_t len);
  /* A peer's connection completed its handshake; client_addr is where its
   * clients go (from its handshake). May be NULL. */
  void (*on_peer_up)(void *ctx, uint32_t node, const char *client_addr);
  /* A frame from client connection `conn` (after its handshake). */
  void (*on_client_frame)(void *ctx, uint64_t conn, uint16_t type, const uint8_t *payload,
                          uint32_t len);
  /* A client connection closed (either side); `conn` is never reused. May be NULL. */
  void (*on_client_closed)(void *ctx, uint64_t conn);
} tp_net_callbacks;

typedef struct tp_net_config {
  uint64_t cluster_id;          /* != 0 */
  uint32_t node_id;             /* != 0 */
  const char *peer_listen;      /* "host:port"; port 0 picks a free one */
  const char *client_listen;    /* "host:port"; NULL: no client listener */
  const char *client_advertise; /* sent in our handshake; NULL: client_listen */
  uint32_t max_payload;         /* frame payload limit (TP_FRAME_DEFAULT_MAX_PAYLOAD) */
  uint64_t peer_queue_bytes;    /* per peer send queue (default 64 MiB) */
  uint64_t client_queue_bytes;  /* per client send queue (default 64 MiB) */
  uint32_t reconnect_min_ms;    /* default 50 */
  uint32_t reconnect_max_ms;    /* default 2000 */
  /* A connection whose other end's kernel has acknowledged nothing for
   * this long is closed (TCP_USER_TIMEOUT, with keepalive probes while it
   * is idle): a peer host that vanished without a FIN or RST (power loss,
   * a silent partition) is noticed, and the dialer starts over on a fresh
   * connection instead of waiting out TCP's retransmission backoff after
   * the network heals. Peers default 10000, clients 60000. */
  uint32_t peer_timeout_ms;
  uint32_t client_timeout_ms;
} tp_net_config;

void tp_net_config_default(tp_net_config *cfg);

/* Binds both listeners (RK_EIO with a log line naming the address if it
 * cannot), creates the epoll instance. */
int tp_net_new(tp_net **out, const tp_net_config *cfg, const tp_net_callbacks *cb);
/* Closes every socket and frees everything. */
void tp_net_free(tp_net *n);
/* The bound addresses (useful with port 0). */
const char *tp_net_peer_addr(const tp_net *n);
const char *tp_net_client_addr(const tp_net *n);

/* Declares peer `node` at `addr` ("host:port"). Lower-id side dials. */
int tp_net_add_peer(tp_net *n, uint32_t node, const char *addr);

/* Queues one frame to a peer. RK_OK; RK_EAGAIN when it was dropped (queue
 * full or peer not connected; counted); RK_ETOOLARGE over max_payload;
 * RK_ENOTFOUND for an undeclared node. */
int tp_net_send_peer(tp_net *n, uint32_t node, uint16_t type, const uint8_t *payload, uint32_t len);
/* Queues one frame to a client. RK_OK; RK_ECLOSED if the connection is gone
 * (or was just closed for exceeding client_queue_bytes). */
int tp_net_send_client(tp_net *n, uint64_t conn, uint16_t type, const uint8_t *payload,
                       uint32_t len);
/* Closes a client connection (e.g. after a protocol error it sent). */
void tp_net_close_client(tp_net *n, uint64_t conn);

/* Addresses, for a node's other listeners (metrics): "host:port",
 * "[v6]:port" or ":port". tp_addr_resolve keeps one address, the first IPv4
 * one if any (so "localhost" means 127.0.0.1 on both the listening and the
 * dialing side); passive: an empty host is the wildcard address, else
 * loopback. RK_EINVAL (bad syntax), RK_ENOTFOUND (cannot resolve).
 * tp_addr_format writes "a.b.c.d:port" or "[v6]:port" (RK_EINVAL if it does
 * not fit or the family is unknown). */
int tp_addr_resolve(const char *addr, int passive, struct sockaddr_storage *ss, socklen_t *len);
int tp_addr_format(const struct sockaddr *sa, char *out, size_t cap);

/* Registers another fd with the loop: fn(ctx) runs when it is readable. */
typedef void (*tp_net_fd_fn)(void *ctx);
int tp_net_watch_fd(tp_net *n, int fd, tp_net_fd_fn fn, void *ctx);
int tp_net_unwatch_fd(tp_net *n, int fd);

/* Waits up to timeout_ms (-1: forever, 0: poll) for events, runs every
 * callback that is due, flushes writable sockets, handles reconnects.
 * Returns RK_OK (also on EINTR, so a signal can stop the loop). */
int tp_net_poll(tp_net *n, int timeout_ms);

typedef struct tp_net_stats {
  uint64_t frames_in, frames_out, bytes_in, bytes_out;
  uint64_t frames_dropped; /* peer queue full / peer down */
  uint64_t bad_frames;     /* malformed / corrupt / oversize: connection closed */
  uint64_t bad_handshakes; /* wrong cluster / wrong node / not a peer */
  uint64_t peer_connects, peer_disconnects;
  uint64_t clients_open, clients_total;
  /* Appended after the first version (the ones above keep their meaning): */
  uint64_t handshake_timeouts; /* connect+handshake not done in time: closed */
  uint64_t clients_overflowed; /* closed for exceeding client_queue_bytes */
  /* closed because the other end acknowledged nothing for peer_timeout_ms
   * (client_timeout_ms): its host is gone or the network between is cut */
  uint64_t peer_timeouts, client_timeouts;
} tp_net_stats;
void tp_net_get_stats(const tp_net *n, tp_net_stats *s);
int tp_net_peer_connected(const tp_net *n, uint32_t node);
/* Bytes queued (header + payload) towards peer `node`, 0 if not connected
 * or undeclared: for a sender that paces a long stream by the queue. */
uint64_t tp_net_peer_queued_bytes(const tp_net *n, uint32_t node);

/* ---- a blocking client connection, for the client library ----------------- */

typedef struct tp_conn tp_conn;

/* Connects to addr, exchanges handshakes (we send cluster_id, node_id 0),
 * within timeout_ms. *server (if non-NULL) receives the node's handshake.
 * RK_OK; RK_ETIMEOUT; RK_ECLOSED (refused/reset); RK_EWRONGCLUSTER when
 * cluster_id != 0 and the node belongs to another. */
int tp_conn_open(tp_conn **out, const char *addr, uint64_t cluster_id, int timeout_ms,
                 tp_handshake *server);
void tp_conn_close(tp_conn *c);
/* Sends one frame (blocking, bounded by timeout_ms). */
int tp_conn_send(tp_conn *c, uint16_t type, const uint8_t *payload, uint32_t len, int timeout_ms);
/* Receives one frame into a buffer owned by c, valid until the next call.
 * RK_OK; RK_ETIMEOUT (the connection stays usable); RK_ECLOSED; RK_ECORRUPT /
 * RK_EMALFORMED / RK_ETOOLARGE (then the connection is closed). */
int tp_conn_recv(tp_conn *c, uint16_t *type, const uint8_t **payload, uint32_t *len,
                 int timeout_ms);

/* A TCP port on 127.0.0.1 that binds right now, for launching local nodes
 * (the demo, integration tests). Taken at random from just BELOW the kernel's
 * ephemeral range: ports from bind(0) come from the range outgoing
 * connections also use, so they are far likelier to be taken between this
 * check and the node's own bind. A collision is still possible (callers
 * retry with new ports). Returns the port, or -1. */
int tp_pick_local_port(void);

#endif
