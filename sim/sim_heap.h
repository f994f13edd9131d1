/* sim_heap.h — the simulator's event queue: a binary min-heap of events.
 *
 * THE EVENT ORDER (the simulator's determinism rests on it):
 *
 *   events are processed in increasing (time, source, seq)
 *
 *   time    simulated microseconds at which the event happens;
 *   source  who caused it: SIM_SRC_WORLD (0) for faults and phase changes,
 *           1 + node index for anything a node caused (a message it sent, its
 *           tick, its disk), SIM_SRC_CLIENT0 + client index for clients;
 *   seq     a counter incremented on every push, so two events with equal
 *           time and source run in the order they were scheduled.
 *
 * seq is unique, so the order is total: no two events ever compare equal and
 * the heap's internal layout can never leak into the processing order.
 * Nothing here depends on pointer values.
 */
#ifndef SIM_HEAP_H
#define SIM_HEAP_H

#include <stddef.h>
#include <stdint.h>

#define SIM_SRC_WORLD     0u
#define SIM_SRC_NODE(n)   (1u + (uint32_t)(n))
#define SIM_SRC_CLIENT0   10000u
#define SIM_SRC_CLIENT(c) (SIM_SRC_CLIENT0 + (uint32_t)(c))

typedef struct sim_event {
  uint64_t time;   /* simulated microseconds */
  uint32_t source; /* SIM_SRC_* */
  uint32_t kind;   /* sim_ev_kind (sim_world.h); opaque here */
  uint64_t seq;    /* assigned by sim_heap_push */
  uint32_t node;   /* target node index (or client index) */
  uint32_t aux;    /* kind-specific */
  uint64_t a, b;   /* kind-specific */
  void *ptr;       /* kind-specific payload, owned by the event */
} sim_event;

typedef struct sim_heap {
  sim_event *v;
  size_t len, cap;
  uint64_t next_seq;
} sim_heap;

void sim_heap_init(sim_heap *h);
/* Frees the array; payloads are the caller's (drain with pop first). */
void sim_heap_free(sim_heap *h);
/* Copies *e in, assigning e->seq. Returns the assigned seq. Aborts on OOM. */
uint64_t sim_heap_push(sim_heap *h, const sim_event *e);
/* Removes the minimum into *out. Returns 0 when empty, 1 otherwise. */
int sim_heap_pop(sim_heap *h, sim_event *out);
const sim_event *sim_heap_peek(const sim_heap *h);
/* <0, 0, >0 like strcmp, by (time, source, seq). */
int sim_event_cmp(const sim_event *x, const sim_event *y);
/* Asserts the heap property over the whole array (tests, debugging). */
void sim_heap_check(const sim_heap *h);

#endif
