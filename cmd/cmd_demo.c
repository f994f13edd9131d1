/* `rangekv demo` — a local 3-node cluster and a live workload.
 *
 *   1. a fresh data dir (mkdtemp under /tmp, or --dir), 6 free ports on
 *      127.0.0.1 (peer + client per node);
 *   2. fork/exec /proc/self/exe `start` three times (stdout -> DIR/nodeN.out,
 *      stderr -> DIR/nodeN.log; PR_SET_PDEATHSIG so a killed demo cannot leave
 *      nodes behind), waits (bounded) for each "rangekv node N ready" line;
 *   3. runs the bench/bench_kv.c workload (90% reads) with a live line
 *      (ops/s, p99) about once a second, until Ctrl-C / SIGTERM or --duration;
 *   4. prints the per-range table (range, leader, ops/s, p50/p99);
 *   5. SIGTERM to every node, SIGKILL after 10 s, each reaped by PID.
 * The data dir is removed when the demo made it and everything went well;
 * otherwise it is kept (and named) for the logs.
 *
 * With --dry-run it only explains what it would do and exits 0.
 */
#include "cmd/cli.h"
#include "transport/net.h"

#include "bench/bench.h"
#include "client/rk_client.h"
#include "common/rk_clock.h"
#include "common/rk_err.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DEMO_NODES 3

typedef struct demo_opts {
  uint64_t duration_s; /* 0 = until Ctrl-C */
  uint64_t ranges;
  uint64_t clients;
  const char *dir;
  int dry_run;
} demo_opts;

enum { OPT_DRY_RUN = 1000, OPT_CLIENTS };

static const struct option demo_long[] = {{"duration", required_argument, 0, 'd'},
                                          {"ranges", required_argument, 0, 'r'},
                                          {"dir", required_argument, 0, 'D'},
                                          {"clients", required_argument, 0, OPT_CLIENTS},
                                          {"dry-run", no_argument, 0, OPT_DRY_RUN},
                                          {"help", no_argument, 0, 'h'},
                                          {0, 0, 0, 0}};

static int demo_opt(const cli_cmd *cmd, int opt, const char *arg, void *ctx) {
  demo_opts *o = ctx;
  switch (opt) {
  case 'd': return cli_parse_u64(cmd, "--duration", arg, 1, 86400 * 365, &o->duration_s);
  case 'r': return cli_parse_u64(cmd, "--ranges", arg, 1, 100000, &o->ranges);
  case 'D': o->dir = arg; return CLI_CONTINUE;
  case OPT_CLIENTS: return cli_parse_u64(cmd, "--clients", arg, 1, 1024, &o->clients);
  case OPT_DRY_RUN: o->dry_run = 1; return CLI_CONTINUE;
  default: return cli_usage_error(cmd, "unknown flag");
  }
}

static int explain(const demo_opts *o, const char *why) {
  printf("rangekv demo: %s\n"
         "This command:\n"
         "  1. starts 3 rangekv processes on 127.0.0.1 with data under %s,\n"
         "  2. they bootstrap %llu ranges, each a 3-replica Raft group,\n"
         "  3. runs a mixed read/write workload with a live ops/s and p99 line,\n"
         "  4. prints a per-range table (range, leader, ops/s, p50/p99),\n"
         "  5. stops every process it started %s.\n"
         "Nothing was started.\n",
         why, o->dir ? o->dir : "a fresh directory under /tmp", (unsigned long long)o->ranges,
         o->duration_s ? "after --duration seconds" : "on Ctrl-C");
  return CLI_EXIT_OK;
}

/* ---- signals ------------------------------------------------------------------ */

static volatile sig_atomic_t g_stop, g_child;

static void on_stop(int sig) {
  (void)sig;
  g_stop = 1;
}
static void on_child(int sig) {
  (void)sig;
  g_child = 1;
  g_stop = 1;
}

/* ---- the nodes ---------------------------------------------------------------- */

typedef struct demo_node {
  uint32_t id;
  pid_t pid; /* 0: not running */
  char peer[32], client[32];
  char out_path[4200], log_path[4200];
  int ready;
} demo_node;

