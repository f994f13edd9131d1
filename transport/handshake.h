/* transport/handshake.h — the first frame on every connection.
 *
 * Both sides send a TP_FRAME_HANDSHAKE carrying rangekv.Handshake (cluster id,
 * node id — 0 for clients — and protocol version). A node closes the
 * connection, with a log line, when the peer belongs to another cluster,
 * claims a node id other than the one expected for that address, or speaks a
 * protocol version it does not know.
 */
#ifndef RK_TRANSPORT_HANDSHAKE_H
#define RK_TRANSPORT_HANDSHAKE_H

#include <stddef.h>
#include <stdint.h>

#define TP_PROTOCOL_VERSION 1u

#define TP_ADDR_MAX 64 /* "host:port" */

typedef struct tp_handshake {
  uint64_t cluster_id; /* 0 from a client: "any" */
  uint64_t node_id;    /* 0 for clients */
  uint32_t protocol_version;
  char client_addr[TP_ADDR_MAX]; /* nodes: where clients reach them ("" if none) */
} tp_handshake;

/* Encodes a whole handshake frame (header + payload) into buf[0..cap).
 * Returns RK_OK with *len set, or RK_ETOOLARGE if cap is too small. */
int tp_handshake_encode(const tp_handshake *hs, uint8_t *buf, size_t cap, size_t *len);

/* Decodes a handshake payload (the frame's payload bytes). RK_EMALFORMED if
 * it is not a valid rangekv.Handshake or its client_addr does not fit. */
int tp_handshake_decode(const uint8_t *payload, size_t len, tp_handshake *out);

/* Checks a received handshake: RK_EWRONGCLUSTER (a cluster_id of 0 is
 * accepted only from clients, node_id 0), RK_EWRONGNODE (when
 * expected_node != 0 and differs), RK_EUNSUPPORTED (protocol version). */
int tp_handshake_verify(const tp_handshake *got, uint64_t cluster_id, uint64_t expected_node);

#endif
