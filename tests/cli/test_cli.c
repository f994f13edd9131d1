/* The rangekv binary's command-line contract: help, version, and a one-line
 * error plus usage with exit 2 for every kind of bad invocation. */
#include "tests/lib/proc.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RUN(r, ...)                                                                                \
  do {                                                                                             \
    char *argv_[] = {RK_BINARY, __VA_ARGS__, NULL};                                                \
    cr_assert_eq(proc_run(argv_, 10000, (r)), 0);                                                  \
    cr_assert(!(r)->timed_out);                                                                    \
    cr_assert((r)->exited, "rangekv died of signal %d", (r)->status);                              \
  } while (0)

static proc_result r;

Test(cli, help_lists_every_command) {
  RUN(&r, "--help");
  cr_assert_eq(r.status, 0);
  const char *cmds[] = {"start", "demo", "sim",    "bench",  "put",    "get",
                        "del",   "scan", "status", "ranges", "config", "version"};
  for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
    cr_assert_not_null(strstr(r.out, cmds[i]), "missing %s", cmds[i]);
}

Test(cli, version_prints_version) {
  RUN(&r, "version");
  cr_assert_eq(r.status, 0);
  cr_assert(strncmp(r.out, "rangekv 0.", 10) == 0, "got: %s", r.out);
  RUN(&r, "--version");
  cr_assert_eq(r.status, 0);
  cr_assert(strncmp(r.out, "rangekv 0.", 10) == 0);
}

Test(cli, every_command_has_help) {
  char *cmds[] = {"start", "demo", "sim",    "bench",  "put",    "get",
                  "del",   "scan", "status", "ranges", "config", "version"};
  for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
    RUN(&r, cmds[i], "--help");
    cr_assert_eq(r.status, 0, "%s --help exit %d", cmds[i], r.status);
    cr_assert_not_null(strstr(r.out, "usage: rangekv"), "%s --help: %s", cmds[i], r.out);
  }
}

static void assert_usage_error(const char *needle) {
  cr_assert_eq(r.status, 2, "exit %d, stderr: %s", r.status, r.err);
  cr_assert_not_null(strstr(r.err, needle), "stderr lacks '%s': %s", needle, r.err);
  cr_assert_not_null(strstr(r.err, "usage:"), "no usage in: %s", r.err);
  /* The error is one line, first. */
  const char *nl = strchr(r.err, '\n');
  cr_assert_not_null(nl);
  cr_assert(strncmp(nl + 1, "usage:", 6) == 0, "error is not one line: %s", r.err);
}

Test(cli, unknown_command) {
  RUN(&r, "frobnicate");
  assert_usage_error("unknown command 'frobnicate'");
}

Test(cli, missing_command) {
  char *argv_[] = {RK_BINARY, NULL};
  cr_assert_eq(proc_run(argv_, 10000, &r), 0);
  assert_usage_error("missing command");
}

Test(cli, unknown_flags) {
  RUN(&r, "--bogus");
  assert_usage_error("unknown flag '--bogus'");
  RUN(&r, "demo", "--bogus");
  assert_usage_error("unknown flag '--bogus'");
  RUN(&r, "version", "-x");
  assert_usage_error("unknown flag '-x'");
}

Test(cli, missing_and_malformed_values) {
  RUN(&r, "demo", "--duration");
  assert_usage_error("needs a value");
  RUN(&r, "demo", "--duration", "ten");
  assert_usage_error("--duration needs a whole number, got 'ten'");
  RUN(&r, "demo", "--duration", "-5");
  assert_usage_error("--duration needs a whole number");
  RUN(&r, "demo", "--ranges", "12x");
  assert_usage_error("--ranges needs a whole number, got '12x'");
  RUN(&r, "demo", "--ranges", "0");
  assert_usage_error("--ranges must be between");
  RUN(&r, "demo", "--ranges", "99999999999999999999999");
  assert_usage_error("--ranges needs a whole number");
  RUN(&r, "--log-level", "loud", "version");
  cr_assert_eq(r.status, 2);
  RUN(&r, "version", "extra");
  assert_usage_error("unexpected argument 'extra'");
}