static pid_t spawn_node(const demo_node *n, const char *cluster, const char *dir, uint64_t ranges) {
  char id[16], datadir[4200], nr[24];
  snprintf(id, sizeof id, "%u", n->id);
  snprintf(datadir, sizeof datadir, "%s/node%u", dir, n->id);
  snprintf(nr, sizeof nr, "%llu", (unsigned long long)ranges);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid != 0) return pid;
  /* Child: die with the demo, default signals, output to files. */
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (getppid() != parent) _exit(127);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  setpgid(0, 0);
  int fo = open(n->out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  int fe = open(n->log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fo < 0 || fe < 0) _exit(127);
  dup2(fo, 1);
  dup2(fe, 2);
  int fi = open("/dev/null", O_RDONLY);
  if (fi >= 0) dup2(fi, 0);
  char peer[32], client[32], cl[256];
  snprintf(peer, sizeof peer, "%s", n->peer);
  snprintf(client, sizeof client, "%s", n->client);
  snprintf(cl, sizeof cl, "%s", cluster);
  char *argv[] = {"rangekv",
                  "start",
                  "--id",
                  id,
                  "--listen",
                  peer,
                  "--client-listen",
                  client,
                  "--initial-cluster",
                  cl,
                  "--data-dir",
                  datadir,
                  "--ranges",
                  nr,
                  NULL};
  execv("/proc/self/exe", argv);
  _exit(127);
}

static int file_has(const char *path, const char *needle) {
  FILE *f = fopen(path, "r");
  if (f == NULL) return 0;
  char line[512];
  int found = 0;
  while (!found && fgets(line, sizeof line, f)) found = strstr(line, needle) != NULL;
  fclose(f);
  return found;
}

static void print_tail(const char *path, int lines) {
  FILE *f = fopen(path, "r");
  if (f == NULL) return;
  static char buf[64][512];
  int n = 0;
  while (fgets(buf[n % 64], sizeof buf[0], f)) n++;
  fclose(f);
  int from = n > lines ? n - lines : 0;
  for (int i = from; i < n; i++) fprintf(stderr, "    %s", buf[i % 64]);
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(path);
}

