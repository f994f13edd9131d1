/* bench/bench_recover.c — how long eng_wal_open() takes on a big WAL.
 * Builds ~mib MiB of batches (entries of entry_bytes over `groups` groups,
 * no compaction), closes, drops the segments from the page cache
 * (posix_fadvise DONTNEED: the data is synced, so the pages are clean and
 * really go), and times a cold open; then a warm one. */
#include "bench/bench.h"

#include "common/rk_clock.h"
#include "common/rk_err.h"
#include "common/rk_rand.h"
#include "engine/wal.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { PER_REQ = 64, NREQ = 64 };

typedef struct rstate {
  int outstanding;
  int failed;
} rstate;

static void on_done(eng_wal_append_req *req, int status) {
  rstate *r = req->data;
  r->outstanding--;
  if (status != RK_OK) r->failed = 1;
}

static void drop_cache(const char *dir) {
  DIR *d = opendir(dir);
  if (d == NULL) return;
  struct dirent *de;
  char path[4400];
  while ((de = readdir(d)) != NULL) {
    if (strstr(de->d_name, ".wal") == NULL) continue;
    snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
    int fd = open(path, O_RDONLY);
    if (fd < 0) continue;
    fdatasync(fd);
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
  }
  closedir(d);
}

int bench_recover(const bench_recover_opts *o) {
  char *dir = bench_scratch_dir(o->dir);
  if (dir == NULL) return RK_EIO;
  eng_wal_options wo;
  eng_wal_options_default(&wo);
  wo.dir = dir;
  wo.cluster_id = 1;
  wo.node_id = 1;
  eng_wal *w = NULL;
  eng_wal_recovery rec;
  int rc = eng_wal_open(&wo, &w, &rec);
  uint64_t *next = calloc(o->groups + 1, sizeof *next);
  uint8_t *payload = malloc(o->entry_bytes * PER_REQ + 4096);
  rk_entry *es = calloc((size_t)NREQ * PER_REQ, sizeof *es);
  eng_wal_append_req *reqs = calloc(NREQ, sizeof *reqs);
  if (rc != RK_OK || !next || !payload || !es || !reqs) {
    fprintf(stderr, "bench recover: %s %s\n", rk_strerror(rc ? rc : RK_ENOMEM), rec.message);
    if (!rc) rc = RK_ENOMEM;
    goto out;
  }
  rk_rand rnd;
  rk_rand_seed(&rnd, 7);
  for (size_t i = 0; i < o->entry_bytes * PER_REQ + 4096; i++)
    payload[i] = (uint8_t)rk_rand_u64(&rnd);
  for (uint64_t g = 0; g <= o->groups; g++) next[g] = 1;
  uint64_t target = o->mib << 20;
  rstate rs = {0};
  uint64_t t0 = rk_clock_mono_ns();
  printf("recover: building a %llu MiB WAL in %s (entry_bytes=%llu groups=%llu)\n",
         (unsigned long long)o->mib, dir, (unsigned long long)o->entry_bytes,
         (unsigned long long)o->groups);
  fflush(stdout);
  uint64_t g = 0;
  int slot = 0;
  for (;;) {
    eng_wal_stats st;
    eng_wal_get_stats(w, &st);
    if (st.bytes_written >= target || rs.failed) break;
    while (rs.outstanding >= NREQ) eng_wal_poll(w, 1000);
    /* slots are reused round robin; with NREQ outstanding at most, slot is free */
    eng_wal_append_req *req = &reqs[slot];
    rk_entry *e = &es[(size_t)slot * PER_REQ];
    slot = (slot + 1) % NREQ;
    g = g % o->groups + 1;
    for (int k = 0; k < PER_REQ; k++)
      e[k] = (rk_entry){.index = next[g]++,
                        .term = 1,
                        .len = (uint32_t)o->entry_bytes,
                        .data = payload + (size_t)k * o->entry_bytes};
    eng_wal_write wr = {.group = g, .entries = e, .n_entries = PER_REQ};
    req->data = &rs;
    rc = eng_wal_append(w, req, &wr, 1, on_done);
    if (rc != RK_OK) {
      fprintf(stderr, "bench recover: append: %s\n", rk_strerror(rc));
      goto out;
    }
    rs.outstanding++;
    eng_wal_process(w);
  }
  eng_wal_sync(w);
  eng_wal_stats st;
  eng_wal_get_stats(w, &st);
  double build = (double)(rk_clock_mono_ns() - t0) / 1e9;
  printf("recover: built %llu bytes, %llu entries in %.1f s\n",
         (unsigned long long)st.bytes_written, (unsigned long long)st.entries, build);
  eng_wal_close(w);
  w = NULL;
  drop_cache(dir);
  uint64_t a = rk_clock_mono_ns();
  rc = eng_wal_open(&wo, &w, &rec);
  double cold = (double)(rk_clock_mono_ns() - a) / 1e9;
  if (rc != RK_OK) {
    fprintf(stderr, "bench recover: open: %s: %s\n", rk_strerror(rc), rec.message);
    goto out;
  }
  uint64_t entries = rec.entries, bytes = rec.bytes;
  printf("recover: cold open: %.3f s, %llu segments, %llu batches, %llu entries, %llu groups\n",
         cold, (unsigned long long)rec.segments, (unsigned long long)rec.batches,
         (unsigned long long)rec.entries, (unsigned long long)rec.groups);
  eng_wal_close(w);
  w = NULL;
  a = rk_clock_mono_ns();
  rc = eng_wal_open(&wo, &w, &rec);
  double warm = (double)(rk_clock_mono_ns() - a) / 1e9;
  if (rc != RK_OK) goto out;
  printf("recover: bytes=%llu entries=%llu cold_seconds=%.3f warm_seconds=%.3f "
         "cold_mb_per_sec=%.0f\n",
         (unsigned long long)bytes, (unsigned long long)entries, cold, warm,
         (double)bytes / cold / 1e6);
out:
  if (w) eng_wal_close(w);
  free(next);
  free(payload);
  free(es);
  free(reqs);
  bench_rmtree(dir);
  free(dir);
  return rc;
}
