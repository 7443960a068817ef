// The shape of the machine: what must be rebuilt before state is loaded.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/byte_codec.h"

namespace snapvm::state {

struct MemoryRegionConfig {
  uint64_t gpa = 0;
  uint64_t size = 0;
  bool operator==(const MemoryRegionConfig&) const = default;
};

enum class DeviceKind : uint32_t {
  kVirtioMmio = 1,  // `virtio_type` says which virtio device
  kPl011 = 2,
  kPl031 = 3,
  kSerial8250 = 4,  // x86_64 COM1: `mmio_base` is the I/O port
  kPl061 = 5,       // arm64 GPIO with the power button
};

struct DeviceConfig {
  DeviceKind kind = DeviceKind::kVirtioMmio;
  uint32_t virtio_type = 0;
  uint64_t mmio_base = 0;
  uint64_t mmio_size = 0;
  uint32_t irq = 0;          // SPI number (arm64) or GSI
  std::string name;          // "blk0", "vsock", "console"
  std::string backend;       // host side: image path, socket path (per clone overridable)
  bool operator==(const DeviceConfig&) const = default;
};

struct MachineShape {
  uint32_t vcpu_count = 0;
  std::vector<MemoryRegionConfig> memory;
  std::vector<DeviceConfig> devices;
  std::string kernel_cmdline;
  bool operator==(const MachineShape&) const = default;
};

void encode(ByteWriter& w, const MachineShape& m);
MachineShape decode_machine_shape(ByteReader& r);

}  // namespace snapvm::state
