/* The client CLI (`rangekv put|get|del|scan|status|ranges`) as a user runs
 * it: usage errors exit 2 with one line, failures exit 1 with one line
 * ("no quorum: ..."), and against a real cluster every command works. */
#include "itest.h"

#include "tests/lib/proc.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>

static void fini(void) { it_fini(); }

TestSuite(cli_client, .fini = fini);

static proc_result pr;

#define RUNP(...)                                                                                  \
  do {                                                                                             \
    char *argv_[] = {RK_BINARY, __VA_ARGS__, NULL};                                                \
    cr_assert_eq(proc_run(argv_, 30000, &pr), 0);                                                  \
    cr_assert(!pr.timed_out && pr.exited, "rangekv did not exit by itself");                       \
  } while (0)

static void assert_usage(const char *needle) {
  cr_assert_eq(pr.status, 2, "exit %d, stderr: %s", pr.status, pr.err);
  cr_assert_not_null(strstr(pr.err, needle), "stderr lacks '%s': %s", needle, pr.err);
  const char *nl = strchr(pr.err, '\n');
  cr_assert(nl && strncmp(nl + 1, "usage:", 6) == 0, "not one line + usage: %s", pr.err);
}

Test(cli_client, usage_errors_exit_2_with_one_line) {
  unsetenv("RANGEKV_ENDPOINTS");
  RUNP("put", "k", "v");
  assert_usage("no endpoints");
  RUNP("get", "--endpoints", "127.0.0.1:1");
  assert_usage("expected 1 argument, got 0");
  RUNP("get", "a", "b", "--endpoints", "127.0.0.1:1");
  assert_usage("unexpected argument 'b'");
  RUNP("scan", "a", "--endpoints", "127.0.0.1:1");
  assert_usage("expected 2 arguments");
  RUNP("get", "a", "--limit", "3", "--endpoints", "127.0.0.1:1");
  assert_usage("--limit applies to scan only");
  RUNP("put", "a", "b", "--endpoints", "nocolon");
  assert_usage("bad endpoint list");
  RUNP("scan", "a", "b", "--limit", "0", "--endpoints", "127.0.0.1:1");
  assert_usage("--limit");
  RUNP("status", "--timeout", "x", "--endpoints", "127.0.0.1:1");
  assert_usage("--timeout");
}

Test(cli_client, nothing_listening_is_no_quorum_exit_1) {
  /* A port nobody listens on: bound, read, released. */
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
  close(fd);
  char ep[64];
  snprintf(ep, sizeof ep, "127.0.0.1:%d", ntohs(a.sin_port));
  RUNP("put", "k", "v", "--endpoints", ep, "--timeout", "300");
  cr_assert_eq(pr.status, 1, "exit %d: %s", pr.status, pr.err);
  cr_assert(
      strncmp(pr.err, "rangekv put: no quorum: no leader reachable within the deadline", 63) == 0,
      "%s", pr.err);
  cr_assert_eq(strchr(pr.err, '\n'), pr.err + strlen(pr.err) - 1, "one line: %s", pr.err);
}

Test(cli_client, every_command_against_a_cluster) {
  it_start(3);
  char eps[256];
  itc_endpoints(&itc, -1, eps, sizeof eps);
  RUNP("put", "k1", "hello", "--endpoints", eps);
  cr_assert_eq(pr.status, 0, "%s", pr.err);
  cr_assert_str_eq(pr.out, "OK\n");
  /* The environment variable works too. */
  setenv("RANGEKV_ENDPOINTS", eps, 1);
  RUNP("get", "k1");
  cr_assert_eq(pr.status, 0, "%s", pr.err);
  cr_assert_str_eq(pr.out, "hello\n");
  RUNP("put", "k2", "world");
  RUNP("put", "a0", "x");
  RUNP("scan", "k", "");
  cr_assert_eq(pr.status, 0, "%s", pr.err);
  cr_assert_str_eq(pr.out, "k1\thello\nk2\tworld\n");
  RUNP("scan", "", "", "--limit", "1");
  cr_assert_str_eq(pr.out, "a0\tx\n");
  cr_assert_not_null(strstr(pr.err, "--limit 1 reached"));
  RUNP("del", "k1");
  cr_assert_eq(pr.status, 0);
  RUNP("get", "k1");
  cr_assert_eq(pr.status, 1);
  cr_assert_str_eq(pr.err, "rangekv get: not found: k1\n");
  RUNP("ranges");
  cr_assert_eq(pr.status, 0, "%s", pr.err);
  cr_assert_not_null(strstr(pr.out, "range   span"), "%s", pr.out);
  cr_assert_not_null(strstr(pr.out, "[\"\", 2000)"), "%s", pr.out); /* 8 ranges: 0x2000 apart */
  cr_assert_not_null(strstr(pr.out, "[e000, +inf)"), "%s", pr.out);
  RUNP("status");
  cr_assert_eq(pr.status, 0, "%s", pr.err);
  for (int i = 0; i < 3; i++) cr_assert_not_null(strstr(pr.out, itc.nodes[i].client), "%s", pr.out);
  /* One node down: status still prints the others and exits 1. */
  itc_kill9(&itc, 2);
  RUNP("status", "--timeout", "3000");
  cr_assert_eq(pr.status, 1, "%s", pr.out);
  cr_assert_not_null(strstr(pr.out, "unreachable"), "%s", pr.out);
  cr_assert_not_null(strstr(pr.err, "1 of 3 nodes unreachable"), "%s", pr.err);
  unsetenv("RANGEKV_ENDPOINTS");
}
