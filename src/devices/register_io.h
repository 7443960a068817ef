// A device register's value in an MMIO access of 1 to 8 bytes: registers
// here are at most 32 bits wide; wider reads get zeros above them, and
// narrower ones the low bytes (little-endian, as both guest arches are).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <span>

namespace snapvm {

inline uint32_t load_register(std::span<const uint8_t> data) {
  uint32_t v = 0;
  std::memcpy(&v, data.data(), std::min<size_t>(data.size(), 4));
  return v;
}

inline void store_register(std::span<uint8_t> data, uint32_t v) {
  std::memset(data.data(), 0, data.size());
  std::memcpy(data.data(), &v, std::min<size_t>(data.size(), 4));
}

}  // namespace snapvm