Test(cli, log_level_flag_accepted) {
  RUN(&r, "--log-level", "debug", "version");
  cr_assert_eq(r.status, 0);
  RUN(&r, "--log-level=error", "version");
  cr_assert_eq(r.status, 0);
}

Test(cli, demo_dry_run_explains_and_exits_zero) {
  RUN(&r, "demo", "--dry-run", "--duration", "5", "--ranges", "8");
  cr_assert_eq(r.status, 0, "stderr: %s", r.err);
  cr_assert_not_null(strstr(r.out, "bootstrap 8 ranges"), "%s", r.out);
}

Test(cli, sim_idle_flags_are_checked) {
  RUN(&r, "sim", "--seed", "1", "--idle", "--faults", "all");
  assert_usage_error("--idle measures a cluster at rest");
  RUN(&r, "sim", "--seed", "1", "--crash-when-idle", "1");
  assert_usage_error("--crash-when-idle goes with --idle");
  RUN(&r, "sim", "--seed", "1", "--idle", "--crash-when-idle", "7");
  assert_usage_error("node 7 does not exist");
}

/* `bench wal --warmup-seconds --per-second`: the warm-up and each measured
 * second get their own lines, the open loop its from-append figures, and the
 * last line keeps its parsed shape. */
Test(cli, bench_wal_reports_the_warmup_apart) {
  RUN(&r, "bench", "wal", "--groups", "4", "--entry-bytes", "16", "--seconds", "0.3",
      "--warmup-seconds", "0.2", "--per-second", "--rate", "2000", "--prefill-segments", "0");
  cr_assert_eq(r.status, 0, "exit %d: %s %s", r.status, r.out, r.err);
  unsigned long long warm = 0, sec0 = 0;
  const char *w = strstr(r.out, "wal: warmup entries=");
  cr_assert_not_null(w, "%s", r.out);
  cr_assert_eq(sscanf(w, "wal: warmup entries=%llu", &warm), 1);
  cr_assert_gt(warm, 0);
  const char *s0 = strstr(r.out, "wal: second=0 entries=");
  cr_assert_not_null(s0, "%s", r.out);
  cr_assert_eq(sscanf(s0, "wal: second=0 entries=%llu", &sec0), 1);
  cr_assert_gt(sec0, 0);
  cr_assert_null(strstr(r.out, "wal: second=1 "), "a 0.3 s run has one second: %s", r.out);
  /* The schedule bounds both parts (2,000/s: at most 401 warm-up entries,
   * 601 measured); a measurement that took in the warm-up would not fit. */
  cr_assert_leq(warm, 401, "%s", r.out);
  unsigned long long measured = 0;
  const char *m = strstr(r.out, "wal: entries=");
  cr_assert_not_null(m, "%s", r.out);
  cr_assert_eq(sscanf(m, "wal: entries=%llu", &measured), 1);
  cr_assert_eq(measured, sec0, "%s", r.out);
  cr_assert_leq(measured, 601, "%s", r.out);
  /* An entry is appended at or after its place in the schedule. */
  double app_p50 = 0, p50 = 0;
  const char *a = strstr(r.out, "wal: from_append p50_us=");
  cr_assert_not_null(a, "%s", r.out);
  cr_assert_eq(sscanf(a, "wal: from_append p50_us=%lf", &app_p50), 1);
  const char *last = strstr(r.out, "wal: entries_per_sec=");
  cr_assert_not_null(last, "%s", r.out);
  const char *lp = strstr(last, " p50_us=");
  cr_assert_not_null(lp, "%s", r.out);
  cr_assert_eq(sscanf(lp, " p50_us=%lf", &p50), 1);
  cr_assert(app_p50 > 0 && app_p50 <= p50, "from append %.1f vs %.1f", app_p50, p50);
  cr_assert_null(strchr(last, '\n') ? strstr(strchr(last, '\n'), "wal:") : NULL,
                 "the figures are not the last line: %s", r.out);
  RUN(&r, "bench", "wal", "--groups", "4", "--entry-bytes", "16", "--seconds", "1",
      "--warmup-seconds", "-1");
  assert_usage_error("--warmup-seconds");
}

