// virtio-rng (device id 4): fills the guest's buffers from the host's
// getrandom(). Each clone restored from one snapshot draws its own bytes.
#pragma once

#include <atomic>

#include "devices/virtio/device.h"

namespace snapvm::virtio {

class Rng final : public VirtioDevice {
 public:
  uint32_t device_id() const override { return 4; }
  uint64_t device_features() const override { return 0; }
  std::vector<uint16_t> queue_max_sizes() const override { return {256}; }
  void activate(Transport& transport, uint64_t) override { transport_ = &transport; }
  void queue_notify(size_t index) override;
  void reset() override { transport_ = nullptr; }

 private:
  // Set on activate, cleared on reset (register writes) and read by the
  // notifying vCPU: the queues themselves are guarded by the transport.
  std::atomic<Transport*> transport_{nullptr};
};

}  // namespace snapvm::virtio
