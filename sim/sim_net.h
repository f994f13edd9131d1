/* sim_net.h — the simulated network between nodes.
 *
 * Latency: every node carries a zone label; a message from zone a to zone b
 * takes lat_us[a][b] plus uniform jitter in [0, jitter_us]. Faults (each off
 * unless its probability / flag is set):
 *   loss       a message is dropped with probability p_loss;
 *   dup        a message is delivered twice (second copy later) with p_dup;
 *   reorder    with p_reorder a message gets an extra delay of up to
 *              reorder_us, so later messages overtake it;
 *   partition  link (from -> to) blocked: a message is dropped if its link is
 *              blocked when it is sent OR when it would be delivered.
 *              Symmetric partitions block both directions; one-way only one.
 * The network decides; the world schedules the delivery events.
 */
#ifndef SIM_NET_H
#define SIM_NET_H

#include "common/rk_rand.h"

#include <stdint.h>

#define SIM_MAX_NODES 16
#define SIM_MAX_ZONES 4

typedef struct sim_net {
  uint32_t n;
  uint32_t zone[SIM_MAX_NODES];
  uint64_t lat_us[SIM_MAX_ZONES][SIM_MAX_ZONES];
  uint64_t jitter_us;
  double p_loss, p_dup, p_reorder;
  uint64_t reorder_us;
  uint8_t blocked[SIM_MAX_NODES][SIM_MAX_NODES]; /* [from][to] */
  uint64_t sent, dropped, duplicated, reordered;
} sim_net;

/* n nodes spread round-robin over `zones` zones (node i in zone i % zones);
 * default matrix: 1 ms inside a zone, 5 ms between zones, 0.5 ms jitter. */
void sim_net_init(sim_net *net, uint32_t n, uint32_t zones);
/* Decides the fate of one message sent now. Writes up to two delivery
 * delays into delay_us[] and returns how many copies to deliver (0, 1, 2). */
int sim_net_route(sim_net *net, rk_rand *rng, uint32_t from, uint32_t to, uint64_t delay_us[2]);
/* Whether from -> to is currently blocked. */
int sim_net_blocked(const sim_net *net, uint32_t from, uint32_t to);
/* Symmetric partition: nodes in mask `side` cannot talk to the others. */
void sim_net_partition(sim_net *net, uint32_t side_mask);
/* One-way: messages from -> to are dropped, to -> from still pass. */
void sim_net_block_oneway(sim_net *net, uint32_t from, uint32_t to);
/* Cut every link of one node (both directions). */
void sim_net_isolate(sim_net *net, uint32_t node);
void sim_net_heal(sim_net *net);
/* Turn off loss, duplication and reordering (the liveness phase). */
void sim_net_calm(sim_net *net);

#endif
