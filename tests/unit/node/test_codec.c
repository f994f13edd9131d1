/* node/codec: mr_host_frame <-> RaftBatch protobuf, and hostile bytes. */
#include "common/rk_err.h"
#include "common/rk_rand.h"
#include "node/codec.h"

#include "rangekv.pb-c.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

static void push_entry(rk_entry_vec *ev, uint64_t index, uint64_t term, const char *data) {
  rk_entry e = {.index = index,
                .term = term,
                .type = RK_ENTRY_NORMAL,
                .len = (uint32_t)strlen(data),
                .data = (uint8_t *)(uintptr_t)data};
  cr_assert_eq(rk_entry_vec_push(ev, &e), RK_OK);
}

Test(codec, frame_round_trip) {
  mr_host_gmsg msgs[2];
  memset(msgs, 0, sizeof msgs);
  msgs[0].group = 7;
  msgs[0].msg = (mr_msg){.type = MR_MSG_APP,
                         .from = 1ull << 32 | 1,
                         .to = 2ull << 32 | 1,
                         .term = 3,
                         .log_term = 2,
                         .index = 10,
                         .commit = 9};
  rk_entry_vec_init(&msgs[0].msg.entries);
  push_entry(&msgs[0].msg.entries, 11, 3, "put a");
  push_entry(&msgs[0].msg.entries, 12, 3, "");
  msgs[1].group = 8;
  msgs[1].msg = (mr_msg){.type = MR_MSG_APP_RESP,
                         .reject = 1,
                         .reject_hint = 4,
                         .term = 3,
                         .from = 1ull << 32 | 1,
                         .to = 2ull << 32 | 1,
                         .index = 6,
                         .ctx = 99};
  mr_host_hb hbs[2] = {
      {.group = 1, .from = 5, .to = 6, .term = 2, .commit = 40, .ctx = 3, .compact = 37},
      {.group = 2, .from = 5, .to = 6, .term = 2, .commit = 41, .quiesce = 1}};
  mr_host_hb resp = {.group = 9, .from = 6, .to = 5, .term = 4, .quiesce = 1};
  mr_host_frame f = {.from_node = 1,
                     .to_node = 2,
                     .msgs = msgs,
                     .n_msgs = 2,
                     .hbs = hbs,
                     .n_hbs = 2,
                     .hb_resps = &resp,
                     .n_hb_resps = 1};
  uint8_t *buf = NULL;
  size_t len = 0;
  cr_assert_eq(node_codec_encode(&f, &buf, &len), RK_OK);
  node_codec_frame d;
  cr_assert_eq(node_codec_decode(buf, len, &d), RK_OK);
  cr_assert_eq(d.f.from_node, 1);
  cr_assert_eq(d.f.to_node, 2);
  cr_assert_eq(d.f.n_msgs, 2);
  const mr_msg *m = &d.f.msgs[0].msg;
  cr_assert_eq(d.f.msgs[0].group, 7);
  cr_assert_eq(m->type, MR_MSG_APP);
  cr_assert_eq(m->term, 3);
  cr_assert_eq(m->log_term, 2);
  cr_assert_eq(m->index, 10);
  cr_assert_eq(m->commit, 9);
  cr_assert_eq(m->entries.len, 2);
  cr_assert_eq(m->entries.v[0].index, 11);
  cr_assert_eq(memcmp(m->entries.v[0].data, "put a", 5), 0);
  cr_assert_eq(m->entries.v[1].len, 0);
  const mr_msg *m2 = &d.f.msgs[1].msg;
  cr_assert(m2->reject);
  cr_assert_eq(m2->reject_hint, 4);
  cr_assert_eq(m2->ctx, 99);
  cr_assert_eq(d.f.n_hbs, 2);
  cr_assert_eq(d.f.hbs[0].commit, 40);
  cr_assert_eq(d.f.hbs[0].ctx, 3);
  cr_assert_eq(d.f.hbs[0].compact, 37);
  cr_assert(d.f.hbs[1].quiesce);
  cr_assert_eq(d.f.n_hb_resps, 1);
  cr_assert_eq(d.f.hb_resps[0].group, 9);
  cr_assert(d.f.hb_resps[0].quiesce);
  node_codec_frame_free(&d);
  free(buf);
  rk_entry_vec_free(&msgs[0].msg.entries);
}

