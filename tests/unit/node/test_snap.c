/* node/node_snap.c: a received snapshot's data is checked against the
 * range before any Raft core sees it (node_snap_check). */
#include "common/rk_err.h"
#include "kv/kvcmd.h"
#include "node/node_int.h"
#include "node_test.h"

#include "multiraft/hostmem.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Range 2 = ["b", "d") on nodes 1, 2, 3. */
static range_desc span_b_d(void) {
  range_desc d;
  memset(&d, 0, sizeof d);
  d.id = 2;
  d.start[0] = 'b';
  d.start_len = 1;
  d.end[0] = 'd';
  d.end_len = 1;
  d.n_replicas = 3;
  for (uint8_t k = 0; k < 3; k++) d.replicas[k] = k + 1u;
  return d;
}

/* A snapshot of d at index 10 whose data is buf[0, len). */
static mr_snapshot snap_of(const range_desc *d, uint8_t *buf, size_t len) {
  mr_snapshot s = {.index = 10, .term = 2, .len = (uint32_t)len, .data = buf};
  node_desc_conf(d, &s.conf);
  return s;
}

#define MAX_KVS 4

/* Packs a RangeSnapshot of keys (NUL-terminated) with value "v" each, or
 * with vlen bytes for the last key when vlen != 0; returns its length. */
static size_t pack(uint64_t range_id, const char *const *keys, size_t n, size_t last_vlen,
                   uint8_t **out) {
  static uint8_t big[KV_MAX_VALUE + 1];
  Rangekv__KeyValue kvs[MAX_KVS], *kvp[MAX_KVS];
  cr_assert_leq(n, MAX_KVS);
  for (size_t i = 0; i < n; i++) {
    rangekv__key_value__init(&kvs[i]);
    kvs[i].key.data = (uint8_t *)(uintptr_t)keys[i];
    kvs[i].key.len = strlen(keys[i]);
    kvs[i].value.data = (uint8_t *)(uintptr_t) "v";
    kvs[i].value.len = 1;
    if (i == n - 1 && last_vlen) {
      kvs[i].value.data = big;
      kvs[i].value.len = last_vlen;
    }
    kvp[i] = &kvs[i];
  }
  Rangekv__RangeSnapshot rs;
  rangekv__range_snapshot__init(&rs);
  rs.range_id = range_id;
  rs.n_kvs = n;
  rs.kvs = kvp;
  size_t len = rangekv__range_snapshot__get_packed_size(&rs);
  *out = malloc(len ? len : 1);
  cr_assert_not_null(*out);
  cr_assert_eq(rangekv__range_snapshot__pack(&rs, *out), len);
  return len;
}

static int check(uint64_t range_id, const char *const *keys, size_t n, size_t last_vlen) {
  range_desc d = span_b_d();
  uint8_t *buf = NULL;
  size_t len = pack(range_id, keys, n, last_vlen, &buf);
  mr_snapshot s = snap_of(&d, buf, len);
  int rc = node_snap_check(&d, &s, 1);
  free(buf);
  return rc;
}

Test(snap, a_clean_image_of_the_range_passes) {
  const char *keys[] = {"b", "b\x01", "bz", "c\xff\xff"};
  cr_assert_eq(check(2, keys, 4, 0), RK_OK);
  cr_assert_eq(check(2, keys, 0, 0), RK_OK, "an empty range");
  cr_assert_eq(check(2, keys, 1, KV_MAX_VALUE), RK_OK, "the largest value");
}

Test(snap, another_range_or_keys_outside_the_span_are_refused) {
  const char *keys[] = {"b", "c"};
  cr_assert_eq(check(3, keys, 2, 0), RK_EMALFORMED, "another range's id");
  const char *below[] = {"a", "b"};
  cr_assert_eq(check(2, below, 2, 0), RK_EMALFORMED, "a key below the start");
  const char *at_end[] = {"b", "d"};
  cr_assert_eq(check(2, at_end, 2, 0), RK_EMALFORMED, "the end key is outside");
}

Test(snap, duplicates_disorder_and_bad_sizes_are_refused) {
  const char *dup[] = {"b", "c", "c"};
  cr_assert_eq(check(2, dup, 3, 0), RK_EMALFORMED, "a duplicate key");
  const char *disorder[] = {"c", "b"};
  cr_assert_eq(check(2, disorder, 2, 0), RK_EMALFORMED, "keys out of order");
  const char *empty[] = {""};
  cr_assert_eq(check(2, empty, 1, 0), RK_EMALFORMED, "an empty key");
  const char *one[] = {"c"};
  cr_assert_eq(check(2, one, 1, KV_MAX_VALUE + 1), RK_EMALFORMED, "a value over the limit");
  static char longkey[KV_MAX_KEY + 2];
  memset(longkey, 'c', KV_MAX_KEY + 1);
  const char *lk[] = {longkey};
  cr_assert_eq(check(2, lk, 1, 0), RK_EMALFORMED, "a key over the limit");
  longkey[KV_MAX_KEY] = '\0';
  cr_assert_eq(check(2, lk, 1, 0), RK_OK, "the longest key");
}

