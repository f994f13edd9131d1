/* bench/bench_wal.c — the WAL under many groups.
 *
 * Closed loop (default): `writers` appends are outstanding at all times;
 * each is one entry of entry_bytes for a random group among `groups`; when
 * one becomes durable its writer immediately appends the next. This finds
 * the peak: group commit packs everything that arrives during one fdatasync
 * into the next batch.
 * Open loop (--rate R): R entries/s on a fixed schedule regardless of
 * completions; latency is measured from the scheduled time (no coordinated
 * omission). Used for "p99 at half of peak". The loop issues what is due
 * (at most OPEN_BURST appends between two looks at the ring), then sleeps
 * on the ring until a completion arrives or the next entry is due, but for
 * at least OPEN_NAP_US: a generator that never sleeps (it polled the ring
 * whenever the next entry was under 20 us away, i.e. always above 50,000/s)
 * keeps one of two cores busy, and the kernel's completion path (io_uring
 * workers, the block layer) then waits for that core: measured, p99 at
 * 100,000/s 4.0-12.8 ms polling vs 1.7-2.5 ms napping. An entry issued up
 * to OPEN_NAP_US late is still timed from its scheduled time: the nap is
 * charged to the WAL, not hidden. The open loop's latency arrays are
 * allocated and touched before the clock starts: no realloc or page fault
 * inside its measured loop (the closed loop's grow as they fill).
 * Every second every group compacts all but its last 64 entries and the WAL
 * is purged, as a node would, so disk use stays bounded. The groups take
 * turns: every 100 ms a tenth of them compact (a node compacts a group
 * after its applies, not all groups in the same instant; dropping ~650,000
 * entries at once stalls the loop ~5 ms, which the open loop would then
 * charge to the entries behind it).
 * Warm-up (--warmup-seconds): a fresh WAL's first second at ~900,000/s is
 * not its steady state. The loop thread is saturated for ~0.7 s by first
 * touches of memory: each group's index ring grows to what a second of
 * appends needs (48-96 KB each, 50-100 MB over 1000 groups, first
 * touched as the rings double) and the entry cache fills its
 * budget (~40,000 page faults a second against ~8,000 later; measured with
 * getrusage per 100 ms), and a backlog forms that takes the rest of the
 * second to drain. With a warm-up the same load runs first and its entries
 * are reported on their own line, so the measured seconds are the steady
 * state; without one (the default) they include it.
 * Only entries durable by the end are counted (so a stall in the last
 * second lowers that second's share over 2 ms, as it lowers the p99); the
 * closed loop's appends still in flight when the warm-up ends count as
 * warm-up, their syncs as measured.
 */
#include "bench/bench.h"

#include "common/rk_clock.h"
#include "common/rk_err.h"
#include "common/rk_rand.h"
#include "engine/wal.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct bwriter {
  eng_wal_append_req req;
  uint64_t t0;       /* scheduled (open loop) or issued (closed loop) */
  uint64_t t_append; /* when eng_wal_append was called */
  rk_entry e;
  eng_wal_write wr;
  struct bwriter *next_free;
} bwriter;

typedef struct bsecond {
  uint64_t entries, over_2ms, max_ns;
} bsecond;

typedef struct bstate {
  const bench_wal_opts *o;
  eng_wal *w;
  uint64_t *next;
  uint8_t *payload;
  rk_rand rnd;
  uint64_t *lat;        /* from t0 */
  uint64_t *lat_append; /* open loop: from the append call */
  size_t nlat, cap;
  uint64_t completed, failed, measure_ns, end_ns;
  bsecond warm;     /* entries issued during the warm-up */
  bsecond *seconds; /* measured entries by the second they were issued in */
  int closed_loop, stop;
  bwriter *free_list;
} bstate;

static void on_durable(eng_wal_append_req *req, int status);

static void second_add(bsecond *s, uint64_t lat_ns) {
  s->entries++;
  if (lat_ns > 2000000u) s->over_2ms++;
  if (lat_ns > s->max_ns) s->max_ns = lat_ns;
}

