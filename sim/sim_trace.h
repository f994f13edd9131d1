/* sim_trace.h — the event trace: one text line per simulated event.
 *
 * Every line feeds the trace hash (64-bit FNV-1a over the exact bytes, '\n'
 * included), is kept in a ring of the last SIM_TRACE_RING lines for violation
 * reports, and is written to the trace file when one is open. The hash is over
 * the same bytes as the file, so equal hashes mean byte-identical traces.
 */
#ifndef SIM_TRACE_H
#define SIM_TRACE_H

#include <stdint.h>
#include <stdio.h>

#define SIM_TRACE_RING 24
#define SIM_TRACE_LINE 256

typedef struct sim_trace {
  uint64_t hash;
  uint64_t lines;
  FILE *file;                           /* optional, not owned */
  FILE *echo;                           /* optional second sink (scenario transcripts), not owned */
  int (*echo_filter)(const char *line); /* echo only the lines it accepts */
  char ring[SIM_TRACE_RING][SIM_TRACE_LINE];
} sim_trace;

void sim_trace_init(sim_trace *t, FILE *file);
void sim_trace_add(sim_trace *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints the last n lines (oldest first) to out. */
void sim_trace_dump(const sim_trace *t, FILE *out, unsigned n);

#endif
