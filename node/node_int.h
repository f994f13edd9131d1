/* node/node_int.h — the node's private state, shared by node.c (loop and
 * wiring), node_apply.c (state machine) and node_client.c (requests). */
#ifndef NODE_NODE_INT_H
#define NODE_NODE_INT_H

#include "engine/state.h"
#include "engine/wal.h"
#include "kv/kvcmd.h"
#include "multiraft/host.h"
#include "node/node.h"
#include "range/keyspan.h"
#include "transport/net.h"

#include "rangekv.pb-c.h"

#include <pthread.h>

/* The WAL's batch limit, and the most one range may have proposed but not
 * applied at its leader (so one range's share of a turn fits a WAL batch). */
#define NODE_WAL_BATCH_BYTES (16u << 20)
#define NODE_MAX_UNCOMMITTED (4u << 20)
/* Ticks between log compaction rounds (node.c, node_compact). */
#define NODE_COMPACT_EVERY_TICKS 50u
/* Range snapshots (node_snap.c): the most image bytes one may carry (the
 * receiver stages it on disk, and at most two over all peers); the image
 * bytes per SNAP_CHUNK frame; the bytes a stream keeps queued towards its
 * peer (so Raft frames interleave); streams a node sends at once; received
 * snapshots staged and handed to a core but not yet installed. */
#define NODE_SNAP_MAX_BYTES   (4ull << 30)
#define NODE_SNAP_CHUNK_BYTES (1u << 20)
/* The most protobuf framing one pair adds to a packed image (element tag and
 * length, key tag and length, value tag and length: 11 bytes at the KV
 * limits). A sender counts it with the pair's bytes, so an image of tiny
 * pairs stops at NODE_SNAP_CHUNK_BYTES packed, not at that many raw bytes. */
#define NODE_SNAP_PAIR_FRAMING 12u
/* The most a sender's chunk image can be: it stops adding pairs once past
 * NODE_SNAP_CHUNK_BYTES packed, so the last one (key, value and their
 * framing) may go over by one pair. A receiver refuses a bigger one before
 * unpacking it: protobuf-c unpacks tiny repeated pairs into ~40 times their
 * wire size, so a 16 MiB frame could cost 640 MB at once. */
#define NODE_SNAP_CHUNK_MAX_IMAGE (NODE_SNAP_CHUNK_BYTES + KV_MAX_KEY + KV_MAX_VALUE + 64u)
/* The most an InstallSnapshot's descriptor (range id, stream, chunks) packs to. */
#define NODE_SNAP_DESC_MAX    64u
#define NODE_SNAP_WINDOW      (4u << 20)
#define NODE_SNAP_MAX_STREAMS 4u
#define NODE_SNAP_MAX_SEALED  8u
#define NODE_SNAP_DONE_KEPT   16u
/* Chunks one stream may read and queue per loop iteration. */
#define NODE_SNAP_CHUNKS_PER_PUMP 2
/* A stream that queues nothing for this long is abandoned (sender), and
 * staging that receives nothing for this long is dropped (receiver). */
#define NODE_SNAP_IDLE_MS 10000u
/* After a range proved too big for a snapshot, none is tried again for it
 * for this long. */
#define NODE_SNAP_TOO_BIG_BACKOFF_MS 60000u
/* After a receiver dropped a stream (it said so), no new one is opened for
 * that range for this long, doubled for each further abort (up to
 * NODE_SNAP_TOO_BIG_BACKOFF_MS) until a stream is sent whole. */
#define NODE_SNAP_ABORT_BACKOFF_MS 1000u
/* Rows one SCAN request may return (clients page with the last key). */
#define NODE_SCAN_MAX_ROWS 10000u
/* Key and value bytes one scan answer carries at most (it always carries one
 * row, ≤ 4 KiB + 1 MiB): far under the 16 MiB frame, and a bound on what one
 * request makes the node hold. The client resumes after its last key. */
#define NODE_SCAN_MAX_BYTES (4u << 20)

/* protobuf-c's string fields are not const; we only ever hand it strings
 * that outlive the pack call. One place for the qualifier drop. */
static inline char *node_pb_str(const char *s) {
  union {
    const char *c;
    char *m;
  } u = {.c = s};
  return u.m;
}

/* GET /metrics (node_metrics.c): scrapers at once, request size, and how
 * long a connection may take to send its request. */
