/* engine/state.c — the RocksDB state store. Why each option: docs/state.md.
 *
 * Identity record ("node" family, key "identity"), 24 bytes:
 *   off size field
 *    0    8  magic "RKSTATE1"
 *    8    8  cluster id, little-endian
 *   16    8  node id, little-endian
 */
#include "engine/state.h"

#include "common/rk_assert.h"
#include "common/rk_err.h"
#include "common/rk_log.h"

#include <rocksdb/c.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { CF_DEFAULT = 0, CF_USER, CF_RANGE, CF_NODE, CF_COUNT };
static const char *const cf_names[CF_COUNT] = {"default", "user", "range", "node"};
static const char identity_key[] = "identity";
#define IDENTITY_MAGIC "RKSTATE1"

struct eng_state {
  rocksdb_t *db;
  rocksdb_options_t *opts;
  rocksdb_options_t *cf_opts[CF_COUNT];
  rocksdb_options_t *sst_opts;     /* snapshot staging files (eng_state_sst_open) */
  _Atomic uint64_t ingest_retries; /* eng_state_ingest's second attempts */
  /* The first commit or sync error, returned by every later commit, sync
   * and ingest without asking RocksDB again: after a failed fsync a later
   * one may succeed with the data gone (fsyncgate). RocksDB latches such
   * errors itself; this does not depend on it. The installer thread
   * commits too, hence atomic. */
  _Atomic int failed;
#ifdef RK_TEST_HOOKS
  int test_fail_sync; /* the next sync fails as if the disk had (EIO) */
#endif
  rocksdb_block_based_table_options_t *table;
  rocksdb_cache_t *cache;
  rocksdb_filterpolicy_t *bloom; /* owned by `table` once set */
  rocksdb_column_family_handle_t *cf[CF_COUNT];
  rocksdb_writeoptions_t *wopts;
  rocksdb_readoptions_t *ropts;
};

struct eng_state_batch {
  eng_state *s;
  rocksdb_writebatch_t *wb;
};

struct eng_state_iter {
  rocksdb_iterator_t *it;
  rocksdb_readoptions_t *ropts;
  char *upper; /* must outlive the iterator */
  int err;
};

__attribute__((format(printf, 3, 4))) static void set_msg(char *msg, size_t cap, const char *fmt,
                                                          ...) {
  if (msg == NULL || cap == 0) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, cap, fmt, ap);
  va_end(ap);
}

void eng_state_options_default(eng_state_options *o) {
  memset(o, 0, sizeof *o);
  o->block_cache_bytes = 256u << 20;
}

static void put_le64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint64_t get_le64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}
/* The end of a span: end, or with end NULL a bound above every user key
 * (they are at most 4 KiB: kv/kvcmd.h KV_MAX_KEY), built in past_all. */
#define PAST_ALL_BYTES 4097
static void span_end(const void *end, size_t elen, char past_all[PAST_ALL_BYTES], const char **hi,
                     size_t *hil) {
  if (end == NULL) memset(past_all, 0xFF, PAST_ALL_BYTES);
  *hi = end ? end : past_all;
  *hil = end ? elen : PAST_ALL_BYTES;
}

static void range_key(uint8_t out[9], uint64_t range, eng_range_kind kind) {
  for (int i = 0; i < 8; i++) out[i] = (uint8_t)(range >> (56 - 8 * i));
  out[8] = (uint8_t)kind;
}

/* Options shared by every column family; see docs/state.md. */
static rocksdb_options_t *make_cf_options(eng_state *s, uint64_t write_buffer, int compress) {
  rocksdb_options_t *o = rocksdb_options_create();
  rocksdb_options_set_block_based_table_factory(o, s->table);
  rocksdb_options_set_write_buffer_size(o, write_buffer);
  rocksdb_options_set_level_compaction_dynamic_level_bytes(o, 1);
  if (compress) {
    rocksdb_options_set_compression(o, rocksdb_lz4_compression);
    rocksdb_options_set_bottommost_compression(o, rocksdb_zstd_compression);
  } else {
    rocksdb_options_set_compression(o, rocksdb_no_compression);
  }
  return o;
}