Test(snap, garbage_and_truncation_are_refused_never_crash) {
  range_desc d = span_b_d();
  const char *keys[] = {"b", "bb", "c"};
  uint8_t *buf = NULL;
  size_t len = pack(2, keys, 3, 0, &buf);
  mr_snapshot s = snap_of(&d, buf, 0);
  cr_assert_eq(node_snap_check(&d, &s, 1), RK_EMALFORMED, "no data at all: range id 0");
  /* A cut at a field boundary is a valid shorter message (the frame's
   * checksum is what catches truncation on the wire); a cut inside one is
   * refused. */
  size_t refused = 0;
  for (size_t cut = 1; cut < len; cut++) {
    s.len = (uint32_t)cut;
    int rc = node_snap_check(&d, &s, 1);
    cr_assert(rc == RK_OK || rc == RK_EMALFORMED, "cut at %zu: %d", cut, rc);
    refused += rc == RK_EMALFORMED;
  }
  cr_assert_geq(refused, len - 1 - 3, "only the 3 cuts between fields may pass");
  uint8_t junk[64];
  for (size_t i = 0; i < sizeof junk; i++) junk[i] = (uint8_t)(i * 37 + 11);
  s = snap_of(&d, junk, sizeof junk);
  (void)node_snap_check(&d, &s, 1); /* only: no crash */
  free(buf);
}

Test(snap, a_hostile_index_or_another_configuration_is_refused) {
  range_desc d = span_b_d();
  const char *keys[] = {"b"};
  uint8_t *buf = NULL;
  size_t len = pack(2, keys, 1, 0, &buf);
  mr_snapshot s = snap_of(&d, buf, len);
  cr_assert_eq(node_snap_check(&d, &s, 1), RK_OK);
  s.index = UINT64_MAX; /* the log could not restart after it */
  cr_assert_eq(node_snap_check(&d, &s, 1), RK_EMALFORMED);
  s.index = UINT64_MAX - 1;
  cr_assert_eq(node_snap_check(&d, &s, 1), RK_EMALFORMED);
  s.index = 0;
  cr_assert_eq(node_snap_check(&d, &s, 1), RK_EMALFORMED);
  s = snap_of(&d, buf, len);
  s.conf.r[2].id = mr_host_replica_id(9, 1); /* a node that holds no replica */
  cr_assert_eq(node_snap_check(&d, &s, 1), RK_EMALFORMED);
  s = snap_of(&d, buf, len);
  s.conf.n = 2;
  cr_assert_eq(node_snap_check(&d, &s, 1), RK_EMALFORMED);
  s = snap_of(&d, buf, len);
  s.conf.r[0].flags = MR_LEARNER;
  cr_assert_eq(node_snap_check(&d, &s, 1), RK_EMALFORMED);
  free(buf);
}

/* ---- streams: node_snap_on_chunk / node_snap_assemble ---------------------------- */

/* Files in the node's staging directory. */
static int staged_files(const node *n) {
  char path[256];
  snprintf(path, sizeof path, "%s/snap", n->cfg.data_dir);
  DIR *d = opendir(path);
  cr_assert_not_null(d);
  int count = 0;
  for (struct dirent *e; (e = readdir(d)) != NULL;) count += e->d_name[0] != '.';
  closedir(d);
  return count;
}

/* A node with range 1 (not held), range 2 = ["b", "d") and range 3 =
 * ["d", no end) (held), a state
 * store and a staging directory in a temporary data dir: enough for the
 * receiving side of a stream. */
static node *rx_node(void) {
  node *n = calloc(1, sizeof *n);
  cr_assert_not_null(n);
  static char dir[64];
  const char *t = getenv("TMPDIR");
  snprintf(dir, sizeof dir, "%s/rk-snaprx-XXXXXX", t && t[0] ? t : "/tmp");
  cr_assert_not_null(mkdtemp(dir));
  n->cfg.data_dir = dir;
  char path[128];
  snprintf(path, sizeof path, "%s/state", dir);
  eng_state_options so;
  eng_state_options_default(&so);
  so.dir = path;
  so.cluster_id = 5;
  so.node_id = 1;
  so.block_cache_bytes = 8u << 20;
  char msg[256] = "";
  cr_assert_eq(eng_state_open(&so, &n->state, msg, sizeof msg), RK_OK, "%s", msg);
  rk_rand_seed(&n->rng, 1);
  cr_assert_eq(node_snap_staging_open(n), RK_OK);
  n->snap_max_bytes = 1u << 16;
  n->table.n = 3;
  n->ranges = calloc(3, sizeof *n->ranges);
  cr_assert_not_null(n->ranges);
  n->ranges[0].desc.id = 1;
  n->ranges[1].desc = span_b_d();
  n->ranges[1].local = 1;
  n->ranges[2].desc = span_b_d(); /* range 3 = ["d", no end) */
  n->ranges[2].desc.id = 3;
  n->ranges[2].desc.start[0] = 'd';
  n->ranges[2].desc.end_len = 0;
  n->ranges[2].local = 1;
  return n;
}

static void rx_node_free(node *n) {
  node_snap_free(n);
  cr_assert_eq(n->rx_bytes, 0, "staging accounting returns to zero");
  cr_assert_eq(staged_files(n), 0, "and every staged file is gone");
  eng_state_close(n->state);
  node_test_rmtree(n->cfg.data_dir);
  free(n->ranges);
  free(n);
}

