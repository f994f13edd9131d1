#include "transport/frame.h"

#include "common/rk_assert.h"
#include "common/rk_err.h"

#include <string.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>

static void put_u16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
}
static void put_u32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put_u64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint16_t get_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t get_u32(const uint8_t *p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}
static uint64_t get_u64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

/* Checksum over the first 16 header bytes, then the payload. */
static uint64_t frame_checksum(const uint8_t *hdr16, const uint8_t *payload, uint32_t len) {
  XXH3_state_t st;
  XXH3_64bits_reset(&st);
  XXH3_64bits_update(&st, hdr16, 16);
  if (len > 0) XXH3_64bits_update(&st, payload, len);
  return XXH3_64bits_digest(&st);
}

static int type_known(uint16_t type) { return type >= 1 && type <= TP_FRAME_TYPE_MAX_; }

int tp_frame_encode_header(uint8_t hdr[TP_FRAME_HEADER_SIZE], uint16_t type, const uint8_t *payload,
                           uint32_t len, uint32_t max_payload) {
  RK_ASSERT(max_payload <= TP_FRAME_MAX_PAYLOAD_CAP);
  RK_ASSERT(len == 0 || payload != NULL);
  if (!type_known(type)) return RK_EINVAL;
  if (len > max_payload) return RK_ETOOLARGE;
  put_u32(hdr, TP_FRAME_MAGIC);
  put_u32(hdr + 4, len);
  put_u16(hdr + 8, type);
  put_u16(hdr + 10, 0);
  put_u32(hdr + 12, 0);
  put_u64(hdr + 16, frame_checksum(hdr, payload, len));
  return RK_OK;
}

int tp_frame_decode(const uint8_t *buf, size_t avail, uint32_t max_payload, tp_frame *out,
                    size_t *consumed) {
  RK_ASSERT(max_payload <= TP_FRAME_MAX_PAYLOAD_CAP);
  *consumed = 0;
  /* Reject a wrong magic as soon as its bytes arrive, before waiting for a
   * whole header: a peer speaking another protocol is told at once. */
  size_t m = avail < 4 ? avail : 4;
  uint8_t magic[4];
  put_u32(magic, TP_FRAME_MAGIC);
  if (memcmp(buf, magic, m) != 0) return RK_ECORRUPT;
  if (avail < TP_FRAME_HEADER_SIZE) return RK_EAGAIN;
  uint32_t len = get_u32(buf + 4);
  uint16_t type = get_u16(buf + 8);
  if (len > max_payload) return RK_ETOOLARGE;
  size_t need = TP_FRAME_HEADER_SIZE + (size_t)len;
  if (avail < need) {
    *consumed = need;
    return RK_EAGAIN;
  }
  const uint8_t *payload = buf + TP_FRAME_HEADER_SIZE;
  if (get_u64(buf + 16) != frame_checksum(buf, payload, len)) return RK_ECORRUPT;
  /* Checked after the checksum so that a corrupt frame reports corruption. */
  if (!type_known(type) || get_u16(buf + 10) != 0 || get_u32(buf + 12) != 0) return RK_EMALFORMED;
  out->type = type;
  out->length = len;
  out->payload = payload;
  *consumed = need;
  return RK_OK;
}

const char *tp_frame_type_name(uint16_t type) {
  switch (type) {
  case TP_FRAME_HANDSHAKE: return "handshake";
  case TP_FRAME_RAFT_BATCH: return "raft-batch";
  case TP_FRAME_HEARTBEAT_BATCH: return "heartbeat-batch";
  case TP_FRAME_CLIENT_REQUEST: return "client-request";
  case TP_FRAME_CLIENT_RESPONSE: return "client-response";
  case TP_FRAME_SNAP_CHUNK: return "snap-chunk";
  default: return "unknown";
  }
}
