#include "eng_test.h"

#include "common/rk_log.h"
#include "engine/wal_int.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Recovery logs every cut as a warning; the tests provoke hundreds. */
__attribute__((constructor)) static void quiet_logs(void) { rk_log_set_level(RK_LOG_ERROR); }

/* Directories still to remove if a test fails before its own cleanup (a
 * failed assertion ends the test process through exit()). */
static char *live_dirs[64];

static void rm_live_dirs(void) {
  if (getenv("MODEL_KEEP")) return;
  for (int i = 0; i < 64; i++) {
    char *d = live_dirs[i];
    if (d == NULL) continue;
    live_dirs[i] = NULL;
    eng_rmtree(d);
    free(d);
  }
}

char *eng_tmpdir(void) {
  static int registered;
  if (!registered) {
    atexit(rm_live_dirs);
    registered = 1;
  }
  const char *base = getenv("TMPDIR");
  char tmpl[4096];
  snprintf(tmpl, sizeof tmpl, "%s/rk-engine-XXXXXX", base && *base ? base : "/tmp");
  char *d = mkdtemp(tmpl);
  cr_assert_not_null(d, "mkdtemp failed");
  for (int i = 0; i < 64; i++) {
    if (live_dirs[i] == NULL) {
      live_dirs[i] = strdup(d);
      break;
    }
  }
  return strdup(d);
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(path);
}

void eng_rmtree(const char *dir) {
  if (dir == NULL) return;
  nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
  for (int i = 0; i < 64; i++) {
    if (live_dirs[i] && strcmp(live_dirs[i], dir) == 0) {
      free(live_dirs[i]);
      live_dirs[i] = NULL;
    }
  }
}

void eng_small_opts(eng_wal_options *o, const char *dir) {
  eng_wal_options_default(o);
  o->dir = dir;
  o->cluster_id = 77;
  o->node_id = 3;
  o->segment_bytes = 64 * 1024;
  o->max_batch_bytes = 16 * 1024;
  o->max_entry_bytes = 4 * 1024;
  o->rewrite_max_group_bytes = 4 * 1024;
  o->rewrite_after_segments = 4;
  o->cache_bytes = 8 * 1024; /* small: most reads go to the segments */
}

eng_wal *eng_open_or_skip(const eng_wal_options *o) {
  eng_wal *w = NULL;
  eng_wal_recovery rec;
  int rc = eng_wal_open(o, &w, &rec);
  if (rc == RK_EUNSUPPORTED) cr_skip_test("io_uring unavailable here: %s", rec.message);
  cr_assert_eq(rc, RK_OK, "eng_wal_open: %s (%s)", rk_errname(rc), rec.message);
  return w;
}

uint32_t eng_payload(uint64_t group, uint64_t index, uint64_t term, uint32_t maxlen, uint8_t *buf) {
  uint64_t x = group * 0x9E3779B97F4A7C15ull ^ index * 0xBF58476D1CE4E5B9ull ^ term;
  uint32_t len = maxlen ? (uint32_t)(x % (maxlen + 1)) : 0;
  for (uint32_t i = 0; i < len; i++) {
    x ^= x >> 31;
    x *= 0x94D049BB133111EBull;
    buf[i] = (uint8_t)(x >> 56);
  }
  return len;
}

void eng_check_range(eng_wal *w, uint64_t group, uint64_t lo, uint64_t hi, uint64_t term,
                     uint32_t maxlen) {
  rk_entry_vec ev;
  rk_entry_vec_init(&ev);
  int rc = eng_wal_entries(w, group, lo, hi, UINT64_MAX, &ev);
  cr_assert_eq(rc, RK_OK, "entries(g%lu, %lu, %lu): %s", (unsigned long)group, (unsigned long)lo,
               (unsigned long)hi, rk_errname(rc));
  cr_assert_eq(ev.len, hi - lo);
  uint8_t *buf = malloc(maxlen + 1);
  for (size_t k = 0; k < ev.len; k++) {
    uint64_t i = lo + k;
    uint32_t len = eng_payload(group, i, term, maxlen, buf);
    cr_assert_eq(ev.v[k].index, i);
    cr_assert_eq(ev.v[k].term, term, "g%lu i%lu term %lu != %lu", (unsigned long)group,
                 (unsigned long)i, (unsigned long)ev.v[k].term, (unsigned long)term);
    cr_assert_eq(ev.v[k].len, len, "g%lu i%lu len", (unsigned long)group, (unsigned long)i);
    cr_assert(len == 0 || memcmp(ev.v[k].data, buf, len) == 0, "g%lu i%lu payload differs",
              (unsigned long)group, (unsigned long)i);
    uint64_t t;
    cr_assert_eq(eng_wal_term(w, group, i, &t), RK_OK);
    cr_assert_eq(t, term);
  }
  free(buf);
  rk_entry_vec_free(&ev);
}