/* Feeds peer `from` one chunk whose image is img. */
static int feed_image(node *n, uint32_t from, uint64_t stream, uint64_t range, uint32_t seq,
                      uint8_t *img, size_t ilen) {
  Rangekv__SnapChunk c;
  rangekv__snap_chunk__init(&c);
  c.stream = stream;
  c.range_id = range;
  c.seq = seq;
  c.image.data = img;
  c.image.len = ilen;
  size_t len = rangekv__snap_chunk__get_packed_size(&c);
  uint8_t *buf = malloc(len);
  cr_assert_not_null(buf);
  rangekv__snap_chunk__pack(&c, buf);
  int rc = node_snap_on_chunk(n, from, buf, len);
  free(buf);
  return rc;
}

/* Feeds peer `from` one chunk holding keys (value "v" each). */
static int feed(node *n, uint32_t from, uint64_t stream, uint64_t range, uint32_t seq,
                const char *const *keys, size_t nkeys) {
  uint8_t *img = NULL;
  size_t ilen = pack(range, keys, nkeys, 0, &img);
  int rc = feed_image(n, from, stream, range, seq, img, ilen);
  free(img);
  return rc;
}

/* An InstallSnapshot at index 10 for `group` whose data is the stream
 * descriptor; assembles it as if from peer `from`; on RK_OK sets *file to
 * the staged file its data now names (0: none). */
static int assemble_at(node *n, uint32_t from, uint64_t group, uint64_t range_in_data,
                       uint64_t stream, uint32_t chunks, uint64_t index, uint64_t *file);
static int assemble(node *n, uint32_t from, uint64_t group, uint64_t range_in_data, uint64_t stream,
                    uint32_t chunks, uint64_t *file) {
  return assemble_at(n, from, group, range_in_data, stream, chunks, 10, file);
}

static int assemble_at(node *n, uint32_t from, uint64_t group, uint64_t range_in_data,
                       uint64_t stream, uint32_t chunks, uint64_t index, uint64_t *file) {
  Rangekv__RangeSnapshot d;
  rangekv__range_snapshot__init(&d);
  d.range_id = range_in_data;
  d.stream = stream;
  d.chunks = chunks;
  mr_snapshot *s = calloc(1, sizeof *s);
  cr_assert_not_null(s);
  s->len = (uint32_t)rangekv__range_snapshot__get_packed_size(&d);
  s->data = malloc(s->len ? s->len : 1);
  rangekv__range_snapshot__pack(&d, s->data);
  s->index = index;
  s->term = 2;
  node_desc_conf(&n->ranges[1].desc, &s->conf);
  mr_host_gmsg gm;
  memset(&gm, 0, sizeof gm);
  gm.group = group;
  gm.msg.type = MR_MSG_SNAP;
  gm.msg.snap = s;
  int rc = node_snap_assemble(n, from, &gm);
  if (rc == RK_OK && file != NULL) {
    Rangekv__RangeSnapshot *got = rangekv__range_snapshot__unpack(NULL, s->len, s->data);
    cr_assert_not_null(got);
    cr_assert_eq(got->range_id, group);
    cr_assert_eq(got->n_kvs, 0, "the data names the file, it does not hold the image");
    *file = got->stream;
    rangekv__range_snapshot__free_unpacked(got, NULL);
  }
  mr_msg_free(&gm.msg);
  return rc;
}

/* Ingests staged file `file` (sealed: completed here, as the installer
 * would) into the node's state store and returns its user keys,
 * space-separated, in out. */
static const char *ingest_keys(node *n, uint64_t file, char *out, size_t cap) {
  uint32_t si = 0;
  while (si < n->nsealed && n->sealed[si].file != file) si++;
  cr_assert_lt(si, n->nsealed, "file %llx is not sealed", (unsigned long long)file);
  if (n->sealed[si].sst != NULL) {
    cr_assert_eq(eng_state_sst_finish(n->sealed[si].sst), RK_OK);
    eng_state_sst_free(n->sealed[si].sst);
    n->sealed[si].sst = NULL;
  }
  char path[256];
  snprintf(path, sizeof path, "%s/snap/%016llx.sst", n->cfg.data_dir, (unsigned long long)file);
  cr_assert_eq(eng_state_ingest(n->state, path, NULL, 0, NULL, 0), RK_OK);
  return node_test_user_keys(n->state, 0, out, cap);
}

static void put_key(node *n, const char *k) {
  eng_state_batch *b = eng_state_batch_new(n->state);
  eng_state_batch_put(b, k, strlen(k), "old", 3);
  cr_assert_eq(eng_state_commit(n->state, b), RK_OK);
  eng_state_batch_free(b);
}

static const char *const K1[] = {"b1", "b2"}, *const K2[] = {"b3"}, *const K3[] = {"c", "c1"};