static void free_options(eng_state *s) {
  if (s->sst_opts) rocksdb_options_destroy(s->sst_opts);
  s->sst_opts = NULL;
  for (int i = 0; i < CF_COUNT; i++)
    if (s->cf_opts[i]) rocksdb_options_destroy(s->cf_opts[i]);
  if (s->opts) rocksdb_options_destroy(s->opts);
  if (s->table) rocksdb_block_based_options_destroy(s->table);
  if (s->cache) rocksdb_cache_destroy(s->cache);
  memset(s->cf_opts, 0, sizeof s->cf_opts);
  s->opts = NULL;
  s->table = NULL;
  s->cache = NULL;
}

static int build_options(eng_state *s, const eng_state_options *o, int compress) {
  s->cache = rocksdb_cache_create_lru(o->block_cache_bytes);
  s->table = rocksdb_block_based_options_create();
  rocksdb_block_based_options_set_block_cache(s->table, s->cache);
  rocksdb_block_based_options_set_block_size(s->table, 16 * 1024);
  s->bloom = rocksdb_filterpolicy_create_bloom_full(10);
  rocksdb_block_based_options_set_filter_policy(s->table, s->bloom);
  rocksdb_block_based_options_set_cache_index_and_filter_blocks(s->table, 1);
  rocksdb_block_based_options_set_pin_l0_filter_and_index_blocks_in_cache(s->table, 1);
  rocksdb_block_based_options_set_format_version(s->table, 5);
  s->opts = make_cf_options(s, 64u << 20, compress);
  rocksdb_options_set_create_if_missing(s->opts, 1);
  rocksdb_options_set_create_missing_column_families(s->opts, 1);
  rocksdb_options_set_max_background_jobs(s->opts, 2);
  rocksdb_options_set_bytes_per_sync(s->opts, 1u << 20);
  rocksdb_options_set_keep_log_file_num(s->opts, 4);
  rocksdb_options_set_info_log_level(s->opts, 2 /* WARN */);
  s->cf_opts[CF_DEFAULT] = make_cf_options(s, 4u << 20, compress);
  s->cf_opts[CF_USER] = make_cf_options(s, 64u << 20, compress);
  s->cf_opts[CF_RANGE] = make_cf_options(s, 8u << 20, compress);
  s->cf_opts[CF_NODE] = make_cf_options(s, 1u << 20, 0);
  /* Staging files are written on a node's loop as chunks arrive: LZ4 for
   * every level, not the bottommost ZSTD an SstFileWriter would use. */
  s->sst_opts = make_cf_options(s, 64u << 20, compress);
  if (compress) rocksdb_options_set_bottommost_compression(s->sst_opts, rocksdb_lz4_compression);
  return RK_OK;
}

static int check_identity_bytes(const char *v, size_t len, const eng_state_options *o, char *msg,
                                size_t cap) {
  if (len != 24 || memcmp(v, IDENTITY_MAGIC, 8) != 0) {
    set_msg(msg, cap, "state store %s: identity record is malformed", o->dir);
    return RK_ECORRUPT;
  }
  uint64_t cl = get_le64((const uint8_t *)v + 8), nd = get_le64((const uint8_t *)v + 16);
  if (cl != o->cluster_id) {
    set_msg(msg, cap,
            "state store %s belongs to cluster %llu, not %llu (wrong --data-dir?); nothing was "
            "modified",
            o->dir, (unsigned long long)cl, (unsigned long long)o->cluster_id);
    return RK_EWRONGCLUSTER;
  }
  if (nd != o->node_id) {
    set_msg(msg, cap,
            "state store %s belongs to node %llu, not %llu (wrong --data-dir?); nothing was "
            "modified",
            o->dir, (unsigned long long)nd, (unsigned long long)o->node_id);
    return RK_EWRONGNODE;
  }
  return RK_OK;
}

