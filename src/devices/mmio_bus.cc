#include "devices/mmio_bus.h"

#include <algorithm>
#include <cstring>

namespace snapvm {

Status MmioBus::add(uint64_t base, uint64_t size, MmioDevice* device) {
  for (const auto& r : ranges_) {
    if (base < r.base + r.size && r.base < base + size) {
      return make_error(ErrorCode::kInvalidArgument, "MMIO range {:#x}+{:#x} overlaps {:#x}+{:#x}", base, size, r.base,
                        r.size);
    }
  }
  ranges_.push_back({base, size, device});
  std::sort(ranges_.begin(), ranges_.end(), [](const Range& a, const Range& b) { return a.base < b.base; });
  return {};
}

const MmioBus::Range* MmioBus::find(uint64_t addr, size_t len) const {
  auto it = std::upper_bound(ranges_.begin(), ranges_.end(), addr, [](uint64_t a, const Range& r) { return a < r.base; });
  if (it == ranges_.begin()) return nullptr;
  --it;
  if (addr - it->base + len > it->size) return nullptr;
  return &*it;
}

bool MmioBus::read(uint64_t addr, std::span<uint8_t> data) const {
  const Range* r = find(addr, data.size());
  if (r == nullptr) {
    std::memset(data.data(), 0, data.size());
    return false;
  }
  r->device->mmio_read(addr - r->base, data);
  return true;
}

bool MmioBus::write(uint64_t addr, std::span<const uint8_t> data) const {
  const Range* r = find(addr, data.size());
  if (r == nullptr) return false;
  r->device->mmio_write(addr - r->base, data);
  return true;
}

}  // namespace snapvm
