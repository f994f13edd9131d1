#include "transport/handshake.h"

#include "common/rk_err.h"
#include "transport/frame.h"

#include "rangekv.pb-c.h"

#include <stdint.h>
#include <string.h>

int tp_handshake_encode(const tp_handshake *hs, uint8_t *buf, size_t cap, size_t *len) {
  Rangekv__Handshake m;
  rangekv__handshake__init(&m);
  m.cluster_id = hs->cluster_id;
  m.node_id = hs->node_id;
  m.protocol_version = hs->protocol_version;
  char addr[TP_ADDR_MAX]; /* protobuf-c's field is not const: give it our own copy */
  memcpy(addr, hs->client_addr, sizeof addr);
  addr[sizeof addr - 1] = '\0';
  m.client_addr = addr;
  size_t plen = rangekv__handshake__get_packed_size(&m);
  if (cap < TP_FRAME_HEADER_SIZE + plen) return RK_ETOOLARGE;
  uint8_t *payload = buf + TP_FRAME_HEADER_SIZE;
  size_t packed = rangekv__handshake__pack(&m, payload);
  int rc = tp_frame_encode_header(buf, TP_FRAME_HANDSHAKE, payload, (uint32_t)packed,
                                  TP_FRAME_DEFAULT_MAX_PAYLOAD);
  if (rc != RK_OK) return rc;
  *len = TP_FRAME_HEADER_SIZE + packed;
  return RK_OK;
}

int tp_handshake_decode(const uint8_t *payload, size_t len, tp_handshake *out) {
  Rangekv__Handshake *m = rangekv__handshake__unpack(NULL, len, payload);
  if (m == NULL) return RK_EMALFORMED;
  out->cluster_id = m->cluster_id;
  out->node_id = m->node_id;
  out->protocol_version = m->protocol_version;
  size_t alen = m->client_addr ? strlen(m->client_addr) : 0;
  if (alen >= sizeof out->client_addr) {
    rangekv__handshake__free_unpacked(m, NULL);
    return RK_EMALFORMED;
  }
  memcpy(out->client_addr, m->client_addr ? m->client_addr : "", alen + 1);
  rangekv__handshake__free_unpacked(m, NULL);
  return RK_OK;
}

int tp_handshake_verify(const tp_handshake *got, uint64_t cluster_id, uint64_t expected_node) {
  int client_any = got->node_id == 0 && got->cluster_id == 0;
  if (got->cluster_id != cluster_id && !client_any) return RK_EWRONGCLUSTER;
  if (expected_node != 0 && got->node_id != expected_node) return RK_EWRONGNODE;
  if (got->protocol_version != TP_PROTOCOL_VERSION) return RK_EUNSUPPORTED;
  return RK_OK;
}
