// Routes guest MMIO accesses to the device that owns the address.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "base/result.h"

namespace snapvm {

class MmioDevice {
 public:
  virtual ~MmioDevice() = default;
  // `offset` is relative to the device's base; `data` is 1, 2, 4 or 8 bytes.
  virtual void mmio_read(uint64_t offset, std::span<uint8_t> data) = 0;
  virtual void mmio_write(uint64_t offset, std::span<const uint8_t> data) = 0;
};

class MmioBus {
 public:
  // Devices are registered before vCPUs run and never removed after, so
  // lookups need no lock.
  Status add(uint64_t base, uint64_t size, MmioDevice* device);

  // False when no device claims the address (reads then return zeros).
  bool read(uint64_t addr, std::span<uint8_t> data) const;
  bool write(uint64_t addr, std::span<const uint8_t> data) const;

 private:
  struct Range {
    uint64_t base;
    uint64_t size;
    MmioDevice* device;
  };
  const Range* find(uint64_t addr, size_t len) const;
  std::vector<Range> ranges_;  // sorted by base, non-overlapping
};

}  // namespace snapvm
