/* bench_host.c — what idle and busy groups cost a multi-raft host.
 *
 * Three hosts in one process (multiraft/hostmem.h: memlog "disks", in-memory
 * network), G groups of 3 replicas. Measures, in CPU time of this process
 * divided by 3 (per host):
 *   idle: every group quiesced; CPU per simulated second of ticking
 *         (tick_ms of simulated time per tick);
 *   busy: quiescence off, every group awake and heartbeating; CPU of one
 *         tick + turn of a host.
 * Last line: "host: groups=G idle_cpu_us_per_sim_sec=X busy_tick_us=Y
 *             quiesced=Q bytes_per_idle_group=B"
 */
#include "bench/bench.h"

#include "common/rk_clock.h"
#include "common/rk_err.h"
#include "multiraft/hostmem.h"

#include <stdio.h>

static int settle_quiesced(mr_hm_cluster *c, uint64_t *quiesced) {
  for (int t = 0; t < 200; t++) {
    int rc = mr_hm_tick_all(c, 1);
    if (rc != RK_OK) return rc;
    uint64_t q = 0;
    for (int i = 1; i <= c->n; i++) q += mr_hm_stats(c, i).quiesced;
    *quiesced = q / (uint64_t)c->n;
    if (q == (uint64_t)c->n * c->groups) return RK_OK;
  }
  return RK_OK;
}

int bench_host(const bench_host_opts *o) {
  mr_hm_opts ho = {.quiesce = 1, .seed = 1};
  mr_hm_cluster *c = NULL;
  int rc = mr_hm_new(&c, 3, o->groups, &ho);
  if (rc != RK_OK) return rc;
  c->check_invariants = 0;
  rc = mr_hm_elect_all(c);
  if (rc != RK_OK) goto out;
  uint64_t quiesced = 0;
  rc = settle_quiesced(c, &quiesced);
  if (rc != RK_OK) goto out;
  size_t bytes = mr_host_bytes_per_idle_group(c->node[1].h, 1);
  int ticks = (int)(o->sim_seconds * 1000.0 / (double)o->tick_ms);
  uint64_t cpu0 = rk_clock_cpu_ns();
  rc = mr_hm_tick_all(c, ticks);
  uint64_t idle_ns = rk_clock_cpu_ns() - cpu0;
  if (rc != RK_OK) goto out;
  double idle_us_per_sim_sec = (double)idle_ns / 1e3 / 3.0 / o->sim_seconds;
  printf("idle: %llu groups, %llu quiesced per host, %d ticks (%.1f simulated s): %.1f us CPU "
         "per host per simulated second\n",
         (unsigned long long)o->groups, (unsigned long long)quiesced, ticks, o->sim_seconds,
         idle_us_per_sim_sec);
  mr_hm_free(c);
  c = NULL;

  ho.quiesce = 0;
  rc = mr_hm_new(&c, 3, o->groups, &ho);
  if (rc != RK_OK) return rc;
  c->check_invariants = 0;
  rc = mr_hm_elect_all(c);
  if (rc != RK_OK) goto out;
  rc = mr_hm_tick_all(c, 5);
  if (rc != RK_OK) goto out;
  const int busy_ticks = 20;
  cpu0 = rk_clock_cpu_ns();
  rc = mr_hm_tick_all(c, busy_ticks);
  uint64_t busy_ns = rk_clock_cpu_ns() - cpu0;
  if (rc != RK_OK) goto out;
  double busy_tick_us = (double)busy_ns / 1e3 / 3.0 / busy_ticks;
  printf("busy: %llu awake groups heartbeating every tick: %.0f us CPU per host per tick "
         "(tick, coalesced heartbeats, one turn)\n",
         (unsigned long long)o->groups, busy_tick_us);
  printf("host: groups=%llu idle_cpu_us_per_sim_sec=%.1f busy_tick_us=%.0f quiesced=%llu "
         "bytes_per_idle_group=%zu\n",
         (unsigned long long)o->groups, idle_us_per_sim_sec, busy_tick_us,
         (unsigned long long)quiesced, bytes);
out:
  mr_hm_free(c);
  return rc;
}