Test(codec, empty_frame_is_the_node_heartbeat) {
  mr_host_frame f = {.from_node = 3, .to_node = 1};
  uint8_t *buf = NULL;
  size_t len = 0;
  cr_assert_eq(node_codec_encode(&f, &buf, &len), RK_OK);
  cr_assert_lt(len, 8, "an idle node's heartbeat frame is a few bytes: %zu", len);
  node_codec_frame d;
  cr_assert_eq(node_codec_decode(buf, len, &d), RK_OK);
  cr_assert_eq(d.f.from_node, 3);
  cr_assert_eq(d.f.n_msgs + d.f.n_hbs + d.f.n_hb_resps, 0);
  node_codec_frame_free(&d);
  free(buf);
}

/* n elements of field `field` of a RaftBatch, each `elem` (whose length
 * is below 128): the wire form written into a new buffer. */
static uint8_t *repeated_field(uint32_t field, const uint8_t *elem, size_t elen, size_t n,
                               size_t *len) {
  size_t each = 2 + elen;
  uint8_t *buf = malloc(n * each);
  cr_assert_not_null(buf);
  for (size_t i = 0; i < n; i++) {
    buf[i * each] = (uint8_t)(field << 3 | 2); /* length-delimited */
    buf[i * each + 1] = (uint8_t)elen;
    if (elen) memcpy(buf + i * each + 2, elem, elen);
  }
  *len = n * each;
  return buf;
}

Test(codec, a_batch_of_tiny_elements_is_refused_before_it_unpacks_huge) {
  /* 200,000 empty heartbeats: 400 KB on the wire, ~19 MB unpacked. */
  size_t len = 0;
  uint8_t *buf = repeated_field(4 /* hbs */, NULL, 0, 200000, &len);
  node_codec_frame d;
  cr_assert_eq(node_codec_decode(buf, len, &d), RK_EMALFORMED);
  free(buf);
  /* The same count of real heartbeats (group, from, to, term, commit) fits. */
  mr_host_hb *hbs = calloc(200000, sizeof *hbs);
  cr_assert_not_null(hbs);
  for (uint64_t i = 0; i < 200000; i++)
    hbs[i] = (mr_host_hb){
        .group = i + 1, .from = 1ull << 32 | 1, .to = 2ull << 32 | 1, .term = 1, .commit = 0};
  mr_host_frame f = {.from_node = 1, .to_node = 2, .hbs = hbs, .n_hbs = 200000};
  cr_assert_eq(node_codec_encode(&f, &buf, &len), RK_OK);
  cr_assert_eq(node_codec_decode(buf, len, &d), RK_OK);
  cr_assert_eq(d.f.n_hbs, 200000);
  node_codec_frame_free(&d);
  free(buf);
  free(hbs);
  /* Messages with the fewest fields a real one has, each with an empty
   * entry: fit too. */
  enum { NM = 20000 };
  mr_host_gmsg *msgs = calloc(NM, sizeof *msgs);
  cr_assert_not_null(msgs);
  for (uint64_t i = 0; i < NM; i++) {
    msgs[i].group = i + 1;
    msgs[i].msg =
        (mr_msg){.type = MR_MSG_APP, .from = 1ull << 32 | 1, .to = 2ull << 32 | 1, .term = 1};
    rk_entry_vec_init(&msgs[i].msg.entries);
    push_entry(&msgs[i].msg.entries, 1, 1, "");
  }
  f = (mr_host_frame){.from_node = 1, .to_node = 2, .msgs = msgs, .n_msgs = NM};
  cr_assert_eq(node_codec_encode(&f, &buf, &len), RK_OK);
  cr_assert_eq(node_codec_decode(buf, len, &d), RK_OK);
  cr_assert_eq(d.f.n_msgs, NM);
  node_codec_frame_free(&d);
  free(buf);
  for (size_t i = 0; i < NM; i++) rk_entry_vec_free(&msgs[i].msg.entries);
  free(msgs);
}

