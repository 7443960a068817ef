// The fixed 128-byte header at offset 0 of every snapshot file.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "base/result.h"
#include "snapshot/format.h"

namespace snapvm {

struct Header {
  uint16_t major = format::kMajor;
  uint16_t minor = format::kMinor;
  format::Arch arch{};  // set by the writer; decoded and checked by the reader
  uint64_t flags = 0;
  uint32_t page_size = format::kPageSize;
  uint64_t metadata_offset = 0;
  uint64_t metadata_length = 0;
  uint64_t metadata_checksum = 0;  // XXH3 of the whole metadata area
  uint64_t file_size = 0;          // a shorter file is truncated

  uint64_t writer_kind() const { return flags & format::kFlagWriterMask; }
};

std::vector<uint8_t> encode_header(const Header& h);

// Validates magic, version, arch, flags, checksum and internal consistency.
Result<Header> decode_header(std::span<const uint8_t> bytes);

}  // namespace snapvm
