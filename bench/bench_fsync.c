/* bench/bench_fsync.c — the disk's raw write + fdatasync rate: the physical
 * reference every WAL figure is compared with. One thread, one file that is
 * written through once first (so the loop measures data syncs, not block
 * allocation), then `bytes` at successive offsets, each followed by
 * fdatasync, wrapping inside the file. It also reports how much of the run
 * a sync in progress had more than 1 or 2 ms left (bench.h): the floor under
 * any WAL's latency tail on this disk. With --rate it runs the ideal group
 * commit instead (bench.h): the lower bound on `bench wal --rate`'s
 * latency that the disk alone sets. */
#include "bench/bench.h"

#include "common/rk_assert.h"
#include "common/rk_clock.h"
#include "common/rk_err.h"

#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define FILE_BYTES     (64u << 20)
#define IDEAL_MAX_SYNC (16u << 20) /* the WAL's default max_batch_bytes */
#define IDEAL_HDR      32u         /* the WAL's batch header and entry header */
#define HIST_BINS      1000000u    /* 1 µs bins; the last holds everything >= 1 s */
#define IDEAL_MAX_K    8u          /* --in-flight's limit */

static uint64_t hist_percentile(const uint64_t *h, uint64_t total, double p) {
  uint64_t want = (uint64_t)(p * (double)total), seen = 0;
  if (want == 0) want = 1;
  for (uint64_t i = 0; i < HIST_BINS; i++) {
    seen += h[i];
    if (seen >= want) return i * 1000u;
  }
  return (HIST_BINS - 1) * 1000u;
}

/* One pwrite + fdatasync; a failure is printed. */
static int write_sync(int fd, const uint8_t *buf, size_t bytes, uint64_t off) {
  if (pwrite(fd, buf, bytes, (off_t)off) == (ssize_t)bytes && fdatasync(fd) == 0) return RK_OK;
  fprintf(stderr, "bench fsync: write/fdatasync: %s\n", strerror(errno));
  return RK_EIO;
}

static int lat_push(uint64_t **lat, size_t *cap, size_t *n, uint64_t v) {
  if (*n == *cap) {
    uint64_t *nl = realloc(*lat, *cap * 2 * sizeof *nl);
    if (nl == NULL) return RK_ENOMEM;
    *lat = nl;
    *cap *= 2;
  }
  (*lat)[(*n)++] = v;
  return RK_OK;
}

/* What both loops measure: each sync's time in lat[], the run's span, and
 * how long syncs in progress had more than 1 or 2 ms left. */
typedef struct fsync_run {
  uint64_t *lat;
  size_t cap, n;
  uint64_t t0, now, left_1ms, left_2ms;
} fsync_run;

static int run_sync_done(fsync_run *r, uint64_t start, uint64_t now) {
  uint64_t d = now - start;
  if (d > 1000000u) r->left_1ms += d - 1000000u;
  if (d > 2000000u) r->left_2ms += d - 2000000u;
  r->now = now;
  return lat_push(&r->lat, &r->cap, &r->n, d);
}

/* Fixed-size syncs back to back; prints the time left over 1 and 2 ms. */
static int fixed_loop(const bench_fsync_opts *o, int fd, uint64_t span, uint8_t *buf,
                      fsync_run *r) {
  size_t bytes = (size_t)o->bytes;
  uint64_t end = r->t0 + (uint64_t)(o->seconds * 1e9), off = 0;
  int rc = RK_OK;
  while (r->now < end && rc == RK_OK) {
    uint64_t a = rk_clock_mono_ns();
    buf[0]++;
    rc = write_sync(fd, buf, bytes, off);
    if (rc == RK_OK) rc = run_sync_done(r, a, rk_clock_mono_ns());
    off += bytes;
    if (off + bytes > span) off = 0;
  }
  return rc;
}

/* Each entry's latency, from its place in the schedule to the end of the
 * sync that carried it, into a histogram; after the run, so that no time
 * between syncs is spent on it. */