#define NODE_METRICS_MAX_CONNS 8u
#define NODE_METRICS_REQ_MAX   4096u
#define NODE_METRICS_IDLE_MS   5000u
#define NODE_METRICS_SEND_MS   200u /* the most a response may hold the loop */

typedef struct node_metrics_conn {
  int fd; /* -1: free */
  struct node *n;
  uint64_t opened_ms;
  size_t len;
  char buf[NODE_METRICS_REQ_MAX];
} node_metrics_conn;

/* A write waiting for its entry to apply. */
typedef struct node_prop {
  uint64_t conn, req_id;
  uint64_t index, term; /* where it was proposed */
  uint64_t deadline_ms;
} node_prop;

/* A read waiting for ReadIndex and apply. */
typedef struct node_read {
  uint64_t conn, req_id;
  uint64_t ctx; /* our ReadIndex context, unique per node */
  uint64_t deadline_ms;
  int issued;           /* ReadIndex accepted by the core (else retried each tick) */
  uint64_t issued_term; /* ... in this term: a leader deposed and re-elected since
                           dropped it, and it is issued again */
  int op;               /* RANGEKV__CLIENT_OP__OP_GET / OP_SCAN */
  uint8_t *key, *end;
  size_t klen, elen;
  uint32_t limit;
} node_read;

/* What a tick does with a pending read (node_client_tick). */
typedef enum node_read_step {
  NODE_READ_WAIT,       /* its ReadIndex is out in the current term */
  NODE_READ_ISSUE,      /* never taken by the core, or dropped by a term change */
  NODE_READ_NOT_LEADER, /* answer RK_ENOTLEADER */
  NODE_READ_TIMED_OUT,  /* answer RK_ETIMEOUT */
} node_read_step;
/* leader: this replica leads the range now, in `term`. Pure (tests). */
node_read_step node_read_next(const node_read *rd, int leader, uint64_t term, uint64_t now_ms);

typedef struct node_range {
  range_desc desc;
  int local; /* this node holds a replica */
  struct node *n;
  uint64_t ops;     /* requests served, for status */
  node_prop *props; /* FIFO by index */
  size_t nprops, capprops;
  node_read *reads;
  size_t nreads, capreads;
  /* A commit-index update not yet written (io_persist, sync == 0). */
  int lazy_hs_set;
  rk_hard_state lazy_hs;
  uint64_t snap_refused_until_ms; /* too big, or refused: no snapshot before then */
  uint64_t snap_abort_backoff_ms; /* the last wait after a receiver's abort (0: none) */
} node_range;

/* An outgoing range snapshot: its image is read from a consistent state
 * store iterator and sent in SNAP_CHUNK frames, then the InstallSnapshot. */
typedef struct node_snap_tx {
  uint64_t stream; /* random, != 0 */
  uint64_t group;
  uint64_t index, term;
  mr_conf conf;
  eng_state_iter *it;
  uint32_t to_node; /* 0 until io_send hands over the core's message */
  uint64_t from, to, msg_term;
  uint32_t seq; /* chunks sent */
  uint64_t bytes, keys;
  uint64_t created_ms, t0_ns;
  uint64_t progress_ms; /* last time a chunk was queued */
} node_snap_tx;

/* An incoming stream from one peer (one at a time per peer), staged as an
 * SST file (node_snap_rx.c; node_snap.c, "RECEIVING"). */
typedef struct node_snap_rx {
  uint64_t stream, range;
  uint32_t next_seq;
  eng_state_sst *sst; /* the staged file, numbered `file` */
  uint64_t file;
  uint64_t len, keys; /* image bytes and pairs so far */
  uint64_t last_ms;   /* last chunk */
  uint8_t *last_key;  /* the highest key so far (chunks are checked as they come) */
  size_t last_klen;
} node_snap_rx;

/* One eng_wal_append of a host persist batch. */
typedef struct node_wal_req {
  eng_wal_append_req req;
  struct node_persist *p;
} node_wal_req;

/* A received snapshot whose stream is complete and whose InstallSnapshot
 * went to the core, which may take it or not. Its file is completed (index,
 * filter, footer, sync) off the loop, by the installer. */
typedef struct node_snap_sealed {
  uint64_t range, index, file, bytes, keys;
  eng_state_sst *sst; /* not yet finished */
} node_snap_sealed;

