#include "devices/virtio/rng.h"

#include <sys/random.h>

#include <cerrno>

namespace snapvm::virtio {

void Rng::queue_notify(size_t index) {
  if (transport_ == nullptr || index != 0) return;
  Virtqueue& q = transport_->queue(0);
  const GuestMemory& mem = transport_->memory();
  bool any = false;
  while (auto chain = q.pop(mem)) {
    uint32_t written = 0;
    for (const auto& b : chain->writable) {
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
    q.push_used(mem, chain->head, written);
    any = true;
  }
  if (any || !q.error().empty()) transport_->signal_used(0);
}

}  // namespace snapvm::virtio