/* Read-only look at an existing store's identity, before any write. */
static int precheck_identity(eng_state *s, const eng_state_options *o, char *msg, size_t cap) {
  char path[4096];
  snprintf(path, sizeof path, "%s/CURRENT", o->dir);
  if (access(path, F_OK) != 0) return RK_OK; /* a new store */
  rocksdb_column_family_handle_t *cf[CF_COUNT] = {0};
  char *err = NULL;
  rocksdb_t *db = rocksdb_open_for_read_only_column_families(
      s->opts, o->dir, CF_COUNT, cf_names, (const rocksdb_options_t *const *)s->cf_opts, cf, 0,
      &err);
  if (err) {
    int rc = rk_err_from_rocksdb(err);
    set_msg(msg, cap, "state store %s: %s", o->dir, err);
    rocksdb_free(err);
    return rc == RK_EINVAL ? RK_ECORRUPT : rc;
  }
  size_t vlen = 0;
  char *v =
      rocksdb_get_cf(db, s->ropts, cf[CF_NODE], identity_key, sizeof identity_key - 1, &vlen, &err);
  int rc = RK_OK;
  if (err) {
    rc = rk_err_from_rocksdb(err);
    set_msg(msg, cap, "state store %s: %s", o->dir, err);
    rocksdb_free(err);
  } else if (v == NULL) {
    set_msg(msg, cap, "state store %s has no identity record", o->dir);
    rc = RK_ECORRUPT;
  } else {
    rc = check_identity_bytes(v, vlen, o, msg, cap);
  }
  rocksdb_free(v);
  for (int i = 0; i < CF_COUNT; i++)
    if (cf[i]) rocksdb_column_family_handle_destroy(cf[i]);
  rocksdb_close(db);
  return rc;
}

int eng_state_open(const eng_state_options *o, eng_state **out, char *msg, size_t msgcap) {
  *out = NULL;
  if (o->dir == NULL || o->cluster_id == 0 || o->node_id == 0) {
    set_msg(msg, msgcap, "state store: dir, cluster_id and node_id are required");
    return RK_EINVAL;
  }
  eng_state *s = calloc(1, sizeof *s);
  if (s == NULL) return RK_ENOMEM;
  s->wopts = rocksdb_writeoptions_create();
  rocksdb_writeoptions_set_sync(s->wopts, (unsigned char)(o->sync_commits != 0));
  s->ropts = rocksdb_readoptions_create();
  int rc = RK_OK;
  char *err = NULL;
  for (int compress = 1; compress >= 0; compress--) {
    build_options(s, o, compress);
    rc = precheck_identity(s, o, msg, msgcap);
    if (rc != RK_OK) goto fail;
    s->db = rocksdb_open_column_families(s->opts, o->dir, CF_COUNT, cf_names,
                                         (const rocksdb_options_t *const *)s->cf_opts, s->cf, &err);
    if (err == NULL) break;
    /* A RocksDB built without LZ4/ZSTD says so at open: fall back. */
    int retry = compress && strstr(err, "ompression") != NULL;
    rc = rk_err_from_rocksdb(err);
    set_msg(msg, msgcap, "state store %s: %s", o->dir, err);
    rocksdb_free(err);
    err = NULL;
    free_options(s);
    if (!retry) goto fail;
    RK_WARN("state", "RocksDB lacks LZ4/ZSTD here; running without compression");
  }
  if (s->db == NULL) goto fail;
  /* Identity: write once, check forever. */
  size_t vlen = 0;
  char *v = rocksdb_get_cf(s->db, s->ropts, s->cf[CF_NODE], identity_key, sizeof identity_key - 1,
                           &vlen, &err);
  if (err) {
    rc = rk_err_from_rocksdb(err);
    set_msg(msg, msgcap, "state store %s: %s", o->dir, err);
    rocksdb_free(err);
    goto fail;
  }
  if (v) {
    rc = check_identity_bytes(v, vlen, o, msg, msgcap);
    rocksdb_free(v);
    if (rc != RK_OK) goto fail;
  } else {
    uint8_t id[24];
    memcpy(id, IDENTITY_MAGIC, 8);
    put_le64(id + 8, o->cluster_id);
    put_le64(id + 16, o->node_id);
    rocksdb_writeoptions_t *sync = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(sync, 1);
    rocksdb_put_cf(s->db, sync, s->cf[CF_NODE], identity_key, sizeof identity_key - 1,
                   (const char *)id, sizeof id, &err);
    rocksdb_writeoptions_destroy(sync);
    if (err) {
      rc = rk_err_from_rocksdb(err);
      set_msg(msg, msgcap, "state store %s: %s", o->dir, err);
      rocksdb_free(err);
      goto fail;
    }
  }
  *out = s;
  return RK_OK;
fail:
  eng_state_close(s);
  return rc;
}

