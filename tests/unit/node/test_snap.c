/* node/node_snap.c: a received snapshot's data is checked against the
 * range before any Raft core sees it (node_snap_check). */
#include "common/rk_err.h"
#include "kv/kvcmd.h"
#include "node/node_int.h"

#include <criterion/criterion.h>
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

/* A node with range 1 (not held) and range 2 = ["b", "d") (held): enough
 * for the receiving side of a stream. */
static node *rx_node(void) {
  node *n = calloc(1, sizeof *n);
  cr_assert_not_null(n);
  n->snap_max_bytes = 1u << 16;
  n->table.n = 2;
  n->ranges = calloc(2, sizeof *n->ranges);
  cr_assert_not_null(n->ranges);
  n->ranges[0].desc.id = 1;
  n->ranges[1].desc = span_b_d();
  n->ranges[1].local = 1;
  return n;
}

static void rx_node_free(node *n) {
  node_snap_free(n);
  cr_assert_eq(n->rx_bytes, 0, "staging accounting returns to zero");
  free(n->ranges);
  free(n);
}

/* Feeds peer `from` one chunk holding keys (value "v" each). */
static int feed(node *n, uint32_t from, uint64_t stream, uint64_t range, uint32_t seq,
                const char *const *keys, size_t nkeys) {
  uint8_t *img = NULL;
  size_t ilen = pack(range, keys, nkeys, 0, &img);
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
  free(img);
  return rc;
}

/* An InstallSnapshot for `group` whose data is the stream descriptor;
 * assembles it as if from peer `from`; on RK_OK checks it against range 2
 * into *check_rc and returns the number of keys in the image. */
static int assemble(node *n, uint32_t from, uint64_t group, uint64_t range_in_data, uint64_t stream,
                    uint32_t chunks, int *check_rc) {
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
  s->index = 10;
  s->term = 2;
  node_desc_conf(&n->ranges[1].desc, &s->conf);
  mr_host_gmsg gm;
  memset(&gm, 0, sizeof gm);
  gm.group = group;
  gm.msg.type = MR_MSG_SNAP;
  gm.msg.snap = s;
  int rc = node_snap_assemble(n, from, &gm);
  if (rc == RK_OK && check_rc) *check_rc = node_snap_check(&n->ranges[1].desc, s, 1);
  mr_msg_free(&gm.msg);
  return rc;
}

static const char *const K1[] = {"b1", "b2"}, *const K2[] = {"b3"}, *const K3[] = {"c", "c1"};

Test(snap_stream, chunks_in_order_become_the_image) {
  node *n = rx_node();
  cr_assert_eq(feed(n, 3, 77, 2, 0, K1, 2), RK_OK);
  cr_assert_eq(feed(n, 3, 77, 2, 1, K2, 1), RK_OK);
  cr_assert_eq(feed(n, 3, 77, 2, 2, K3, 2), RK_OK);
  cr_assert_gt(n->rx_bytes, 0);
  int check = -1;
  cr_assert_eq(assemble(n, 3, 2, 2, 77, 3, &check), RK_OK);
  cr_assert_eq(check, RK_OK, "the concatenated chunks are one clean image");
  cr_assert_eq(n->rx_bytes, 0, "the staging moved into the message");
  cr_assert_eq(n->snapshots_dropped, 0);
  /* The same stream cannot be used twice. */
  cr_assert_eq(assemble(n, 3, 2, 2, 77, 3, NULL), RK_EUNAVAILABLE);
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
  cr_assert_eq(assemble(n, 3, 1, 1, 90, 1, NULL), RK_EUNAVAILABLE);
  uint8_t junk[5] = {0xff, 0xff, 0xff, 0xff, 0xff};
  cr_assert_eq(node_snap_on_chunk(n, 3, junk, sizeof junk), RK_EMALFORMED);
  cr_assert_eq(node_snap_on_chunk(n, 0, junk, sizeof junk), RK_EMALFORMED, "no such peer");
  cr_assert_eq(node_snap_on_chunk(n, NODE_MAX_NODES + 1, junk, 1), RK_EMALFORMED);
  rx_node_free(n);
}

Test(snap_stream, an_empty_range_needs_no_chunk) {
  node *n = rx_node();
  int check = -1;
  cr_assert_eq(assemble(n, 3, 2, 2, 55, 0, &check), RK_OK);
  cr_assert_eq(check, RK_OK);
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
  cr_assert_eq(feed(n, 3, 80, 2, 0, K1, 2), RK_OK);
  cr_assert_eq(feed(n, 3, 80, 2, 1, K2, 1), RK_OK);
  int check = -1;
  cr_assert_eq(assemble(n, 3, 2, 2, 80, 2, &check), RK_OK, "a good stream after bad ones");
  cr_assert_eq(check, RK_OK);
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
