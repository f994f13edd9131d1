/* `rangekv sim` — the deterministic simulator (sim/sim.h).
 *
 *   rangekv sim --seed S [--nodes N] [--groups G] [--steps K]
 *               [--faults LIST|all|none] [--trace FILE] [--history FILE]
 *   rangekv sim --seeds N [--first S]      (same tuning flags)
 *   rangekv sim --seed S --groups G --faults none --idle [--stats]
 *               [--idle-seconds T] [--crash-when-idle NODE] [--no-quiesce]
 *
 * --stats prints, before the last line,
 *   stats: groups=G sim_seconds=T node_pair_msgs_per_sec=X
 *          heartbeat_entries_per_sec=Y quiesced=Q wal_syncs=S entries=E
 * (one line; rates per simulated second over the measured window: with
 * --idle, T seconds after every group elected and quiesced; otherwise the
 * whole run, summed over seeds). --crash-when-idle also prints a "wake:" line.
 *   rangekv sim check-history FILE
 *   rangekv sim scenario NAME | --list
 *
 * The last line printed by a run is always
 *   sim: seeds=N events=E violations=V trace_hash=H
 * where H is the trace hash of the seed (one seed) or an FNV-1a fold of every
 * seed's hash in seed order (several). Violations are reported on stdout
 * before it. Exit 0 with no violation, 1 with one or more, 2 on bad usage.
 * Wall-clock speed is printed on a separate line ("sim: wall=...") and is the
 * only non-deterministic output.
 */
#include "cmd/cli.h"

#include "common/rk_clock.h"
#include "sim/lincheck.h"
#include "sim/sim.h"
#include "sim/sim_kv.h"

#include <stdio.h>
#include <string.h>

typedef struct sim_cli {
  sim_opts o;
  uint64_t seeds; /* 0 = single --seed mode */
  uint64_t first;
  int have_seed, have_first;
  const char *trace_path;
  int list;
  int stats, have_faults;
} sim_cli;

enum {
  OPT_SEED = 256,
  OPT_SEEDS,
  OPT_FIRST,
  OPT_NODES,
  OPT_GROUPS,
  OPT_STEPS,
  OPT_FAULTS,
  OPT_TRACE,
  OPT_HISTORY,
  OPT_CLIENTS,
  OPT_BUGS,
  OPT_NO_PREVOTE,
  OPT_LIST,
  OPT_STATS,
  OPT_IDLE,
  OPT_IDLE_SECONDS,
  OPT_CRASH_IDLE,
  OPT_NO_QUIESCE,
};

static const struct option sim_long[] = {{"seed", required_argument, 0, OPT_SEED},
                                         {"seeds", required_argument, 0, OPT_SEEDS},
                                         {"first", required_argument, 0, OPT_FIRST},
                                         {"nodes", required_argument, 0, OPT_NODES},
                                         {"groups", required_argument, 0, OPT_GROUPS},
                                         {"steps", required_argument, 0, OPT_STEPS},
                                         {"faults", required_argument, 0, OPT_FAULTS},
                                         {"trace", required_argument, 0, OPT_TRACE},
                                         {"history", required_argument, 0, OPT_HISTORY},
                                         {"clients", required_argument, 0, OPT_CLIENTS},
                                         {"bugs", required_argument, 0, OPT_BUGS},
                                         {"no-prevote", no_argument, 0, OPT_NO_PREVOTE},
                                         {"list", no_argument, 0, OPT_LIST},
                                         {"stats", no_argument, 0, OPT_STATS},
                                         {"idle", no_argument, 0, OPT_IDLE},
                                         {"idle-seconds", required_argument, 0, OPT_IDLE_SECONDS},
                                         {"crash-when-idle", required_argument, 0, OPT_CRASH_IDLE},
                                         {"no-quiesce", no_argument, 0, OPT_NO_QUIESCE},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};