void eng_cb(eng_wal_append_req *req, int status) {
  eng_cb_state *st = req->data;
  st->calls++;
  st->status = status;
}

int eng_append_async(eng_wal *w, eng_wal_append_req *req, eng_cb_state *st, uint64_t group,
                     uint64_t lo, uint64_t hi, uint64_t term, uint32_t maxlen,
                     const rk_hard_state *hs) {
  size_t n = hi - lo;
  rk_entry *es = calloc(n ? n : 1, sizeof *es);
  uint8_t *bufs = malloc((size_t)(maxlen + 1) * (n ? n : 1));
  for (size_t k = 0; k < n; k++) {
    es[k].index = lo + k;
    es[k].term = term;
    es[k].data = bufs + k * (maxlen + 1);
    es[k].len = eng_payload(group, lo + k, term, maxlen, es[k].data);
  }
  eng_wal_write wr = {.group = group, .entries = es, .n_entries = n, .hard_state = hs};
  memset(st, 0, sizeof *st);
  req->data = st;
  int rc = eng_wal_append(w, req, &wr, 1, eng_cb);
  /* The WAL copied everything: scribble over our buffers to prove it. */
  memset(bufs, 0xEE, (size_t)(maxlen + 1) * (n ? n : 1));
  free(es);
  free(bufs);
  return rc;
}

int eng_append_sync(eng_wal *w, uint64_t group, uint64_t lo, uint64_t hi, uint64_t term,
                    uint32_t maxlen, const rk_hard_state *hs) {
  /* Chunks of 20 entries so a request always fits in a test batch. */
  enum { CHUNK = 20 };
  size_t nreq = (size_t)((hi - lo + CHUNK - 1) / CHUNK);
  if (nreq == 0) nreq = 1;
  eng_wal_append_req *reqs = calloc(nreq, sizeof *reqs);
  eng_cb_state *sts = calloc(nreq, sizeof *sts);
  int rc = RK_OK;
  size_t issued = 0;
  for (size_t k = 0; k < nreq; k++) {
    uint64_t a = lo + k * CHUNK, b = a + CHUNK < hi ? a + CHUNK : hi;
    rc = eng_append_async(w, &reqs[k], &sts[k], group, a, b, term, maxlen,
                          k + 1 == nreq ? hs : NULL);
    if (rc != RK_OK) break;
    issued++;
  }
  eng_wal_sync(w);
  for (size_t k = 0; k < issued; k++) {
    while (sts[k].calls == 0) eng_wal_poll(w, 1000);
    cr_assert_eq(sts[k].calls, 1);
    if (rc == RK_OK) rc = sts[k].status;
  }
  free(reqs);
  free(sts);
  return rc;
}

size_t eng_count_files(const char *dir, const char *suffix) {
  DIR *d = opendir(dir);
  if (!d) return 0;
  size_t n = 0, sl = strlen(suffix);
  struct dirent *de;
  while ((de = readdir(d))) {
    size_t l = strlen(de->d_name);
    if (l >= sl && strcmp(de->d_name + l - sl, suffix) == 0) n++;
  }
  closedir(d);
  return n;
}

int eng_read_seg_hdr(const char *dir, uint64_t seq, struct wal_seg_hdr *h) {
  char p[4200];
  snprintf(p, sizeof p, "%s/%016lx.wal", dir, (unsigned long)seq);
  uint8_t b[WAL_SEG_HDR];
  int fd = open(p, O_RDONLY);
  if (fd < 0) return RK_ENOTFOUND;
  ssize_t r = pread(fd, b, sizeof b, 0);
  close(fd);
  if (r != (ssize_t)sizeof b) return RK_ECORRUPT;
  return wal_seg_hdr_decode(b, h);
}