Test(snap_stream, chunks_in_order_become_a_staged_file_that_replaces_the_span) {
  node *n = rx_node();
  put_key(n, "a");
  put_key(n, "b");
  put_key(n, "b9");
  put_key(n, "d");
  cr_assert_eq(feed(n, 3, 77, 2, 0, K1, 2), RK_OK);
  cr_assert_eq(feed(n, 3, 77, 2, 1, K2, 1), RK_OK);
  cr_assert_eq(feed(n, 3, 77, 2, 2, K3, 2), RK_OK);
  cr_assert_gt(n->rx_bytes, 0);
  cr_assert_eq(staged_files(n), 1, "staged on disk as it came");
  uint64_t file = 0;
  cr_assert_eq(assemble(n, 3, 2, 2, 77, 3, &file), RK_OK);
  cr_assert_neq(file, 0);
  cr_assert_eq(n->nsealed, 1);
  cr_assert_eq(n->sealed[0].file, file);
  cr_assert_eq(n->sealed[0].index, 10);
  cr_assert_eq(n->sealed[0].keys, 5);
  cr_assert_gt(n->rx_bytes, 0, "a sealed file still counts against the staging limit");
  cr_assert_eq(n->snapshots_dropped, 0);
  char got[256];
  cr_assert_str_eq(ingest_keys(n, file, got, sizeof got), "a b1 b2 b3 c c1 d",
                   "the image replaced the range's keys, and only those");
  /* The same stream cannot be used twice. */
  cr_assert_eq(assemble(n, 3, 2, 2, 77, 3, NULL), RK_EUNAVAILABLE);
  /* No core took it (there is none here): the next settle removes it. */
  node_snap_settle(n);
  cr_assert_eq(n->nsealed, 0);
  cr_assert_eq(n->rx_bytes, 0);
  cr_assert_eq(staged_files(n), 0);
  rx_node_free(n);
}

Test(snap_stream, staged_snapshots_waiting_for_an_install_are_bounded) {
  node *n = rx_node();
  for (uint32_t i = 0; i < NODE_SNAP_MAX_SEALED; i++) {
    cr_assert_eq(feed(n, 3, 100 + i, 2, 0, K1, 2), RK_OK);
    cr_assert_eq(assemble(n, 3, 2, 2, 100 + i, 1, NULL), RK_OK);
  }
  cr_assert_eq(feed(n, 3, 200, 2, 0, K1, 2), RK_OK);
  cr_assert_eq(assemble(n, 3, 2, 2, 200, 1, NULL), RK_EUNAVAILABLE);
  cr_assert_eq(n->nsealed, NODE_SNAP_MAX_SEALED);
  cr_assert_eq(staged_files(n), NODE_SNAP_MAX_SEALED, "the refused stream's file is gone");
  rx_node_free(n);
}

Test(snap_stream, a_restart_removes_what_a_previous_run_staged) {
  node *n = rx_node();
  cr_assert_eq(feed(n, 3, 77, 2, 0, K1, 2), RK_OK);
  cr_assert_eq(feed(n, 4, 78, 2, 0, K1, 2), RK_OK);
  cr_assert_eq(assemble(n, 4, 2, 2, 78, 1, NULL), RK_OK);
  cr_assert_eq(staged_files(n), 2);
  /* As if the process died here: the files stay, the memory does not. */
  eng_state_sst_free(n->rx[3].sst);
  eng_state_sst_free(n->sealed[0].sst);
  free(n->rx[3].last_key);
  memset(n->rx, 0, sizeof n->rx);
  n->nsealed = 0;
  n->rx_bytes = 0;
  cr_assert_eq(node_snap_staging_open(n), RK_OK);
  cr_assert_eq(staged_files(n), 0);
  rx_node_free(n);
}

Test(snap_stream, a_gap_a_repeat_or_another_stream_drops_it) {
  node *n = rx_node();
  cr_assert_eq(feed(n, 3, 77, 2, 0, K1, 2), RK_OK);
  cr_assert_eq(feed(n, 3, 77, 2, 2, K3, 2), RK_OK); /* seq 1 lost */
  cr_assert_eq(assemble(n, 3, 2, 2, 77, 2, NULL), RK_EUNAVAILABLE);
  cr_assert_eq(feed(n, 3, 78, 2, 0, K1, 2), RK_OK);
  cr_assert_eq(feed(n, 3, 78, 2, 0, K1, 2), RK_OK); /* seq 0 again: a new stream */
  cr_assert_eq(feed(n, 3, 78, 2, 1, K2, 1), RK_OK);
  cr_assert_eq(feed(n, 3, 78, 2, 1, K2, 1), RK_OK); /* a repeat */
  cr_assert_eq(assemble(n, 3, 2, 2, 78, 2, NULL), RK_EUNAVAILABLE);
  cr_assert_eq(feed(n, 3, 79, 2, 0, K1, 2), RK_OK);
  cr_assert_eq(feed(n, 3, 80, 2, 1, K2, 1), RK_OK); /* another stream's piece */
  cr_assert_eq(assemble(n, 3, 2, 2, 79, 2, NULL), RK_EUNAVAILABLE);
  cr_assert_eq(feed(n, 3, 81, 2, 0, K1, 2), RK_OK);
  cr_assert_eq(feed(n, 3, 81, 2, 1, K2, 1), RK_OK);
  cr_assert_eq(assemble(n, 3, 2, 2, 81, 3, NULL), RK_EUNAVAILABLE, "a chunk short");
  cr_assert_eq(feed(n, 3, 82, 2, 0, K1, 2), RK_OK);
  cr_assert_eq(assemble(n, 4, 2, 2, 82, 1, NULL), RK_EUNAVAILABLE, "staged from another peer");
  cr_assert_gt(n->snapshots_dropped, 0);
  rx_node_free(n);
}

