/* `rangekv start` — run a node — and `rangekv config check FILE`, which
 * loads a node's settings exactly as start would and reports them without
 * starting anything. Flags may also come from --config FILE: one
 * "name = value" per line, the flag names without dashes ('#' starts a
 * comment); flags on the command line win over the file. */
#include "cmd/cli.h"

#include "common/rk_err.h"
#include "node/node.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum {
  OPT_ID = 1000,
  OPT_LISTEN,
  OPT_CLIENT_LISTEN,
  OPT_CLUSTER,
  OPT_DATA_DIR,
  OPT_ZONE,
  OPT_RANGES,
  OPT_CLUSTER_ID,
  OPT_TICK_MS,
  OPT_ELECTION,
  OPT_QUIESCE,
  OPT_CONFIG,
  OPT_TIMEOUT,
  OPT_COMPACT_ENTRIES,
  OPT_COMPACT_LAG,
  OPT_METRICS,
  OPT_PEER_TIMEOUT,
  OPT_CLIENT_ADVERTISE, /* last of the settings (start_args.have) */
};

static const struct option start_opts[] = {
    {"id", required_argument, 0, OPT_ID},
    {"listen", required_argument, 0, OPT_LISTEN},
    {"client-listen", required_argument, 0, OPT_CLIENT_LISTEN},
    {"initial-cluster", required_argument, 0, OPT_CLUSTER},
    {"data-dir", required_argument, 0, OPT_DATA_DIR},
    {"zone", required_argument, 0, OPT_ZONE},
    {"ranges", required_argument, 0, OPT_RANGES},
    {"cluster-id", required_argument, 0, OPT_CLUSTER_ID},
    {"tick-ms", required_argument, 0, OPT_TICK_MS},
    {"election-ticks", required_argument, 0, OPT_ELECTION},
    {"quiesce", required_argument, 0, OPT_QUIESCE},
    {"request-timeout-ms", required_argument, 0, OPT_TIMEOUT},
    {"client-advertise", required_argument, 0, OPT_CLIENT_ADVERTISE},
    {"compact-entries", required_argument, 0, OPT_COMPACT_ENTRIES},
    {"compact-lag-entries", required_argument, 0, OPT_COMPACT_LAG},
    {"metrics-listen", required_argument, 0, OPT_METRICS},
    {"peer-timeout-ms", required_argument, 0, OPT_PEER_TIMEOUT},
    {"config", required_argument, 0, OPT_CONFIG},
    {"help", no_argument, 0, 'h'},
    {0, 0, 0, 0}};

typedef struct start_args {
  node_config cfg;
  char data_dir[4096];
  char zone[64];
  char cluster[4096];
  char client_advertise[TP_ADDR_MAX];
  int have[OPT_CLIENT_ADVERTISE - OPT_ID + 1]; /* set from the command line */
  int from_file;                               /* applying the config file */
} start_args;

static int copy_str(const cli_cmd *cmd, const char *flag, const char *arg, char *dst, size_t cap) {
  if (arg[0] == '\0' || strlen(arg) >= cap)
    return cli_usage_error(cmd, "%s needs a value of 1..%zu characters", flag, cap - 1);
  snprintf(dst, cap, "%s", arg);
  return CLI_CONTINUE;
}

