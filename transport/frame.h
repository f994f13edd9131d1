/* transport/frame.h — the frame: the unit on every rangekv TCP connection.
 *
 * Wire format (all integers little-endian):
 *
 *   offset  size  field
 *   ------  ----  -----------------------------------------------------------
 *        0     4  magic    0x314B5252 ("RRK1" read as bytes 52 52 4B 31)
 *        4     4  length   payload bytes that follow the header
 *        8     2  type     tp_frame_type
 *       10     2  flags    must be 0 (reserved)
 *       12     4  reserved must be 0
 *       16     8  checksum XXH3-64 over bytes 0..15 then the payload
 *       24     …  payload  a protobuf-c message of the type's schema
 *                          (proto/rangekv.proto)
 *
 * The magic catches a peer speaking another protocol at the first frame; the
 * checksum covers the header so a corrupted length or type is caught too
 * (the length is bounded by max_payload BEFORE anything is allocated, so a
 * hostile length can never make us allocate).
 *
 * Decoding never trusts the peer: every failure is a typed error
 * (RK_EAGAIN: need more bytes; RK_ETOOLARGE: length over the limit;
 * RK_ECORRUPT: bad magic or checksum; RK_EMALFORMED: unknown type or nonzero
 * reserved bits). Any error but RK_EAGAIN means: close the connection.
 */
#ifndef RK_TRANSPORT_FRAME_H
#define RK_TRANSPORT_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define TP_FRAME_MAGIC       0x314B5252u
#define TP_FRAME_HEADER_SIZE 24u
/* Default payload limit; a node's is configurable but never above the cap. */
#define TP_FRAME_DEFAULT_MAX_PAYLOAD (16u << 20)
#define TP_FRAME_MAX_PAYLOAD_CAP     (256u << 20)

typedef enum tp_frame_type {
  TP_FRAME_HANDSHAKE = 1,
  TP_FRAME_RAFT_BATCH = 2,      /* Raft messages from one node to another */
  TP_FRAME_HEARTBEAT_BATCH = 3, /* coalesced heartbeats and responses */
  TP_FRAME_CLIENT_REQUEST = 4,
  TP_FRAME_CLIENT_RESPONSE = 5,
  TP_FRAME_SNAP_CHUNK = 6, /* a piece of a range snapshot, ahead of its InstallSnapshot */
  TP_FRAME_TYPE_MAX_ = 6,
} tp_frame_type;

typedef struct tp_frame {
  uint16_t type;
  uint32_t length;
  const uint8_t *payload; /* points into the decoded buffer; not owned */
} tp_frame;

/* Writes the 24-byte header for `payload` into hdr. Returns RK_OK, or
 * RK_ETOOLARGE if len exceeds max_payload, RK_EINVAL for a bad type. */
int tp_frame_encode_header(uint8_t hdr[TP_FRAME_HEADER_SIZE], uint16_t type, const uint8_t *payload,
                           uint32_t len, uint32_t max_payload);

/* Decodes one frame from the start of buf[0..avail). On RK_OK fills *out
 * (payload points into buf) and *consumed (header + payload). RK_EAGAIN
 * means the frame is not complete yet; *consumed is then the total bytes the
 * frame needs if the header was readable, else 0. */
int tp_frame_decode(const uint8_t *buf, size_t avail, uint32_t max_payload, tp_frame *out,
                    size_t *consumed);

const char *tp_frame_type_name(uint16_t type);

#endif
