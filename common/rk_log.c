#include "common/rk_log.h"

#include "common/rk_clock.h"

#include <stdarg.h>
#include <stdlib.h>
#include <strings.h>

rk_log_level rk_log_level_current_ = RK_LOG_WARN;
static uint64_t rk_log_node;
static rk_log_clock_fn rk_log_clock;
static void *rk_log_clock_ctx;
static FILE *rk_log_sink;

static const char *const rk_log_names[] = {"error", "warn", "info", "debug", "trace"};

void rk_log_set_level(rk_log_level level) { rk_log_level_current_ = level; }
rk_log_level rk_log_get_level(void) { return rk_log_level_current_; }

int rk_log_level_parse(const char *s) {
  if (s == NULL) return -1;
  for (int i = 0; i <= RK_LOG_TRACE; i++) {
    if (strcasecmp(s, rk_log_names[i]) == 0) return i;
  }
  return -1;
}

const char *rk_log_level_name(rk_log_level level) {
  if ((int)level < 0 || level > RK_LOG_TRACE) return "?";
  return rk_log_names[level];
}

int rk_log_init_from_env(void) {
  const char *v = getenv("RANGEKV_LOG");
  if (v == NULL || *v == '\0') return 0;
  int l = rk_log_level_parse(v);
  if (l < 0) return -1;
  rk_log_set_level((rk_log_level)l);
  return 0;
}

void rk_log_set_node(uint64_t node_id) { rk_log_node = node_id; }

void rk_log_set_clock(rk_log_clock_fn fn, void *ctx) {
  rk_log_clock = fn;
  rk_log_clock_ctx = ctx;
}

void rk_log_set_sink(FILE *sink) { rk_log_sink = sink; }

void rk_log_write(rk_log_level level, const char *module, const char *fmt, ...) {
  FILE *out = rk_log_sink ? rk_log_sink : stderr;
  uint64_t ns = rk_log_clock ? rk_log_clock(rk_log_clock_ctx) : rk_clock_mono_ns();
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  /* One fprintf per line so concurrent writers (processes) do not interleave. */
  fprintf(out, "%llu.%06llu n%llu %-5s %s: %s\n", (unsigned long long)(ns / 1000000000u),
          (unsigned long long)((ns / 1000u) % 1000000u), (unsigned long long)rk_log_node,
          rk_log_names[level], module, line);
  fflush(out);
}