static void ideal_report(const bench_fsync_opts *o, uint64_t t0, const uint64_t *ends,
                         const uint64_t *counts, size_t syncs, uint64_t bytes_total) {
  uint64_t *hist = calloc(HIST_BINS, sizeof *hist);
  if (hist == NULL) return;
  uint64_t entry = 0, over_2ms = 0;
  for (size_t c = 0; c < syncs; c++) {
    for (uint64_t i = entry; i < entry + counts[c]; i++) {
      uint64_t due = t0 + (uint64_t)((double)i * 1e9 / (double)o->rate);
      uint64_t l = ends[c] - due, bin = l / 1000u;
      hist[bin < HIST_BINS ? bin : HIST_BINS - 1]++;
      if (l > 2000000u) over_2ms++;
    }
    entry += counts[c];
  }
  if (entry > 0)
    printf("fsync: ideal_rate=%" PRIu64 " entry_bytes=%" PRIu64 " bytes_per_sync=%" PRIu64
           " ideal_p50_us=%.1f ideal_p99_us=%.1f ideal_p999_us=%.1f ideal_over_2ms_pct=%.2f\n",
           o->rate, o->entry_bytes, bytes_total / syncs,
           (double)hist_percentile(hist, entry, 0.50) / 1e3,
           (double)hist_percentile(hist, entry, 0.99) / 1e3,
           (double)hist_percentile(hist, entry, 0.999) / 1e3,
           100.0 * (double)over_2ms / (double)entry);
  free(hist);
}

/* What the ideal loops record per finished sync, in order: its end and how
 * many entries it carried (ideal_report turns them into latencies). */
typedef struct ideal_log {
  uint64_t *ends, *counts;
  size_t cap_e, cap_c, n_e, n_c;
  uint64_t bytes_total;
} ideal_log;

static int ideal_sync_done(ideal_log *g, fsync_run *r, uint64_t start, uint64_t now, uint64_t k) {
  int rc = run_sync_done(r, start, now);
  if (rc == RK_OK) rc = lat_push(&g->ends, &g->cap_e, &g->n_e, now);
  if (rc == RK_OK) rc = lat_push(&g->counts, &g->cap_c, &g->n_c, k);
  return rc;
}

/* One sync in flight in the overlapped loop: its entries, its start, and
 * how many of its two operations (write, fdatasync) are still running. */
typedef struct ideal_slot {
  uint64_t count, start;
  int left;
} ideal_slot;

/* Starts a sync of `bytes` at `off`: a write linked to an fdatasync of that
 * range, both tagged with the slot. Returns how many of the two operations
 * the kernel took (either may be out when it took fewer), or -1. */
static int ring_sync(struct io_uring *ring, int fd, const uint8_t *buf, size_t bytes, uint64_t off,
                     uint64_t slot) {
  /* Both or neither: a taken SQE left unprepared would go out with the next. */
  if (io_uring_sq_space_left(ring) < 2) return -1;
  struct io_uring_sqe *w = io_uring_get_sqe(ring), *f = io_uring_get_sqe(ring);
  RK_ASSERT(w != NULL && f != NULL);
  io_uring_prep_write(w, fd, buf, (unsigned)bytes, off);
  w->flags |= IOSQE_IO_LINK;
  io_uring_sqe_set_data64(w, slot);
  io_uring_prep_fsync(f, fd, IORING_FSYNC_DATASYNC);
  f->off = off;
  f->len = (uint32_t)bytes;
  io_uring_sqe_set_data64(f, slot);
  int n = io_uring_submit(ring);
  return n < 0 ? -1 : n;
}

/* The ideal group commit through io_uring, up to o->in_flight syncs at once
 * (bench.h).
 * Waits for a completion, or for the next arrival when a slot is free. */