Test(codec, unknown_types_snapshots_and_gaps_are_refused) {
  mr_host_gmsg m;
  memset(&m, 0, sizeof m);
  m.group = 1;
  m.msg.type = MR_MSG_APP;
  rk_entry_vec_init(&m.msg.entries);
  push_entry(&m.msg.entries, 5, 1, "a");
  push_entry(&m.msg.entries, 7, 1, "b"); /* a gap */
  mr_host_frame f = {.from_node = 1, .to_node = 2, .msgs = &m, .n_msgs = 1};
  uint8_t *buf = NULL;
  size_t len = 0;
  cr_assert_eq(node_codec_encode(&f, &buf, &len), RK_OK);
  node_codec_frame d;
  cr_assert_eq(node_codec_decode(buf, len, &d), RK_EMALFORMED);
  free(buf);
  rk_entry_vec_clear(&m.msg.entries);
  m.msg.type = 77;
  cr_assert_eq(node_codec_encode(&f, &buf, &len), RK_OK);
  cr_assert_eq(node_codec_decode(buf, len, &d), RK_EMALFORMED);
  free(buf);
  m.msg.type = MR_MSG_SNAP;
  cr_assert_eq(node_codec_encode(&f, &buf, &len), RK_OK);
  cr_assert_eq(node_codec_decode(buf, len, &d), RK_EMALFORMED, "an InstallSnapshot without one");
  free(buf);
  uint8_t data[3] = {1, 2, 3};
  mr_snapshot s = {.index = 9, .term = 2, .len = sizeof data, .data = data};
  m.msg.type = MR_MSG_APP;
  m.msg.snap = &s;
  cr_assert_eq(node_codec_encode(&f, &buf, &len), RK_OK);
  cr_assert_eq(node_codec_decode(buf, len, &d), RK_EMALFORMED, "a snapshot outside one");
  free(buf);
  /* A conf-change entry: ranges' membership is static, no node sends one. */
  m.msg.snap = NULL;
  uint8_t cc[MR_CC_MAX_BYTES];
  mr_conf_change change = {.n = 1};
  change.changes[0] = (mr_cc_single){.op = MR_CC_ADD_VOTER, .id = 5};
  size_t cclen = mr_cc_encode(&change, cc, sizeof cc);
  cr_assert_gt(cclen, 0);
  rk_entry e = {
      .index = 3, .term = 2, .type = RK_ENTRY_CONF_CHANGE, .len = (uint32_t)cclen, .data = cc};
  cr_assert_eq(rk_entry_vec_push(&m.msg.entries, &e), RK_OK);
  cr_assert_eq(node_codec_encode(&f, &buf, &len), RK_OK);
  cr_assert_eq(node_codec_decode(buf, len, &d), RK_EMALFORMED, "a conf-change entry");
  free(buf);
  rk_entry_vec_free(&m.msg.entries);
}

