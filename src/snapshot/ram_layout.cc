#include "snapshot/ram_layout.h"

#include <algorithm>
#include <vector>

#include "base/byte_codec.h"
#include "base/checksum.h"

namespace snapvm {

uint64_t zero_page_checksum() {
  static const uint64_t value = [] {
    std::vector<uint8_t> zero(format::kPageSize, 0);
    return checksum64(zero);
  }();
  return value;
}

Result<RamPlan> plan_ram_layout(std::span<const RamExtent> extents) {
  if (extents.size() > format::kMaxRamRegions) {
    return make_error(ErrorCode::kInvalidArgument, "{} RAM regions exceed the limit of {}", extents.size(),
                      format::kMaxRamRegions);
  }
  std::vector<RamRegion> regions;
  uint64_t offset = format::kRamAlign;
  for (const auto& e : extents) {
    if (e.size == 0 || e.size % format::kPageSize != 0 || e.gpa % format::kPageSize != 0 ||
        e.size > format::kMaxRegionBytes) {
      return make_error(ErrorCode::kInvalidArgument, "RAM region at {:#x} of {} bytes is not page aligned or too large",
                        e.gpa, e.size);
    }
    RamRegion r;
    r.gpa = e.gpa;
    r.size = e.size;
    r.file_offset = offset;
    regions.push_back(r);
    offset = align_up(offset + e.size, format::kRamAlign);
  }
  return replan_tables(std::move(regions));
}

RamPlan replan_tables(std::vector<RamRegion> regions) {
  uint64_t ram_end = format::kRamAlign;
  for (const auto& r : regions) ram_end = std::max(ram_end, r.file_end());
  uint64_t offset = align_up(ram_end, format::kBlockAlign);
  for (auto& r : regions) {
    r.table_offset = offset;
    offset += r.table_bytes();
  }
  return RamPlan{std::move(regions), align_up(offset, format::kBlockAlign)};
}

Section encode_ram_layout(std::span<const RamRegion> regions) {
  ByteWriter w;
  w.u32(static_cast<uint32_t>(regions.size()));
  for (const auto& r : regions) {
    w.u64(r.gpa);
    w.u64(r.size);
    w.u64(r.file_offset);
    w.u64(r.table_offset);
    w.u64(r.table_checksum);
    w.u64(r.data_bytes);
  }
  return Section{static_cast<uint32_t>(format::Tag::kRamLayout), format::kSectionRequired, w.take()};
}

Result<std::vector<RamRegion>> decode_ram_layout(const Section& s, uint64_t metadata_offset) {
  ByteReader r(s.payload, s.file_offset + format::kSectionHeaderSize, "section ram-layout");
  uint32_t n = r.count(format::kMaxRamRegions, 48);
  std::vector<RamRegion> regions(n);
  for (auto& g : regions) {
    g.gpa = r.u64();
    g.size = r.u64();
    g.file_offset = r.u64();
    g.table_offset = r.u64();
    g.table_checksum = r.u64();
    g.data_bytes = r.u64();
  }
  if (!r.ok()) return tl::unexpected(r.error());
  auto bad = [&](size_t i, std::string why) {
    return make_error(ErrorCode::kDataLoss, "section ram-layout at offset {:#x}: region {}: {}", s.file_offset, i, why);
  };
  // File ranges (RAM and tables) must be in bounds and must not overlap.
  std::vector<std::pair<uint64_t, uint64_t>> used;
  for (size_t i = 0; i < regions.size(); ++i) {
    const auto& g = regions[i];
    if (g.size == 0 || g.size % format::kPageSize != 0 || g.size > format::kMaxRegionBytes) {
      return bad(i, fmt::format("size {} is not a positive multiple of {} below {}", g.size, format::kPageSize,
                                format::kMaxRegionBytes));
    }
    if (g.gpa % format::kPageSize != 0 || g.gpa > UINT64_MAX - g.size) {
      return bad(i, fmt::format("guest address {:#x} is unaligned or wraps", g.gpa));
    }
    if (g.file_offset % format::kRamAlign != 0 || g.file_offset < format::kRamAlign ||
        g.file_offset > metadata_offset || metadata_offset - g.file_offset < g.size) {
      return bad(i, fmt::format("RAM at file offset {:#x} is unaligned or outside the file", g.file_offset));
    }
    if (g.table_offset % 8 != 0 || g.table_offset > metadata_offset ||
        metadata_offset - g.table_offset < g.table_bytes()) {
      return bad(i, fmt::format("checksum table at {:#x} is outside the file", g.table_offset));
    }
    if (g.data_bytes > g.size) return bad(i, "more data bytes than region bytes");
    used.emplace_back(g.file_offset, g.file_end());
    used.emplace_back(g.table_offset, g.table_offset + g.table_bytes());
  }
  std::sort(used.begin(), used.end());
  for (size_t i = 1; i < used.size(); ++i) {
    if (used[i].first < used[i - 1].second) {
      return make_error(ErrorCode::kDataLoss, "section ram-layout at offset {:#x}: file ranges overlap at {:#x}",
                        s.file_offset, used[i].first);
    }
  }
  std::vector<std::pair<uint64_t, uint64_t>> guest;
  for (const auto& g : regions) guest.emplace_back(g.gpa, g.gpa + g.size);
  std::sort(guest.begin(), guest.end());
  for (size_t i = 1; i < guest.size(); ++i) {
    if (guest[i].first < guest[i - 1].second) {
      return make_error(ErrorCode::kDataLoss, "section ram-layout at offset {:#x}: guest ranges overlap at {:#x}",
                        s.file_offset, guest[i].first);
    }
  }
  return regions;
}

}  // namespace snapvm
