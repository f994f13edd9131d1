/* cmd/main.c — `rangekv`: global flags, then dispatch to a subcommand. */
#include "cmd/cli.h"

#include "common/rk_log.h"
#include "sim/sim.h"

#include <stdio.h>
#include <string.h>

/* clang-format off */
const cli_cmd cli_cmds[] = {
  {"start", "run a node",
   "usage: rangekv start --id N --listen HOST:PORT --client-listen HOST:PORT\n"
   "                     --initial-cluster ID=HOST:PORT,... --data-dir DIR\n"
   "                     [--zone Z] [--ranges R] [--cluster-id ID] [--tick-ms MS]\n"
   "                     [--election-ticks N] [--quiesce on|off]\n"
   "                     [--request-timeout-ms MS] [--client-advertise HOST:PORT]\n"
   "                     [--compact-entries N] [--compact-lag-entries N]\n"
   "                     [--metrics-listen HOST:PORT] [--peer-timeout-ms MS]\n"
   "                     [--config FILE]\n"
   "  --id                this node's id (1..64), listed in --initial-cluster\n"
   "  --listen            address for other nodes (Raft traffic)\n"
   "  --client-listen     address for clients; --client-advertise: the address\n"
   "                      clients are told to dial, if different (NAT, proxies)\n"
   "  --initial-cluster   every node's id=peer address (what the others dial), with\n"
   "                      an optional @zone: 1=h:p@a,2=h:p@b; the same on every node;\n"
   "                      a new cluster places each range's replicas in distinct zones\n"
   "  --data-dir          WAL and state store; a restart recovers from it\n"
   "  --zone              zone label (reported in status)\n"
   "  --ranges            ranges to bootstrap a new cluster with (default 64)\n"
   "  --cluster-id        default: derived from --initial-cluster\n"
   "  --tick-ms           Raft tick (default 100); --election-ticks (default 10)\n"
   "  --quiesce           idle ranges stop ticking and heartbeating (default on)\n"
   "  --request-timeout-ms  unanswered client requests fail after this (default 5000)\n"
   "  --compact-entries   drop a range's applied log entries, once every replica\n"
   "                      holds them, in steps of at least N (default 10000; 0 off)\n"
   "  --compact-lag-entries  a replica more than N entries behind no longer holds\n"
   "                      the log back: it catches up from a snapshot of the range\n"
   "                      (default 50000; 0: replicas always hold the log back)\n"
   "  --metrics-listen    serve GET /metrics (Prometheus text format) here; off by\n"
   "                      default; port 0 picks one (printed in the ready line)\n"
   "  --peer-timeout-ms   a peer connection that gets nothing acknowledged for MS\n"
   "                      (host gone, network cut) is closed and dialed afresh\n"
   "                      (default 10000)\n"
   "  --config            a file of 'name = value' lines (flag names); flags win\n"
   "  Prints 'rangekv node N ready: ...' when serving; SIGTERM/SIGINT stop it cleanly.\n",
   cmd_start},
  {"demo", "start a local 3-node cluster and run a workload",
   "usage: rangekv demo [--duration SECONDS] [--ranges N] [--dir DIR] [--clients C]\n"
   "                    [--dry-run]\n"
   "  Starts 3 rangekv processes on 127.0.0.1 with data under DIR (default: a\n"
   "  fresh directory under /tmp), bootstraps N ranges (default 64), runs a mixed\n"
   "  workload with a live progress line, prints a per-range table, and stops\n"
   "  all its processes on Ctrl-C or after --duration seconds. --clients: workload\n"
   "  threads (default 8). --dry-run: explain, start nothing.\n",
   cmd_demo},
  {"sim", "run the deterministic simulator",
   "usage: rangekv sim --seed S [--nodes N] [--groups G] [--steps K]\n"
   "                   [--faults LIST|all|none] [--trace FILE] [--history FILE]\n"
   "       rangekv sim --seeds N [--first S]\n"
   "       rangekv sim --seed S --groups G --faults none --idle [--idle-seconds T]\n"
   "                   [--crash-when-idle NODE] [--stats]\n"
   "       rangekv sim scenario NAME | --list\n"
   "       rangekv sim check-history FILE\n"
   "  Defaults: --nodes 3 --groups 2 --steps 50000 --faults all. Extra:\n"
   "  --clients C, --no-prevote, --bugs LIST (planted bugs, for checking the\n"
   "  checkers: " SIM_BUG_NAMES "),\n"
   "  --no-quiesce. Every node runs the\n"
   "  multi-Raft host. --stats: a 'stats: groups=G sim_seconds=T\n"
   "  node_pair_msgs_per_sec=X heartbeat_entries_per_sec=Y quiesced=Q wal_syncs=S\n"
   "  entries=E' line. --idle: no load; once all groups elect and quiesce, measure\n"
   "  T simulated seconds (default 10); --crash-when-idle crashes NODE then and\n"
   "  prints a 'wake:' line. The last line is always\n"
   "  'sim: seeds=N events=E violations=V trace_hash=H'.\n",
   cmd_sim},
  {"bench", "run a benchmark (fsync, wal, recover, host, kv)",
   "usage: rangekv bench fsync [--bytes B] [--seconds S] [--dir DIR]\n"
   "                           [--rate R [--entry-bytes B] [--in-flight K]]\n"
   "       rangekv bench wal --groups G --entry-bytes B --seconds S\n"
   "                         [--batch-window-us W] [--writers N] [--dir DIR]\n"
   "                         [--rate R] [--prefill-segments K]\n"
   "                         [--warmup-seconds S] [--per-second]\n"
   "       rangekv bench recover [--mib M] [--entry-bytes B] [--groups G] [--dir DIR]\n"
   "       rangekv bench host [--groups G] [--sim-seconds S] [--tick-ms T]\n"
   "       rangekv bench kv --endpoints LIST --clients C --value-bytes B\n"
   "                        --seconds S --read-ratio X [--keys K] [--zipf THETA]\n"
   "                        [--json FILE] [--seed N]\n"
   "  fsync: raw write+fdatasync rate of the disk under DIR (default $TMPDIR or /tmp);\n"
   "  with --rate, the ideal group commit at R entries/s of B bytes (default 128):\n"
   "  the latency floor the disk sets under 'bench wal --rate R'; --in-flight K\n"
   "  runs it through io_uring with up to K syncs at once.\n"
   "  wal: the shared WAL with G groups; --writers appends outstanding (closed\n"
   "  loop, default 256) or --rate entries/s (open loop); --warmup-seconds runs\n"
   "  the load that long first and reports it apart (default 0); --per-second\n"
   "  prints each second's share over 2 ms. recover: time to reopen\n"
   "  an M MiB WAL (default 1024). host: CPU of G quiesced groups per simulated\n"
   "  second and of one awake tick (3 in-process hosts, default G=10000).\n"
   "  kv: closed-loop get/put through the client library against a running\n"
   "  cluster (defaults: 16 clients, 128 B, 10 s, 0.9 reads, 100000 keys);\n"
   "  per-range and total ops/s and latency; last line 'bench: ops=N\n"
   "  ops_per_sec=X p50_us=A p99_us=B p999_us=C errors=E'.\n",
   cmd_bench},
  {"put", "write a key",
   "usage: rangekv put KEY VALUE [--endpoints LIST] [--timeout MS]\n"
   "  LIST: HOST:PORT,... client addresses (default: $RANGEKV_ENDPOINTS).\n"
   "  --timeout: the call's deadline, retries included (default 5000).\n",
   cmd_put},
  {"get", "read a key (linearizable)",
   "usage: rangekv get KEY [--endpoints LIST] [--timeout MS]\n"
   "  Prints the value; an absent key prints 'not found' and exits 1.\n",
   cmd_get},
  {"del", "delete a key", "usage: rangekv del KEY [--endpoints LIST] [--timeout MS]\n",
   cmd_del},
  {"scan", "read a key range",
   "usage: rangekv scan START END [--limit N] [--endpoints LIST] [--timeout MS]\n"
   "  Keys in [START, END) in key order, one 'KEY<TAB>VALUE' line each, at most N\n"
   "  (default 100). END \"\" means to the end of the key space.\n",
   cmd_scan},
  {"status", "show per-node status",
   "usage: rangekv status [--endpoints LIST] [--timeout MS]\n"
   "  Per node: replicas, leaders held, quiesced, max term, commit/applied,\n"
   "  WAL bytes, uptime. Exits 1 if a node is unreachable.\n",
   cmd_status},
  {"ranges", "list ranges and their leaders",
   "usage: rangekv ranges [--endpoints LIST] [--timeout MS]\n",
   cmd_ranges},
  {"config", "check a configuration file",
   "usage: rangekv config check FILE\n"
   "  Loads FILE ('name = value' lines, the flag names of `rangekv start`) as\n"
   "  `rangekv start --config FILE` would, prints the effective settings and\n"
   "  'config: ok' (exit 0), or the first error (exit 1). Starts nothing.\n",
   cmd_config},
  {"version", "print the version", "usage: rangekv version\n", cmd_version},
};
/* clang-format on */
const int cli_ncmds = (int)(sizeof cli_cmds / sizeof cli_cmds[0]);

