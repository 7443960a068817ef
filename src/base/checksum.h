// Checksums and zero detection for snapshot data.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace snapvm {

// XXH3-64: fast enough to hash RAM at memory speed, and a 64-bit result makes
// an undetected corruption practically impossible.
uint64_t checksum64(std::span<const uint8_t> data);

// Whether stored checksums are compared. True in every program but the
// snapshot-reader fuzzer, which links its own definition (its inputs are
// mutated files whose checksums never match, and a fuzzer stopped at the
// first check never reaches the decoders behind it). A link-time choice rather
// than a macro, so the fuzzer and the unit tests share one sanitizer build and
// no build of the snapshot code can ignore checksums.
bool checksums_enforced();

// True if every byte is zero. Reads 64 bytes per step with an early exit, so a
// data page costs a few loads and a zero page runs at memory bandwidth (the
// seed compared byte by byte, W9). `data.size()` must be a multiple of 64.
bool is_all_zero(std::span<const uint8_t> data);

}  // namespace snapvm
