/* tests/integration/cluster.h — real `rangekv start` processes on 127.0.0.1
 * for integration tests (prefix itc_).
 *
 * itc_start() makes a fresh dir (mkdtemp under $TMPDIR or /tmp), picks free
 * ports, starts N nodes (fork/exec of RK_BINARY; stdout -> DIR/nodeI.out,
 * stderr -> DIR/nodeI.log; PR_SET_PDEATHSIG = SIGKILL so a crashed test
 * process cannot leave nodes behind) and waits for each ready line with a
 * deadline. Faults act on one node by PID: kill -9, SIGSTOP / SIGCONT,
 * restart with the same data dir and ports.
 *
 * Cleanup: itc_stop_all() (call it from the suite's .fini, which Criterion
 * runs after a failed assertion too) continues stopped nodes, sends SIGTERM,
 * waits up to 10 s, SIGKILLs what is left, reaps every PID, and removes the
 * dir unless the test failed or a node did not stop cleanly (itc_keep(); a
 * failed cr_assert calls it through the link's wrap of
 * criterion_abort_test, see cluster.c) or RK_ITEST_KEEP=1 is set (every
 * run's files, to compare a flaky failure with passes). Every started
 * cluster is also in a registry that an atexit() handler sweeps.
 */
#ifndef RK_TEST_ITC_CLUSTER_H
#define RK_TEST_ITC_CLUSTER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define ITC_MAX_NODES 5

typedef struct itc_node {
  uint32_t id;
  pid_t pid;   /* 0: not running */
  int stopped; /* SIGSTOPped */
  char peer[32], client[32];
  char data_dir[512], out_path[512], log_path[512];
} itc_node;

typedef struct itc_cluster {
  int n;
  itc_node nodes[ITC_MAX_NODES];
  char dir[256];
  char initial[512];
  uint32_t ranges, tick_ms, election_ticks;
  const char *extra[8]; /* more `rangekv start` flags (set before itc_start) */
  int n_extra;
  /* Set before itc_start, per node (NULL: the defaults): the address its
   * listeners bind (default 127.0.0.1) and the network namespace it runs
   * in (`ip netns exec`; netns.h). */
  const char *host[ITC_MAX_NODES];
  const char *netns[ITC_MAX_NODES];
  int keep; /* keep the dir at the end (failure evidence) */
  int live; /* registered */
} itc_cluster;

/* Starts n nodes with `ranges` ranges; tick_ms / election_ticks as given (0:
 * node defaults). Waits up to 30 s for every ready line. 0 on success; -1
 * with a message in err (the cluster is then stopped). */
int itc_start(itc_cluster *c, int n, uint32_t ranges, uint32_t tick_ms, uint32_t election_ticks,
              char *err, size_t errcap);
/* Node i (0-based) again, same data dir and ports; waits for its ready line. */
int itc_restart(itc_cluster *c, int i, char *err, size_t errcap);
void itc_kill9(itc_cluster *c, int i); /* SIGKILL and reap */
void itc_sigstop(itc_cluster *c, int i);
/* Removes node i's data dir (the node must not be running): a replacement
 * machine with the same id and addresses. 0 on success. */
int itc_wipe(itc_cluster *c, int i);
void itc_sigcont(itc_cluster *c, int i);
/* Index of the node with this id, or -1. */
int itc_index_of(const itc_cluster *c, uint32_t id);
/* "a,b,c": every node's client address (or only node i's if only >= 0). */
void itc_endpoints(const itc_cluster *c, int only, char *buf, size_t cap);
void itc_keep(itc_cluster *c);
/* Stops and reaps everything; removes the dir unless kept. Idempotent. */
void itc_stop_all(itc_cluster *c);
/* How many lines of node i's log (stderr) contain needle; has: 1 if any. */
int itc_log_count(const itc_cluster *c, int i, const char *needle);
int itc_log_has(const itc_cluster *c, int i, const char *needle);
/* Prints the last lines of node i's log to stderr. */
void itc_dump_log(const itc_cluster *c, int i, int lines);

/* CLOCK_MONOTONIC in ns. */
uint64_t itc_now_ns(void);
/* The pause between two looks of a bounded polling loop (never used to
 * wait for something to have happened). */
void itc_sleep_ms(unsigned ms);
/* Waits (polling every 10 ms) until pid exits or timeout_ms passes. Returns
 * 1 and the wait status in *status if it exited, 0 on timeout (the process
 * is left running; the caller decides). */
int itc_wait_exit(pid_t pid, unsigned timeout_ms, int *status);

#endif