static void print_main_usage(FILE *out) {
  fprintf(out, "usage: rangekv [--log-level LEVEL] COMMAND [FLAGS] [ARGS]\n\n"
               "rangekv is a multi-Raft sharded key-value store.\n\ncommands:\n");
  for (int i = 0; i < cli_ncmds; i++) {
    fprintf(out, "  %-8s %s\n", cli_cmds[i].name, cli_cmds[i].summary);
  }
  fprintf(out, "\nglobal flags:\n"
               "  --log-level LEVEL  error, warn, info, debug or trace "
               "(default: $RANGEKV_LOG or warn)\n"
               "  --help, --version\n\n"
               "Run 'rangekv COMMAND --help' for a command's flags.\n");
}

int main(int argc, char **argv) {
  if (rk_log_init_from_env() != 0) {
    fprintf(stderr, "rangekv: RANGEKV_LOG must be one of error, warn, info, "
                    "debug, trace\n");
    return CLI_EXIT_USAGE;
  }
  int i = 1;
  /* Global flags come before the subcommand. */
  for (; i < argc && argv[i][0] == '-'; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      print_main_usage(stdout);
      return CLI_EXIT_OK;
    } else if (strcmp(a, "--version") == 0) {
      return cmd_version(&cli_cmds[cli_ncmds - 1], 1, argv);
    } else if (strncmp(a, "--log-level", 11) == 0) {
      const char *v = NULL;
      if (a[11] == '=')
        v = a + 12;
      else if (a[11] == '\0' && i + 1 < argc)
        v = argv[++i];
      else if (a[11] != '\0')
        goto unknown;
      int l = rk_log_level_parse(v);
      if (l < 0) {
        fprintf(stderr,
                "rangekv: --log-level must be one of error, warn, info, "
                "debug, trace, got '%s'\n",
                v ? v : "");
        print_main_usage(stderr);
        return CLI_EXIT_USAGE;
      }
      rk_log_set_level((rk_log_level)l);
    } else {
    unknown:
      fprintf(stderr, "rangekv: unknown flag '%s'\n", a);
      print_main_usage(stderr);
      return CLI_EXIT_USAGE;
    }
  }
  if (i >= argc) {
    fprintf(stderr, "rangekv: missing command\n");
    print_main_usage(stderr);
    return CLI_EXIT_USAGE;
  }
  for (int c = 0; c < cli_ncmds; c++) {
    if (strcmp(argv[i], cli_cmds[c].name) == 0) {
      /* The subcommand sees argv[0] = its own name. */
      return cli_cmds[c].run(&cli_cmds[c], argc - i, argv + i);
    }
  }
  fprintf(stderr, "rangekv: unknown command '%s'\n", argv[i]);
  print_main_usage(stderr);
  return CLI_EXIT_USAGE;
}
