// Guest RAM kept outside the snapshot file: Firecracker's two-file layout,
// where the snapshot holds the machine state and a separate memory file
// holds guest RAM raw, region after region (sparse where zero), as
// userfaultfd page servers read it. The section is required, so a reader
// that does not know it refuses the file instead of seeing a VM without RAM.
#pragma once

#include <cstdint>
#include <vector>

#include "base/byte_codec.h"

namespace snapvm::state {

struct ExternalRamRegion {
  uint64_t gpa = 0;
  uint64_t size = 0;
  uint64_t file_offset = 0;  // in the memory file
  bool operator==(const ExternalRamRegion&) const = default;
};

struct ExternalRam {
  std::vector<ExternalRamRegion> regions;
  uint64_t file_bytes() const;  // the memory file's size: the end of the last region
  bool operator==(const ExternalRam&) const = default;
};

// Regions back to back from offset 0, as Firecracker lays out its memory file.
ExternalRam external_ram_for(const std::vector<std::pair<uint64_t, uint64_t>>& gpa_and_size);

void encode(ByteWriter& w, const ExternalRam& e);
// Bounded and checked: page-aligned, in order, no overlap in the file.
ExternalRam decode_external_ram(ByteReader& r);

}  // namespace snapvm::state
