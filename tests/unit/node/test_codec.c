/* node/codec: mr_host_frame <-> RaftBatch protobuf, and hostile bytes. */
#include "common/rk_err.h"
#include "common/rk_rand.h"
#include "node/codec.h"

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
  cr_assert_eq(node_codec_decode(buf, len, &d), RK_EMALFORMED, "snapshots are not accepted yet");
  free(buf);
  rk_entry_vec_free(&m.msg.entries);
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
