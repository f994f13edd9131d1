/* node/node.h — a rangekv node: one process, one event loop (prefix node_).
 *
 * The node wires the multi-raft host (multiraft/host.h) to the real world:
 *   - log storage and persistence: the shared io_uring WAL (engine/wal.h);
 *     each host turn's writes become one eng_wal_append (split only if the
 *     batch would exceed the WAL's max batch bytes);
 *   - the state machine: the RocksDB state store (engine/state.h); each
 *     host turn's committed entries are ONE WriteBatch that also records
 *     every touched range's applied index;
 *   - messages: transport/net.h (epoll TCP), one RaftBatch frame per peer
 *     node per turn;
 *   - time: a timerfd ticking every tick_ms;
 *   - clients: ClientRequest frames, answered when their entry applies
 *     (writes) or when ReadIndex confirms and the range applied far enough
 *     (reads).
 * Shutdown on SIGTERM/SIGINT: stop accepting, make the WAL and the state
 * store durable, close, exit 0.
 *
 * Data directory: DIR/wal (WAL segments), DIR/state (RocksDB). Both carry
 * the cluster and node id; a node refuses a data dir of another cluster or
 * node with a message naming both.
 */
#ifndef NODE_NODE_H
#define NODE_NODE_H

#include <stdint.h>

#include "transport/handshake.h"

#define NODE_MAX_NODES 64

typedef struct node_peer {
  uint32_t id;
  char addr[TP_ADDR_MAX]; /* peer (Raft) address: what the other nodes dial */
  char zone[32];          /* "" if not given; placement spreads replicas over zones */
} node_peer;

typedef struct node_config {
  uint32_t node_id;
  char listen[TP_ADDR_MAX];          /* peer listen address */
  char client_listen[TP_ADDR_MAX];   /* client listen address */
  char metrics_listen[TP_ADDR_MAX];  /* GET /metrics address; "" = off */
  node_peer cluster[NODE_MAX_NODES]; /* --initial-cluster, this node included */
  uint32_t n_cluster;
  const char *data_dir;
  const char *zone;             /* label, reported in status */
  const char *client_advertise; /* what clients are told to dial (NULL: client_listen) */
  uint32_t ranges;              /* bootstrap range count (ignored once persisted) */
  uint64_t cluster_id;          /* 0: derived from the initial cluster list */
  uint32_t tick_ms;             /* default 100 */
  uint32_t election_ticks;      /* default 10 */
  int quiesce;                  /* default 1 */
  uint32_t request_timeout_ms;  /* a client request not answered by then: RK_ETIMEOUT */
  /* Log compaction: a range's WAL entries are dropped once at least this
   * many are applied, durable in the state store and held by every replica
   * (mr_host_compact_hint); 0 = never. Default 10,000. */
  uint32_t compact_entries;
  /* A replica more than this many entries behind a range's applied index
   * no longer holds its log back: it catches up from a snapshot. 0 = a
   * replica always holds the log back. Default 50,000. */
  uint32_t compact_lag_entries;
  /* A peer connection acknowledging nothing for this long is closed and
   * dialed again (tp_net_config.peer_timeout_ms). Default 10,000. */
  uint32_t peer_timeout_ms;
} node_config;

void node_config_default(node_config *cfg);
/* Parses "1=127.0.0.1:7001,2=...", each item optionally "ID=HOST:PORT@ZONE",
 * into cfg->cluster. RK_OK or RK_EINVAL with a message in err (errcap bytes). */
int node_parse_cluster(node_config *cfg, const char *list, char *err, size_t errcap);
/* The cluster id every node derives from the same initial cluster list. */
uint64_t node_cluster_id_of(const node_config *cfg);

/* Runs the node until SIGTERM/SIGINT. Returns RK_OK after a clean shutdown,
 * or the error that stopped it (already logged). */
int node_run(const node_config *cfg);

#endif