Test(snap_stream, bad_descriptors_and_ranges_not_held_are_refused) {
  node *n = rx_node();
  cr_assert_eq(feed(n, 3, 77, 2, 0, K1, 2), RK_OK);
  cr_assert_eq(assemble(n, 3, 2, 1, 77, 1, NULL), RK_EMALFORMED, "descriptor of another range");
  cr_assert_eq(assemble(n, 3, 2, 2, 0, 1, NULL), RK_EMALFORMED, "no stream named");
  cr_assert_eq(feed(n, 3, 90, 1, 0, K1, 2), RK_OK); /* range 1 is not held here */
  cr_assert_eq(n->rx_bytes, 0, "its chunk was dropped");
  cr_assert_eq(assemble(n, 3, 1, 1, 90, 1, NULL), RK_EMALFORMED, "not range 1's configuration");
  uint8_t junk[5] = {0xff, 0xff, 0xff, 0xff, 0xff};
  cr_assert_eq(node_snap_on_chunk(n, 3, junk, sizeof junk), RK_EMALFORMED);
  cr_assert_eq(node_snap_on_chunk(n, 0, junk, sizeof junk), RK_EMALFORMED, "no such peer");
  cr_assert_eq(node_snap_on_chunk(n, NODE_MAX_NODES + 1, junk, 1), RK_EMALFORMED);
  rx_node_free(n);
}

Test(snap_stream, an_empty_range_needs_no_chunk) {
  node *n = rx_node();
  uint64_t file = 99;
  cr_assert_eq(assemble(n, 3, 2, 2, 55, 0, &file), RK_OK);
  cr_assert_eq(file, 0, "nothing staged");
  cr_assert_eq(n->nsealed, 0);
  rx_node_free(n);
}

Test(snap_stream, a_bad_chunk_is_refused_as_it_comes) {
  node *n = rx_node();
  cr_assert_eq(feed(n, 3, 77, 2, 0, K3, 2), RK_OK);
  cr_assert_eq(feed(n, 3, 77, 2, 1, K1, 2), RK_EMALFORMED, "keys out of order across chunks");
  cr_assert_eq(n->rx_bytes, 0, "the stream is dropped");
  cr_assert_eq(assemble(n, 3, 2, 2, 77, 2, NULL), RK_EUNAVAILABLE);
  static const char *const dup[] = {"c1"};
  cr_assert_eq(feed(n, 3, 78, 2, 0, K3, 2), RK_OK);
  cr_assert_eq(feed(n, 3, 78, 2, 1, dup, 1), RK_EMALFORMED, "a key repeated across chunks");
  static const char *const outside[] = {"d"};
  cr_assert_eq(feed(n, 3, 79, 2, 0, outside, 1), RK_EMALFORMED, "a key outside the range");
  cr_assert_eq(staged_files(n), 0, "dropped streams leave no file");
  cr_assert_eq(feed(n, 3, 80, 2, 0, K1, 2), RK_OK);
  cr_assert_eq(feed(n, 3, 80, 2, 1, K2, 1), RK_OK);
  uint64_t file = 0;
  cr_assert_eq(assemble(n, 3, 2, 2, 80, 2, &file), RK_OK, "a good stream after bad ones");
  char got[256];
  cr_assert_str_eq(ingest_keys(n, file, got, sizeof got), "b1 b2 b3");
  rx_node_free(n);
}

/* A chunk image bigger than any sender makes (three largest values, each
 * valid alone) is refused before it is unpacked: protobuf-c would unpack
 * tiny pairs into ~40 times their size. So is a descriptor too big to be
 * one. */
Test(snap_stream, a_chunk_or_descriptor_bigger_than_any_sender_makes_is_refused) {
  node *n = rx_node();
  n->snap_max_bytes = 1ull << 30;
  static uint8_t big[KV_MAX_VALUE];
  static const char *const keys[] = {"b1", "b2", "b3"};
  Rangekv__KeyValue kvs[3], *kvp[3];
  for (int i = 0; i < 3; i++) {
    rangekv__key_value__init(&kvs[i]);
    kvs[i].key.data = (uint8_t *)(uintptr_t)keys[i];
    kvs[i].key.len = 2;
    kvs[i].value.data = big;
    kvs[i].value.len = sizeof big;
    kvp[i] = &kvs[i];
  }
  Rangekv__RangeSnapshot rs;
  rangekv__range_snapshot__init(&rs);
  rs.range_id = 2;
  rs.n_kvs = 3;
  rs.kvs = kvp;
  size_t ilen = rangekv__range_snapshot__get_packed_size(&rs);
  cr_assert_gt(ilen, NODE_SNAP_CHUNK_MAX_IMAGE);
  uint8_t *img = malloc(ilen);
  cr_assert_not_null(img);
  rangekv__range_snapshot__pack(&rs, img);
  cr_assert_eq(feed_image(n, 3, 77, 2, 0, img, ilen), RK_EMALFORMED);
  cr_assert_eq(n->rx_bytes, 0);
  cr_assert_eq(staged_files(n), 0);
  free(img);
  /* A descriptor that parses (an unknown field pads it) but is over
   * NODE_SNAP_DESC_MAX. */
  rs.n_kvs = 0;
  rs.stream = 77;
  rs.chunks = 1;
  mr_snapshot *s = calloc(1, sizeof *s);
  cr_assert_not_null(s);
  s->data = calloc(1, 256);
  cr_assert_not_null(s->data);
  size_t dlen = rangekv__range_snapshot__pack(&rs, s->data);
  s->data[dlen] = 15 << 3 | 2; /* field 15, length-delimited: unknown, kept aside */
  s->data[dlen + 1] = NODE_SNAP_DESC_MAX;
  s->len = (uint32_t)(dlen + 2 + NODE_SNAP_DESC_MAX);
  s->index = 10;
  s->term = 2;
  node_desc_conf(&n->ranges[1].desc, &s->conf);
  mr_host_gmsg gm;
  memset(&gm, 0, sizeof gm);
  gm.group = 2;
  gm.msg.type = MR_MSG_SNAP;
  gm.msg.snap = s;
  cr_assert_eq(node_snap_assemble(n, 3, &gm), RK_EMALFORMED);
  free(s->data);
  free(s);
  rx_node_free(n);
}

