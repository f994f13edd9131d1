#include "common/rk_clock.h"

#include <time.h>

static uint64_t rk_clock_read(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t rk_clock_mono_ns(void) { return rk_clock_read(CLOCK_MONOTONIC); }
uint64_t rk_clock_wall_ns(void) { return rk_clock_read(CLOCK_REALTIME); }
uint64_t rk_clock_cpu_ns(void) { return rk_clock_read(CLOCK_PROCESS_CPUTIME_ID); }