static int sim_opt(const cli_cmd *cmd, int opt, const char *arg, void *ctx) {
  sim_cli *c = ctx;
  uint64_t v = 0;
  int rc;
  switch (opt) {
  case OPT_SEED:
    c->have_seed = 1;
    return cli_parse_u64(cmd, "--seed", arg, 0, UINT64_MAX, &c->o.seed);
  case OPT_SEEDS: return cli_parse_u64(cmd, "--seeds", arg, 1, 100000000, &c->seeds);
  case OPT_FIRST:
    c->have_first = 1;
    return cli_parse_u64(cmd, "--first", arg, 0, UINT64_MAX, &c->first);
  case OPT_NODES:
    rc = cli_parse_u64(cmd, "--nodes", arg, 1, 16, &v);
    c->o.nodes = (uint32_t)v;
    return rc;
  case OPT_GROUPS:
    rc = cli_parse_u64(cmd, "--groups", arg, 1, 100000, &v);
    c->o.groups = (uint32_t)v;
    return rc;
  case OPT_STEPS: return cli_parse_u64(cmd, "--steps", arg, 1, UINT64_MAX / 2, &c->o.steps);
  case OPT_CLIENTS:
    rc = cli_parse_u64(cmd, "--clients", arg, 1, 1000, &v);
    c->o.clients = (uint32_t)v;
    return rc;
  case OPT_STATS: c->stats = 1; return CLI_CONTINUE;
  case OPT_IDLE: c->o.idle = 1; return CLI_CONTINUE;
  case OPT_NO_QUIESCE: c->o.no_quiesce = 1; return CLI_CONTINUE;
  case OPT_IDLE_SECONDS:
    rc = cli_parse_u64(cmd, "--idle-seconds", arg, 1, 3600, &v);
    c->o.idle_us = v * 1000000;
    return rc;
  case OPT_CRASH_IDLE:
    rc = cli_parse_u64(cmd, "--crash-when-idle", arg, 0, 15, &v);
    c->o.idle_crash = (uint32_t)v + 1;
    return rc;
  case OPT_FAULTS: {
    c->have_faults = 1;
    const char *bad = NULL;
    if (sim_faults_parse(arg, &c->o.faults, &bad) != 0) {
      char names[256]; /* from the fault table, so it never goes stale */
      sim_faults_format(SIM_F_ALL, names, sizeof names);
      return cli_usage_error(cmd, "--faults: unknown fault '%s' (all, none, or a comma list of %s)",
                             bad ? bad : arg, names);
    }
    return CLI_CONTINUE;
  }
  case OPT_BUGS: {
    const char *bad = NULL;
    if (sim_bugs_parse(arg, &c->o.bugs, &bad) != 0)
      return cli_usage_error(cmd, "--bugs: unknown bug '%s' (" SIM_BUG_NAMES ")", bad ? bad : arg);
    return CLI_CONTINUE;
  }
  case OPT_TRACE: c->trace_path = arg; return CLI_CONTINUE;
  case OPT_HISTORY: c->o.history_path = arg; return CLI_CONTINUE;
  case OPT_NO_PREVOTE: c->o.prevote = 0; return CLI_CONTINUE;
  case OPT_LIST: c->list = 1; return CLI_CONTINUE;
  default: return cli_usage_error(cmd, "unknown flag");
  }
}

static void print_summary(const sim_opts *o, const sim_result *r) {
  char f[128];
  sim_faults_format(o->faults, f, sizeof f);
  printf("sim: seed=%llu nodes=%u groups=%u faults=%s steps=%llu sim_time=%.3fs ops=%llu "
         "ok=%llu unknown=%llu refused=%llu applied=%llu crashes=%llu partitions=%llu "
         "stalls=%llu io_errors=%llu conf_changes=%llu elections=%llu appends_dropped=%llu\n",
         (unsigned long long)o->seed, o->nodes, o->groups, f, (unsigned long long)o->steps,
         (double)r->sim_us / 1e6, (unsigned long long)r->ops, (unsigned long long)r->ops_ok,
         (unsigned long long)r->ops_unknown, (unsigned long long)r->ops_fail,
         (unsigned long long)r->commits, (unsigned long long)r->crashes,
         (unsigned long long)r->partitions, (unsigned long long)r->stalls,
         (unsigned long long)r->io_errors, (unsigned long long)r->conf_changes,
         (unsigned long long)r->elections, (unsigned long long)r->appends_dropped);
}

/* Several seeds: counters and windows add up (rates are over the summed
 * simulated time); the quiesced count is the last seed's. */
static void stats_add(sim_stats *t, const sim_stats *s) {
  t->groups = s->groups;
  t->node_pairs = s->node_pairs;
  t->window_us += s->window_us;
  t->frames += s->frames;
  t->hb_entries += s->hb_entries;
  t->wal_syncs += s->wal_syncs;
  t->entries += s->entries;
  t->quiesced = s->quiesced;
}

/* --crash-when-idle: the targeted wake-up, counted. */
static void print_wake(const sim_opts *o, const sim_stats *s) {
  uint64_t et_us = (uint64_t)o->election_ticks * o->tick_us;
  printf("wake: crashed=n%u led=%u campaigned=%u awake=%u woke_not_led=%u releaded=%u "
         "max_releader_ms=%.1f election_timeout_ms=%.1f\n",
         o->idle_crash - 1, s->led_by_crashed, s->campaigned, s->awake, s->woke_not_led,
         s->releaded, (double)s->max_releader_us / 1e3, (double)et_us / 1e3);
}

