// Tagged, checksummed sections: the framing of the metadata area.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "base/result.h"
#include "snapshot/format.h"

namespace snapvm {

struct Section {
  uint32_t tag = 0;
  uint32_t flags = format::kSectionRequired;
  std::vector<uint8_t> payload;
  uint64_t file_offset = 0;  // where it was read from (0 for new sections)

  bool required() const { return (flags & format::kSectionRequired) != 0; }
};

std::vector<uint8_t> encode_sections(std::span<const Section> sections);

// Parses and checks every section of a metadata area that starts at file
// offset `base_offset`. Errors name the section (tag) and its offset.
Result<std::vector<Section>> decode_sections(std::span<const uint8_t> area, uint64_t base_offset);

}  // namespace snapvm