Test(snap_stream, size_limits_and_reconnects_drop_staging) {
  node *n = rx_node();
  n->snap_max_bytes = 30; /* K1's chunk (20 bytes) fits, a second one does not */
  cr_assert_eq(feed(n, 3, 77, 2, 0, K1, 2), RK_OK);
  cr_assert_eq(feed(n, 3, 77, 2, 1, K3, 2), RK_OK);
  cr_assert_eq(n->rx_bytes, 0, "over the limit: dropped");
  cr_assert_eq(assemble(n, 3, 2, 2, 77, 2, NULL), RK_EUNAVAILABLE);
  n->snap_max_bytes = 1u << 16;
  cr_assert_eq(feed(n, 3, 78, 2, 0, K1, 2), RK_OK);
  node_snap_peer_up(n, 3);
  cr_assert_eq(n->rx_bytes, 0, "a new connection breaks the stream");
  cr_assert_eq(feed(n, 3, 78, 2, 1, K2, 1), RK_OK);
  cr_assert_eq(assemble(n, 3, 2, 2, 78, 2, NULL), RK_EUNAVAILABLE);
  rx_node_free(n);
}

Test(snap_stream, staging_idle_for_ten_seconds_is_dropped_with_its_file) {
  node *n = rx_node();
  cr_assert_eq(feed(n, 3, 77, 2, 0, K1, 2), RK_OK);
  cr_assert_eq(feed(n, 4, 78, 2, 0, K1, 2), RK_OK);
  node_snap_tick(n);
  cr_assert_eq(staged_files(n), 2, "both streams are fresh");
  /* Peer 3's last chunk came just over the idle limit ago; peer 4's just within. */
  n->rx[3].last_ms -= NODE_SNAP_IDLE_MS + 1;
  n->rx[4].last_ms -= NODE_SNAP_IDLE_MS - 1000;
  node_snap_tick(n);
  cr_assert_eq(n->rx[3].stream, 0, "peer 3's stream is dropped");
  cr_assert_eq(n->rx[4].stream, 78, "peer 4's stays");
  cr_assert_eq(staged_files(n), 1);
  cr_assert_eq(n->snapshots_dropped, 1);
  cr_assert_eq(feed(n, 3, 77, 2, 1, K2, 1), RK_OK);
  cr_assert_eq(assemble(n, 3, 2, 2, 77, 2, NULL), RK_EUNAVAILABLE, "the rest cannot complete it");
  rx_node_free(n);
}

Test(snap_stream, the_last_range_s_file_replaces_everything_up_to_the_largest_key) {
  node *n = rx_node();
  static char top[KV_MAX_KEY + 1]; /* the largest key there can be */
  memset(top, 0xFF, KV_MAX_KEY);
  put_key(n, "c");
  put_key(n, "d");
  put_key(n, "zz");
  put_key(n, top);
  const char *const keys[] = {"e"};
  cr_assert_eq(feed(n, 3, 77, 3, 0, keys, 1), RK_OK);
  /* The descriptor and configuration the assemble helper uses are range
   * 2's: the same replicas as range 3's. */
  uint64_t file = 0;
  cr_assert_eq(assemble(n, 3, 3, 3, 77, 1, &file), RK_OK);
  char got[KV_MAX_KEY + 64];
  cr_assert_str_eq(ingest_keys(n, file, got, sizeof got), "c e",
                   "d, zz and the largest key are gone; c (range 2) stays");
  node_snap_settle(n);
  rx_node_free(n);
}

/* An abort frame: peer `from` dropped stream `stream` (SnapChunk.abort). */
static int feed_abort(node *n, uint32_t from, uint64_t stream) {
  Rangekv__SnapChunk c;
  rangekv__snap_chunk__init(&c);
  c.stream = stream;
  c.range_id = 2;
  c.abort = 1;
  c.reason = (char *)(uintptr_t) "over the node's staging limit (two snapshots)";
  uint8_t buf[256];
  size_t len = rangekv__snap_chunk__get_packed_size(&c);
  rangekv__snap_chunk__pack(&c, buf);
  return node_snap_on_chunk(n, from, buf, len);
}

