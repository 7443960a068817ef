// Guest physical memory as the VMM sees it. Every address a guest hands us
// (descriptor tables, buffers, rings) goes through translate(), which checks
// that the whole range lies in one region; nothing here trusts the guest.
// When dirty tracking is on, writes the VMM makes are marked per 4 KiB page
// (KVM's log sees only the guest's own writes).
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "base/atomic_bitmap.h"

namespace snapvm {

class GuestMemory {
 public:
  static constexpr uint64_t kDirtyPageBytes = 4096;

  struct Region {
    uint64_t gpa = 0;
    std::span<uint8_t> host;
    AtomicBitmap* dirty = nullptr;  // one bit per 4 KiB page; null: not tracked
  };

  GuestMemory() = default;
  explicit GuestMemory(std::vector<Region> regions) : regions_(std::move(regions)) {}

  // Host address of [gpa, gpa + len), or nullptr unless all of it lies in
  // guest RAM. len may be 0 (then gpa must still be inside a region or at
  // its end).
  uint8_t* translate(uint64_t gpa, uint64_t len) const {
    for (const auto& r : regions_) {
      if (gpa >= r.gpa && gpa - r.gpa <= r.host.size() && len <= r.host.size() - (gpa - r.gpa)) {
        return r.host.data() + (gpa - r.gpa);
      }
    }
    return nullptr;
  }

  bool read(uint64_t gpa, void* out, uint64_t len) const {
    const uint8_t* p = translate(gpa, len);
    if (p == nullptr) return false;
    std::memcpy(out, p, len);
    return true;
  }

  bool write(uint64_t gpa, const void* in, uint64_t len) const {
    uint8_t* p = translate(gpa, len);
    if (p == nullptr) return false;
    std::memcpy(p, in, len);
    mark_written(p, len);
    return true;
  }

  // Records that the VMM wrote [host, host + len) (a host address that
  // translate() returned).
  void mark_written(const uint8_t* host, uint64_t len) const {
    if (len == 0) return;
    for (const auto& r : regions_) {
      if (r.dirty == nullptr || host < r.host.data() || host >= r.host.data() + r.host.size()) continue;
      uint64_t offset = static_cast<uint64_t>(host - r.host.data());
      uint64_t first = offset / kDirtyPageBytes;
      uint64_t last = (offset + len - 1) / kDirtyPageBytes;
      r.dirty->set_range(first, last - first + 1);
      return;
    }
  }

  const std::vector<Region>& regions() const { return regions_; }

 private:
  std::vector<Region> regions_;
};

}  // namespace snapvm
