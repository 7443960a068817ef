// A split virtqueue (virtio 1.x, section 2.6) driven by a guest we do not
// trust. Every index is checked against the queue size, every descriptor's
// buffer against guest RAM; a chain, indirect table included, holds at most
// as many buffers as the queue has entries (so a loop ends and a device may
// gather a chain into an array of kMaxQueueSize), indirect tables are taken
// only when negotiated and may not nest. A malformed queue stops working
// and reports why; it never crashes or hangs the VMM.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "devices/guest_memory.h"

namespace snapvm::virtio {

inline constexpr uint16_t kMaxQueueSize = 1024;

struct Buffer {
  uint8_t* data;  // host address, checked against guest RAM
  uint32_t len;
  bool writable;  // device-writable (the guest reads it)
};

struct Chain {
  uint16_t head = 0;
  std::vector<Buffer> readable;  // driver -> device, in order
  std::vector<Buffer> writable;  // device -> driver, in order
  uint64_t readable_bytes() const;
  uint64_t writable_bytes() const;
  // Gathers up to out.size() bytes from the readable buffers at `offset`.
  size_t read(uint64_t offset, std::span<uint8_t> out) const;
  // Scatters `in` into the writable buffers starting at `offset`.
  size_t write(uint64_t offset, std::span<const uint8_t> in) const;
};

// What the transport configures and the snapshot saves.
struct QueueConfig {
  uint16_t max_size = 256;
  uint16_t size = 0;
  bool ready = false;
  uint64_t desc_addr = 0;
  uint64_t avail_addr = 0;
  uint64_t used_addr = 0;
};

class Virtqueue {
 public:
  Virtqueue() = default;
  explicit Virtqueue(uint16_t max_size) { config_.max_size = max_size; }

  QueueConfig& config() { return config_; }
  const QueueConfig& config() const { return config_; }
  uint16_t last_avail_idx() const { return last_avail_; }
  uint16_t next_used_idx() const { return next_used_; }
  void set_indices(uint16_t last_avail, uint16_t next_used) {
    last_avail_ = last_avail;
    next_used_ = next_used;
  }
  void reset();

  // Checks size and ring placement once the driver sets QueueReady.
  bool activate(const GuestMemory& mem);
  bool ready() const { return config_.ready && error_.empty(); }

  // The next available chain, or nullopt if none (or the queue is broken).
  std::optional<Chain> pop(const GuestMemory& mem);
  // Returns a chain to the driver with `written` bytes in its writable part.
  // Its writable buffers and the used ring count as written by the VMM for
  // dirty tracking: devices write them before returning the chain.
  // With `publish` false the element is written but the driver does not
  // see it until publish_used(): a frame spread over several chains must
  // appear whole (the driver reads their count from the first and takes
  // the rest at once).
  void push_used(const GuestMemory& mem, const Chain& chain, uint32_t written, bool publish = true);
  void publish_used(const GuestMemory& mem);
  // The driver's avail index as it is now (how many buffers it has ever
  // made available), or nullopt while the queue is not usable.
  std::optional<uint16_t> driver_avail_idx(const GuestMemory& mem) const;
  // False when the driver asked not to be interrupted.
  bool should_notify(const GuestMemory& mem) const;

  // Why the queue stopped, empty while healthy.
  const std::string& error() const { return error_; }
  // Chains refused as malformed since the device was created (each also
  // stops the queue until the driver resets it).
  uint64_t malformed_chains() const { return malformed_chains_; }

  // Whether the driver negotiated VIRTIO_F_INDIRECT_DESC; until then an
  // indirect descriptor is a malformed chain.
  void set_indirect_allowed(bool allowed) { indirect_allowed_ = allowed; }

 private:
  // Stores the used index at `used` (the translated ring), marked written.
  void publish_at(const GuestMemory& mem, uint8_t* used);
  bool fail(std::string why);
  bool malformed(std::string why);
  bool walk(const GuestMemory& mem, uint16_t head, Chain& chain);

  QueueConfig config_;
  uint16_t last_avail_ = 0;
  uint16_t next_used_ = 0;
  std::string error_;
  uint64_t malformed_chains_ = 0;
  bool indirect_allowed_ = false;
};

}  // namespace snapvm::virtio