/* `sim --idle --stats` prints the stats line just before the last line, and
 * --crash-when-idle a wake line (both parsed by other tools). */
Test(cli, sim_idle_stats_and_wake_lines) {
  RUN(&r, "sim", "--seed", "1", "--nodes", "5", "--groups", "50", "--idle", "--idle-seconds", "1",
      "--crash-when-idle", "0", "--stats");
  cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.out);
  const char *st = strstr(r.out, "\nstats: groups=50 sim_seconds=1.0");
  cr_assert_not_null(st, "%s", r.out);
  cr_assert_not_null(strstr(st, " node_pair_msgs_per_sec="));
  cr_assert_not_null(strstr(st, " heartbeat_entries_per_sec="));
  cr_assert_not_null(strstr(st, " quiesced=50 wal_syncs="));
  cr_assert_not_null(strstr(r.out, "\nwake: crashed=n0 led="), "%s", r.out);
  cr_assert_not_null(strstr(r.out, " woke_not_led=0 "), "%s", r.out);
  const char *last = strstr(r.out, "\nsim: seeds=1 ");
  cr_assert_not_null(last);
  cr_assert(last > st, "the stats line comes before the last line");
  cr_assert_not_null(strstr(last, " violations=0 "));
}

/* `config check FILE` loads a node's settings as `start --config` would:
 * the effective settings and "config: ok" (exit 0), or the first error
 * (exit 1). It starts nothing and creates nothing. */
Test(cli, config_check_reports_settings_or_the_first_error) {
  char dir[] = "/tmp/rk-cfgXXXXXX";
  cr_assert_not_null(mkdtemp(dir));
  char path[256], data[256];
  snprintf(path, sizeof path, "%s/node.conf", dir);
  snprintf(data, sizeof data, "%s/data", dir);
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f);
  fprintf(f,
          "# node 2\nid = 2\nlisten = 127.0.0.1:7002\nclient-listen = 127.0.0.1:8002\n"
          "initial-cluster = 1=127.0.0.1:7001@a,2=127.0.0.1:7002@b,3=127.0.0.1:7003@c\n"
          "data-dir = %s\nquiesce = off\n",
          data);
  fclose(f);
  RUN(&r, "config", "check", path);
  cr_assert_eq(r.status, 0, "exit %d: %s%s", r.status, r.out, r.err);
  cr_assert_not_null(strstr(r.out, "node 2, zone b"), "%s", r.out);
  cr_assert_not_null(strstr(r.out, "absent (start creates it)"), "%s", r.out);
  cr_assert_not_null(strstr(r.out, "3 member(s)"), "%s", r.out);
  cr_assert_not_null(strstr(r.out, "quiesce off"), "%s", r.out);
  cr_assert_not_null(strstr(r.out, "\nconfig: ok\n"), "%s", r.out);
  cr_assert_neq(access(data, F_OK), 0, "config check created the data dir");
  /* An unknown setting names its line. */
  f = fopen(path, "a");
  cr_assert_not_null(f);
  fprintf(f, "tick = 5\n");
  fclose(f);
  RUN(&r, "config", "check", path);
  cr_assert_eq(r.status, 1);
  cr_assert_not_null(strstr(r.err, "node.conf:8: unknown setting 'tick'"), "%s", r.err);
  /* A node missing from its own cluster. */
  f = fopen(path, "w");
  cr_assert_not_null(f);
  fprintf(f, "id = 4\nlisten = a:1\nclient-listen = a:2\ninitial-cluster = 1=a:1\ndata-dir = %s\n",
          data);
  fclose(f);
  RUN(&r, "config", "check", path);
  cr_assert_eq(r.status, 1);
  cr_assert_not_null(strstr(r.err, "node 4 is not in --initial-cluster"), "%s", r.err);
  RUN(&r, "config", "check", "/nonexistent/rk.conf");
  cr_assert_eq(r.status, 1);
  cr_assert_not_null(strstr(r.err, "cannot read"), "%s", r.err);
  RUN(&r, "config", "frobnicate");
  assert_usage_error("expected 'check FILE'");
  unlink(path);
  rmdir(dir);
}