void eng_state_close(eng_state *s) {
  if (s == NULL) return;
  for (int i = 0; i < CF_COUNT; i++)
    if (s->cf[i]) rocksdb_column_family_handle_destroy(s->cf[i]);
  if (s->db) rocksdb_close(s->db);
  free_options(s);
  if (s->wopts) rocksdb_writeoptions_destroy(s->wopts);
  if (s->ropts) rocksdb_readoptions_destroy(s->ropts);
  free(s);
}

/* ---- batches ---------------------------------------------------------------- */

eng_state_batch *eng_state_batch_new(eng_state *s) {
  eng_state_batch *b = calloc(1, sizeof *b);
  if (b == NULL) return NULL;
  b->s = s;
  b->wb = rocksdb_writebatch_create();
  return b;
}

void eng_state_batch_free(eng_state_batch *b) {
  if (b == NULL) return;
  rocksdb_writebatch_destroy(b->wb);
  free(b);
}

void eng_state_batch_clear(eng_state_batch *b) { rocksdb_writebatch_clear(b->wb); }

int eng_state_batch_count(eng_state_batch *b) { return rocksdb_writebatch_count(b->wb); }

void eng_state_batch_put(eng_state_batch *b, const void *key, size_t klen, const void *val,
                         size_t vlen) {
  RK_ASSERTF(klen < PAST_ALL_BYTES, "user key of %zu bytes: span ends assume at most 4096", klen);
  rocksdb_writebatch_put_cf(b->wb, b->s->cf[CF_USER], key, klen, val, vlen);
}

void eng_state_batch_delete(eng_state_batch *b, const void *key, size_t klen) {
  rocksdb_writebatch_delete_cf(b->wb, b->s->cf[CF_USER], key, klen);
}

void eng_state_batch_delete_range(eng_state_batch *b, const void *start, size_t slen,
                                  const void *end, size_t elen) {
  char past_all[PAST_ALL_BYTES];
  const char *hi;
  size_t hil;
  span_end(end, elen, past_all, &hi, &hil);
  rocksdb_writebatch_delete_range_cf(b->wb, b->s->cf[CF_USER], start, slen, hi, hil);
}

void eng_state_batch_set_applied(eng_state_batch *b, uint64_t range, uint64_t applied) {
  uint8_t k[9], v[8];
  range_key(k, range, ENG_RANGE_APPLIED);
  put_le64(v, applied);
  rocksdb_writebatch_put_cf(b->wb, b->s->cf[CF_RANGE], (const char *)k, sizeof k, (const char *)v,
                            sizeof v);
}

void eng_state_batch_range_put(eng_state_batch *b, uint64_t range, eng_range_kind kind,
                               const void *val, size_t vlen) {
  RK_ASSERT(kind == ENG_RANGE_DESC || kind == ENG_RANGE_LEASE || kind == ENG_RANGE_SNAP ||
            kind == ENG_RANGE_SNAP_INTENT);
  uint8_t k[9];
  range_key(k, range, kind);
  rocksdb_writebatch_put_cf(b->wb, b->s->cf[CF_RANGE], (const char *)k, sizeof k, val, vlen);
}