Test(codec, snapshot_round_trip) {
  uint8_t data[300];
  for (size_t i = 0; i < sizeof data; i++) data[i] = (uint8_t)(i * 7);
  mr_snapshot s = {.index = 1234, .term = 7, .len = sizeof data, .data = data};
  s.conf.n = 3;
  s.conf.auto_leave = 1;
  for (uint8_t k = 0; k < 3; k++)
    s.conf.r[k] = (mr_conf_replica){(uint64_t)(k + 1) << 32 | 1, k == 2 ? MR_LEARNER : MR_VOTER_IN};
  mr_host_gmsg m;
  memset(&m, 0, sizeof m);
  m.group = 5;
  m.msg = (mr_msg){.type = MR_MSG_SNAP, .from = 1ull << 32 | 1, .to = 2ull << 32 | 1, .term = 8};
  m.msg.snap = &s;
  mr_host_frame f = {.from_node = 1, .to_node = 2, .msgs = &m, .n_msgs = 1};
  uint8_t *buf = NULL;
  size_t len = 0;
  cr_assert_eq(node_codec_encode(&f, &buf, &len), RK_OK);
  node_codec_frame d;
  cr_assert_eq(node_codec_decode(buf, len, &d), RK_OK);
  cr_assert_eq(d.f.n_msgs, 1);
  const mr_snapshot *g = d.f.msgs[0].msg.snap;
  cr_assert_not_null(g);
  cr_assert_eq(d.f.msgs[0].msg.type, MR_MSG_SNAP);
  cr_assert_eq(g->index, 1234);
  cr_assert_eq(g->term, 7);
  cr_assert_eq(g->len, sizeof data);
  cr_assert_neq(g->data, data, "the decoded snapshot owns a copy");
  cr_assert_arr_eq(g->data, data, sizeof data);
  cr_assert_eq(g->conf.n, 3);
  cr_assert_eq(g->conf.auto_leave, 1);
  for (uint8_t k = 0; k < 3; k++) {
    cr_assert_eq(g->conf.r[k].id, s.conf.r[k].id);
    cr_assert_eq(g->conf.r[k].flags, s.conf.r[k].flags);
  }
  node_codec_frame_free(&d);
  free(buf);
}

/* A configuration that would not fit mr_conf, written straight in protobuf. */
Test(codec, snapshot_with_too_many_replicas_is_refused) {
  Rangekv__ConfReplica reps[MR_MAX_REPLICAS + 1], *rp[MR_MAX_REPLICAS + 1];
  for (size_t k = 0; k <= MR_MAX_REPLICAS; k++) {
    rangekv__conf_replica__init(&reps[k]);
    reps[k].id = k + 1;
    reps[k].flags = MR_VOTER_IN;
    rp[k] = &reps[k];
  }
  Rangekv__Conf conf;
  rangekv__conf__init(&conf);
  conf.n_replicas = MR_MAX_REPLICAS + 1;
  conf.replicas = rp;
  Rangekv__Snapshot snap;
  rangekv__snapshot__init(&snap);
  snap.index = 3;
  snap.term = 1;
  snap.conf = &conf;
  Rangekv__RaftMsg msg, *mp = &msg;
  rangekv__raft_msg__init(&msg);
  msg.group = 1;
  msg.type = MR_MSG_SNAP;
  msg.snap = &snap;
  Rangekv__RaftBatch b;
  rangekv__raft_batch__init(&b);
  b.from_node = 1;
  b.to_node = 2;
  b.n_msgs = 1;
  b.msgs = &mp;
  uint8_t buf[1024];
  size_t len = rangekv__raft_batch__pack(&b, buf);
  node_codec_frame d;
  cr_assert_eq(node_codec_decode(buf, len, &d), RK_EMALFORMED);
  conf.n_replicas = MR_MAX_REPLICAS;
  reps[0].flags = 300; /* over the flag byte */
  len = rangekv__raft_batch__pack(&b, buf);
  cr_assert_eq(node_codec_decode(buf, len, &d), RK_EMALFORMED);
  reps[0].flags = MR_VOTER_IN;
  conf.n_replicas = 3;
  len = rangekv__raft_batch__pack(&b, buf);
  cr_assert_eq(node_codec_decode(buf, len, &d), RK_OK, "the same message with 3 replicas");
  node_codec_frame_free(&d);
}

Test(codec, garbage_never_crashes) {
  rk_rand r;
  rk_rand_seed(&r, 77);
  uint8_t buf[256];
  for (int i = 0; i < 20000; i++) {
    size_t len = rk_rand_below(&r, sizeof buf);
    for (size_t k = 0; k < len; k++) buf[k] = (uint8_t)rk_rand_u64(&r);
    node_codec_frame d;
    if (node_codec_decode(buf, len, &d) == RK_OK) node_codec_frame_free(&d);
  }
}
