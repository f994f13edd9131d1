/* sim_trace.c — see sim_trace.h. */
#include "sim/sim_trace.h"

#include "sim/sim_kv.h"

#include <stdarg.h>
#include <string.h>

void sim_trace_init(sim_trace *t, FILE *file) {
  memset(t, 0, sizeof *t);
  t->hash = SIM_FNV_INIT;
  t->file = file;
}

void sim_trace_add(sim_trace *t, const char *fmt, ...) {
  char *line = t->ring[t->lines % SIM_TRACE_RING];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, SIM_TRACE_LINE - 1, fmt, ap);
  va_end(ap);
  if (n < 0) n = 0;
  if (n > SIM_TRACE_LINE - 2) n = SIM_TRACE_LINE - 2;
  line[n] = '\n';
  line[n + 1] = 0;
  t->hash = sim_fnv(t->hash, line, (size_t)n + 1);
  t->lines++;
  if (t->file) fwrite(line, 1, (size_t)n + 1, t->file);
  if (t->echo && (t->echo_filter == NULL || t->echo_filter(line)))
    fwrite(line, 1, (size_t)n + 1, t->echo);
}

void sim_trace_dump(const sim_trace *t, FILE *out, unsigned n) {
  uint64_t have = t->lines < SIM_TRACE_RING ? t->lines : SIM_TRACE_RING;
  if (n > have) n = (unsigned)have;
  for (uint64_t i = t->lines - n; i < t->lines; i++) fputs(t->ring[i % SIM_TRACE_RING], out);
}
