// virtio-blk (device id 2) over a raw image file: read, write (unless
// read-only), flush, device id; every request is checked against the end of
// the disk.
#pragma once

#include <atomic>
#include <mutex>
#include <cstdint>
#include <string>

#include "base/result.h"
#include "base/unique_fd.h"
#include "devices/virtio/device.h"
#include "state/device_state.h"

namespace snapvm::virtio {

class Block final : public VirtioDevice {
 public:
  static Result<std::unique_ptr<Block>> open(const std::string& path, bool read_only);
  // Whether a saved disk was read-only: the driver negotiated with a
  // device that offered VIRTIO_BLK_F_RO, and must get one again.
  static bool read_only_of_saved(const state::VirtioMmioState& saved);

  uint32_t device_id() const override { return 2; }
  uint64_t device_features() const override;
  std::vector<uint16_t> queue_max_sizes() const override { return {256}; }
  void read_config(uint64_t offset, std::span<uint8_t> data) const override;
  void activate(Transport& transport, uint64_t) override { transport_ = &transport; }
  void queue_notify(size_t index) override;
  void reset() override { transport_ = nullptr; }

  uint64_t sectors() const;
  // Swaps the backing image of a running device (Firecracker's PATCH
  // /drives): requests from now on go to `path`, opened as this device was
  // (read-only stays read-only), and the guest gets a configuration-change
  // interrupt to re-read the capacity. On error nothing changed.
  Status replace_backing(const std::string& path);

 private:
  Block(UniqueFd fd, uint64_t sectors, bool read_only, std::string id)
      : fd_(std::move(fd)), sectors_(sectors), read_only_(read_only), id_(std::move(id)) {}
  uint8_t handle(const Chain& chain, uint32_t* written);

  // The image and its size: read by the vCPU serving a request, swapped by
  // replace_backing() from the API thread. backing_mu_ guards them.
  mutable std::mutex backing_mu_;
  UniqueFd fd_;
  uint64_t sectors_;
  const bool read_only_;
  std::string id_;
  // Set on activate, cleared on reset (register writes) and read by the
  // notifying vCPU: the queues themselves are guarded by the transport.
  std::atomic<Transport*> transport_{nullptr};
};

}  // namespace snapvm::virtio
