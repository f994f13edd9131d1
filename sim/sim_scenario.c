/* sim_scenario.c — evidence scenarios (being written). */
#include "sim/sim.h"

void sim_scenario_list(FILE *out) { fprintf(out, "scenarios are not written yet\n"); }

int sim_scenario_run(const char *name, FILE *out) {
  fprintf(out, "rangekv sim scenario %s: not implemented yet (scenarios are being written)\n",
          name);
  return 2;
}