void eng_state_batch_range_clear(eng_state_batch *b, uint64_t range) {
  uint8_t lo[9], hi[9];
  range_key(lo, range, 0);
  range_key(hi, range, 0xFF);
  rocksdb_writebatch_delete_range_cf(b->wb, b->s->cf[CF_RANGE], (const char *)lo, sizeof lo,
                                     (const char *)hi, sizeof hi);
}

/* Records the first failure (see `failed`) and returns rc. */
static int latch(eng_state *s, int rc) {
  int none = RK_OK;
  atomic_compare_exchange_strong(&s->failed, &none, rc);
  return rc;
}

int eng_state_commit(eng_state *s, eng_state_batch *b) {
  RK_ASSERT(b->s == s);
  if (s->failed) return s->failed;
  char *err = NULL;
  rocksdb_write(s->db, s->wopts, b->wb, &err);
  if (err) {
    int rc = rk_err_from_rocksdb(err);
    RK_ERROR("state", "commit failed: %s", err);
    rocksdb_free(err);
    return latch(s, rc);
  }
  return RK_OK;
}

int eng_state_sync(eng_state *s) {
  if (s->failed) return s->failed;
  char *err = NULL;
  rocksdb_flush_wal(s->db, 1, &err);
  int rc = RK_OK;
  if (err) {
    rc = rk_err_from_rocksdb(err);
    RK_ERROR("state", "sync failed: %s", err);
    rocksdb_free(err);
  }
#ifdef RK_TEST_HOOKS
  else if (s->test_fail_sync) {
    s->test_fail_sync = 0; /* once: what follows is the latch's doing */
    rc = RK_EIO;
    RK_ERROR("state", "sync failed: injected by a test");
  }
#endif
  return rc == RK_OK ? RK_OK : latch(s, rc);
}

#ifdef RK_TEST_HOOKS
void eng_state_test_fail_sync(eng_state *s) { s->test_fail_sync = 1; }
#endif

/* ---- reads -------------------------------------------------------------------- */

static int get_cf(eng_state *s, int cf, const void *key, size_t klen, void **val, size_t *vlen) {
  char *err = NULL;
  size_t len = 0;
  char *v = rocksdb_get_cf(s->db, s->ropts, s->cf[cf], key, klen, &len, &err);
  if (err) {
    int rc = rk_err_from_rocksdb(err);
    rocksdb_free(err);
    return rc;
  }
  if (v == NULL) return RK_ENOTFOUND;
  void *copy = malloc(len ? len : 1);
  if (copy == NULL) {
    rocksdb_free(v);
    return RK_ENOMEM;
  }
  memcpy(copy, v, len);
  rocksdb_free(v);
  *val = copy;
  *vlen = len;
  return RK_OK;
}

int eng_state_get(eng_state *s, const void *key, size_t klen, void **val, size_t *vlen) {
  return get_cf(s, CF_USER, key, klen, val, vlen);
}

int eng_state_range_get(eng_state *s, uint64_t range, eng_range_kind kind, void **val,
                        size_t *vlen) {
  uint8_t k[9];
  range_key(k, range, kind);
  return get_cf(s, CF_RANGE, k, sizeof k, val, vlen);
}

int eng_state_approx_bytes(eng_state *s, const void *start, size_t slen, const void *end,
                           size_t elen, uint64_t *out) {
  char past_all[PAST_ALL_BYTES];
  const char *lo = start, *hi;
  size_t lol = slen, hil;
  span_end(end, elen, past_all, &hi, &hil);
  char *err = NULL;
  rocksdb_approximate_sizes_cf(s->db, s->cf[CF_USER], 1, &lo, &lol, &hi, &hil, out, &err);
  if (err) {
    int rc = rk_err_from_rocksdb(err);
    rocksdb_free(err);
    return rc;
  }
  return RK_OK;
}

/* Range records that are a few little-endian words. */
static void put_words(eng_state_batch *b, uint64_t range, eng_range_kind kind, const uint64_t *w,
                      size_t n) {
  uint8_t v[32];
  RK_ASSERT(n * 8 <= sizeof v);
  for (size_t i = 0; i < n; i++) put_le64(v + 8 * i, w[i]);
  eng_state_batch_range_put(b, range, kind, v, n * 8);
}

