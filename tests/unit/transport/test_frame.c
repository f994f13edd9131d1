#include "common/rk_err.h"
#include "common/rk_rand.h"
#include "transport/frame.h"
#include "transport/handshake.h"

#include <criterion/criterion.h>
#include <string.h>

static size_t make_frame(uint8_t *buf, uint16_t type, const char *payload) {
  uint32_t len = (uint32_t)strlen(payload);
  memcpy(buf + TP_FRAME_HEADER_SIZE, payload, len);
  cr_assert_eq(tp_frame_encode_header(buf, type, buf + TP_FRAME_HEADER_SIZE, len,
                                      TP_FRAME_DEFAULT_MAX_PAYLOAD),
               RK_OK);
  return TP_FRAME_HEADER_SIZE + len;
}

Test(frame, round_trip) {
  uint8_t buf[256];
  size_t n = make_frame(buf, TP_FRAME_RAFT_BATCH, "hello raft");
  tp_frame f;
  size_t used = 0;
  cr_assert_eq(tp_frame_decode(buf, n, TP_FRAME_DEFAULT_MAX_PAYLOAD, &f, &used), RK_OK);
  cr_assert_eq(used, n);
  cr_assert_eq(f.type, TP_FRAME_RAFT_BATCH);
  cr_assert_eq(f.length, 10);
  cr_assert_eq(memcmp(f.payload, "hello raft", 10), 0);
}

Test(frame, every_short_prefix_asks_for_more) {
  uint8_t buf[256];
  size_t n = make_frame(buf, TP_FRAME_CLIENT_REQUEST, "some payload bytes");
  for (size_t cut = 0; cut < n; cut++) {
    tp_frame f;
    size_t used = 99;
    cr_assert_eq(tp_frame_decode(buf, cut, TP_FRAME_DEFAULT_MAX_PAYLOAD, &f, &used), RK_EAGAIN,
                 "cut at %zu", cut);
    if (cut >= TP_FRAME_HEADER_SIZE) cr_assert_eq(used, n, "needed size known from the header");
  }
}

Test(frame, two_frames_back_to_back) {
  uint8_t buf[256];
  size_t a = make_frame(buf, TP_FRAME_HANDSHAKE, "first");
  size_t b = make_frame(buf + a, TP_FRAME_HEARTBEAT_BATCH, "second!");
  tp_frame f;
  size_t used;
  cr_assert_eq(tp_frame_decode(buf, a + b, TP_FRAME_DEFAULT_MAX_PAYLOAD, &f, &used), RK_OK);
  cr_assert_eq(used, a);
  cr_assert_eq(tp_frame_decode(buf + a, b, TP_FRAME_DEFAULT_MAX_PAYLOAD, &f, &used), RK_OK);
  cr_assert_eq(f.type, TP_FRAME_HEARTBEAT_BATCH);
  cr_assert_eq(f.length, 7);
}

/* Every single-bit flip anywhere in a frame is detected: as corruption, an
 * oversize length, or a request for more bytes (a length that grew) — never
 * accepted as a valid frame. */
Test(frame, every_bit_flip_is_rejected) {
  uint8_t good[128];
  size_t n = make_frame(good, TP_FRAME_CLIENT_RESPONSE, "payload under test");
  for (size_t bit = 0; bit < n * 8; bit++) {
    uint8_t buf[128];
    memcpy(buf, good, n);
    buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    tp_frame f;
    size_t used;
    int rc = tp_frame_decode(buf, n, TP_FRAME_DEFAULT_MAX_PAYLOAD, &f, &used);
    cr_assert(rc == RK_ECORRUPT || rc == RK_ETOOLARGE || rc == RK_EAGAIN,
              "bit %zu accepted (rc=%s)", bit, rk_errname(rc));
  }
}

Test(frame, oversize_is_refused_both_ways) {
  uint8_t buf[64];
  memset(buf, 0, sizeof buf);
  cr_assert_eq(tp_frame_encode_header(buf, TP_FRAME_RAFT_BATCH, buf, 33, 32), RK_ETOOLARGE);
  /* A header announcing 1 GiB is refused before any payload arrives. */
  uint8_t big[TP_FRAME_HEADER_SIZE];
  cr_assert_eq(tp_frame_encode_header(big, TP_FRAME_RAFT_BATCH, buf, 0, 32), RK_OK);
  big[4] = 0;
  big[5] = 0;
  big[6] = 0;
  big[7] = 0x40;
  tp_frame f;
  size_t used;
  cr_assert_eq(tp_frame_decode(big, sizeof big, TP_FRAME_DEFAULT_MAX_PAYLOAD, &f, &used),
               RK_ETOOLARGE);
}