static int ideal_loop_overlapped(const bench_fsync_opts *o, int fd, uint64_t span, uint8_t *buf,
                                 fsync_run *r, ideal_log *g) {
  const uint64_t per = IDEAL_HDR + o->entry_bytes, k_max = o->in_flight;
  const uint64_t max_n = (IDEAL_MAX_SYNC - IDEAL_HDR) / per;
  const uint64_t t0 = r->t0, end = t0 + (uint64_t)(o->seconds * 1e9);
  struct io_uring ring;
  if (io_uring_queue_init(2 * IDEAL_MAX_K, &ring, 0) != 0) {
    fprintf(stderr, "bench fsync: io_uring_queue_init failed\n");
    return RK_EIO;
  }
  ideal_slot slots[IDEAL_MAX_K];
  /* inflight: syncs not yet retired (in order); ops: operations the kernel
   * took and has not completed — what must be waited for before the
   * buffer goes, whatever failed. */
  uint64_t head = 0, inflight = 0, ops = 0, sent = 0, off = 0;
  int rc = RK_OK;
  while (rc == RK_OK) {
    uint64_t s = rk_clock_mono_ns();
    if (s >= end && inflight == 0) break;
    uint64_t arrived = s >= end ? sent : (uint64_t)((double)(s - t0) * (double)o->rate / 1e9) + 1;
    if (arrived > sent && inflight < k_max) {
      uint64_t k = arrived - sent < max_n ? arrived - sent : max_n;
      size_t bytes = (size_t)(IDEAL_HDR + k * per);
      if (off + bytes > span) off = 0;
      uint64_t slot = (head + inflight) % k_max;
      slots[slot] = (ideal_slot){.count = k, .start = s, .left = 2};
      buf[0]++; /* a write in flight may still read it: any byte value does */
      int took = ring_sync(&ring, fd, buf, bytes, off, slot);
      if (took > 0) ops += (uint64_t)took;
      if (took != 2) {
        fprintf(stderr, "bench fsync: io_uring_submit took %d of 2\n", took);
        rc = RK_EIO;
        break;
      }
      inflight++;
      sent += k;
      off += bytes;
      g->bytes_total += bytes;
      continue;
    }
    struct io_uring_cqe *cqe;
    int w;
    if (inflight == k_max || s >= end) {
      w = io_uring_wait_cqe(&ring, &cqe);
    } else {
      uint64_t due = t0 + (uint64_t)((double)sent * 1e9 / (double)o->rate);
      uint64_t d = due > s ? due - s : 0;
      struct __kernel_timespec ts = {.tv_sec = (long long)(d / 1000000000u),
                                     .tv_nsec = (long long)(d % 1000000000u)};
      w = io_uring_wait_cqe_timeout(&ring, &cqe, &ts);
      if (w == -ETIME || w == -EINTR) continue;
    }
    if (w != 0) {
      rc = RK_EIO;
      break;
    }
    uint64_t slot = io_uring_cqe_get_data64(cqe);
    int res = cqe->res;
    io_uring_cqe_seen(&ring, cqe);
    ops--;
    RK_ASSERT(slot < k_max && slots[slot].left > 0);
    slots[slot].left--;
    if (res < 0) {
      fprintf(stderr, "bench fsync: write/fdatasync: %s\n", strerror(-res));
      rc = RK_EIO;
      break;
    }
    uint64_t now = rk_clock_mono_ns();
    /* In order: a sync's entries are durable once every earlier one is. */
    while (rc == RK_OK && inflight > 0 && slots[head].left == 0) {
      rc = ideal_sync_done(g, r, slots[head].start, now, slots[head].count);
      head = (head + 1) % k_max;
      inflight--;
    }
  }
  /* After an error, wait out what the kernel still runs: the buffer must
   * outlive it (a failed write's linked fdatasync completes cancelled). */
  while (ops > 0) {
    struct io_uring_cqe *cqe;
    if (io_uring_wait_cqe(&ring, &cqe) != 0) break;
    io_uring_cqe_seen(&ring, cqe);
    ops--;
  }
  io_uring_queue_exit(&ring);
  return rc;
}

/* The ideal group commit, one sync at a time: see bench.h. */
static int ideal_loop_serial(const bench_fsync_opts *o, int fd, uint64_t span, uint8_t *buf,
                             fsync_run *r, ideal_log *g) {
  const uint64_t per = IDEAL_HDR + o->entry_bytes;
  const uint64_t max_n = (IDEAL_MAX_SYNC - IDEAL_HDR) / per;
  const uint64_t t0 = r->t0, end = t0 + (uint64_t)(o->seconds * 1e9);
  uint64_t now = t0, done = 0, off = 0;
  int rc = RK_OK;
  while (now < end && rc == RK_OK) {
    uint64_t s = rk_clock_mono_ns();
    uint64_t arrived = (uint64_t)((double)(s - t0) * (double)o->rate / 1e9) + 1;
    if (arrived == done) {
      /* Nothing waiting: sleep to 100 µs before the next arrival, then
       * spin, so oversleeping is not charged to that entry. */
      uint64_t due = t0 + (uint64_t)((double)done * 1e9 / (double)o->rate);
      if (due > s + 100000u) {
        uint64_t d = due - s - 100000u;
        struct timespec ts = {(time_t)(d / 1000000000u), (long)(d % 1000000000u)};
        nanosleep(&ts, NULL);
      }
      now = rk_clock_mono_ns();
      continue;
    }
    uint64_t k = arrived - done < max_n ? arrived - done : max_n;
    size_t bytes = (size_t)(IDEAL_HDR + k * per);
    if (off + bytes > span) off = 0;
    buf[0]++;
    rc = write_sync(fd, buf, bytes, off);
    if (rc != RK_OK) break;
    now = rk_clock_mono_ns();
    off += bytes;
    g->bytes_total += bytes;
    done += k;
    rc = ideal_sync_done(g, r, s, now, k);
  }
  return rc;
}

