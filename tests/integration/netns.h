/* tests/integration/netns.h — network namespaces for tests that cut the
 * network between real nodes (prefix itn_).
 *
 * itn_setup() makes a hub namespace holding a bridge and, per node, one
 * namespace joined to the bridge by a veth pair, with address 10.X.Y.i
 * (X.Y from the test process's PID, so parallel runs do not meet). It then
 * moves the calling thread into the hub namespace (setns), where the
 * bridge has 10.X.Y.254: the test's clients reach every node, and nodes it
 * spawns start in the hub until `ip netns exec` puts each in its own.
 * Nothing is added to the machine's own namespace.
 *
 * itn_cut() makes node i and the others silent to each other: blackhole
 * routes on both sides, so packets vanish without an error or a reset —
 * the partition a pulled cable or a dead switch makes. The hub (the test)
 * still reaches every node. itn_teardown() returns the thread to its
 * namespace and deletes every namespace it made (their veths go with
 * them); idempotent, and a no-op on a zeroed itn. Needs root and
 * iproute2's `ip`.
 */
#ifndef RK_TEST_ITN_NETNS_H
#define RK_TEST_ITN_NETNS_H

#include <stddef.h>

#define ITN_MAX_NODES 5

typedef struct itn {
  int n;
  char hub[48];
  char ns[ITN_MAX_NODES][48];
  char addr[ITN_MAX_NODES][32]; /* "10.X.Y.i" */
  char subnet[16];              /* "10.X.Y" */
  int home_fd;                  /* the thread's namespace before setup */
  int entered;                  /* the thread is in the hub (home_fd open) */
  int made;                     /* namespaces exist */
} itn;

/* 0, or -1 with a message in err (whatever was made is removed). */
int itn_setup(itn *t, int n, char *err, size_t errcap);
/* on = 1 cuts node i (0-based) from the other nodes, 0 heals it. 0 or -1. */
int itn_cut(itn *t, int i, int on);
void itn_teardown(itn *t);

#endif
