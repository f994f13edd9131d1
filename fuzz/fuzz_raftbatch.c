/* libFuzzer target: node-to-node RaftBatch decoding (node/codec.h) — the
 * bytes a peer puts in a RAFT_BATCH frame, past the frame checksum. Anything
 * decoded must be freeable and re-encodable. */
#include "common/rk_err.h"
#include "node/codec.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  node_codec_frame fr;
  if (node_codec_decode(data, size, &fr) != RK_OK) return 0;
  uint8_t *out = NULL;
  size_t len = 0;
  if (node_codec_encode(&fr.f, &out, &len) == RK_OK) free(out);
  node_codec_frame_free(&fr);
  return 0;
}
