/* sim_net.c — see sim_net.h. */
#include "sim/sim_net.h"

#include "common/rk_assert.h"

#include <string.h>

void sim_net_init(sim_net *net, uint32_t n, uint32_t zones) {
  RK_ASSERT(n >= 1 && n <= SIM_MAX_NODES);
  RK_ASSERT(zones >= 1 && zones <= SIM_MAX_ZONES);
  memset(net, 0, sizeof *net);
  net->n = n;
  for (uint32_t i = 0; i < n; i++) net->zone[i] = i % zones;
  for (uint32_t a = 0; a < SIM_MAX_ZONES; a++)
    for (uint32_t b = 0; b < SIM_MAX_ZONES; b++) net->lat_us[a][b] = a == b ? 1000 : 5000;
  net->jitter_us = 500;
  net->reorder_us = 20000;
}

int sim_net_blocked(const sim_net *net, uint32_t from, uint32_t to) {
  RK_ASSERT(from < net->n && to < net->n);
  return net->blocked[from][to] != 0;
}

int sim_net_route(sim_net *net, rk_rand *rng, uint32_t from, uint32_t to, uint64_t delay_us[2]) {
  net->sent++;
  if (sim_net_blocked(net, from, to)) {
    net->dropped++;
    return 0;
  }
  /* Draw every random number unconditionally so that turning one fault on
   * or off does not shift the stream for the others within a message. */
  int lose = rk_rand_chance(rng, net->p_loss);
  int dup = rk_rand_chance(rng, net->p_dup);
  int reorder = rk_rand_chance(rng, net->p_reorder);
  uint64_t base = net->lat_us[net->zone[from]][net->zone[to]];
  uint64_t j0 = rk_rand_below(rng, net->jitter_us + 1);
  uint64_t j1 = rk_rand_below(rng, net->jitter_us + 1);
  uint64_t extra = rk_rand_below(rng, net->reorder_us + 1);
  if (lose) {
    net->dropped++;
    return 0;
  }
  delay_us[0] = base + j0 + (reorder ? extra : 0);
  if (reorder) net->reordered++;
  if (!dup) return 1;
  net->duplicated++;
  delay_us[1] = base + j1 + extra / 2 + 1;
  return 2;
}

void sim_net_partition(sim_net *net, uint32_t side_mask) {
  for (uint32_t a = 0; a < net->n; a++)
    for (uint32_t b = 0; b < net->n; b++)
      if (((side_mask >> a) & 1u) != ((side_mask >> b) & 1u)) net->blocked[a][b] = 1;
}

void sim_net_block_oneway(sim_net *net, uint32_t from, uint32_t to) {
  RK_ASSERT(from < net->n && to < net->n);
  net->blocked[from][to] = 1;
}

void sim_net_isolate(sim_net *net, uint32_t node) {
  for (uint32_t b = 0; b < net->n; b++)
    if (b != node) net->blocked[node][b] = net->blocked[b][node] = 1;
}

void sim_net_heal(sim_net *net) { memset(net->blocked, 0, sizeof net->blocked); }

void sim_net_calm(sim_net *net) { net->p_loss = net->p_dup = net->p_reorder = 0; }
