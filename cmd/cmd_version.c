#include "cmd/cli.h"

#include <stdio.h>

#ifndef RK_VERSION
#define RK_VERSION "0.0.0"
#endif
#ifndef RK_GIT_REV
#define RK_GIT_REV ""
#endif

static const struct option version_opts[] = {{"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};

int cmd_version(const cli_cmd *cmd, int argc, char **argv) {
  int first = 1;
  int rc = cli_parse(cmd, argc, argv, "h", version_opts, NULL, NULL, &first);
  if (rc != CLI_CONTINUE) return rc;
  if (first < argc) return cli_usage_error(cmd, "unexpected argument '%s'", argv[first]);
  printf("rangekv %s%s%s\n", RK_VERSION, RK_GIT_REV[0] ? " git:" : "", RK_GIT_REV);
  return CLI_EXIT_OK;
}
