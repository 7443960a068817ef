// A device's saved state: its virtio-mmio transport (when it has one) and an
// opaque device-specific record the device itself encodes (vsock connection
// table, block request state, UART registers...).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/byte_codec.h"

namespace snapvm::state {

struct VirtqueueState {
  uint16_t max_size = 0;
  uint16_t size = 0;
  bool ready = false;
  uint64_t desc_addr = 0;
  uint64_t avail_addr = 0;
  uint64_t used_addr = 0;
  uint16_t last_avail_idx = 0;
  uint16_t next_used_idx = 0;
  bool operator==(const VirtqueueState&) const = default;
};

struct VirtioMmioState {
  uint32_t device_id = 0;  // virtio device type (2 block, 4 rng, 19 vsock, ...)
  uint64_t device_features = 0;
  uint64_t driver_features = 0;
  uint32_t device_features_sel = 0;
  uint32_t driver_features_sel = 0;
  uint32_t queue_sel = 0;
  uint32_t status = 0;
  uint32_t interrupt_status = 0;
  uint32_t config_generation = 0;
  std::vector<VirtqueueState> queues;
  bool operator==(const VirtioMmioState&) const = default;
};

struct DeviceState {
  uint32_t slot = 0;  // index into MachineShape::devices
  std::optional<VirtioMmioState> transport;
  std::vector<uint8_t> device_specific;
  bool operator==(const DeviceState&) const = default;
};

void encode(ByteWriter& w, const DeviceState& d);
DeviceState decode_device_state(ByteReader& r);

}  // namespace snapvm::state
