// The guest writes its console: any bytes, in any pieces. The watch must
// neither crash nor grow without bound, and what it reports must be
// printable text only.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "vmm/panic_watch.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  snapvm::PanicWatch watch;
  std::string_view input(reinterpret_cast<const char*>(data), size);
  // The first byte picks the size of the console's writes.
  const size_t chunk = size > 0 ? 1 + data[0] % 17 : 1;
  for (size_t at = 0; at < input.size(); at += chunk) watch.feed(input.substr(at, chunk));
  if (auto line = watch.panic_line()) {
    if (line->size() > snapvm::PanicWatch::kMaxLine) std::abort();
    for (char c : *line) {
      if (c < 0x20 || c > 0x7e) std::abort();  // only printable ASCII reaches the VMM's stderr
    }
  }
  return 0;
}
