// Checksums and zero detection for snapshot data.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace snapvm {

// XXH3-64: fast enough to hash RAM at memory speed, and a 64-bit result makes
// an undetected corruption practically impossible.
uint64_t checksum64(std::span<const uint8_t> data);

// Fuzz builds accept any stored checksum, so that mutated inputs reach the
// decoders behind the checks (the convention libFuzzer users share).
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
inline constexpr bool kChecksumsEnforced = false;
#else
inline constexpr bool kChecksumsEnforced = true;
#endif

// True if every byte is zero. Reads 64 bytes per step with an early exit, so a
// data page costs a few loads and a zero page runs at memory bandwidth (the
// seed compared byte by byte, W9). `data.size()` must be a multiple of 64.
bool is_all_zero(std::span<const uint8_t> data);

}  // namespace snapvm
