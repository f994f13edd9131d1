/* transport/net_loop_int.h — the private structures of tp_net, shared by
 * net.c (the loop, listeners, dialing, timers, public API) and net_conn.c
 * (one connection: handshake, reading and decoding, the send queue).
 * See net.c for the lifecycle and lifetime rules. Only those two include it.
 */
#ifndef RK_TRANSPORT_NET_LOOP_INT_H
#define RK_TRANSPORT_NET_LOOP_INT_H

#include <stddef.h>
#include <stdint.h>

#include "common/rk_clock.h"
#include "common/rk_log.h"
#include "transport/net.h"
#include "transport/net_int.h"
#include "transport/resolve.h"

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

/* ---- intrusive circular list ------------------------------------------- */

typedef struct tp_list {
  struct tp_list *prev, *next;
} tp_list;

static inline void list_init(tp_list *l) { l->prev = l->next = l; }
static inline int list_empty(const tp_list *l) { return l->next == l; }
static inline void list_add_tail(tp_list *head, tp_list *e) {
  e->prev = head->prev;
  e->next = head;
  head->prev->next = e;
  head->prev = e;
}
static inline void list_del(tp_list *e) {
  e->prev->next = e->next;
  e->next->prev = e->prev;
  list_init(e);
}
#define LIST_ENTRY(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* ---- objects ------------------------------------------------------------ */

typedef enum ev_kind { EV_LISTENER = 1, EV_CONN, EV_WATCH, EV_RESOLVER } ev_kind;
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
  /* A host name is looked up off the loop (resolve.h) before each dial. */
  int resolving;              /* a lookup is out: no dial until it is back */
  int have_addr;              /* ss/sl hold a fresh lookup for the next dial */
  struct sockaddr_storage ss; /* only while have_addr */
  socklen_t sl;
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
  uint32_t peer_timeout_ms, client_timeout_ms; /* tp_sock_timeout */
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

  tp_resolver *res; /* started by the first peer named by host name */
  ev_src res_ev;    /* epoll data for res's fd */

  tp_list pend, open, dead, flush;
  uint64_t next_client_id;
  int in_poll;
  tp_net_stats st;
};

static inline uint64_t now_ns(void) { return rk_clock_mono_ns(); }

/* ---- net_conn.c --------------------------------------------------------- */

peer *tp_nc_find_peer(const tp_net *n, uint64_t node);
/* The OPEN client connection with that id, or NULL. */
conn *tp_nc_client_find(const tp_net *n, uint64_t id);
/* Dialer peer without a connection: next dial after the backoff, which doubles. */
void tp_nc_schedule_dial(tp_net *n, peer *p, uint64_t now);
/* Registers fd with epoll and puts the connection on n->pend with its
 * handshake deadline. NULL (fd not closed) on failure. */
conn *tp_nc_new(tp_net *n, int fd, conn_kind kind, conn_state state, uint64_t now);
/* Closes the socket, frees the queue, moves c to n->dead (freed by reap in
 * net.c); a dialer peer is rescheduled. Idempotent. One log line at lvl. */
void tp_nc_close(tp_net *n, conn *c, rk_log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Writes as much of the queue as the socket takes; arms EPOLLOUT for the rest. May close c. */
void tp_nc_flush(tp_net *n, conn *c);
/* Appends a frame (bytes copied) if it fits under limit (0: no limit), after
 * one write attempt. RK_OK, RK_EAGAIN, RK_ENOMEM, RK_ECLOSED (c died). */
int tp_nc_enqueue(tp_net *n, conn *c, const uint8_t *hdr, size_t hlen, const uint8_t *payload,
                  size_t plen, uint64_t limit);
int tp_nc_send_handshake(tp_net *n, conn *c);
/* An epoll event for c. */
void tp_nc_on_event(tp_net *n, conn *c, uint32_t events);
void tp_nc_wq_free(conn *c);

#endif
