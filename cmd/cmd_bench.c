/* cmd/cmd_bench.c — `rangekv bench fsync|wal|recover|host|kv`. The benchmark
 * code is in bench/; this only parses flags. */
#include "cmd/cli.h"

#include "bench/bench.h"
#include "common/rk_err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct bench_args {
  bench_fsync_opts f;
  bench_wal_opts w;
  bench_recover_opts r;
  bench_host_opts h;
  int have_groups, have_bytes, have_seconds;
} bench_args;

enum {
  OPT_BYTES = 1000,
  OPT_SECONDS,
  OPT_DIR,
  OPT_GROUPS,
  OPT_ENTRY_BYTES,
  OPT_WINDOW,
  OPT_WRITERS,
  OPT_RATE,
  OPT_PREFILL,
  OPT_WARMUP,
  OPT_PER_SECOND,
  OPT_IN_FLIGHT,
  OPT_MIB,
  OPT_SIM_SECONDS,
  OPT_TICK_MS,
  OPT_KV_ENDPOINTS,
  OPT_KV_CLIENTS,
  OPT_KV_VALUE,
  OPT_KV_READ,
  OPT_KV_KEYS,
  OPT_KV_ZIPF,
  OPT_KV_JSON,
  OPT_KV_SEED
};

static int on_fsync_opt(const cli_cmd *cmd, int opt, const char *arg, void *ctx) {
  bench_args *a = ctx;
  switch (opt) {
  case OPT_BYTES: return cli_parse_u64(cmd, "--bytes", arg, 1, 64u << 20, &a->f.bytes);
  case OPT_SECONDS: return cli_parse_double(cmd, "--seconds", arg, 0.1, 3600, &a->f.seconds);
  case OPT_DIR: a->f.dir = arg; return CLI_CONTINUE;
  case OPT_RATE: return cli_parse_u64(cmd, "--rate", arg, 1, 100000000, &a->f.rate);
  case OPT_ENTRY_BYTES:
    return cli_parse_u64(cmd, "--entry-bytes", arg, 0, 1u << 20, &a->f.entry_bytes);
  case OPT_IN_FLIGHT: return cli_parse_u64(cmd, "--in-flight", arg, 1, 8, &a->f.in_flight);
  default: return cli_usage_error(cmd, "unexpected flag");
  }
}

static int on_wal_opt(const cli_cmd *cmd, int opt, const char *arg, void *ctx) {
  bench_args *a = ctx;
  switch (opt) {
  case OPT_GROUPS:
    a->have_groups = 1;
    return cli_parse_u64(cmd, "--groups", arg, 1, 10000000, &a->w.groups);
  case OPT_ENTRY_BYTES:
    a->have_bytes = 1;
    return cli_parse_u64(cmd, "--entry-bytes", arg, 0, 1u << 20, &a->w.entry_bytes);
  case OPT_SECONDS:
    a->have_seconds = 1;
    return cli_parse_double(cmd, "--seconds", arg, 0.1, 3600, &a->w.seconds);
  case OPT_WINDOW: return cli_parse_u64(cmd, "--batch-window-us", arg, 0, 1000000, &a->w.window_us);
  case OPT_WRITERS: return cli_parse_u64(cmd, "--writers", arg, 1, 1000000, &a->w.writers);
  case OPT_RATE: return cli_parse_u64(cmd, "--rate", arg, 1, 100000000, &a->w.rate);
  case OPT_PREFILL:
    return cli_parse_u64(cmd, "--prefill-segments", arg, 0, 64, &a->w.prefill_segments);
  case OPT_WARMUP:
    return cli_parse_double(cmd, "--warmup-seconds", arg, 0, 3600, &a->w.warmup_seconds);
  case OPT_PER_SECOND: a->w.per_second = 1; return CLI_CONTINUE;
  case OPT_DIR: a->w.dir = arg; return CLI_CONTINUE;
  default: return cli_usage_error(cmd, "unexpected flag");
  }
}

static int on_recover_opt(const cli_cmd *cmd, int opt, const char *arg, void *ctx) {
  bench_args *a = ctx;
  switch (opt) {
  case OPT_MIB: return cli_parse_u64(cmd, "--mib", arg, 1, 1u << 20, &a->r.mib);
  case OPT_ENTRY_BYTES:
    return cli_parse_u64(cmd, "--entry-bytes", arg, 1, 1u << 20, &a->r.entry_bytes);
  case OPT_GROUPS: return cli_parse_u64(cmd, "--groups", arg, 1, 10000000, &a->r.groups);
  case OPT_DIR: a->r.dir = arg; return CLI_CONTINUE;
  default: return cli_usage_error(cmd, "unexpected flag");
  }
}

