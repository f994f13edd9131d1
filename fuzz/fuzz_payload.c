/* libFuzzer target: protobuf payload decoding, past the frame checksum (which
 * a fuzzer cannot forge, so fuzz_frame alone never reaches the decoders). */
#include "common/rk_err.h"
#include "transport/handshake.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  tp_handshake hs;
  if (tp_handshake_decode(data, size, &hs) == RK_OK) (void)tp_handshake_verify(&hs, 1, 2);
  return 0;
}
