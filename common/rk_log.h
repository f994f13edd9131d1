/* rk_log.h — leveled logging to stderr.
 *
 * Line format:  <seconds.micros> n<node> <LEVEL> <module>: <message>
 * The timestamp comes from a clock hook: the real monotonic clock by default,
 * the simulated clock under sim/ (so simulator logs replay byte-for-byte;
 * the simulator writes them into its trace file, or drops them).
 * The level comes from --log-level or the RANGEKV_LOG environment variable
 * (error, warn, info, debug, trace); default: warn.
 */
#ifndef RK_LOG_H
#define RK_LOG_H

#include <stdint.h>
#include <stdio.h>

typedef enum rk_log_level {
  RK_LOG_OFF = -1, /* nothing (the simulator without a trace file) */
  RK_LOG_ERROR = 0,
  RK_LOG_WARN,
  RK_LOG_INFO,
  RK_LOG_DEBUG,
  RK_LOG_TRACE,
} rk_log_level;

/* Returns the clock reading in nanoseconds used for log timestamps. */
typedef uint64_t (*rk_log_clock_fn)(void *ctx);

void rk_log_set_level(rk_log_level level);
rk_log_level rk_log_get_level(void);
/* Parse "error".."trace" (case-insensitive); returns -1 if unknown. */
int rk_log_level_parse(const char *s);
const char *rk_log_level_name(rk_log_level level);
/* Apply RANGEKV_LOG if set and valid; returns 0, or -1 if set but invalid. */
int rk_log_init_from_env(void);
void rk_log_set_node(uint64_t node_id);
/* NULL restores the real monotonic clock. */
void rk_log_set_clock(rk_log_clock_fn fn, void *ctx);
/* NULL restores stderr. The sink is not closed by the logger. */
void rk_log_set_sink(FILE *sink);

static inline int rk_log_enabled(rk_log_level level);
extern rk_log_level rk_log_level_current_;
static inline int rk_log_enabled(rk_log_level level) { return level <= rk_log_level_current_; }

void rk_log_write(rk_log_level level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The level check is inline so a disabled log line costs one compare. */
#define RK_LOG(level, module, ...)                                                                 \
  do {                                                                                             \
    if (rk_log_enabled(level)) rk_log_write(level, module, __VA_ARGS__);                           \
  } while (0)
#define RK_ERROR(module, ...) RK_LOG(RK_LOG_ERROR, module, __VA_ARGS__)
#define RK_WARN(module, ...)  RK_LOG(RK_LOG_WARN, module, __VA_ARGS__)
#define RK_INFO(module, ...)  RK_LOG(RK_LOG_INFO, module, __VA_ARGS__)
#define RK_DEBUG(module, ...) RK_LOG(RK_LOG_DEBUG, module, __VA_ARGS__)
#define RK_TRACE(module, ...) RK_LOG(RK_LOG_TRACE, module, __VA_ARGS__)

#endif
