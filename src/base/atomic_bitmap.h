// A bitmap many threads set bits in without locks, and one thread drains:
// the pages of guest memory the VMM itself wrote (KVM logs only the guest's
// own writes).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <span>

namespace snapvm {

class AtomicBitmap {
 public:
  explicit AtomicBitmap(uint64_t bits) : bits_(bits), words_((bits + 63) / 64), data_(new std::atomic<uint64_t>[words_]) {
    for (uint64_t i = 0; i < words_; ++i) data_[i].store(0, std::memory_order_relaxed);
  }

  uint64_t bits() const { return bits_; }

  // Sets bits [first, first + count), clipped to the bitmap.
  void set_range(uint64_t first, uint64_t count) {
    if (first >= bits_) return;
    uint64_t last = std::min(first + count, bits_);
    while (first < last) {
      uint64_t word = first / 64, bit = first % 64;
      uint64_t n = std::min<uint64_t>(64 - bit, last - first);
      uint64_t mask = (n == 64 ? ~0ull : ((1ull << n) - 1)) << bit;
      data_[word].fetch_or(mask, std::memory_order_release);
      first += n;
    }
  }

  // ORs every set bit into `out` (at least words() long) and clears it here.
  void drain_into(std::span<uint64_t> out) {
    for (uint64_t i = 0; i < words_ && i < out.size(); ++i) out[i] |= data_[i].exchange(0, std::memory_order_acq_rel);
  }

  uint64_t words() const { return words_; }

 private:
  uint64_t bits_;
  uint64_t words_;
  std::unique_ptr<std::atomic<uint64_t>[]> data_;
};

}  // namespace snapvm