static int on_start_opt(const cli_cmd *cmd, int opt, const char *arg, void *ctx) {
  start_args *a = ctx;
  if (opt >= OPT_ID && opt <= OPT_CLIENT_ADVERTISE) {
    /* The command line wins over the config file. */
    if (a->from_file && a->have[opt - OPT_ID]) return CLI_CONTINUE;
    if (!a->from_file) a->have[opt - OPT_ID] = 1;
  }
  node_config *c = &a->cfg;
  uint64_t v = 0;
  int rc;
  switch (opt) {
  case OPT_ID:
    rc = cli_parse_u64(cmd, "--id", arg, 1, NODE_MAX_NODES, &v);
    c->node_id = (uint32_t)v;
    return rc;
  case OPT_LISTEN: return copy_str(cmd, "--listen", arg, c->listen, sizeof c->listen);
  case OPT_CLIENT_LISTEN:
    return copy_str(cmd, "--client-listen", arg, c->client_listen, sizeof c->client_listen);
  case OPT_METRICS:
    return copy_str(cmd, "--metrics-listen", arg, c->metrics_listen, sizeof c->metrics_listen);
  case OPT_CLUSTER: return copy_str(cmd, "--initial-cluster", arg, a->cluster, sizeof a->cluster);
  case OPT_DATA_DIR: return copy_str(cmd, "--data-dir", arg, a->data_dir, sizeof a->data_dir);
  case OPT_ZONE: return copy_str(cmd, "--zone", arg, a->zone, sizeof a->zone);
  case OPT_CLIENT_ADVERTISE:
    return copy_str(cmd, "--client-advertise", arg, a->client_advertise,
                    sizeof a->client_advertise);
  case OPT_RANGES:
    rc = cli_parse_u64(cmd, "--ranges", arg, 1, 65536, &v);
    c->ranges = (uint32_t)v;
    return rc;
  case OPT_CLUSTER_ID:
    return cli_parse_u64(cmd, "--cluster-id", arg, 1, UINT64_MAX, &c->cluster_id);
  case OPT_TICK_MS:
    rc = cli_parse_u64(cmd, "--tick-ms", arg, 1, 10000, &v);
    c->tick_ms = (uint32_t)v;
    return rc;
  case OPT_ELECTION:
    rc = cli_parse_u64(cmd, "--election-ticks", arg, 3, 1000, &v);
    c->election_ticks = (uint32_t)v;
    return rc;
  case OPT_TIMEOUT:
    rc = cli_parse_u64(cmd, "--request-timeout-ms", arg, 10, 3600000, &v);
    c->request_timeout_ms = (uint32_t)v;
    return rc;
  case OPT_COMPACT_ENTRIES:
    rc = cli_parse_u64(cmd, "--compact-entries", arg, 0, 100000000, &v);
    c->compact_entries = (uint32_t)v;
    return rc;
  case OPT_COMPACT_LAG:
    rc = cli_parse_u64(cmd, "--compact-lag-entries", arg, 0, 1000000000, &v);
    c->compact_lag_entries = (uint32_t)v;
    return rc;
  case OPT_PEER_TIMEOUT:
    rc = cli_parse_u64(cmd, "--peer-timeout-ms", arg, 500, 3600000, &v);
    c->peer_timeout_ms = (uint32_t)v;
    return rc;
  case OPT_QUIESCE:
    if (strcmp(arg, "on") == 0)
      c->quiesce = 1;
    else if (strcmp(arg, "off") == 0)
      c->quiesce = 0;
    else
      return cli_usage_error(cmd, "--quiesce must be on or off, got '%s'", arg);
    return CLI_CONTINUE;
  case OPT_CONFIG: return CLI_CONTINUE; /* read after the command line */
  default: return cli_usage_error(cmd, "unexpected flag");
  }
}

/* Applies "name = value" lines of path through the same option handler. */
static int apply_config_file(const cli_cmd *cmd, const char *path, start_args *a) {
  FILE *f = fopen(path, "r");
  if (f == NULL) return cli_usage_error(cmd, "cannot read --config %s", path);
  char line[4096];
  int lineno = 0, rc = CLI_CONTINUE;
  a->from_file = 1;
  while (rc == CLI_CONTINUE && fgets(line, sizeof line, f)) {
    lineno++;
    char *hash = strchr(line, '#');
    if (hash) *hash = '\0';
    char *eq = strchr(line, '=');
    char *name = line;
    while (*name == ' ' || *name == '\t') name++;
    if (*name == '\0' || *name == '\n') continue;
    if (eq == NULL) {
      rc = cli_usage_error(cmd, "%s:%d: expected 'name = value'", path, lineno);
      break;
    }
    *eq = '\0';
    char *value = eq + 1;
    for (char *e = eq - 1; e >= name && (*e == ' ' || *e == '\t'); e--) *e = '\0';
    while (*value == ' ' || *value == '\t') value++;
    value[strcspn(value, "\r\n")] = '\0';
    for (char *e = value + strlen(value); e > value && (e[-1] == ' ' || e[-1] == '\t');)
      *--e = '\0';
    int opt = 0;
    for (const struct option *o = start_opts; o->name; o++)
      if (strcmp(o->name, name) == 0 && o->val != OPT_CONFIG && o->val != 'h') opt = o->val;
    if (opt == 0) {
      rc = cli_usage_error(cmd, "%s:%d: unknown setting '%s'", path, lineno, name);
      break;
    }
    rc = on_start_opt(cmd, opt, value, a);
  }
  fclose(f);
  a->from_file = 0;
  return rc;
}

/* Parses the command line and --config file into *a and checks that the
 * settings make a node: CLI_CONTINUE, or an exit code after a one-line
 * error and the usage of `cmd`. Nothing is started or created. */