/* RK_ENOTFOUND if absent, RK_ECORRUPT if not exactly n words. */
static int get_words(eng_state *s, uint64_t range, eng_range_kind kind, uint64_t *w, size_t n) {
  void *v = NULL;
  size_t len = 0;
  int rc = eng_state_range_get(s, range, kind, &v, &len);
  if (rc != RK_OK) return rc;
  if (len != n * 8) {
    free(v);
    return RK_ECORRUPT;
  }
  for (size_t i = 0; i < n; i++) w[i] = get_le64((const uint8_t *)v + 8 * i);
  free(v);
  return RK_OK;
}

void eng_state_batch_set_snap_mark(eng_state_batch *b, uint64_t range, uint64_t index,
                                   uint64_t term) {
  put_words(b, range, ENG_RANGE_SNAP, (const uint64_t[]){index, term}, 2);
}

int eng_state_snap_mark(eng_state *s, uint64_t range, uint64_t *index, uint64_t *term) {
  uint64_t w[2];
  int rc = get_words(s, range, ENG_RANGE_SNAP, w, 2);
  if (rc != RK_OK) return rc;
  *index = w[0];
  *term = w[1];
  return RK_OK;
}

void eng_state_batch_set_snap_intent(eng_state_batch *b, uint64_t range, uint64_t index,
                                     uint64_t term, uint64_t file) {
  put_words(b, range, ENG_RANGE_SNAP_INTENT, (const uint64_t[]){index, term, file}, 3);
}

void eng_state_batch_clear_snap_intent(eng_state_batch *b, uint64_t range) {
  uint8_t k[9];
  range_key(k, range, ENG_RANGE_SNAP_INTENT);
  rocksdb_writebatch_delete_cf(b->wb, b->s->cf[CF_RANGE], (const char *)k, sizeof k);
}

int eng_state_snap_intent(eng_state *s, uint64_t range, uint64_t *index, uint64_t *term,
                          uint64_t *file) {
  uint64_t w[3];
  int rc = get_words(s, range, ENG_RANGE_SNAP_INTENT, w, 3);
  if (rc != RK_OK) return rc;
  *index = w[0];
  *term = w[1];
  *file = w[2];
  return RK_OK;
}

int eng_state_applied(eng_state *s, uint64_t range, uint64_t *applied) {
  void *v = NULL;
  size_t len = 0;
  int rc = eng_state_range_get(s, range, ENG_RANGE_APPLIED, &v, &len);
  if (rc == RK_ENOTFOUND) {
    *applied = 0;
    return RK_OK;
  }
  if (rc != RK_OK) return rc;
  if (len != 8) {
    free(v);
    return RK_ECORRUPT;
  }
  *applied = get_le64(v);
  free(v);
  return RK_OK;
}

/* ---- iterators ---------------------------------------------------------------- */

eng_state_iter *eng_state_iter_new(eng_state *s, const void *start, size_t slen, const void *end,
                                   size_t elen) {
  eng_state_iter *it = calloc(1, sizeof *it);
  if (it == NULL) return NULL;
  it->ropts = rocksdb_readoptions_create();
  if (end) {
    it->upper = malloc(elen ? elen : 1);
    if (it->upper == NULL) {
      rocksdb_readoptions_destroy(it->ropts);
      free(it);
      return NULL;
    }
    memcpy(it->upper, end, elen);
    rocksdb_readoptions_set_iterate_upper_bound(it->ropts, it->upper, elen);
  }
  it->it = rocksdb_create_iterator_cf(s->db, it->ropts, s->cf[CF_USER]);
  if (start)
    rocksdb_iter_seek(it->it, start, slen);
  else
    rocksdb_iter_seek_to_first(it->it);
  return it;
}

int eng_state_iter_valid(const eng_state_iter *it) { return rocksdb_iter_valid(it->it) != 0; }

void eng_state_iter_next(eng_state_iter *it) { rocksdb_iter_next(it->it); }