static int on_host_opt(const cli_cmd *cmd, int opt, const char *arg, void *ctx) {
  bench_args *a = ctx;
  switch (opt) {
  case OPT_GROUPS: return cli_parse_u64(cmd, "--groups", arg, 1, 200000, &a->h.groups);
  case OPT_SIM_SECONDS:
    return cli_parse_double(cmd, "--sim-seconds", arg, 1, 86400, &a->h.sim_seconds);
  case OPT_TICK_MS: return cli_parse_u64(cmd, "--tick-ms", arg, 1, 60000, &a->h.tick_ms);
  default: return cli_usage_error(cmd, "unexpected flag");
  }
}

static int on_kv_opt(const cli_cmd *cmd, int opt, const char *arg, void *ctx) {
  bench_kv_opts *k = ctx;
  switch (opt) {
  case OPT_KV_ENDPOINTS: k->endpoints = arg; return CLI_CONTINUE;
  case OPT_KV_CLIENTS: return cli_parse_u64(cmd, "--clients", arg, 1, 4096, &k->clients);
  case OPT_KV_VALUE: return cli_parse_u64(cmd, "--value-bytes", arg, 1, 1u << 20, &k->value_bytes);
  case OPT_SECONDS: return cli_parse_double(cmd, "--seconds", arg, 0.1, 86400, &k->seconds);
  case OPT_KV_READ: return cli_parse_double(cmd, "--read-ratio", arg, 0, 1, &k->read_ratio);
  case OPT_KV_KEYS: return cli_parse_u64(cmd, "--keys", arg, 1, 100000000, &k->keys);
  case OPT_KV_ZIPF: return cli_parse_double(cmd, "--zipf", arg, 0, 0.999, &k->zipf);
  case OPT_KV_JSON: k->json = arg; return CLI_CONTINUE;
  case OPT_KV_SEED: return cli_parse_u64(cmd, "--seed", arg, 0, UINT64_MAX, &k->seed);
  default: return cli_usage_error(cmd, "unexpected flag");
  }
}

static int done(int rc) { return rc == RK_OK ? CLI_EXIT_OK : CLI_EXIT_FAIL; }

