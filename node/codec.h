/* node/codec.h — mr_host_frame <-> rangekv.RaftBatch (prefix node_codec_).
 *
 * Encoding is a straight field copy. Decoding treats the bytes as hostile:
 * unknown message types, a snapshot outside an InstallSnapshot (or one
 * without), entries out of order, conf-change entries (ranges' membership
 * is static), and configurations over MR_MAX_REPLICAS are refused with
 * RK_EMALFORMED before anything reaches a Raft core. A
 * snapshot's data is opaque here: the node checks it against the range
 * (node_snap_check) before the core sees it.
 */
#ifndef NODE_CODEC_H
#define NODE_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "multiraft/host.h"

/* Encodes f into a malloc'd buffer (*out, *len); RK_OK or RK_ENOMEM. */
int node_codec_encode(const mr_host_frame *f, uint8_t **out, size_t *len);

/* A decoded frame: f points into arrays owned here. */
typedef struct node_codec_frame {
  mr_host_frame f;
  mr_host_gmsg *msgs;
  mr_host_hb *hbs;
  mr_host_hb *hb_resps;
} node_codec_frame;

/* RK_OK or RK_EMALFORMED (with nothing to free). */
int node_codec_decode(const uint8_t *buf, size_t len, node_codec_frame *out);
void node_codec_frame_free(node_codec_frame *fr);

#endif
