// Move-only owner of an mmap'd range.
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>

#include "base/result.h"

namespace snapvm {

class MappedRegion {
 public:
  MappedRegion() = default;
  MappedRegion(void* addr, size_t size) : addr_(addr), size_(size) {}
  MappedRegion(MappedRegion&& o) noexcept
      : addr_(std::exchange(o.addr_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  MappedRegion& operator=(MappedRegion&& o) noexcept {
    if (this != &o) {
      reset();
      addr_ = std::exchange(o.addr_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }
  MappedRegion(const MappedRegion&) = delete;
  MappedRegion& operator=(const MappedRegion&) = delete;
  ~MappedRegion() { reset(); }

  // Private anonymous memory, zero-filled, reserved lazily (guest RAM style).
  static Result<MappedRegion> anonymous(size_t size);
  // Anonymous memory backed by transparent huge pages where the kernel
  // allows: first touch of fresh memory costs a fault per page, and 2 MiB
  // pages make 512 times fewer of them. Size 0 gives an empty region.
  static Result<MappedRegion> anonymous_huge(size_t size);
  // Anonymous memory allocated up front in one call (MAP_POPULATE): a
  // buffer about to be filled costs no page fault per page. Size 0 gives
  // an empty region.
  static Result<MappedRegion> anonymous_populated(size_t size);

  uint8_t* data() const { return static_cast<uint8_t*>(addr_); }
  size_t size() const { return size_; }
  std::span<uint8_t> span() const { return {data(), size_}; }
  void reset() {
    if (addr_ != nullptr) ::munmap(addr_, size_);
    addr_ = nullptr;
    size_ = 0;
  }

 private:
  void* addr_ = nullptr;
  size_t size_ = 0;
};

}  // namespace snapvm
