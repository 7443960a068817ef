// Guest physical memory as the VMM sees it. Every address a guest hands us
// (descriptor tables, buffers, rings) goes through translate(), which checks
// that the whole range lies in one region; nothing here trusts the guest.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

namespace snapvm {

class GuestMemory {
 public:
  struct Region {
    uint64_t gpa = 0;
    std::span<uint8_t> host;
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
    return true;
  }

  const std::vector<Region>& regions() const { return regions_; }

 private:
  std::vector<Region> regions_;
};

}  // namespace snapvm