int cmd_sim(const cli_cmd *cmd, int argc, char **argv) {
  /* Positional subcommands first: check-history FILE, scenario NAME|--list. */
  if (argc >= 2 && strcmp(argv[1], "check-history") == 0) {
    if (argc == 3 && (strcmp(argv[2], "--help") == 0 || strcmp(argv[2], "-h") == 0)) {
      cli_print_usage(cmd, 0);
      return CLI_EXIT_OK;
    }
    if (argc != 3) return cli_usage_error(cmd, "check-history needs exactly one FILE");
    return sim_lin_check_file(argv[2], stdout);
  }
  if (argc >= 2 && strcmp(argv[1], "scenario") == 0) {
    if (argc != 3) return cli_usage_error(cmd, "scenario needs a NAME or --list");
    if (strcmp(argv[2], "--help") == 0 || strcmp(argv[2], "-h") == 0) {
      cli_print_usage(cmd, 0);
      return CLI_EXIT_OK;
    }
    if (strcmp(argv[2], "--list") == 0) {
      sim_scenario_list(stdout);
      return CLI_EXIT_OK;
    }
    return sim_scenario_run(argv[2], stdout);
  }
  sim_cli c;
  memset(&c, 0, sizeof c);
  sim_opts_default(&c.o);
  c.first = 1;
  int first_arg = 1;
  int rc = cli_parse(cmd, argc, argv, "h", sim_long, sim_opt, &c, &first_arg);
  if (rc != CLI_CONTINUE) return rc;
  if (first_arg < argc) return cli_usage_error(cmd, "unexpected argument '%s'", argv[first_arg]);
  if (c.list) return cli_usage_error(cmd, "--list goes with 'scenario'");
  if (c.seeds == 0 && !c.have_seed) return cli_usage_error(cmd, "give --seed S or --seeds N");
  if (c.seeds != 0 && c.have_seed)
    return cli_usage_error(cmd, "--seed and --seeds exclude each other");
  if (c.seeds == 0 && c.have_first) return cli_usage_error(cmd, "--first goes with --seeds");
  if (c.seeds != 0 && (c.trace_path || c.o.history_path))
    return cli_usage_error(cmd, "--trace and --history go with a single --seed");
  if (c.o.nodes < 3) return cli_usage_error(cmd, "--nodes must be at least 3");
  if (c.o.idle_crash && !c.o.idle)
    return cli_usage_error(cmd, "--crash-when-idle goes with --idle");
  if (c.o.idle_crash > c.o.nodes)
    return cli_usage_error(cmd, "--crash-when-idle: node %u does not exist (nodes are 0..%u)",
                           c.o.idle_crash - 1, c.o.nodes - 1);
  if (c.o.idle) {
    /* The idle measurement is of a fault-free cluster at rest. */
    if (c.have_faults && c.o.faults != 0)
      return cli_usage_error(cmd, "--idle measures a cluster at rest: use --faults none");
    c.o.faults = 0;
  }
  FILE *trace = NULL;
  if (c.trace_path) {
    trace = fopen(c.trace_path, "w");
    if (trace == NULL) {
      fprintf(stderr, "rangekv sim: cannot open trace file %s\n", c.trace_path);
      return CLI_EXIT_FAIL;
    }
  }
  c.o.trace = trace;
  c.o.report = stdout;
  uint64_t nseeds = c.seeds ? c.seeds : 1;
  uint64_t start = c.seeds ? c.first : c.o.seed;
  uint64_t events = 0, violations = 0, hash = SIM_FNV_INIT;
  sim_stats st_total;
  memset(&st_total, 0, sizeof st_total);
  uint64_t t0 = rk_clock_mono_ns();
  for (uint64_t i = 0; i < nseeds; i++) {
    sim_opts o = c.o;
    o.seed = start + i;
    sim_result r;
    int v = sim_run(&o, &r);
    events += r.events;
    violations += (uint64_t)v;
    stats_add(&st_total, &r.st);
    if (c.seeds)
      hash = sim_fnv(hash, &r.trace_hash, sizeof r.trace_hash);
    else
      hash = r.trace_hash;
    if (!c.seeds) {
      print_summary(&o, &r);
      if (o.idle_crash) print_wake(&o, &r.st);
    } else if (v)
      printf("sim: seed=%llu FAILED invariant=%s\n", (unsigned long long)o.seed, r.invariant);
    fflush(stdout);
  }
  double wall = (double)(rk_clock_mono_ns() - t0) / 1e9;
  if (c.stats) sim_stats_print(stdout, &st_total);
  if (trace) fclose(trace);
  printf("sim: wall=%.2fs events_per_sec=%.0f\n", wall, wall > 0 ? (double)events / wall : 0.0);
  printf("sim: seeds=%llu events=%llu violations=%llu trace_hash=%016llx\n",
         (unsigned long long)nseeds, (unsigned long long)events, (unsigned long long)violations,
         (unsigned long long)hash);
  return violations ? CLI_EXIT_FAIL : CLI_EXIT_OK;
}
