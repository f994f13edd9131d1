#include "common/rk_assert.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

noreturn void rk_assert_fail(const char *file, int line, const char *expr, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fprintf(stderr, "rangekv: invariant violated at %s:%d: %s%s%s\n", file, line, expr,
          msg[0] ? ": " : "", msg);
  fflush(stderr);
  abort();
}