/* One snapshot of a persist batch, installed off the loop (node_snap_install.c). */
typedef struct node_snap_install_one {
  node_range *r;
  const mr_snapshot *snap;
  node_snap_sealed staged; /* file 0: an empty range, nothing staged */
  uint64_t ns;             /* for the log line */
} node_snap_install_one;

/* The writes of the ranges installing a snapshot in one persist batch (the
 * host gives each install a batch of its own, so one range today): the
 * installer thread makes the snapshots durable in the state store, then the
 * loop resets those ranges' logs and appends the writes to the WAL. */
typedef struct node_snap_job {
  struct node_snap_job *next;
  struct node_persist *p;
  mr_host_write *w; /* the snapshot ranges' writes (owned; their pointers are the host's) */
  size_t nw;
  int rc;
  size_t n;
  node_snap_install_one one[];
} node_snap_job;

typedef struct node_snap_installer {
  int inited, started, stop;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  node_snap_job *todo, *done; /* FIFO each; under mu */
  int efd;                    /* eventfd: the loop learns of done jobs */
} node_snap_installer;

typedef struct node_persist {
  struct node *n;
  uint64_t batch;
  size_t remaining; /* parts not yet durable (node_persist_release) */
  int rc;
} node_persist;

typedef struct node {
  node_config cfg;
  uint64_t cluster_id;
  eng_wal *wal;
  eng_state *state;
  tp_net *net;
  mr_host *host;
  rk_rand rng;
  range_table table;
  node_range *ranges;                                /* by id - 1 */
  char client_addr[NODE_MAX_NODES + 1][TP_ADDR_MAX]; /* by node id */
  int timer_fd, signal_fd;
  int stop;
  int fatal; /* the error that stopped the node */
  uint64_t start_ms;
  uint64_t next_ctx;
  uint64_t applied_entries;
  uint64_t bad_frames;
  /* Set whenever a request starts waiting; cleared by a tick that finds no
   * range with anything pending, so idle ticks do not walk every range. */
  int maybe_pending;
  eng_state_batch *batch;
  uint64_t *lazy; /* ids of the ranges with lazy_hs_set, in order of first update */
  size_t nlazy, caplazy;
  uint32_t ticks_since_compact;
  uint64_t snapshots_sent, snapshots_installed, snapshots_too_big, snapshots_dropped;
  node_snap_tx tx[NODE_SNAP_MAX_STREAMS];
  /* The last streams sent whole (their InstallSnapshot queued), newest at
   * tx_done_next - 1: an abort for one still reaches the core
   * (node_snap_rx.c, on_abort). Small streams end before their abort
   * comes back, so more than one per peer. */
  struct {
    uint32_t peer;
    uint64_t stream, group, to;
  } tx_done[NODE_SNAP_DONE_KEPT];
  uint32_t tx_done_next;
  uint32_t ntx;
  node_snap_rx rx[NODE_MAX_NODES + 1];     /* by peer node id */
  uint64_t rx_aborted[NODE_MAX_NODES + 1]; /* the stream last refused to each peer */
  uint64_t snap_aborts_sent;
  uint32_t snap_chunk_bytes; /* NODE_SNAP_CHUNK_BYTES; tests shrink it */
  uint64_t snap_max_bytes;   /* NODE_SNAP_MAX_BYTES; unit tests shrink it */
  uint64_t rx_bytes;         /* staged over every peer, sealed and installing included */
  node_snap_sealed sealed[NODE_SNAP_MAX_SEALED];
  uint32_t nsealed;
  uint64_t next_file;           /* staged files' numbers (random start) */
  uint64_t wal_segment_bytes;   /* 0: the WAL's default; tests shrink it */
  uint64_t wal_batch_bytes;     /* NODE_WAL_BATCH_BYTES; half a test segment */
  uint64_t wal_max_entry_bytes; /* the WAL's limit, and the Raft cores' (start_host) */
  node_snap_installer installer;
  int metrics_fd;     /* -1: no --metrics-listen */
  int metrics_paused; /* listener unwatched after EMFILE, until the next tick */
  node_metrics_conn mconn[NODE_METRICS_MAX_CONNS];
  uint64_t metrics_requests;
  /* Test hooks: RK_TEST_CRASH_POINT=snapshot-state makes the node exit with
   * NODE_TEST_CRASH_EXIT once a snapshot is durable in the state store and
   * before its WAL reset is (the crash node_snap_reconcile repairs);
   * snapshot-ingest once a staged file is ingested and before the applied
   * index and the mark are written (the crash the intent's redo repairs). */
  int crash_after_snapshot_state, crash_after_snapshot_ingest;
  int test_fail_state_sync;       /* node_compact's state-store sync fails (EIO) */
  int64_t test_wal_fsync_fail_at; /* -1, or the WAL's n-th data fsync fails (EIO) */
  int64_t test_wal_read_fail_at;  /* -1, or the WAL's n-th entry read from a file fails */
  /* Test hook: RK_TEST_SNAP_REFUSE=N makes the node refuse the first N
   * snapshot streams it is sent (as a full staging area would). */
  uint32_t test_refuse_streams;
} node;

