#include "cluster.h"
#include "transport/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define READY_TIMEOUT_NS (30ull * 1000000000ull)

uint64_t itc_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void itc_sleep_ms(unsigned ms) {
  struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

int itc_wait_exit(pid_t pid, unsigned timeout_ms, int *status) {
  uint64_t until = itc_now_ns() + (uint64_t)timeout_ms * 1000000ull;
  for (;;) {
    pid_t r = waitpid(pid, status, WNOHANG);
    if (r == pid) return 1;
    if (r < 0 || itc_now_ns() >= until) return 0;
    itc_sleep_ms(10);
  }
}

/* ---- registry: every live cluster is swept at exit ------------------------------- */

#define ITC_REG_MAX 8
static itc_cluster *registry[ITC_REG_MAX];
static int registry_hooked;

static void sweep(void) {
  for (int i = 0; i < ITC_REG_MAX; i++)
    if (registry[i]) itc_stop_all(registry[i]);
}

/* Every failed cr_assert ends in criterion_abort_test(); the link wraps it
 * (-Wl,--wrap, CMakeLists.txt) so a failure keeps every live cluster's
 * files for the post-mortem and puts the end of each node's log into the
 * test's output (which CI keeps when the temp dir is gone). */
_Noreturn void __real_criterion_abort_test(void);
_Noreturn void __wrap_criterion_abort_test(void);
_Noreturn void __wrap_criterion_abort_test(void) {
  for (int i = 0; i < ITC_REG_MAX; i++) {
    if (registry[i] == NULL) continue;
    itc_keep(registry[i]);
    for (int k = 0; k < registry[i]->n; k++) itc_dump_log(registry[i], k, 40);
  }
  __real_criterion_abort_test();
}

static void reg_add(itc_cluster *c) {
  if (!registry_hooked) {
    atexit(sweep);
    registry_hooked = 1;
  }
  for (int i = 0; i < ITC_REG_MAX; i++)
    if (registry[i] == NULL) {
      registry[i] = c;
      c->live = 1;
      return;
    }
}

static void reg_del(itc_cluster *c) {
  for (int i = 0; i < ITC_REG_MAX; i++)
    if (registry[i] == c) registry[i] = NULL;
  c->live = 0;
}

/* ---- processes -------------------------------------------------------------------- */

static pid_t spawn(const itc_cluster *c, const itc_node *n) {
  char id[16], nr[16], tick[16], el[16], peer[32], client[32], init[512], dd[512];
  snprintf(id, sizeof id, "%u", n->id);
  snprintf(nr, sizeof nr, "%u", c->ranges);
  snprintf(tick, sizeof tick, "%u", c->tick_ms);
  snprintf(el, sizeof el, "%u", c->election_ticks);
  snprintf(peer, sizeof peer, "%s", n->peer);
  snprintf(client, sizeof client, "%s", n->client);
  snprintf(init, sizeof init, "%s", c->initial);
  snprintf(dd, sizeof dd, "%s", n->data_dir);
  char *argv[26 + 8]; /* the fixed flags, then up to 8 extra */
  int a = 0;
  argv[a++] = RK_BINARY;
  /* Info, not the default warn: a failed run's kept logs then show who led,
   * who was declared down and which snapshots went where. */
  const char *level = getenv("RK_ITEST_LOG_LEVEL");
  argv[a++] = "--log-level";
  argv[a++] = (char *)(uintptr_t)(level != NULL && level[0] ? level : "info");
  argv[a++] = "start";
  argv[a++] = "--id";
  argv[a++] = id;
  argv[a++] = "--listen";
  argv[a++] = peer;
  argv[a++] = "--client-listen";
  argv[a++] = client;
  argv[a++] = "--initial-cluster";
  argv[a++] = init;
  argv[a++] = "--data-dir";
  argv[a++] = dd;
  argv[a++] = "--ranges";
  argv[a++] = nr;
  if (c->tick_ms) {
    argv[a++] = "--tick-ms";
    argv[a++] = tick;
  }
  if (c->election_ticks) {
    argv[a++] = "--election-ticks";
    argv[a++] = el;
  }
  for (int i = 0; i < c->n_extra && i < 8; i++) argv[a++] = (char *)(uintptr_t)c->extra[i];
  argv[a] = NULL;
  /* In a namespace: `ip netns exec NS rangekv ...` (ip execs it: same PID). */
  const char *ns = c->netns[n - c->nodes];
  char *nsargv[4 + 26 + 8];
  if (ns != NULL) {
    nsargv[0] = "ip";
    nsargv[1] = "netns";
    nsargv[2] = "exec";
    nsargv[3] = (char *)(uintptr_t)ns;
    memcpy(nsargv + 4, argv, (size_t)(a + 1) * sizeof *argv);
  }
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid != 0) return pid;
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(127);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  int fo = open(n->out_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
  int fe = open(n->log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
  int fi = open("/dev/null", O_RDONLY);
  if (fo < 0 || fe < 0 || fi < 0) _exit(127);
  dup2(fi, 0);
  dup2(fo, 1);
  dup2(fe, 2);
  if (ns != NULL)
    execvp("ip", nsargv);
  else
    execv(RK_BINARY, argv);
  _exit(127);
}

/* Counts "rangekv node N ready" lines in the node's stdout file. */
static int ready_lines(const itc_node *n) {
  FILE *f = fopen(n->out_path, "r");
  if (f == NULL) return 0;
  char needle[64], line[512];
  snprintf(needle, sizeof needle, "rangekv node %u ready", n->id);
  int k = 0;
  while (fgets(line, sizeof line, f))
    if (strstr(line, needle)) k++;
  fclose(f);
  return k;
}

/* Waits until node i has printed `want` ready lines, or died, or 30 s. */
static int wait_ready(itc_cluster *c, int i, int want, char *err, size_t errcap) {
  itc_node *n = &c->nodes[i];
  uint64_t until = itc_now_ns() + READY_TIMEOUT_NS;
  while (itc_now_ns() < until) {
    if (ready_lines(n) >= want) return 0;
    int st;
    if (waitpid(n->pid, &st, WNOHANG) == n->pid) {
      n->pid = 0;
      snprintf(err, errcap, "node %u exited (%s %d) before its ready line; log %s", n->id,
               WIFEXITED(st) ? "status" : "signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st),
               n->log_path);
      itc_dump_log(c, i, 15);
      return -1;
    }
    itc_sleep_ms(10);
  }
  snprintf(err, errcap, "node %u: no ready line within 30 s; log %s", n->id, n->log_path);
  itc_dump_log(c, i, 15);
  return -1;
}

/* One attempt. -2: a node could not bind its port (taken since we picked it). */
static int start_once(itc_cluster *c, int n, uint32_t ranges, uint32_t tick_ms,
                      uint32_t election_ticks, char *err, size_t errcap) {
  /* Everything is reset but the extra flags the caller set. */
  const char *extra[8], *host[ITC_MAX_NODES], *netns[ITC_MAX_NODES];
  int n_extra = c->n_extra;
  memcpy(extra, c->extra, sizeof extra);
  memcpy(host, c->host, sizeof host);
  memcpy(netns, c->netns, sizeof netns);
  memset(c, 0, sizeof *c);
  memcpy(c->extra, extra, sizeof extra);
  memcpy(c->host, host, sizeof host);
  memcpy(c->netns, netns, sizeof netns);
  c->n_extra = n_extra;
  if (n < 1 || n > ITC_MAX_NODES) {
    snprintf(err, errcap, "bad node count %d", n);
    return -1;
  }
  c->n = n;
  c->ranges = ranges;
  c->tick_ms = tick_ms;
  c->election_ticks = election_ticks;
  const char *tmp = getenv("TMPDIR");
  snprintf(c->dir, sizeof c->dir, "%s/rangekv-itest-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (mkdtemp(c->dir) == NULL) {
    snprintf(err, errcap, "mkdtemp: %s", strerror(errno));
    return -1;
  }
  reg_add(c);
  size_t off = 0;
  for (int i = 0; i < n; i++) {
    itc_node *nd = &c->nodes[i];
    nd->id = (uint32_t)i + 1;
    int pp = tp_pick_local_port(), cp = tp_pick_local_port();
    if (pp < 0 || cp < 0) {
      snprintf(err, errcap, "no free port");
      itc_stop_all(c);
      return -1;
    }
    const char *h = c->host[i] ? c->host[i] : "127.0.0.1";
    snprintf(nd->peer, sizeof nd->peer, "%s:%d", h, pp);
    snprintf(nd->client, sizeof nd->client, "%s:%d", h, cp);
    snprintf(nd->data_dir, sizeof nd->data_dir, "%s/node%u", c->dir, nd->id);
    snprintf(nd->out_path, sizeof nd->out_path, "%s/node%u.out", c->dir, nd->id);
    snprintf(nd->log_path, sizeof nd->log_path, "%s/node%u.log", c->dir, nd->id);
    off += (size_t)snprintf(c->initial + off, sizeof c->initial - off, "%s%u=%s", i ? "," : "",
                            nd->id, nd->peer);
  }
  for (int i = 0; i < n; i++) {
    c->nodes[i].pid = spawn(c, &c->nodes[i]);
    if (c->nodes[i].pid < 0) {
      c->nodes[i].pid = 0;
      snprintf(err, errcap, "fork: %s", strerror(errno));
      itc_keep(c);
      itc_stop_all(c);
      return -1;
    }
  }
  for (int i = 0; i < n; i++) {
    if (wait_ready(c, i, 1, err, errcap) != 0) {
      if (c->nodes[i].pid == 0 && itc_log_has(c, i, "Address already in use")) {
        itc_stop_all(c);
        return -2;
      }
      itc_keep(c);
      itc_stop_all(c);
      return -1;
    }
  }
  return 0;
}

int itc_start(itc_cluster *c, int n, uint32_t ranges, uint32_t tick_ms, uint32_t election_ticks,
              char *err, size_t errcap) {
  int rc = -2;
  for (int attempt = 0; attempt < 4 && rc == -2; attempt++) {
    rc = start_once(c, n, ranges, tick_ms, election_ticks, err, errcap);
    if (rc == -2) fprintf(stderr, "itc: a port was taken meanwhile (%s); new ports\n", err);
  }
  return rc == 0 ? 0 : -1;
}

int itc_restart(itc_cluster *c, int i, char *err, size_t errcap) {
  itc_node *n = &c->nodes[i];
  if (n->pid != 0) {
    snprintf(err, errcap, "node %u is still running", n->id);
    return -1;
  }
  int before = ready_lines(n);
  n->pid = spawn(c, n);
  if (n->pid < 0) {
    n->pid = 0;
    snprintf(err, errcap, "fork: %s", strerror(errno));
    return -1;
  }
  return wait_ready(c, i, before + 1, err, errcap);
}

void itc_kill9(itc_cluster *c, int i) {
  itc_node *n = &c->nodes[i];
  if (n->pid <= 0) return;
  kill(n->pid, SIGKILL);
  waitpid(n->pid, NULL, 0);
  n->pid = 0;
  n->stopped = 0;
}

void itc_sigstop(itc_cluster *c, int i) {
  itc_node *n = &c->nodes[i];
  if (n->pid <= 0) return;
  kill(n->pid, SIGSTOP);
  n->stopped = 1;
}

void itc_sigcont(itc_cluster *c, int i) {
  itc_node *n = &c->nodes[i];
  if (n->pid <= 0) return;
  kill(n->pid, SIGCONT);
  n->stopped = 0;
}

int itc_index_of(const itc_cluster *c, uint32_t id) {
  for (int i = 0; i < c->n; i++)
    if (c->nodes[i].id == id) return i;
  return -1;
}

void itc_endpoints(const itc_cluster *c, int only, char *buf, size_t cap) {
  size_t off = 0;
  buf[0] = 0;
  for (int i = 0; i < c->n; i++) {
    if (only >= 0 && i != only) continue;
    off += (size_t)snprintf(buf + off, cap - off, "%s%s", off ? "," : "", c->nodes[i].client);
    if (off >= cap) break;
  }
}

void itc_keep(itc_cluster *c) { c->keep = 1; }

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(path);
}

int itc_wipe(itc_cluster *c, int i) {
  const itc_node *n = &c->nodes[i];
  if (n->pid != 0) return -1;
  struct stat st;
  if (stat(n->data_dir, &st) != 0) return 0;
  return nftw(n->data_dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

void itc_stop_all(itc_cluster *c) {
  if (!c->live) return;
  for (int i = 0; i < c->n; i++) {
    itc_node *n = &c->nodes[i];
    if (n->pid <= 0) continue;
    if (n->stopped) kill(n->pid, SIGCONT);
    kill(n->pid, SIGTERM);
  }
  uint64_t until = itc_now_ns() + 10ull * 1000000000ull;
  for (;;) {
    int running = 0;
    for (int i = 0; i < c->n; i++) {
      itc_node *n = &c->nodes[i];
      if (n->pid <= 0) continue;
      int st;
      if (waitpid(n->pid, &st, WNOHANG) == n->pid) {
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
          fprintf(stderr, "itc: node %u stopped with %s %d (log %s)\n", n->id,
                  WIFEXITED(st) ? "status" : "signal",
                  WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), n->log_path);
          c->keep = 1;
        }
        n->pid = 0;
      } else {
        running++;
      }
    }
    if (running == 0 || itc_now_ns() >= until) break;
    itc_sleep_ms(10);
  }
  for (int i = 0; i < c->n; i++) {
    itc_node *n = &c->nodes[i];
    if (n->pid <= 0) continue;
    fprintf(stderr, "itc: node %u ignored SIGTERM for 10 s: SIGKILL\n", n->id);
    kill(n->pid, SIGKILL);
    waitpid(n->pid, NULL, 0);
    n->pid = 0;
    c->keep = 1;
  }
  const char *keep_env = getenv("RK_ITEST_KEEP"); /* to study a flaky run's logs */
  if (keep_env != NULL && keep_env[0] == '1') c->keep = 1;
  if (c->keep)
    fprintf(stderr, "itc: cluster files kept in %s\n", c->dir);
  else
    nftw(c->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
  reg_del(c);
}

void itc_dump_log(const itc_cluster *c, int i, int lines) {
  const itc_node *n = &c->nodes[i];
  FILE *f = fopen(n->log_path, "r");
  if (f == NULL) return;
  static char buf[64][400];
  int k = 0;
  while (fgets(buf[k % 64], sizeof buf[0], f)) k++;
  fclose(f);
  if (lines > 64) lines = 64;
  fprintf(stderr, "---- node %u log (%s), last lines:\n", n->id, n->log_path);
  for (int j = k > lines ? k - lines : 0; j < k; j++) fprintf(stderr, "  %s", buf[j % 64]);
}

int itc_log_count(const itc_cluster *c, int i, const char *needle) {
  FILE *f = fopen(c->nodes[i].log_path, "r");
  if (f == NULL) return 0;
  char line[512];
  int found = 0;
  while (fgets(line, sizeof line, f)) found += strstr(line, needle) != NULL;
  fclose(f);
  return found;
}

int itc_log_has(const itc_cluster *c, int i, const char *needle) {
  return itc_log_count(c, i, needle) > 0;
}
