/* Subcommands that do not exist yet: --help shows the planned usage, running
 * one says what is missing and exits 2. Never pretends to work. */
#include "cmd/cli.h"

#include <stdio.h>
#include <string.h>

int cmd_pending(const cli_cmd *cmd, int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      cli_print_usage(cmd, 0);
      printf("\nnot implemented yet: %s\n", cmd->pending);
      return CLI_EXIT_OK;
    }
  }
  fprintf(stderr, "rangekv %s: not implemented yet: %s\n", cmd->name, cmd->pending);
  return CLI_EXIT_USAGE;
}