Test(snap_stream, a_receiver_that_drops_a_stream_says_so_once_and_the_sender_stops) {
  node *n = rx_node();
  /* Receiving: a stream dropped here is named to its sender once, not for
   * every later chunk of it. */
  cr_assert_eq(feed(n, 3, 77, 2, 0, K1, 2), RK_OK);
  cr_assert_eq(feed(n, 3, 77, 2, 2, K3, 2), RK_OK); /* seq 1 lost: dropped */
  cr_assert_eq(n->rx_aborted[3], 77);
  cr_assert_eq(n->snap_aborts_sent, 1, "the sender is told");
  uint64_t drops = n->snapshots_dropped;
  cr_assert_eq(feed(n, 3, 77, 2, 3, K3, 2), RK_OK);
  cr_assert_eq(feed(n, 3, 77, 2, 4, K3, 2), RK_OK);
  cr_assert_eq(n->snap_aborts_sent, 1, "later chunks of it: refused, not told again");
  cr_assert_eq(n->snapshots_dropped, drops, "nothing staged, nothing more dropped");
  static const char *const outside[] = {"d"};
  cr_assert_eq(feed(n, 3, 78, 2, 0, outside, 1), RK_EMALFORMED);
  cr_assert_eq(n->snap_aborts_sent, 2, "a malformed stream is refused aloud too");
  /* A stray piece of another stream leaves the one being staged alone. */
  cr_assert_eq(feed(n, 3, 90, 2, 0, K1, 2), RK_OK);
  cr_assert_eq(feed(n, 3, 91, 2, 5, K3, 2), RK_OK);
  cr_assert_eq(n->snap_aborts_sent, 3, "its sender is told");
  cr_assert_eq(n->rx[3].stream, 90);
  cr_assert_eq(feed(n, 3, 90, 2, 1, K2, 1), RK_OK);
  cr_assert_eq(assemble(n, 3, 2, 2, 90, 2, NULL), RK_OK, "the staged stream completes");
  /* Sending: the peer's abort ends our stream to it, and only that one. */
  n->tx[0] = (node_snap_tx){.stream = 55, .group = 2, .to_node = 3};
  n->tx[1] = (node_snap_tx){.stream = 56, .group = 3, .to_node = 4};
  n->ntx = 2;
  drops = n->snapshots_dropped;
  cr_assert_eq(feed_abort(n, 4, 55), RK_OK); /* another peer names our stream to 3 */
  cr_assert_eq(feed_abort(n, 3, 99), RK_OK); /* a stream we do not send */
  cr_assert_eq(n->ntx, 2);
  cr_assert_eq(n->ranges[1].snap_refused_until_ms, 0);
  cr_assert_eq(feed_abort(n, 3, 55), RK_OK);
  cr_assert_eq(n->ntx, 1);
  cr_assert_eq(n->tx[0].stream, 56, "the stream to node 4 goes on");
  cr_assert_gt(n->ranges[1].snap_refused_until_ms, node_now_ms(),
               "range 2 waits a moment before it streams again");
  cr_assert_eq(n->ranges[1].snap_abort_backoff_ms, NODE_SNAP_ABORT_BACKOFF_MS);
  cr_assert_eq(n->ranges[2].snap_refused_until_ms, 0);
  /* A receiver that keeps refusing: the wait doubles, up to the cap. */
  for (int k = 0; k < 10; k++) {
    n->tx[n->ntx++] = (node_snap_tx){.stream = 60 + (uint64_t)k, .group = 2, .to_node = 3};
    cr_assert_eq(feed_abort(n, 3, 60 + (uint64_t)k), RK_OK);
  }
  cr_assert_eq(n->ranges[1].snap_abort_backoff_ms, NODE_SNAP_TOO_BIG_BACKOFF_MS);
  cr_assert_geq(n->ranges[1].snap_refused_until_ms,
                node_now_ms() + NODE_SNAP_TOO_BIG_BACKOFF_MS - 1000);
  cr_assert_eq(n->snapshots_dropped, drops + 11, "one per stream ended");
  /* An abort for a stream already sent whole: the core is told, and the
   * range backs off as well. */
  n->ntx = 0; /* stream 56 to node 4 went out whole */
  n->ranges[2].snap_abort_backoff_ms = 0;
  n->tx_done[5].peer = 4; /* any slot of the kept ones */
  n->tx_done[5].stream = 56;
  n->tx_done[5].group = 3;
  n->tx_done[6].peer = 3; /* the same stream id to another peer: not it */
  n->tx_done[6].stream = 56;
  n->tx_done[6].group = 2;
  cr_assert_eq(feed_abort(n, 4, 56), RK_OK);
  cr_assert_eq(n->tx_done[5].stream, 0);
  cr_assert_eq(n->tx_done[6].stream, 56);
  cr_assert_eq(n->ranges[2].snap_abort_backoff_ms, NODE_SNAP_ABORT_BACKOFF_MS);
  cr_assert_eq(n->snapshots_dropped, drops + 12);
  n->ntx = 0;
  rx_node_free(n);
}

/* Streams to one peer go one at a time in array order. A stream built
 * first but bound to its peer later (its group had a write in flight) must
 * queue behind one already streaming to that peer: starting in its middle
 * would make the peer drop it. */
