/* libFuzzer target: frame decoding and handshake payload decoding.
 * Build: scripts/fuzz.sh (clang -fsanitize=fuzzer,address,undefined).
 * The input is treated as a byte stream of frames, decoded the way a
 * connection's read loop does; a crash, leak or sanitizer report fails. */
#include "common/rk_err.h"
#include "transport/frame.h"
#include "transport/handshake.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  size_t off = 0;
  while (off < size) {
    tp_frame f;
    size_t used = 0;
    int rc = tp_frame_decode(data + off, size - off, 4096, &f, &used);
    if (rc != RK_OK) break;
    if (used == 0 || used > size - off) __builtin_trap();
    if (f.type == TP_FRAME_HANDSHAKE) {
      tp_handshake hs;
      if (tp_handshake_decode(f.payload, f.length, &hs) == RK_OK)
        (void)tp_handshake_verify(&hs, 1, 0);
    }
    off += used;
  }
  return 0;
}
