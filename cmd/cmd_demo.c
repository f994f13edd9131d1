/* `rangekv demo` — until the node issue (#7) lands, this validates its flags
 * and says plainly what it will do; it starts nothing. */
#include "cmd/cli.h"

#include <stdio.h>

typedef struct demo_opts {
  uint64_t duration_s; /* 0 = until Ctrl-C */
  uint64_t ranges;
  const char *dir;
} demo_opts;

static const struct option demo_long[] = {{"duration", required_argument, 0, 'd'},
                                          {"ranges", required_argument, 0, 'r'},
                                          {"dir", required_argument, 0, 'D'},
                                          {"help", no_argument, 0, 'h'},
                                          {0, 0, 0, 0}};

static int demo_opt(const cli_cmd *cmd, int opt, const char *arg, void *ctx) {
  demo_opts *o = ctx;
  switch (opt) {
  case 'd': return cli_parse_u64(cmd, "--duration", arg, 1, 86400 * 365, &o->duration_s);
  case 'r': return cli_parse_u64(cmd, "--ranges", arg, 1, 100000, &o->ranges);
  case 'D': o->dir = arg; return CLI_CONTINUE;
  default: return cli_usage_error(cmd, "unknown flag");
  }
}

int cmd_demo(const cli_cmd *cmd, int argc, char **argv) {
  demo_opts o = {.duration_s = 0, .ranges = 64, .dir = NULL};
  int first = 1;
  int rc = cli_parse(cmd, argc, argv, "h", demo_long, demo_opt, &o, &first);
  if (rc != CLI_CONTINUE) return rc;
  if (first < argc) return cli_usage_error(cmd, "unexpected argument '%s'", argv[first]);
  printf("rangekv demo: the local cluster is not built yet (it lands with the node issue, #7).\n"
         "When it is, this command will:\n"
         "  1. start 3 rangekv processes on 127.0.0.1 with data under %s,\n"
         "  2. bootstrap %llu ranges, each a 3-replica Raft group,\n"
         "  3. run a mixed read/write workload with a live ops/s and p99 line,\n"
         "  4. print a per-range table (range, leader, ops/s, p50/p99),\n"
         "  5. stop every process it started %s.\n"
         "Nothing was started.\n",
         o.dir ? o.dir : "a fresh directory under /tmp", (unsigned long long)o.ranges,
         o.duration_s ? "after --duration seconds" : "on Ctrl-C");
  return CLI_EXIT_OK;
}
