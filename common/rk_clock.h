/* rk_clock.h — the real clocks, for code BELOW the determinism seam only
 * (engine I/O, the node's event loop, cmd/, bench/, logging defaults).
 * Code above the seam (raft core, host, range, kv) never calls these: it is
 * handed time by its caller so the simulator can drive it.
 */
#ifndef RK_CLOCK_H
#define RK_CLOCK_H

#include <stdint.h>

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t rk_clock_mono_ns(void);
/* CLOCK_REALTIME in nanoseconds since the epoch. */
uint64_t rk_clock_wall_ns(void);
/* Process CPU time (user + system) in nanoseconds. */
uint64_t rk_clock_cpu_ns(void);

#endif