#define NODE_TEST_CRASH_EXIT 86
/* Exit status when reading the WAL or the state store fails (EX_IOERR of
 * sysexits.h): a range's log or data cannot be read, so the node stops at
 * once with the error named, as a crash would leave it (both stores
 * recover), without an abort's core dump (node_storage_fault). */
#define NODE_EXIT_STORAGE 74
/* Whether the node is stopping (n->fatal, which a stopped WAL sets here if
 * nothing has yet). Every event handler asks first: once it is, no Raft core
 * is touched again, since a stopped WAL answers their storage reads with
 * RK_ESTOPPED. The WAL can stop inside an append or a purge, not only in
 * on_wal. */
int node_stopping(node *n);
/* Logs what could not be read (of range, 0: of no one range) and exits
 * NODE_EXIT_STORAGE. */
_Noreturn void node_storage_fault(const node *n, uint64_t range, const char *what, int rc);

uint64_t node_now_ms(void);
/* node_apply.c: the host's apply and read_ready callbacks. */
void node_apply(void *ctx, const mr_host_apply *a, size_t n);
void node_read_ready(void *ctx, uint64_t group, uint64_t read_ctx, uint64_t index);
/* node_client.c */
void node_on_client_frame(void *ctx, uint64_t conn, uint16_t type, const uint8_t *payload,
                          uint32_t len);
void node_on_client_closed(void *ctx, uint64_t conn);
/* Retries unissued reads, answers requests past their deadline or whose
 * range this node no longer leads. Once per tick. */
void node_client_tick(node *n);
/* Sends a response (fills id; packs; queues). */
void node_respond(node *n, uint64_t conn, Rangekv__ClientResponse *resp);
void node_respond_error(node *n, uint64_t conn, uint64_t req_id, int code, const char *detail,
                        const node_range *r);
/* The node leading range r as this node sees it, 0 if unknown or not local. */
uint32_t node_range_leader(node *n, const node_range *r);
void node_range_drop_pending(node_range *r);
/* Totals over the replicas this node holds (status and metrics). */
typedef struct node_totals {
  uint64_t leaders, max_term, log_entries;
  /* the cores' mr_counters, summed: messages refused as impossible
   * (everything but stale terms), and appends dropped over the unstable cap */
  uint64_t raft_bad_input, raft_appends_dropped;
} node_totals;
void node_collect_totals(node *n, node_totals *t);
/* node_metrics.c: GET /metrics on cfg.metrics_listen (if set); the bound
 * address goes to bound. */
int node_metrics_start(node *n, char *bound, size_t cap);
void node_metrics_tick(node *n); /* closes connections idle too long */
void node_metrics_stop(node *n);
/* 200, 400, 404, 405 for an HTTP request's first bytes (pure; tests). */
int node_metrics_route(const char *req, size_t len);
/* node_snap.c: range snapshots (see its header comment). */
void node_range_conf(const node_range *r, mr_conf *out);
void node_desc_conf(const range_desc *d, mr_conf *out);
/* The storage `snapshot` op: opens a stream of the range's image at its
 * applied index; the snapshot's data names the stream. RK_EUNAVAILABLE
 * while the range already streams one, or NODE_SNAP_MAX_STREAMS do. */
