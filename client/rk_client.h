/* client/rk_client.h — the rangekv client library (prefix rkc_).
 *
 * A client holds a list of seed endpoints (node client addresses), a cached
 * copy of the range table (OP_RANGES: every range's span, replicas and last
 * known leader, plus every node's client address) and one blocking TCP
 * connection per node it has talked to (transport/net.h tp_conn).
 *
 * Routing: a key goes to the range whose [start, end) holds it, and to that
 * range's leader; with no known leader, to its replicas in turn. A node that
 * answers RK_ENOTLEADER / RK_EWRONGNODE names the leader when it knows it;
 * the client follows the hint, else tries the next replica, with a small
 * jittered backoff (rkc_options.backoff_*), until the call's deadline
 * (rkc_options.timeout_ms, measured from the call). RK_EUNKNOWNRANGE /
 * RK_ERANGEMOVED refresh the range table.
 *
 * Outcomes — the rule that matters (../shared/HISTORY.md):
 *   RK_OK                    done; the result is known.
 *   rkc_outcome_unknown(e)   the request MAY have been proposed to Raft: it
 *                            may take effect at any time, or never. Exactly
 *                            the codes RK_ETIMEOUT, RK_EPROPOSALDROPPED and
 *                            RK_ECLOSED (lost connection after sending).
 *                            A write is never re-sent once its outcome is
 *                            unknown (a retried put could apply twice around
 *                            another client's write); reads are retried.
 *   any other error          DEFINITE failure, the operation had no effect:
 *     RK_ETOOLARGE, RK_EINVAL  rejected by validation (client or node side);
 *     RK_ENOQUORUM           no leader accepted the request before the
 *                            deadline (every node answered not-leader, or
 *                            could not be reached): "no quorum";
 *     RK_EWRONGCLUSTER, RK_EUNSUPPORTED, RK_ENOMEM, RK_EMALFORMED.
 * The library maps every other server code received after a write was sent
 * to RK_ETIMEOUT (unknown), so the classification above is complete.
 *
 * Limits, checked before anything is sent (RK_ETOOLARGE): key <= 4096 bytes
 * (RKC_KEY_MAX), value <= 1 MiB (RKC_VALUE_MAX); keys must be non-empty.
 *
 * Threads: thread-compatible. One rkc_client per thread; distinct clients
 * share nothing. Calls block for at most the deadline (plus one connect
 * attempt's slack in the worst case); a scan applies it to each part (one
 * per range or resumed page). A write is not sent again with less than
 * min(100 ms, timeout_ms / 10) of its deadline left (RK_ENOQUORUM: not
 * taken).
 *
 * Ownership: the library copies every argument it keeps. Buffers it returns
 * (rkc_buf, rkc_kvs, rkc_ranges, rkc_node_status arrays) belong to the caller
 * and are released with the matching *_free function. rkc_last() points into
 * the client and is valid until the next call on it.
 */
#ifndef RK_CLIENT_H
#define RK_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#define RKC_KEY_MAX       4096u
#define RKC_VALUE_MAX     (1u << 20)
#define RKC_MAX_REPLICAS  7
#define RKC_ADDR_MAX      64
#define RKC_MAX_ENDPOINTS 64

typedef struct rkc_client rkc_client;

typedef struct rkc_options {
  const char *const *endpoints; /* "host:port" client addresses of some nodes */
  size_t n_endpoints;           /* 1..RKC_MAX_ENDPOINTS */
  uint64_t cluster_id;          /* 0: any (learned from the first node) */
  uint32_t timeout_ms;          /* per-call deadline (default 5000) */
  uint32_t connect_timeout_ms;  /* one connect + handshake attempt (default 1000) */
  uint32_t read_attempt_ms;     /* one read attempt before trying another replica (1000) */
  uint32_t backoff_min_ms;      /* first retry pause (default 5) */
  uint32_t backoff_max_ms;      /* pause cap, doubling from min (default 200) */
} rkc_options;

void rkc_options_default(rkc_options *o);

/* Copies the options and endpoints; connects lazily (the first call fetches
 * the range table). RK_EINVAL for no/too many endpoints or an address longer
 * than RKC_ADDR_MAX - 1; RK_ENOMEM. */
int rkc_open(rkc_client **out, const rkc_options *o);
void rkc_close(rkc_client *c);

/* What the last call did (for logs, per-range statistics and histories). */
typedef struct rkc_call_info {
  int err;             /* the call's return value */
  int outcome_unknown; /* == rkc_outcome_unknown(err) */
  uint64_t range_id;   /* the range the key routed to (0: none) */
  uint32_t node_id;    /* the node that answered last (0: none) */
  uint32_t attempts;   /* data requests sent (table fetches not counted) */
  char detail[160];    /* human detail of the failure ("" on success) */
} rkc_call_info;
const rkc_call_info *rkc_last(const rkc_client *c);

/* 1 when err means "may or may not have taken effect" (see above). */
int rkc_outcome_unknown(int err);

/* A byte buffer the caller frees with rkc_buf_free (data NUL-terminated for
 * convenience; len excludes the NUL). */
typedef struct rkc_buf {
  uint8_t *data;
  size_t len;
} rkc_buf;
void rkc_buf_free(rkc_buf *b);