int cmd_bench(const cli_cmd *cmd, int argc, char **argv) {
  if (argc < 2)
    return cli_usage_error(cmd, "missing benchmark name (fsync, wal, recover, host, kv)");
  const char *which = argv[1];
  if (strcmp(which, "--help") == 0 || strcmp(which, "-h") == 0) {
    cli_print_usage(cmd, 0);
    return CLI_EXIT_OK;
  }
  bench_args a;
  memset(&a, 0, sizeof a);
  a.f.bytes = 4096;
  a.f.seconds = 5;
  a.f.entry_bytes = 128;
  a.w.writers = 256;
  a.w.prefill_segments = 4;
  a.r.mib = 1024;
  a.r.entry_bytes = 128;
  a.r.groups = 1000;
  a.h.groups = 10000;
  a.h.sim_seconds = 60;
  a.h.tick_ms = 100;
  int first = 0, rc;
  if (strcmp(which, "fsync") == 0) {
    static const struct option opts[] = {{"bytes", required_argument, 0, OPT_BYTES},
                                         {"seconds", required_argument, 0, OPT_SECONDS},
                                         {"dir", required_argument, 0, OPT_DIR},
                                         {"rate", required_argument, 0, OPT_RATE},
                                         {"entry-bytes", required_argument, 0, OPT_ENTRY_BYTES},
                                         {"in-flight", required_argument, 0, OPT_IN_FLIGHT},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    rc = cli_parse(cmd, argc - 1, argv + 1, "h", opts, on_fsync_opt, &a, &first);
    if (rc != CLI_CONTINUE) return rc;
    if (first < argc - 1) return cli_usage_error(cmd, "unexpected argument '%s'", argv[1 + first]);
    if (a.f.in_flight > 0 && a.f.rate == 0) return cli_usage_error(cmd, "--in-flight needs --rate");
    return done(bench_fsync(&a.f));
  }
  if (strcmp(which, "wal") == 0) {
    static const struct option opts[] = {{"groups", required_argument, 0, OPT_GROUPS},
                                         {"entry-bytes", required_argument, 0, OPT_ENTRY_BYTES},
                                         {"seconds", required_argument, 0, OPT_SECONDS},
                                         {"batch-window-us", required_argument, 0, OPT_WINDOW},
                                         {"writers", required_argument, 0, OPT_WRITERS},
                                         {"rate", required_argument, 0, OPT_RATE},
                                         {"prefill-segments", required_argument, 0, OPT_PREFILL},
                                         {"warmup-seconds", required_argument, 0, OPT_WARMUP},
                                         {"per-second", no_argument, 0, OPT_PER_SECOND},
                                         {"dir", required_argument, 0, OPT_DIR},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    rc = cli_parse(cmd, argc - 1, argv + 1, "h", opts, on_wal_opt, &a, &first);
    if (rc != CLI_CONTINUE) return rc;
    if (first < argc - 1) return cli_usage_error(cmd, "unexpected argument '%s'", argv[1 + first]);
    if (!a.have_groups) return cli_usage_error(cmd, "bench wal needs --groups");
    if (!a.have_bytes) return cli_usage_error(cmd, "bench wal needs --entry-bytes");
    if (!a.have_seconds) return cli_usage_error(cmd, "bench wal needs --seconds");
    return done(bench_wal(&a.w));
  }
  if (strcmp(which, "recover") == 0) {
    static const struct option opts[] = {{"mib", required_argument, 0, OPT_MIB},
                                         {"entry-bytes", required_argument, 0, OPT_ENTRY_BYTES},
                                         {"groups", required_argument, 0, OPT_GROUPS},
                                         {"dir", required_argument, 0, OPT_DIR},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    rc = cli_parse(cmd, argc - 1, argv + 1, "h", opts, on_recover_opt, &a, &first);
    if (rc != CLI_CONTINUE) return rc;
    if (first < argc - 1) return cli_usage_error(cmd, "unexpected argument '%s'", argv[1 + first]);
    return done(bench_recover(&a.r));
  }
  if (strcmp(which, "host") == 0) {
    static const struct option opts[] = {{"groups", required_argument, 0, OPT_GROUPS},
                                         {"sim-seconds", required_argument, 0, OPT_SIM_SECONDS},
                                         {"tick-ms", required_argument, 0, OPT_TICK_MS},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    rc = cli_parse(cmd, argc - 1, argv + 1, "h", opts, on_host_opt, &a, &first);
    if (rc != CLI_CONTINUE) return rc;
    if (first < argc - 1) return cli_usage_error(cmd, "unexpected argument '%s'", argv[1 + first]);
    return done(bench_host(&a.h));
  }
  if (strcmp(which, "kv") == 0) {
    bench_kv_opts k = {.clients = 16,
                       .value_bytes = 128,
                       .seconds = 10,
                       .read_ratio = 0.9,
                       .keys = 100000,
                       .seed = 1};
    static const struct option opts[] = {{"endpoints", required_argument, 0, OPT_KV_ENDPOINTS},
                                         {"clients", required_argument, 0, OPT_KV_CLIENTS},
                                         {"value-bytes", required_argument, 0, OPT_KV_VALUE},
                                         {"seconds", required_argument, 0, OPT_SECONDS},
                                         {"read-ratio", required_argument, 0, OPT_KV_READ},
                                         {"keys", required_argument, 0, OPT_KV_KEYS},
                                         {"zipf", required_argument, 0, OPT_KV_ZIPF},
                                         {"json", required_argument, 0, OPT_KV_JSON},
                                         {"seed", required_argument, 0, OPT_KV_SEED},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    rc = cli_parse(cmd, argc - 1, argv + 1, "h", opts, on_kv_opt, &k, &first);
    if (rc != CLI_CONTINUE) return rc;
    if (first < argc - 1) return cli_usage_error(cmd, "unexpected argument '%s'", argv[1 + first]);
    if (k.endpoints == NULL) k.endpoints = getenv("RANGEKV_ENDPOINTS");
    if (k.endpoints == NULL || *k.endpoints == '\0')
      return cli_usage_error(cmd, "bench kv needs --endpoints (or RANGEKV_ENDPOINTS)");
    return done(bench_kv(&k));
  }
  return cli_usage_error(cmd, "unknown benchmark '%s' (fsync, wal, recover, host, kv)", which);
}
