#include "cmd/cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

void cli_print_usage(const cli_cmd *cmd, int to_stderr) {
  FILE *out = to_stderr ? stderr : stdout;
  fprintf(out, "%s", cmd->usage);
}

int cli_usage_error(const cli_cmd *cmd, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "rangekv %s: ", cmd->name);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  cli_print_usage(cmd, 1);
  return CLI_EXIT_USAGE;
}

int cli_parse(const cli_cmd *cmd, int argc, char **argv, const char *shortopts,
              const struct option *opts, cli_opt_fn on_opt, void *ctx, int *first_arg) {
  /* A leading ':' makes getopt report a missing value as ':' instead of '?'. */
  char so[64];
  snprintf(so, sizeof so, ":%s", shortopts);
  opterr = 0;
  optind = 1;
  for (;;) {
    int idx = -1;
    int c = getopt_long(argc, argv, so, opts, &idx);
    if (c == -1) break;
    if (c == 'h') {
      cli_print_usage(cmd, 0);
      return CLI_EXIT_OK;
    }
    if (c == '?') {
      const char *bad = argv[optind - 1];
      if (optopt != 0 && optopt != '?') return cli_usage_error(cmd, "unknown flag '-%c'", optopt);
      return cli_usage_error(cmd, "unknown flag '%s'", bad);
    }
    if (c == ':') {
      return cli_usage_error(cmd, "flag '%s' needs a value", argv[optind - 1]);
    }
    int rc = on_opt ? on_opt(cmd, c, optarg, ctx) : CLI_CONTINUE;
    if (rc != CLI_CONTINUE) return rc;
  }
  *first_arg = optind;
  return CLI_CONTINUE;
}

int cli_parse_u64(const cli_cmd *cmd, const char *flag, const char *s, uint64_t min, uint64_t max,
                  uint64_t *out) {
  if (s == NULL || *s == '\0' || *s == '-' || *s == '+' || *s == ' ')
    return cli_usage_error(cmd, "%s needs a whole number, got '%s'", flag, s ? s : "");
  errno = 0;
  char *end = NULL;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0')
    return cli_usage_error(cmd, "%s needs a whole number, got '%s'", flag, s);
  if (v < min || v > max)
    return cli_usage_error(cmd, "%s must be between %llu and %llu, got %s", flag,
                           (unsigned long long)min, (unsigned long long)max, s);
  *out = v;
  return CLI_CONTINUE;
}

int cli_parse_double(const cli_cmd *cmd, const char *flag, const char *s, double min, double max,
                     double *out) {
  if (s == NULL || *s == '\0' || *s == ' ')
    return cli_usage_error(cmd, "%s needs a number, got '%s'", flag, s ? s : "");
  errno = 0;
  char *end = NULL;
  double v = strtod(s, &end);
  if (errno != 0 || end == s || *end != '\0' || !isfinite(v))
    return cli_usage_error(cmd, "%s needs a number, got '%s'", flag, s);
  if (v < min || v > max)
    return cli_usage_error(cmd, "%s must be between %g and %g, got %s", flag, min, max, s);
  *out = v;
  return CLI_CONTINUE;
}