const void *eng_state_iter_key(const eng_state_iter *it, size_t *len) {
  return rocksdb_iter_key(it->it, len);
}

const void *eng_state_iter_value(const eng_state_iter *it, size_t *len) {
  return rocksdb_iter_value(it->it, len);
}

int eng_state_iter_status(const eng_state_iter *it) {
  char *err = NULL;
  rocksdb_iter_get_error(it->it, &err);
  if (err == NULL) return RK_OK;
  int rc = rk_err_from_rocksdb(err);
  rocksdb_free(err);
  return rc;
}

void eng_state_iter_free(eng_state_iter *it) {
  if (it == NULL) return;
  rocksdb_iter_destroy(it->it);
  rocksdb_readoptions_destroy(it->ropts);
  free(it->upper);
  free(it);
}

/* ---- SST files and ingestion ---------------------------------------------------- */

struct eng_state_sst {
  rocksdb_sstfilewriter_t *w;
  rocksdb_envoptions_t *env;
  int open, finished;
};

/* RocksDB's error as ours, logged with what failed. */
static int rocks_rc(const char *what, const char *path, char *err) {
  int rc = rk_err_from_rocksdb(err);
  RK_ERROR("state", "%s%s%s: %s", what, path ? " " : "", path ? path : "", err);
  rocksdb_free(err);
  return rc;
}

int eng_state_sst_open(eng_state *s, const char *path, eng_state_sst **out) {
  *out = NULL;
  eng_state_sst *w = calloc(1, sizeof *w);
  if (w == NULL) return RK_ENOMEM;
  w->env = rocksdb_envoptions_create();
  w->w = rocksdb_sstfilewriter_create(w->env, s->sst_opts);
  char *err = NULL;
  rocksdb_sstfilewriter_open(w->w, path, &err);
  if (err) {
    eng_state_sst_free(w);
    return rocks_rc("cannot create", path, err);
  }
  w->open = 1;
  *out = w;
  return RK_OK;
}

int eng_state_sst_delete_range(eng_state_sst *w, const void *start, size_t slen, const void *end,
                               size_t elen) {
  RK_ASSERT(w->open && !w->finished);
  char past_all[PAST_ALL_BYTES];
  const char *hi;
  size_t hil;
  span_end(end, elen, past_all, &hi, &hil);
  char *err = NULL;
  rocksdb_sstfilewriter_delete_range(w->w, start, slen, hi, hil, &err);
  return err ? rocks_rc("range deletion in an SST file", NULL, err) : RK_OK;
}

int eng_state_sst_put(eng_state_sst *w, const void *key, size_t klen, const void *val,
                      size_t vlen) {
  RK_ASSERT(w->open && !w->finished);
  RK_ASSERTF(klen < PAST_ALL_BYTES, "user key of %zu bytes: span ends assume at most 4096", klen);
  char *err = NULL;
  rocksdb_sstfilewriter_put(w->w, key, klen, val, vlen, &err);
  return err ? rocks_rc("put in an SST file", NULL, err) : RK_OK;
}

int eng_state_sst_finish(eng_state_sst *w) {
  RK_ASSERT(w->open && !w->finished);
  char *err = NULL;
  rocksdb_sstfilewriter_finish(w->w, &err);
  w->finished = 1;
  return err ? rocks_rc("finishing an SST file", NULL, err) : RK_OK;
}

void eng_state_sst_free(eng_state_sst *w) {
  if (w == NULL) return;
  rocksdb_sstfilewriter_destroy(w->w);
  rocksdb_envoptions_destroy(w->env);
  free(w);
}

/* One ingestion attempt; blocking_flush: may RocksDB flush an overlapping
 * memtable itself (with every writer stopped). *needs_flush is set when it
 * refused for want of one. */