/* Removes a directory tree of ours (a node's data dir); missing is fine. */
static void remove_tree(const char *dir) { (void)nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

static void sleep_ms(unsigned ms) {
  struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* Reaps any node that exited; returns how many are still running. */
static int reap(demo_node *nodes, int report) {
  int running = 0;
  for (int i = 0; i < DEMO_NODES; i++) {
    if (nodes[i].pid <= 0) continue;
    int st;
    pid_t r = waitpid(nodes[i].pid, &st, WNOHANG);
    if (r == nodes[i].pid) {
      if (report) {
        if (WIFEXITED(st))
          fprintf(stderr, "rangekv demo: node %u (pid %d) exited with status %d\n", nodes[i].id,
                  (int)nodes[i].pid, WEXITSTATUS(st));
        else
          fprintf(stderr, "rangekv demo: node %u (pid %d) killed by signal %d\n", nodes[i].id,
                  (int)nodes[i].pid, WTERMSIG(st));
      }
      nodes[i].pid = 0;
    } else {
      running++;
    }
  }
  return running;
}

/* SIGTERM, up to 10 s, then SIGKILL; every PID reaped. Returns 1 if all
 * exited cleanly on SIGTERM. */
static int stop_all(demo_node *nodes) {
  int clean = 1;
  for (int i = 0; i < DEMO_NODES; i++)
    if (nodes[i].pid > 0) kill(nodes[i].pid, SIGTERM);
  uint64_t until = rk_clock_mono_ns() + 10000000000ull;
  while (rk_clock_mono_ns() < until) {
    int running = 0;
    for (int i = 0; i < DEMO_NODES; i++) {
      if (nodes[i].pid <= 0) continue;
      int st;
      pid_t r = waitpid(nodes[i].pid, &st, WNOHANG);
      if (r == nodes[i].pid) {
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
          clean = 0;
          fprintf(stderr, "rangekv demo: node %u stopped with %s %d\n", nodes[i].id,
                  WIFEXITED(st) ? "status" : "signal",
                  WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
        }
        nodes[i].pid = 0;
      } else {
        running++;
      }
    }
    if (running == 0) return clean;
    sleep_ms(20);
  }
  for (int i = 0; i < DEMO_NODES; i++) {
    if (nodes[i].pid <= 0) continue;
    fprintf(stderr, "rangekv demo: node %u did not stop within 10 s: SIGKILL\n", nodes[i].id);
    kill(nodes[i].pid, SIGKILL);
    waitpid(nodes[i].pid, NULL, 0);
    nodes[i].pid = 0;
    clean = 0;
  }
  return clean;
}

/* Polls the range table (bounded, 30 s) until every range reports a leader,
 * so the first progress lines measure the workload, not the elections. */
static void wait_leaders(const char *eps) {
  char addrs[RKC_MAX_ENDPOINTS][RKC_ADDR_MAX];
  const char *ep[RKC_MAX_ENDPOINTS];
  size_t n = 0;
  if (rkc_parse_endpoints(eps, addrs, RKC_MAX_ENDPOINTS, &n) != RK_OK) return;
  for (size_t i = 0; i < n; i++) ep[i] = addrs[i];
  rkc_options o;
  rkc_options_default(&o);
  o.endpoints = ep;
  o.n_endpoints = n;
  o.timeout_ms = 2000;
  rkc_client *c;
  if (rkc_open(&c, &o) != RK_OK) return;
  uint64_t t0 = rk_clock_mono_ns(), until = t0 + 30000000000ull;
  size_t led = 0, total = 0;
  /* In half-second slices, to stay responsive to Ctrl-C. */
  while (!g_stop && rk_clock_mono_ns() < until && rkc_wait_leaders(c, 500, &led, &total) != RK_OK) {
  }
  rkc_close(c);
  printf("rangekv demo: %zu of %zu ranges have a leader (%.1f s)\n", led, total,
         (double)(rk_clock_mono_ns() - t0) / 1e9);
  fflush(stdout);
}

int cmd_demo(const cli_cmd *cmd, int argc, char **argv) {
  demo_opts o = {.duration_s = 0, .ranges = 64, .clients = 8, .dir = NULL};
  int first = 1;
  int rc = cli_parse(cmd, argc, argv, "h", demo_long, demo_opt, &o, &first);
  if (rc != CLI_CONTINUE) return rc;
  if (first < argc) return cli_usage_error(cmd, "unexpected argument '%s'", argv[first]);
  if (o.dry_run) return explain(&o, "--dry-run: nothing is started.");

  /* Signals first, so nothing we start can outlive a Ctrl-C. */
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_stop;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  /* A closed stdout (`rangekv demo | head`) must not kill us before we stop the nodes. */
  signal(SIGPIPE, SIG_IGN);
  sa.sa_handler = on_child;
  sa.sa_flags = SA_NOCLDSTOP;
  sigaction(SIGCHLD, &sa, NULL);

  char dir[4096];
  int made_dir = 0;
  if (o.dir) {
    snprintf(dir, sizeof dir, "%s", o.dir);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
      fprintf(stderr, "rangekv demo: cannot create %s: %s\n", dir, strerror(errno));
      return CLI_EXIT_FAIL;
    }
  } else {
    snprintf(dir, sizeof dir, "/tmp/rangekv-demo-XXXXXX");
    if (mkdtemp(dir) == NULL) {
      fprintf(stderr, "rangekv demo: mkdtemp: %s\n", strerror(errno));
      return CLI_EXIT_FAIL;
    }
    made_dir = 1;
  }

  demo_node nodes[DEMO_NODES];
  int ok = 1, ready = 0;
  /* A port picked free can be taken before the node binds it (another
   * program's outgoing connection, say): then new ports, a few times. */
  for (int attempt = 0;; attempt++) {
    memset(nodes, 0, sizeof nodes);
    char cluster[256] = "";
    size_t off = 0;
    for (int i = 0; i < DEMO_NODES; i++) {
      demo_node *n = &nodes[i];
      n->id = (uint32_t)i + 1;
      int pp = tp_pick_local_port(), cp = tp_pick_local_port();
      if (pp < 0 || cp < 0) {
        fprintf(stderr, "rangekv demo: no free port on 127.0.0.1\n");
        return CLI_EXIT_FAIL;
      }
      snprintf(n->peer, sizeof n->peer, "127.0.0.1:%d", pp);
      snprintf(n->client, sizeof n->client, "127.0.0.1:%d", cp);
      snprintf(n->out_path, sizeof n->out_path, "%s/node%u.out", dir, n->id);
      snprintf(n->log_path, sizeof n->log_path, "%s/node%u.log", dir, n->id);
      off += (size_t)snprintf(cluster + off, sizeof cluster - off, "%s%u=%s", i ? "," : "", n->id,
                              n->peer);
    }
    if (attempt == 0) {
      printf("rangekv demo: 3 nodes on 127.0.0.1, %llu ranges (bootstrap %llu ranges), data under "
             "%s\n",
             (unsigned long long)o.ranges, (unsigned long long)o.ranges, dir);
      fflush(stdout);
    }
    ok = 1;
    for (int i = 0; i < DEMO_NODES; i++) {
      nodes[i].pid = spawn_node(&nodes[i], cluster, dir, o.ranges);
      if (nodes[i].pid < 0) {
        fprintf(stderr, "rangekv demo: fork: %s\n", strerror(errno));
        nodes[i].pid = 0;
        ok = 0;
      }
    }
    /* Ready lines, within 30 s. */
    uint64_t until = rk_clock_mono_ns() + 30000000000ull;
    int taken = 0;
    ready = 0;
    while (ok && ready < DEMO_NODES && !g_stop && rk_clock_mono_ns() < until) {
      ready = 0;
      for (int i = 0; i < DEMO_NODES; i++) {
        char needle[64];
        snprintf(needle, sizeof needle, "rangekv node %u ready", nodes[i].id);
        if (!nodes[i].ready) nodes[i].ready = file_has(nodes[i].out_path, needle);
        ready += nodes[i].ready;
      }
      if (ready < DEMO_NODES) sleep_ms(20);
    }
    /* A node that exited (SIGCHLD also stops the wait) for a port taken
     * meanwhile is retried; any other exit is reported below. */
    if (g_child && ready < DEMO_NODES) {
      (void)reap(nodes, 0);
      for (int i = 0; i < DEMO_NODES; i++)
        taken |= nodes[i].pid == 0 && !nodes[i].ready &&
                 file_has(nodes[i].log_path, "Address already in use");
    }
    if (!taken || attempt == 3) break;
    fprintf(stderr, "rangekv demo: a port was taken before its node bound it; new ports\n");
    (void)stop_all(nodes);
    g_child = 0;
    g_stop = 0; /* set by the exit, not by the user */
    /* The new ports make a new cluster id: the nodes' data must go. */
    for (int i = 0; i < DEMO_NODES; i++) {
      char nd[4200];
      snprintf(nd, sizeof nd, "%s/node%u", dir, nodes[i].id);
      remove_tree(nd);
    }
  }
  if (g_child) reap(nodes, 1);
  if (ok && ready < DEMO_NODES) {
    ok = 0;
    if (!g_stop || g_child)
      fprintf(stderr, "rangekv demo: only %d of 3 nodes became ready within 30 s\n", ready);
    for (int i = 0; i < DEMO_NODES; i++) {
      if (nodes[i].ready) continue;
      fprintf(stderr, "  node %u log (%s):\n", nodes[i].id, nodes[i].log_path);
      print_tail(nodes[i].log_path, 10);
    }
  }

  if (ok) {
    printf("rangekv demo: nodes ready: 1=%s 2=%s 3=%s\n", nodes[0].client, nodes[1].client,
           nodes[2].client);
    printf("  try: RANGEKV_ENDPOINTS=%s,%s,%s rangekv ranges\n", nodes[0].client, nodes[1].client,
           nodes[2].client);
    char eps[128];
    snprintf(eps, sizeof eps, "%s,%s,%s", nodes[0].client, nodes[1].client, nodes[2].client);
    wait_leaders(eps);
    printf("rangekv demo: workload: %llu clients, 90%% reads, 128-byte values%s\n",
           (unsigned long long)o.clients, o.duration_s ? "" : " (Ctrl-C to stop)");
    fflush(stdout);
    bench_kv_opts k = {.endpoints = eps,
                       .clients = o.clients,
                       .value_bytes = 128,
                       .seconds = (double)o.duration_s,
                       .read_ratio = 0.9,
                       .keys = 10000,
                       .seed = (uint64_t)getpid(),
                       .timeout_ms = 2000,
                       .progress = stdout,
                       .progress_tty = isatty(1),
                       .stop = &g_stop};
    bench_kv_result res;
    rc = bench_kv_run(&k, &res);
    if (g_child) {
      reap(nodes, 1);
      ok = 0;
    }
    if (rc == RK_OK) {
      printf("\nper range (leaders as the cluster reports them at the end):\n");
      bench_kv_print_ranges(stdout, &res);
      printf("rangekv demo: ops=%llu ops_per_sec=%.0f p50_us=%llu p99_us=%llu errors=%llu "
             "(unknown outcome: %llu) over %.1f s\n",
             (unsigned long long)res.ops, res.ops_per_sec, (unsigned long long)res.p50_us,
             (unsigned long long)res.p99_us, (unsigned long long)res.errors,
             (unsigned long long)res.unknown, res.seconds);
      bench_kv_result_free(&res);
    } else {
      fprintf(stderr, "rangekv demo: workload failed: %s\n", rk_strerror(rc));
      ok = 0;
    }
  }

  printf("rangekv demo: stopping the nodes (SIGTERM)\n");
  fflush(stdout);
  signal(SIGCHLD, SIG_DFL);
  int clean = stop_all(nodes);
  if (ok && clean && made_dir) {
    bench_rmtree(dir);
    printf("rangekv demo: all nodes stopped cleanly; removed %s\n", dir);
  } else {
    printf("rangekv demo: %s; data and logs kept in %s\n",
           clean ? "all nodes stopped" : "some nodes did not stop cleanly", dir);
  }
  return ok && clean ? CLI_EXIT_OK : CLI_EXIT_FAIL;
}
