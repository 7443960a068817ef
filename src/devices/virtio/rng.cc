#include "devices/virtio/rng.h"

#include <sys/random.h>

#include <cerrno>

namespace snapvm::virtio {

void Rng::queue_notify(size_t index) {
  Transport* transport = transport_.load();
  if (transport == nullptr || index != 0) return;
  serve_queue(*transport, 0, [](const Chain& chain) {
    uint32_t written = 0;
    for (const auto& b : chain.writable) {
      uint32_t done = 0;
      while (done < b.len) {
        ssize_t n = ::getrandom(b.data + done, b.len - done, 0);
        if (n < 0) {
          if (errno == EINTR) continue;
          break;
        }
        done += static_cast<uint32_t>(n);
      }
      written += done;
      if (done < b.len) break;
    }
    return written;
  });
}

}  // namespace snapvm::virtio