int node_snap_build(node *n, node_range *r, mr_snapshot *out);
/* io_send hands over a core's InstallSnapshot instead of framing it. */
void node_snap_send(node *n, uint32_t to_node, const mr_host_gmsg *gm);
/* Sends what the window allows of every stream; once per loop iteration.
 * Returns 1 while streams remain (the loop then polls with a short
 * timeout, since a draining queue wakes nobody). */
int node_snap_pump(node *n);
/* 1 if the range is small enough to compact past a lagging replica: a
 * snapshot of it will fit NODE_SNAP_MAX_BYTES with room to grow. */
int node_snap_fits(node *n, node_range *r);
/* The lowest snapshot index the range is streaming (UINT64_MAX if none):
 * compaction must not pass it, or the follower needs another at once. */
uint64_t node_snap_streaming_at(const node *n, uint64_t group);
/* Once per tick: drops staging that went idle, and node_snap_settle. */
void node_snap_tick(node *n);
/* Removes every staged snapshot no core holds as its pending snapshot: the
 * core refused it (stale term, its commit already there) or took a newer
 * one. Exact: a core installs only its pending snapshot, and
 * node_snap_persist takes the file out of the list when it does. Called
 * after each frame that carried a snapshot, and on ticks. */
void node_snap_settle(node *n);
/* A SNAP_CHUNK frame from peer `from`: a piece of a stream it sends us, or
 * its word that it dropped a stream we send it. RK_EMALFORMED if it does
 * not parse; a chunk out of sequence only drops that stream (and tells the
 * sender so, once per stream). */
int node_snap_on_chunk(node *n, uint32_t from, const uint8_t *payload, size_t len);
/* Seals peer `from`'s staged stream and makes the InstallSnapshot's data
 * name the staged file. RK_OK, or RK_EUNAVAILABLE if the stream is not
 * complete here (lost chunks: the leader tries again), RK_EMALFORMED if
 * the data is no stream descriptor of that range or the snapshot fails
 * node_snap_check. */
int node_snap_assemble(node *n, uint32_t from, mr_host_gmsg *gm);
/* RK_OK if s is a snapshot of range d: an index below UINT64_MAX - 1, the
 * range's configuration, and (check_data) data that is a RangeSnapshot of
 * d (its id, keys inside d's span in strictly increasing order, key and
 * value sizes within the KV limits); RK_EMALFORMED otherwise. A streamed
 * image was checked chunk by chunk (node_snap_on_chunk): check_data = 0.
 * Pure (tests use it). */
int node_snap_check(const range_desc *d, const mr_snapshot *s, int check_data);
/* A new connection to a peer: any stream to or from it is broken. */
void node_snap_peer_up(node *n, uint32_t peer);
/* Start-up, after every range's reconcile: creates the staging directory
 * and removes what a previous run left there. */
int node_snap_staging_open(node *n);
/* Frees the streams and staging (shutdown). */
void node_snap_free(node *n);
/* The writes w[0, nw) of persist batch p that hold snapshots (w is taken:
 * freed here): the installer thread makes the snapshots durable in the
 * state store, then the loop resets those ranges' logs, appends the writes
 * (node_persist_add) and releases the part of p the caller added for them.
 * RK_OK, or an error with nothing started (w freed, the part not released). */
int node_snap_persist(node *n, node_persist *p, mr_host_write *w, size_t nw);
int node_snap_installer_init(node *n);
/* node.c: a persist batch in parts (see node_persist_new). */
node_persist *node_persist_new(node *n, uint64_t batch);
/* Appends writes to the WAL as parts of p (in chunks). */
void node_persist_add(node_persist *p, const mr_host_write *w, size_t nw);
/* One part of p is durable (rc RK_OK) or failed; the last completes it. */
void node_persist_release(node_persist *p, int rc);
/* Start-up: finishes an install a crash interrupted (its intent record
 * names the staged file: ingested again), then resets the range's log to
 * a snapshot the state store holds but the WAL does not (a crash between
 * the two steps of an install). Sets *snap_term to the last installed
 * snapshot's term (0: none). */
int node_snap_reconcile(node *n, node_range *r, uint64_t *snap_term);
/* Start-up: the hard state a range's core boots with, from the WAL's (hs;
 * found = 0 if it has none), the state store's applied index, and the last
 * installed snapshot's term (0: none). */
void node_boot_hard_state(rk_hard_state *hs, int found, uint64_t applied, uint64_t snap_term);

#endif
