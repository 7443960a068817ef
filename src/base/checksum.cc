#include "base/checksum.h"

// Inlined: no library to link (static test-host builds), and the hash of a
// 4 KiB page is cheaper without a call through the shared library.
#define XXH_INLINE_ALL
#include <xxhash.h>

#include <cstring>

namespace snapvm {

uint64_t checksum64(std::span<const uint8_t> data) { return XXH3_64bits(data.data(), data.size()); }

bool is_all_zero(std::span<const uint8_t> data) {
  const uint8_t* p = data.data();
  const uint8_t* end = p + data.size();
  for (; p < end; p += 64) {
    uint64_t w[8];
    std::memcpy(w, p, sizeof w);  // alignment-safe; compiles to vector loads
    if ((w[0] | w[1] | w[2] | w[3] | w[4] | w[5] | w[6] | w[7]) != 0) return false;
  }
  return true;
}

}  // namespace snapvm