static void second_print(const char *what, const bsecond *s) {
  printf(
      "wal: %s entries=%llu over_2ms_pct=%.2f max_us=%.1f\n", what, (unsigned long long)s->entries,
      s->entries ? 100.0 * (double)s->over_2ms / (double)s->entries : 0.0, (double)s->max_ns / 1e3);
}

/* p50, p99 and p999 of v[0..n) in µs (sorts v). */
static void percentiles_us(uint64_t *v, size_t n, double out[3]) {
  static const double ps[3] = {0.50, 0.99, 0.999};
  int sorted = 0;
  for (int i = 0; i < 3; i++) out[i] = (double)bench_percentile(v, n, ps[i], &sorted) / 1e3;
}

static int issue(bstate *b, bwriter *wr, uint64_t t0) {
  uint64_t g = rk_rand_below(&b->rnd, b->o->groups) + 1;
  wr->t0 = t0;
  wr->e = (rk_entry){.index = b->next[g]++,
                     .term = 1,
                     .len = (uint32_t)b->o->entry_bytes,
                     .data = b->payload + rk_rand_below(&b->rnd, 4096)};
  wr->wr = (eng_wal_write){.group = g, .entries = &wr->e, .n_entries = 1};
  wr->req.data = b;
  wr->t_append = b->closed_loop ? t0 : rk_clock_mono_ns(); /* the closed loop issues at once */
  int rc = eng_wal_append(b->w, &wr->req, &wr->wr, 1, on_durable);
  if (rc != RK_OK) {
    fprintf(stderr, "bench wal: append: %s\n", rk_strerror(rc));
    b->failed++;
  }
  return rc;
}

static void on_durable(eng_wal_append_req *req, int status) {
  bwriter *wr = (bwriter *)((char *)req - offsetof(bwriter, req));
  bstate *b = req->data;
  uint64_t now = rk_clock_mono_ns();
  if (status != RK_OK) {
    b->failed++;
    b->stop = 1;
  } else if (wr->t0 < b->measure_ns) {
    second_add(&b->warm, now - wr->t0);
  } else if (now <= b->end_ns) {
    b->completed++;
    second_add(&b->seconds[(wr->t0 - b->measure_ns) / 1000000000u], now - wr->t0);
    if (b->nlat == b->cap) { /* the closed loop only: the open loop's is sized for its run */
      size_t ncap = b->cap * 2;
      uint64_t *nl = realloc(b->lat, ncap * sizeof *nl);
      uint64_t *na = b->lat_append ? realloc(b->lat_append, ncap * sizeof *na) : NULL;
      if (nl) b->lat = nl;
      if (na) b->lat_append = na;
      if (nl && (na || b->lat_append == NULL)) b->cap = ncap;
    }
    if (b->nlat < b->cap) {
      if (b->lat_append) b->lat_append[b->nlat] = now - wr->t_append;
      b->lat[b->nlat++] = now - wr->t0;
    }
  }
  if (b->closed_loop && !b->stop && now < b->end_ns) {
    issue(b, wr, now);
  } else {
    wr->next_free = b->free_list;
    b->free_list = wr;
  }
}

#define COMPACT_TURNS 10 /* per second */
#define OPEN_BURST    1024
#define OPEN_NAP_US   100

static void compact_turn(bstate *b, uint64_t turn) {
  for (uint64_t g = 1 + turn % COMPACT_TURNS; g <= b->o->groups; g += COMPACT_TURNS)
    if (b->next[g] > 65) eng_wal_compact(b->w, g, b->next[g] - 64, 0);
  eng_wal_purge(b->w, NULL);
}