int rkc_put(rkc_client *c, const void *key, size_t klen, const void *val, size_t vlen);
/* Linearizable read. *found = 0 and val empty when the key is absent. */
int rkc_get(rkc_client *c, const void *key, size_t klen, rkc_buf *val, int *found);
int rkc_del(rkc_client *c, const void *key, size_t klen);
/* Compare-and-set: installs nv iff the current value equals expected
 * (expected == NULL: iff the key is absent). *swapped tells which. */
int rkc_cas(rkc_client *c, const void *key, size_t klen, const void *expected, size_t elen,
            const void *nv, size_t nlen, int *swapped);

typedef struct rkc_kv {
  rkc_buf key, value;
} rkc_kv;
typedef struct rkc_kvs {
  rkc_kv *v;
  size_t n;
  int more; /* the limit cut the scan short */
} rkc_kvs;
void rkc_kvs_free(rkc_kvs *k);

/* Keys in [start, end) in key order, at most limit (0: 1000). end_len 0 =
 * to the end of the key space. Each part (a range, or a page of a large
 * range resumed after the node's 4 MiB / 10,000-row cut) is one
 * linearizable read taken after the call began, so every write
 * acknowledged before it is seen; the concatenation is not one atomic
 * snapshot across parts. */
int rkc_scan(rkc_client *c, const void *start, size_t slen, const void *end, size_t elen,
             uint32_t limit, rkc_kvs *out);

/* ---- the range table and node status --------------------------------------- */

typedef struct rkc_range {
  uint64_t id;
  uint8_t *start, *end; /* owned; end_len 0 = +infinity */
  size_t start_len, end_len;
  uint32_t replicas[RKC_MAX_REPLICAS];
  uint32_t n_replicas;
  uint32_t leader; /* 0: unknown */
  uint64_t term, commit, applied;
  int quiesced;
  /* A node that took a request and gave no answer (a stalled or dead
   * process): not tried again for this range, nor followed as a leader
   * hint, until shunned_until_ns or until it answers something. */
  uint32_t shunned;
  uint64_t shunned_until_ns;
} rkc_range;

typedef struct rkc_node {
  uint32_t id;
  char client_addr[RKC_ADDR_MAX];
  char peer_addr[RKC_ADDR_MAX];
  char zone[32];
  int live;
} rkc_node;

typedef struct rkc_ranges {
  rkc_range *v; /* sorted by start key */
  size_t n;
  rkc_node *nodes;
  size_t n_nodes;
} rkc_ranges;
void rkc_ranges_free(rkc_ranges *t);

/* A fresh copy of the range table as one node reports it (leaders as that
 * node knows them). Also refreshes the client's cache. */
int rkc_ranges_get(rkc_client *c, rkc_ranges *out);
/* Polls the range table every 50 ms until every range reports a leader, for
 * at most timeout_ms (a fresh cluster elects for about one election
 * timeout: workloads started before measure the elections). *led / *total:
 * the last poll's counts. RK_OK, or RK_ETIMEOUT. */
int rkc_wait_leaders(rkc_client *c, uint32_t timeout_ms, size_t *led, size_t *total);
/* The range holding key, or NULL when the table does not cover it. */
const rkc_range *rkc_ranges_lookup(const rkc_ranges *t, const void *key, size_t klen);
/* RK_OK if the ranges are sorted, start at "" and tile the key space up to
 * +infinity without gaps or overlaps; RK_ECORRUPT otherwise. */
int rkc_ranges_check(const rkc_ranges *t);
/* Index of the range in t->v that holds key (t must pass rkc_ranges_check). */
size_t rkc_ranges_index(const rkc_ranges *t, const void *key, size_t klen);

typedef struct rkc_node_status {
  uint32_t node_id;
  char client_addr[RKC_ADDR_MAX];
  int err; /* RK_OK, or why this node did not answer */
  uint64_t replicas, leaders, quiesced;
  uint64_t wal_bytes, wal_fsyncs, applied_entries, max_term, uptime_ms;
  uint64_t log_entries;  /* entries held in its replicas' logs (compaction bounds it) */
  uint64_t wal_segments; /* WAL segment files live */
  uint64_t wal_recycled; /* WAL segments made from spare files since start */
  /* Range snapshots since the node started: streamed to others, installed,
   * and streams abandoned or refused (sending or receiving). */
  uint64_t snapshots_sent, snapshots_installed, snapshots_dropped;
  uint64_t snapshots_streaming;   /* snapshot streams it is sending now */
  uint64_t snapshot_staged_bytes; /* image bytes of received snapshots on its disk */
  char zone[32];
  /* Sums of the commit / applied indexes of the replicas this node holds
   * (its own OP_RANGES answer); their difference is the apply backlog. */
  int have_indexes;
  uint64_t sum_commit, sum_applied;
} rkc_node_status;

/* OP_STATUS on every node of the table (one entry per node, unreachable ones
 * with err set). RK_ENOQUORUM when no node answered the range table. The
 * exception to "at most the deadline": after the table (within timeout_ms)
 * each node gets its own connect_timeout_ms + read_attempt_ms, so one dead
 * node cannot hide the others. */
int rkc_status(rkc_client *c, rkc_node_status **out, size_t *n);

/* Splits "a:1,b:2" into at most cap addresses written to addrs (each
 * RKC_ADDR_MAX bytes). RK_EINVAL for an empty list, an empty item, an item
 * without a port or too long, or more than cap items. */
int rkc_parse_endpoints(const char *list, char (*addrs)[RKC_ADDR_MAX], size_t cap, size_t *n);

#endif