/* The ideal group commit (bench.h): fills lat[] with each sync's time like
 * the fixed loop, and prints the per-entry figures. */
static int ideal_loop(const bench_fsync_opts *o, int fd, uint64_t span, uint8_t *buf,
                      fsync_run *r) {
  ideal_log g = {.cap_e = 1u << 16, .cap_c = 1u << 16};
  g.ends = malloc(g.cap_e * sizeof *g.ends);
  g.counts = malloc(g.cap_c * sizeof *g.counts);
  int rc = g.ends != NULL && g.counts != NULL ? RK_OK : RK_ENOMEM;
  if (rc == RK_OK)
    rc = o->in_flight > 0 ? ideal_loop_overlapped(o, fd, span, buf, r, &g)
                          : ideal_loop_serial(o, fd, span, buf, r, &g);
  if (rc == RK_OK) ideal_report(o, r->t0, g.ends, g.counts, g.n_c, g.bytes_total);
  free(g.ends);
  free(g.counts);
  return rc;
}

int bench_fsync(const bench_fsync_opts *o) {
  char *dir = bench_scratch_dir(o->dir);
  if (dir == NULL) return RK_EIO;
  char path[4200];
  snprintf(path, sizeof path, "%s/fsync.dat", dir);
  int rc = RK_OK;
  uint64_t *lat = NULL;
  uint8_t *buf = NULL;
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    fprintf(stderr, "bench fsync: cannot create %s: %s\n", path, strerror(errno));
    rc = rk_err_from_errno(errno);
    goto out;
  }
  size_t bytes = (size_t)o->bytes;
  uint64_t span = FILE_BYTES / bytes * bytes;
  if (span == 0) span = bytes;
  size_t buf_bytes = o->rate > 0 ? IDEAL_MAX_SYNC : bytes > (1u << 20) ? bytes : (1u << 20);
  buf = calloc(1, buf_bytes);
  if (buf == NULL) {
    rc = RK_ENOMEM;
    goto out;
  }
  for (uint64_t off = 0; off < span;) {
    size_t n = span - off < (1u << 20) ? (size_t)(span - off) : (1u << 20);
    if (pwrite(fd, buf, n, (off_t)off) != (ssize_t)n) {
      fprintf(stderr, "bench fsync: write: %s\n", strerror(errno));
      rc = RK_EIO;
      goto out;
    }
    off += n;
  }
  if (fsync(fd) != 0) {
    rc = RK_EIO;
    goto out;
  }
  memset(buf, 0xA5, buf_bytes);
  fsync_run r = {.cap = 1u << 16};
  r.lat = lat = malloc(r.cap * sizeof *lat);
  if (lat == NULL) {
    rc = RK_ENOMEM;
    goto out;
  }
  r.t0 = r.now = rk_clock_mono_ns();
  if (o->rate > 0) {
    printf("fsync: dir=%s ideal group commit, rate=%" PRIu64 " entry_bytes=%" PRIu64
           " in_flight=%" PRIu64 " seconds=%.1f\n",
           dir, o->rate, o->entry_bytes, o->in_flight, o->seconds);
    rc = ideal_loop(o, fd, span, buf, &r);
  } else {
    printf("fsync: dir=%s bytes=%zu seconds=%.1f\n", dir, bytes, o->seconds);
    rc = fixed_loop(o, fd, span, buf, &r);
  }
  lat = r.lat; /* lat_push may have moved it */
  if (rc != RK_OK) goto out;
  size_t n = r.n;
  double secs = (double)(r.now - r.t0) / 1e9;
  int sorted = 0;
  uint64_t p50 = bench_percentile(lat, n, 0.50, &sorted);
  uint64_t p99 = bench_percentile(lat, n, 0.99, &sorted);
  uint64_t p999 = bench_percentile(lat, n, 0.999, &sorted);
  double span_ns = (double)(r.now - r.t0);
  printf("fsync: ops=%zu p999_us=%.1f max_us=%.1f over_1ms_left_pct=%.2f over_2ms_left_pct=%.2f\n",
         n, (double)p999 / 1e3, (double)lat[n ? n - 1 : 0] / 1e3,
         100.0 * (double)r.left_1ms / span_ns, 100.0 * (double)r.left_2ms / span_ns);
  printf("fsync: ops_per_sec=%.0f p50_us=%.1f p99_us=%.1f\n", (double)n / secs, (double)p50 / 1e3,
         (double)p99 / 1e3);
out:
  if (fd >= 0) close(fd);
  free(buf);
  free(lat);
  bench_rmtree(dir);
  free(dir);
  return rc;
}