Test(snap_stream, a_stream_bound_later_queues_behind_the_one_streaming) {
  node *n = rx_node();
  n->tx[0] = (node_snap_tx){.stream = 55, .group = 2, .index = 40}; /* built, not yet bound */
  n->tx[1] = (node_snap_tx){.stream = 56, .group = 3, .index = 41, .to_node = 3, .seq = 7};
  n->ntx = 2;
  mr_snapshot snap = {.index = 40, .term = 2};
  mr_host_gmsg gm;
  memset(&gm, 0, sizeof gm);
  gm.group = 2;
  gm.msg.type = MR_MSG_SNAP;
  gm.msg.from = mr_host_replica_id(1, 1);
  gm.msg.to = mr_host_replica_id(3, 1);
  gm.msg.term = 2;
  gm.msg.snap = &snap;
  node_snap_send(n, 3, &gm);
  cr_assert_eq(n->ntx, 2);
  cr_assert_eq(n->tx[0].stream, 56, "the stream already going to node 3 stays first");
  cr_assert_eq(n->tx[1].stream, 55, "the one bound now queues behind it");
  cr_assert_eq(n->tx[1].to_node, 3);
  cr_assert_eq(n->tx[1].msg_term, 2);
  n->ntx = 0;
  rx_node_free(n);
}

/* Steps into host h's group 2 an InstallSnapshot from replica `from` at
 * `term` for index, naming staged file `file` as node_snap_assemble would. */
static void step_snapshot(mr_host *h, uint32_t from_node, uint32_t to_node, uint64_t term,
                          uint64_t index, uint64_t file) {
  Rangekv__RangeSnapshot d;
  rangekv__range_snapshot__init(&d);
  d.range_id = 2;
  d.stream = file;
  d.chunks = 1;
  uint8_t data[64];
  size_t len = rangekv__range_snapshot__get_packed_size(&d);
  rangekv__range_snapshot__pack(&d, data);
  mr_snapshot snap = {.index = index, .term = term, .len = (uint32_t)len, .data = data};
  mr_raft_conf(mr_host_group_raft(h, 2), &snap.conf);
  mr_host_gmsg gm;
  memset(&gm, 0, sizeof gm);
  gm.group = 2;
  gm.msg.type = MR_MSG_SNAP;
  gm.msg.from = mr_host_replica_id(from_node, 1);
  gm.msg.to = mr_host_replica_id(to_node, 1);
  gm.msg.term = term;
  gm.msg.snap = &snap;
  mr_host_frame f = {.from_node = from_node, .to_node = to_node, .msgs = &gm, .n_msgs = 1};
  mr_host_receive(h, &f);
}

static int is_sealed(const node *n, uint64_t file) {
  for (uint32_t i = 0; i < n->nsealed; i++)
    if (n->sealed[i].file == file) return 1;
  return 0;
}

Test(snap_stream, settle_keeps_exactly_the_snapshot_the_core_holds) {
  mr_hm_cluster *c = NULL;
  mr_hm_opts o = {.seed = 7};
  cr_assert_eq(mr_hm_new(&c, 3, 2, &o), RK_OK);
  cr_assert_eq(mr_hm_elect_all(c), RK_OK);
  uint32_t lead = mr_hm_leader_node(c, 2);
  uint32_t fol = mr_hm_replica_node(c, 2, 0) != lead ? mr_hm_replica_node(c, 2, 0)
                                                     : mr_hm_replica_node(c, 2, 1);
  uint64_t term = mr_raft_term(mr_host_group_raft(c->node[lead].h, 2));
  node *n = rx_node();
  n->host = c->node[fol].h; /* node `fol`, receiving range 2's snapshots */
  /* Two streams sealed at index 10; the core takes the first. */
  uint64_t f1 = 0, f2 = 0, f3 = 0, f4 = 0;
  cr_assert_eq(feed(n, lead, 70, 2, 0, K1, 2), RK_OK);
  cr_assert_eq(assemble_at(n, lead, 2, 2, 70, 1, 10, &f1), RK_OK);
  step_snapshot(n->host, lead, fol, term, 10, f1);
  cr_assert_eq(feed(n, lead, 71, 2, 0, K1, 2), RK_OK);
  cr_assert_eq(assemble_at(n, lead, 2, 2, 71, 1, 10, &f2), RK_OK);
  step_snapshot(n->host, lead, fol, term, 10, f2); /* refused: at its commit now */
  node_snap_settle(n);
  cr_assert(is_sealed(n, f1), "the core's pending snapshot stays");
  cr_assert(!is_sealed(n, f2), "the one it refused goes");
  /* One from a stale term is refused too. */
  cr_assert_eq(feed(n, lead, 72, 2, 0, K1, 2), RK_OK);
  cr_assert_eq(assemble_at(n, lead, 2, 2, 72, 1, 30, &f3), RK_OK);
  step_snapshot(n->host, lead, fol, term - 1, 30, f3);
  node_snap_settle(n);
  cr_assert(is_sealed(n, f1) && !is_sealed(n, f3));
  /* A newer one replaces the pending one: the older file goes. */
  cr_assert_eq(feed(n, lead, 73, 2, 0, K1, 2), RK_OK);
  cr_assert_eq(assemble_at(n, lead, 2, 2, 73, 1, 20, &f4), RK_OK);
  step_snapshot(n->host, lead, fol, term, 20, f4);
  node_snap_settle(n);
  cr_assert(!is_sealed(n, f1), "replaced: never to be installed");
  cr_assert(is_sealed(n, f4));
  cr_assert_eq(n->nsealed, 1);
  cr_assert_eq(staged_files(n), 1);
  n->host = NULL;
  rx_node_free(n);
  mr_hm_free(c);
}