static int ingest_once(eng_state *s, const char *path, int blocking_flush, int *needs_flush) {
  /* Copied, not moved: RocksDB writes the sequence number it assigns into
   * the file it ingests, and such a file cannot be ingested again, so the
   * staged file must stay as it was for a redo after a crash. */
  rocksdb_ingestexternalfileoptions_t *o = rocksdb_ingestexternalfileoptions_create();
  rocksdb_ingestexternalfileoptions_set_move_files(o, 0);
  rocksdb_ingestexternalfileoptions_set_allow_blocking_flush(o, (unsigned char)blocking_flush);
  const char *files[1] = {path};
  char *err = NULL;
  rocksdb_ingest_external_file_cf(s->db, s->cf[CF_USER], files, 1, o, &err);
  rocksdb_ingestexternalfileoptions_destroy(o);
  *needs_flush = err != NULL && strstr(err, "requires flush") != NULL;
  if (*needs_flush) {
    rocksdb_free(err);
    return RK_EAGAIN;
  }
  return err ? rocks_rc("cannot ingest", path, err) : RK_OK;
}

/* Whether the user family's memtables hold a key in [start, end] (end NULL:
 * to the end; end itself included, as RocksDB's overlap check includes a
 * file's largest key, here its tombstone's end). Point keys only: a range
 * tombstone in the memtable is not seen, and then the ingestion asks for a
 * flush itself (eng_state_ingest's fallback). */
static int memtable_has_keys(eng_state *s, const void *start, size_t slen, const void *end,
                             size_t elen) {
  char past_all[PAST_ALL_BYTES], upper[PAST_ALL_BYTES + 1];
  const char *hi;
  size_t hil;
  span_end(end, elen, past_all, &hi, &hil);
  RK_ASSERT(hil < sizeof upper);
  memcpy(upper, hi, hil);
  upper[hil] = '\0'; /* the smallest key above hi: hi itself is included */
  rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
  rocksdb_readoptions_set_read_tier(ro, 3 /* kMemtableTier */);
  rocksdb_readoptions_set_iterate_upper_bound(ro, upper, hil + 1);
  rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, ro, s->cf[CF_USER]);
  rocksdb_iter_seek(it, start, slen);
  int has = rocksdb_iter_valid(it) != 0;
  char *err = NULL;
  rocksdb_iter_get_error(it, &err);
  if (err != NULL) { /* cannot tell: flush to be safe */
    has = 1;
    rocksdb_free(err);
  }
  rocksdb_iter_destroy(it);
  rocksdb_readoptions_destroy(ro);
  return has;
}

static int flush_user(eng_state *s, const char *path) {
  char *err = NULL;
  rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
  rocksdb_flushoptions_set_wait(fo, 1);
  rocksdb_flush_cf(s->db, fo, s->cf[CF_USER], &err);
  rocksdb_flushoptions_destroy(fo);
  return err ? rocks_rc("cannot flush before ingesting", path, err) : RK_OK;
}

int eng_state_ingest(eng_state *s, const char *path, const void *start, size_t slen,
                     const void *end, size_t elen) {
  if (s->failed) return s->failed;
  /* A memtable holding keys in the file's range must be flushed first. By
   * us (writers wait only for the memtable switch), not by the ingestion
   * (writers stopped for the whole flush), and only when needed: each flush
   * adds an L0 file, and too many slow every write. Checked beforehand
   * because RocksDB copies the whole file before it finds it needs one. */
  if (start != NULL && memtable_has_keys(s, start, slen, end, elen)) {
    int rc = flush_user(s, path);
    if (rc != RK_OK) return rc;
  }
  int needs_flush = 0;
  if (ingest_once(s, path, 0, &needs_flush) == RK_OK) return RK_OK;
  /* The check missed (a tombstone, or no span given), or something else
   * failed: once more, flushed if RocksDB said so and allowed to flush
   * itself otherwise, so a change in RocksDB's wording costs a stall, not
   * the install. */
  s->ingest_retries++;
  if (needs_flush) {
    int rc = flush_user(s, path);
    if (rc != RK_OK) return rc;
  }
  return ingest_once(s, path, 1, &needs_flush);
}

uint64_t eng_state_ingest_retries(eng_state *s) { return s->ingest_retries; }
