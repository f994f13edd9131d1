#include "bench/bench.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *bench_scratch_dir(const char *parent) {
  if (parent == NULL) {
    parent = getenv("TMPDIR");
    if (parent == NULL || *parent == '\0') parent = "/tmp";
  }
  char tmpl[4096];
  snprintf(tmpl, sizeof tmpl, "%s/rangekv-bench-XXXXXX", parent);
  if (mkdtemp(tmpl) == NULL) {
    perror("bench: mkdtemp");
    fprintf(stderr, "bench: cannot create a scratch directory in %s\n", parent);
    return NULL;
  }
  return strdup(tmpl);
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(path);
}

void bench_rmtree(const char *dir) {
  if (dir) nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

uint64_t bench_percentile(uint64_t *v, size_t n, double p, int *sorted) {
  if (n == 0) return 0;
  if (!*sorted) {
    qsort(v, n, sizeof *v, cmp_u64);
    *sorted = 1;
  }
  size_t i = (size_t)(p * (double)(n - 1) + 0.5);
  if (i >= n) i = n - 1;
  return v[i];
}