int bench_wal(const bench_wal_opts *o) {
  char *dir = bench_scratch_dir(o->dir);
  if (dir == NULL) return RK_EIO;
  bstate b;
  memset(&b, 0, sizeof b);
  b.o = o;
  rk_rand_seed(&b.rnd, 42);
  b.next = calloc(o->groups + 1, sizeof *b.next);
  b.payload = malloc(o->entry_bytes + 4096);
  b.cap = 1u << 20;
  if (o->rate) /* every entry issued in the measured run, plus slack */
    b.cap = (size_t)((double)o->rate * o->seconds * 1.05) + 1024;
  b.lat = malloc(b.cap * sizeof *b.lat);
  /* Fault the pages in now. Not with zeros: the compiler may turn malloc +
   * memset(0) into calloc, which leaves the pages unmapped, and every
   * first touch in on_durable would be a page fault charged to the WAL. */
  if (b.lat) memset(b.lat, 0xff, b.cap * sizeof *b.lat);
  if (o->rate) {
    b.lat_append = malloc(b.cap * sizeof *b.lat_append);
    if (b.lat_append) memset(b.lat_append, 0xff, b.cap * sizeof *b.lat_append);
  }
  b.seconds = calloc((size_t)o->seconds + 2, sizeof *b.seconds);
  size_t nwriters = o->rate ? 0 : (size_t)o->writers;
  bwriter **all = NULL;
  size_t nall = 0, capall = 0;
  int rc = RK_ENOMEM;
  if (!b.next || !b.payload || !b.lat || !b.seconds || (o->rate && !b.lat_append)) goto out;
  for (uint64_t g = 0; g <= o->groups; g++) b.next[g] = 1;
  for (size_t i = 0; i < o->entry_bytes + 4096; i++) b.payload[i] = (uint8_t)rk_rand_u64(&b.rnd);
  eng_wal_options wo;
  eng_wal_options_default(&wo);
  wo.dir = dir;
  wo.cluster_id = 1;
  wo.node_id = 1;
  wo.batch_window_us = o->window_us;
  wo.prefill_segments = (uint32_t)o->prefill_segments;
  if (wo.recycle_segments < wo.prefill_segments) wo.recycle_segments = wo.prefill_segments;
  eng_wal_recovery rec;
  rc = eng_wal_open(&wo, &b.w, &rec);
  if (rc != RK_OK) {
    fprintf(stderr, "bench wal: cannot open the WAL: %s: %s\n", rk_strerror(rc), rec.message);
    goto out;
  }
  printf("wal: dir=%s groups=%llu entry_bytes=%llu seconds=%.1f warmup_seconds=%.1f "
         "batch_window_us=%llu %s=%llu prefill_segments=%llu\n",
         dir, (unsigned long long)o->groups, (unsigned long long)o->entry_bytes, o->seconds,
         o->warmup_seconds, (unsigned long long)o->window_us, o->rate ? "rate" : "writers",
         (unsigned long long)(o->rate ? o->rate : o->writers),
         (unsigned long long)o->prefill_segments);
  fflush(stdout);
  eng_wal_stats s0, s1;
  eng_wal_get_stats(b.w, &s0);
  uint64_t t0 = rk_clock_mono_ns();
  b.measure_ns = t0 + (uint64_t)(o->warmup_seconds * 1e9);
  b.end_ns = b.measure_ns + (uint64_t)(o->seconds * 1e9);
  int got_start = b.measure_ns == t0;
  b.closed_loop = o->rate == 0;
  uint64_t issued = 0, next_compact = t0 + 1000000000u / COMPACT_TURNS, turn = 0;
  int got_end = 0;
  for (size_t i = 0; i < nwriters; i++) {
    bwriter *wr = calloc(1, sizeof *wr);
    if (wr == NULL) break;
    if (nall == capall) {
      capall = capall ? capall * 2 : 256;
      all = realloc(all, capall * sizeof *all);
    }
    all[nall++] = wr;
    issue(&b, wr, t0);
  }
  for (;;) {
    uint64_t now = rk_clock_mono_ns();
    if (!got_start && now >= b.measure_ns) {
      eng_wal_get_stats(b.w, &s0);
      got_start = 1;
    }
    if (now >= b.end_ns || b.stop) {
      if (!got_end) {
        eng_wal_get_stats(b.w, &s1);
        got_end = 1;
      }
      break;
    }
    if (o->rate) {
      /* Entry k is scheduled at t0 + k / rate: entries 0 .. due - 1 are due. */
      uint64_t due = (uint64_t)((double)(now - t0) * (double)o->rate / 1e9) + 1;
      /* At most OPEN_BURST appends between two looks at the ring:
       * completions (and the next batch's submission) are not held behind
       * a burst. */
      for (int k = 0; k < OPEN_BURST && issued < due && !b.stop; k++) {
        bwriter *wr = b.free_list;
        if (wr) {
          b.free_list = wr->next_free;
        } else {
          wr = calloc(1, sizeof *wr);
          if (wr == NULL) break;
          if (nall == capall) {
            capall = capall ? capall * 2 : 256;
            all = realloc(all, capall * sizeof *all);
          }
          all[nall++] = wr;
        }
        issue(&b, wr, t0 + (uint64_t)((double)issued * 1e9 / (double)o->rate));
        issued++;
      }
      /* Sleep until a completion or the next entry is due, at least
       * OPEN_NAP_US (see the top of the file); if entries are already due,
       * only look at the ring. */
      uint64_t next_due = t0 + (uint64_t)((double)issued * 1e9 / (double)o->rate);
      uint64_t t = rk_clock_mono_ns();
      if (issued < due)
        eng_wal_process(b.w);
      else
        eng_wal_poll(b.w, next_due > t + OPEN_NAP_US * 1000u ? (next_due - t) / 1000 : OPEN_NAP_US);
    } else {
      eng_wal_poll(b.w, 1000);
    }
    if (now >= next_compact) {
      compact_turn(&b, turn++);
      next_compact += 1000000000u / COMPACT_TURNS;
    }
  }
  double secs = (double)(b.end_ns - b.measure_ns) / 1e9;
  b.stop = 1;
  eng_wal_sync(b.w);
  if (!got_end) eng_wal_get_stats(b.w, &s1);
  uint64_t fsyncs = s1.fsyncs - s0.fsyncs;
  double lat_us[3], app_us[3];
  percentiles_us(b.lat, b.nlat, lat_us);
  if (b.lat_append) {
    percentiles_us(b.lat_append, b.nlat, app_us);
    printf("wal: from_append p50_us=%.1f p99_us=%.1f p999_us=%.1f\n", app_us[0], app_us[1],
           app_us[2]);
  }
  if (o->warmup_seconds > 0) second_print("warmup", &b.warm);
  for (size_t k = 0; o->per_second && k < (size_t)o->seconds + 2; k++) {
    char what[32];
    snprintf(what, sizeof what, "second=%zu", k);
    if (b.seconds[k].entries) second_print(what, &b.seconds[k]);
  }
  eng_wal_stats fin;
  eng_wal_get_stats(b.w, &fin);
  printf("wal: entries=%llu fsyncs=%llu bytes_written=%llu segments_retired=%llu "
         "segments_recycled=%llu failed=%llu max_us=%.1f\n",
         (unsigned long long)b.completed, (unsigned long long)fsyncs,
         (unsigned long long)(s1.bytes_written - s0.bytes_written),
         (unsigned long long)fin.segments_deleted, (unsigned long long)fin.segments_recycled,
         (unsigned long long)b.failed, b.nlat ? (double)b.lat[b.nlat - 1] / 1e3 : 0.0);
  printf("wal: entries_per_sec=%.0f mb_per_sec=%.2f fsyncs_per_sec=%.0f entries_per_fsync=%.1f "
         "p50_us=%.1f p99_us=%.1f p999_us=%.1f\n",
         (double)b.completed / secs, (double)b.completed * (double)o->entry_bytes / secs / 1e6,
         (double)fsyncs / secs, fsyncs ? (double)b.completed / (double)fsyncs : 0.0, lat_us[0],
         lat_us[1], lat_us[2]);
  rc = b.failed ? RK_EIO : RK_OK;
out:
  if (b.w) eng_wal_close(b.w);
  for (size_t i = 0; i < nall; i++) free(all[i]);
  free(all);
  free(b.next);
  free(b.payload);
  free(b.lat);
  free(b.lat_append);
  free(b.seconds);
  bench_rmtree(dir);
  free(dir);
  return rc;
}