static int load_start_args(const cli_cmd *cmd, int argc, char **argv, start_args *a) {
  memset(a, 0, sizeof *a);
  node_config_default(&a->cfg);
  int first = 1;
  int rc = cli_parse(cmd, argc, argv, "h", start_opts, on_start_opt, a, &first);
  if (rc != CLI_CONTINUE) return rc;
  if (first < argc) return cli_usage_error(cmd, "unexpected argument '%s'", argv[first]);
  /* --config is applied after the command line so the command line wins. */
  for (int i = 1; i < argc; i++) {
    const char *path = NULL;
    if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
      path = argv[i + 1];
    else if (strncmp(argv[i], "--config=", 9) == 0)
      path = argv[i] + 9;
    if (path && (rc = apply_config_file(cmd, path, a)) != CLI_CONTINUE) return rc;
  }
  if (a->cfg.node_id == 0) return cli_usage_error(cmd, "--id is required");
  if (a->cfg.listen[0] == '\0') return cli_usage_error(cmd, "--listen is required");
  if (a->cfg.client_listen[0] == '\0') return cli_usage_error(cmd, "--client-listen is required");
  if (a->cluster[0] == '\0') return cli_usage_error(cmd, "--initial-cluster is required");
  if (a->data_dir[0] == '\0') return cli_usage_error(cmd, "--data-dir is required");
  char err[256];
  if (node_parse_cluster(&a->cfg, a->cluster, err, sizeof err) != RK_OK)
    return cli_usage_error(cmd, "%s", err);
  int member = 0;
  for (uint32_t i = 0; i < a->cfg.n_cluster; i++) member |= a->cfg.cluster[i].id == a->cfg.node_id;
  if (!member) return cli_usage_error(cmd, "node %u is not in --initial-cluster", a->cfg.node_id);
  a->cfg.data_dir = a->data_dir;
  a->cfg.zone = a->zone[0] ? a->zone : NULL;
  for (uint32_t i = 0; i < a->cfg.n_cluster && a->cfg.zone == NULL; i++)
    if (a->cfg.cluster[i].id == a->cfg.node_id && a->cfg.cluster[i].zone[0])
      a->cfg.zone = a->cfg.cluster[i].zone; /* --zone defaults to our @zone */
  a->cfg.client_advertise = a->client_advertise[0] ? a->client_advertise : NULL;
  return CLI_CONTINUE;
}

int cmd_start(const cli_cmd *cmd, int argc, char **argv) {
  start_args a;
  int rc = load_start_args(cmd, argc, argv, &a);
  if (rc != CLI_CONTINUE) return rc;
  rc = node_run(&a.cfg);
  if (rc != RK_OK) {
    fprintf(stderr, "rangekv start: node %u stopped: %s\n", a.cfg.node_id, rk_strerror(rc));
    return CLI_EXIT_FAIL;
  }
  return CLI_EXIT_OK;
}

/* The data dir as start would find it: absent (created on start), a
 * directory, or something start cannot use. */
static const char *data_dir_state(const char *path) {
  struct stat st;
  if (stat(path, &st) != 0) return errno == ENOENT ? "absent (start creates it)" : strerror(errno);
  if (!S_ISDIR(st.st_mode)) return "not a directory (start will refuse it)";
  if (access(path, W_OK | X_OK) != 0) return "not writable (start will refuse it)";
  return "exists";
}

/* `rangekv config check FILE`: 0 and the effective settings if FILE makes a
 * valid node configuration; 1 and the first error otherwise. */
int cmd_config(const cli_cmd *cmd, int argc, char **argv) {
  if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
    cli_print_usage(cmd, 0);
    return CLI_EXIT_OK;
  }
  if (argc != 3 || strcmp(argv[1], "check") != 0)
    return cli_usage_error(cmd, "expected 'check FILE'");
  char *args[] = {argv[0], "--config", argv[2], NULL};
  start_args a;
  int rc = load_start_args(cmd, 3, args, &a);
  if (rc != CLI_CONTINUE) return CLI_EXIT_FAIL;
  const node_config *c = &a.cfg;
  printf("node %u, zone %s\n", c->node_id, c->zone ? c->zone : "(none)");
  printf("  listen %s, clients %s (advertised as %s)\n", c->listen, c->client_listen,
         c->client_advertise ? c->client_advertise : c->client_listen);
  printf("  metrics %s\n", c->metrics_listen[0] ? c->metrics_listen : "off");
  printf("  data dir %s: %s\n", c->data_dir, data_dir_state(c->data_dir));
  printf("  cluster id %016llx, %u member(s):\n",
         (unsigned long long)(c->cluster_id ? c->cluster_id : node_cluster_id_of(c)), c->n_cluster);
  for (uint32_t i = 0; i < c->n_cluster; i++)
    printf("    %u = %s%s%s\n", c->cluster[i].id, c->cluster[i].addr,
           c->cluster[i].zone[0] ? " @" : "", c->cluster[i].zone);
  printf(
      "  ranges %u (bootstrap), tick %u ms, election %u ticks, quiesce %s, request timeout %u ms\n",
      c->ranges, c->tick_ms, c->election_ticks, c->quiesce ? "on" : "off", c->request_timeout_ms);
  printf("  a peer that acknowledges nothing for %u ms is disconnected and dialed again\n",
         c->peer_timeout_ms);
  if (c->compact_entries && c->compact_lag_entries)
    printf("  log compaction in steps of %u entries; a replica over %u entries behind "
           "catches up from a snapshot\n",
           c->compact_entries, c->compact_lag_entries);
  else if (c->compact_entries)
    printf("  log compaction in steps of %u entries; a lagging replica holds the log back\n",
           c->compact_entries);
  else
    printf("  log compaction off\n");
  printf("config: ok\n");
  return CLI_EXIT_OK;
}
