// Where guest RAM lives in a snapshot file, and the per-page checksum tables
// that let `verify` check every byte while restore reads none of them.
//
// File layout:
//   [0, 128)            header
//   [64 KiB, ...)        RAM regions, each at a 64 KiB-aligned offset, sparse
//   [4 KiB-aligned ...)  per-region page checksum tables (u64 XXH3 per page)
//   [4 KiB-aligned ...)  metadata area (sections), to the end of the file
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "base/result.h"
#include "snapshot/format.h"
#include "snapshot/section.h"

namespace snapvm {

struct RamRegion {
  uint64_t gpa = 0;          // guest physical address
  uint64_t size = 0;         // bytes, a multiple of the page size
  uint64_t file_offset = 0;  // where its bytes start in the file
  uint64_t table_offset = 0; // its page checksum table (size/page_size u64s)
  uint64_t table_checksum = 0;
  uint64_t data_bytes = 0;   // bytes of non-zero pages (the rest are holes)

  uint64_t pages() const { return size / format::kPageSize; }
  uint64_t table_bytes() const { return pages() * 8; }
  uint64_t file_end() const { return file_offset + size; }
};

// A guest memory range to be laid out: address and size.
struct RamExtent {
  uint64_t gpa = 0;
  uint64_t size = 0;
};

struct RamPlan {
  std::vector<RamRegion> regions;
  uint64_t metadata_offset = 0;  // first byte after the tables, block aligned
};

// Lays out fresh regions: RAM from 64 KiB, then tables, then metadata.
Result<RamPlan> plan_ram_layout(std::span<const RamExtent> extents);

// Re-plans the tables and metadata of an existing layout (diff snapshots keep
// the base's RAM offsets so that the cloned bytes stay where they are).
RamPlan replan_tables(std::vector<RamRegion> regions);

Section encode_ram_layout(std::span<const RamRegion> regions);

// Decodes and checks the layout against itself and the file: alignment,
// bounds, no overlap in the file or in guest physical space.
Result<std::vector<RamRegion>> decode_ram_layout(const Section& s, uint64_t metadata_offset);

uint64_t zero_page_checksum();

inline uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

}  // namespace snapvm
