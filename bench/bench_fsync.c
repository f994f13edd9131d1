/* bench/bench_fsync.c — the disk's raw write + fdatasync rate: the physical
 * reference every WAL figure is compared with. One thread, one file that is
 * written through once first (so the loop measures data syncs, not block
 * allocation), then `bytes` at successive offsets, each followed by
 * fdatasync, wrapping inside the file. It also reports how much of the run
 * a sync in progress had more than 1 or 2 ms left (bench.h): the floor under
 * any WAL's latency tail on this disk. */
#include "bench/bench.h"

#include "common/rk_clock.h"
#include "common/rk_err.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FILE_BYTES (64u << 20)

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
  buf = calloc(1, bytes > (1u << 20) ? bytes : (1u << 20));
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
  memset(buf, 0xA5, bytes);
  size_t cap = 1u << 16, n = 0;
  lat = malloc(cap * sizeof *lat);
  if (lat == NULL) {
    rc = RK_ENOMEM;
    goto out;
  }
  printf("fsync: dir=%s bytes=%zu seconds=%.1f\n", dir, bytes, o->seconds);
  uint64_t t0 = rk_clock_mono_ns(), end = t0 + (uint64_t)(o->seconds * 1e9), off = 0;
  uint64_t now = t0, left_1ms = 0, left_2ms = 0;
  while (now < end) {
    uint64_t a = rk_clock_mono_ns();
    buf[0]++;
    if (pwrite(fd, buf, bytes, (off_t)off) != (ssize_t)bytes || fdatasync(fd) != 0) {
      fprintf(stderr, "bench fsync: write/fdatasync: %s\n", strerror(errno));
      rc = RK_EIO;
      goto out;
    }
    now = rk_clock_mono_ns();
    if (n == cap) {
      cap *= 2;
      uint64_t *nl = realloc(lat, cap * sizeof *nl);
      if (nl == NULL) {
        rc = RK_ENOMEM;
        goto out;
      }
      lat = nl;
    }
    lat[n++] = now - a;
    if (now - a > 1000000u) left_1ms += now - a - 1000000u;
    if (now - a > 2000000u) left_2ms += now - a - 2000000u;
    off += bytes;
    if (off + bytes > span) off = 0;
  }
  double secs = (double)(now - t0) / 1e9;
  int sorted = 0;
  uint64_t p50 = bench_percentile(lat, n, 0.50, &sorted);
  uint64_t p99 = bench_percentile(lat, n, 0.99, &sorted);
  uint64_t p999 = bench_percentile(lat, n, 0.999, &sorted);
  double span_ns = (double)(now - t0);
  printf("fsync: ops=%zu p999_us=%.1f max_us=%.1f over_1ms_left_pct=%.2f over_2ms_left_pct=%.2f\n",
         n, (double)p999 / 1e3, (double)lat[n ? n - 1 : 0] / 1e3,
         100.0 * (double)left_1ms / span_ns, 100.0 * (double)left_2ms / span_ns);
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
