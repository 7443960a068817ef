#include "state/external_ram.h"

#include "snapshot/format.h"

namespace snapvm::state {

uint64_t ExternalRam::file_bytes() const { return regions.empty() ? 0 : regions.back().file_offset + regions.back().size; }

ExternalRam external_ram_for(const std::vector<std::pair<uint64_t, uint64_t>>& gpa_and_size) {
  ExternalRam e;
  uint64_t offset = 0;
  for (const auto& [gpa, size] : gpa_and_size) {
    e.regions.push_back({gpa, size, offset});
    offset += size;
  }
  return e;
}

void encode(ByteWriter& w, const ExternalRam& e) {
  w.u32(static_cast<uint32_t>(e.regions.size()));
  for (const auto& r : e.regions) {
    w.u64(r.gpa);
    w.u64(r.size);
    w.u64(r.file_offset);
  }
}

ExternalRam decode_external_ram(ByteReader& r) {
  ExternalRam e;
  uint32_t n = r.count(format::kMaxRamRegions, 24);
  uint64_t file_end = 0;
  for (uint32_t i = 0; i < n && r.ok(); ++i) {
    ExternalRamRegion region;
    region.gpa = r.u64();
    region.size = r.u64();
    region.file_offset = r.u64();
    if (!r.ok()) break;
    if (region.size == 0 || region.size > format::kMaxRegionBytes || region.size % format::kPageSize != 0 ||
        region.gpa % format::kPageSize != 0 || region.file_offset % format::kPageSize != 0) {
      r.fail(fmt::format("external RAM region {}: size and addresses must be whole pages", i));
    } else if (region.file_offset < file_end || region.file_offset > format::kMaxRegionBytes * format::kMaxRamRegions) {
      r.fail(fmt::format("external RAM region {}: overlaps the one before it in the memory file", i));
    }
    file_end = region.file_offset + region.size;
    e.regions.push_back(region);
  }
  if (r.ok() && e.regions.empty()) r.fail("external RAM with no regions");
  return e;
}

}  // namespace snapvm::state
