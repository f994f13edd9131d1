/* cmd/cli.h — the subcommand table and the flag-parsing conventions every
 * subcommand shares, so errors look and exit the same everywhere:
 *   usage errors (unknown flag, missing or malformed value, unexpected
 *   argument)  -> one line "rangekv CMD: <what>", then the usage, exit 2;
 *   --help / -h -> usage on stdout, exit 0;
 *   a subcommand not built yet -> says so plainly, exit 2.
 */
#ifndef RK_CMD_CLI_H
#define RK_CMD_CLI_H

#include <getopt.h>
#include <stdint.h>

#define CLI_EXIT_OK    0
#define CLI_EXIT_FAIL  1 /* the command ran and failed */
#define CLI_EXIT_USAGE 2 /* bad invocation */

typedef struct cli_cmd {
  const char *name;
  const char *summary;
  const char *usage; /* full usage text, printed by --help and on errors */
  int (*run)(const struct cli_cmd *cmd, int argc, char **argv);
} cli_cmd;

/* Called once per parsed option with getopt_long's code and optarg.
 * Returns CLI_CONTINUE or an exit code. */
#define CLI_CONTINUE (-1)
typedef int (*cli_opt_fn)(const cli_cmd *cmd, int opt, const char *arg, void *ctx);

/* Runs getopt_long over argv with `opts` (which must include
 * {"help", no_argument, 0, 'h'}). On return *first_arg is the index of the
 * first positional argument. Returns CLI_CONTINUE or an exit code. */
int cli_parse(const cli_cmd *cmd, int argc, char **argv, const char *shortopts,
              const struct option *opts, cli_opt_fn on_opt, void *ctx, int *first_arg);

/* Prints "rangekv CMD: <msg>" and the usage to stderr; returns CLI_EXIT_USAGE. */
int cli_usage_error(const cli_cmd *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Strict number parsing: whole string, base 10, within [min, max].
 * On failure prints a usage error naming the flag and returns CLI_EXIT_USAGE;
 * on success returns CLI_CONTINUE. */
int cli_parse_u64(const cli_cmd *cmd, const char *flag, const char *s, uint64_t min, uint64_t max,
                  uint64_t *out);
int cli_parse_double(const cli_cmd *cmd, const char *flag, const char *s, double min, double max,
                     double *out);

void cli_print_usage(const cli_cmd *cmd, int to_stderr);

/* The table, defined in main.c. */
extern const cli_cmd cli_cmds[];
extern const int cli_ncmds;

/* Subcommands that exist. */
int cmd_version(const cli_cmd *cmd, int argc, char **argv);
int cmd_demo(const cli_cmd *cmd, int argc, char **argv);
int cmd_start(const cli_cmd *cmd, int argc, char **argv);
int cmd_config(const cli_cmd *cmd, int argc, char **argv);
int cmd_bench(const cli_cmd *cmd, int argc, char **argv);
int cmd_sim(const cli_cmd *cmd, int argc, char **argv);
/* cmd_client.c: the CLI over client/rk_client.h. */
int cmd_put(const cli_cmd *cmd, int argc, char **argv);
int cmd_get(const cli_cmd *cmd, int argc, char **argv);
int cmd_del(const cli_cmd *cmd, int argc, char **argv);
int cmd_scan(const cli_cmd *cmd, int argc, char **argv);
int cmd_status(const cli_cmd *cmd, int argc, char **argv);
int cmd_ranges(const cli_cmd *cmd, int argc, char **argv);

#endif