Test(frame, wrong_magic_rejected_at_first_byte) {
  const uint8_t http[] = "GET / HTTP/1.1\r\n";
  tp_frame f;
  size_t used;
  cr_assert_eq(tp_frame_decode(http, 1, TP_FRAME_DEFAULT_MAX_PAYLOAD, &f, &used), RK_ECORRUPT);
  cr_assert_eq(tp_frame_decode(http, sizeof http - 1, TP_FRAME_DEFAULT_MAX_PAYLOAD, &f, &used),
               RK_ECORRUPT);
}

Test(frame, unknown_type_is_malformed) {
  uint8_t buf[64];
  memset(buf, 0, sizeof buf);
  cr_assert_eq(tp_frame_encode_header(buf, 99, buf, 0, 32), RK_EINVAL);
  cr_assert_eq(tp_frame_encode_header(buf, 0, buf, 0, 32), RK_EINVAL);
}

Test(frame, random_garbage_never_crashes) {
  rk_rand r;
  rk_rand_seed(&r, 2026);
  uint8_t buf[512];
  for (int i = 0; i < 20000; i++) {
    size_t n = rk_rand_below(&r, sizeof buf);
    for (size_t j = 0; j < n; j++) buf[j] = (uint8_t)rk_rand_u64(&r);
    /* Half the time, start with a valid magic so the deeper checks run. */
    if (n >= 4 && rk_rand_chance(&r, 0.5)) memcpy(buf, "RRK1", 4);
    tp_frame f;
    size_t used;
    int rc = tp_frame_decode(buf, n, 1024, &f, &used);
    cr_assert(rc != RK_OK || used <= n);
  }
}

Test(handshake, round_trip_and_verify) {
  uint8_t buf[128];
  size_t n = 0;
  tp_handshake hs = {.cluster_id = 0xC1u,
                     .node_id = 3,
                     .protocol_version = TP_PROTOCOL_VERSION,
                     .client_addr = "127.0.0.1:8003"};
  cr_assert_eq(tp_handshake_encode(&hs, buf, sizeof buf, &n), RK_OK);
  tp_frame f;
  size_t used;
  cr_assert_eq(tp_frame_decode(buf, n, TP_FRAME_DEFAULT_MAX_PAYLOAD, &f, &used), RK_OK);
  cr_assert_eq(f.type, TP_FRAME_HANDSHAKE);
  tp_handshake got;
  cr_assert_eq(tp_handshake_decode(f.payload, f.length, &got), RK_OK);
  cr_assert_eq(got.cluster_id, 0xC1u);
  cr_assert_eq(got.node_id, 3);
  cr_assert_str_eq(got.client_addr, "127.0.0.1:8003");
  cr_assert_eq(tp_handshake_verify(&got, 0xC1u, 3), RK_OK);
  cr_assert_eq(tp_handshake_verify(&got, 0xC1u, 0), RK_OK, "0 = any node (clients)");
  cr_assert_eq(tp_handshake_verify(&got, 0xC2u, 3), RK_EWRONGCLUSTER);
  cr_assert_eq(tp_handshake_verify(&got, 0xC1u, 4), RK_EWRONGNODE);
  got.protocol_version = 9;
  cr_assert_eq(tp_handshake_verify(&got, 0xC1u, 3), RK_EUNSUPPORTED);
  /* A client may not know the cluster yet; a node must. */
  tp_handshake client = {.cluster_id = 0, .node_id = 0, .protocol_version = TP_PROTOCOL_VERSION};
  cr_assert_eq(tp_handshake_verify(&client, 0xC1u, 0), RK_OK);
  tp_handshake anon_node = {.cluster_id = 0, .node_id = 4, .protocol_version = TP_PROTOCOL_VERSION};
  cr_assert_eq(tp_handshake_verify(&anon_node, 0xC1u, 0), RK_EWRONGCLUSTER);
}

Test(handshake, malformed_payload_and_small_buffer) {
  const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
  tp_handshake got;
  cr_assert_eq(tp_handshake_decode(junk, sizeof junk, &got), RK_EMALFORMED);
  uint8_t small[8];
  size_t n;
  tp_handshake hs = {.cluster_id = 1, .node_id = 1, .protocol_version = 1};
  cr_assert_eq(tp_handshake_encode(&hs, small, sizeof small, &n), RK_ETOOLARGE);
}
