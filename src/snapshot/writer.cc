#include "snapshot/writer.h"

#include <unistd.h>

#include <atomic>
#include <cstring>
#include <memory>

#include "base/checksum.h"
#include "snapshot/pending_file.h"
#include "snapshot/ram_layout.h"
#include "snapshot/writer_internal.h"

namespace snapvm {
namespace {

using internal::kPagesPerUnit;

constexpr uint64_t kPage = format::kPageSize;

// A slice of one region's pages handled by one worker at a time.
struct Unit {
  size_t region;
  uint64_t first;  // first page (full writer) or first list entry (compact)
  uint64_t count;
};

std::vector<Unit> split_units(const std::vector<uint64_t>& items_per_region) {
  std::vector<Unit> units;
  for (size_t r = 0; r < items_per_region.size(); ++r) {
    for (uint64_t first = 0; first < items_per_region[r]; first += kPagesPerUnit) {
      units.push_back({r, first, std::min(kPagesPerUnit, items_per_region[r] - first)});
    }
  }
  return units;
}

std::vector<RamExtent> extents_of(std::span<const RamSource> ram) {
  std::vector<RamExtent> out;
  for (const auto& r : ram) out.push_back({r.gpa, r.bytes.size()});
  return out;
}

Result<WriteStats> commit_with_stats(PendingFile& file, const SnapshotContents& contents, uint64_t flags,
                                     RamPlan plan, std::span<const std::vector<uint64_t>> tables,
                                     std::span<const std::atomic<uint64_t>> data_bytes) {
  WriteStats stats;
  for (size_t i = 0; i < plan.regions.size(); ++i) {
    plan.regions[i].data_bytes = data_bytes[i].load();
    stats.ram_bytes += plan.regions[i].size;
    stats.data_bytes += plan.regions[i].data_bytes;
  }
  stats.zero_bytes = stats.ram_bytes - stats.data_bytes;
  stats.written_bytes = stats.data_bytes;
  stats.file_bytes = SNAPVM_TRY(internal::finish_file(file.fd(), contents.arch, flags, std::move(plan.regions),
                                                      plan.metadata_offset, tables, contents.sections));
  SNAPVM_CHECK_OK(file.commit());
  return stats;
}

Status size_ram_area(int fd, uint64_t end) {
  // The RAM area starts as one hole; only data pages get blocks.
  if (::ftruncate(fd, static_cast<off_t>(end)) != 0) return errno_error("size snapshot file");
  return {};
}

}  // namespace

uint64_t CompactRam::data_bytes() const {
  uint64_t n = 0;
  for (const auto& r : regions) n += r.data.size();
  return n;
}

Result<WriteStats> write_full(const std::string& path, const SnapshotContents& contents,
                              std::span<const RamSource> ram, const WriteOptions& options) {
  SNAPVM_CHECK_OK(internal::check_arch(contents));
  SNAPVM_CHECK_OK(internal::check_sources(ram));
  auto extents = extents_of(ram);
  RamPlan plan = SNAPVM_TRY(plan_ram_layout(extents));
  auto file = SNAPVM_TRY(PendingFile::create(path));
  SNAPVM_CHECK_OK(size_ram_area(file.fd(), plan.metadata_offset));

  std::vector<std::vector<uint64_t>> tables;
  std::vector<uint64_t> pages;
  uint64_t total = 0;
  for (const auto& r : plan.regions) {
    tables.emplace_back(r.pages());
    pages.push_back(r.pages());
    total += r.size;
  }
  auto units = split_units(pages);
  auto data_bytes = std::make_unique<std::atomic<uint64_t>[]>(ram.size());
  std::atomic<uint64_t> done{0}, gap_bytes{0};
  const uint64_t zero_sum = zero_page_checksum();

  auto write_unit = [&](uint64_t u) -> Status {
    const Unit& unit = units[u];
    const uint8_t* base = ram[unit.region].bytes.data();
    auto& table = tables[unit.region];
    internal::RunWriter runs(file.fd(), plan.regions[unit.region].file_offset);
    uint64_t data = 0, gap_fill = 0;
    uint64_t next_after_data = UINT64_MAX;  // page after the last data page
    for (uint64_t p = unit.first; p < unit.first + unit.count; ++p) {
      std::span<const uint8_t> page(base + p * kPage, kPage);
      if (is_all_zero(page)) {
        table[p] = zero_sum;
        continue;
      }
      table[p] = checksum64(page);
      // A short zero gap costs less written as zeros than as one more I/O
      // and one more extent (which every reflink clone also pays for).
      if (next_after_data < p && p - next_after_data <= options.merge_gap_pages) {
        for (uint64_t z = next_after_data; z < p; ++z) SNAPVM_CHECK_OK(runs.add(z, base + z * kPage));
        gap_fill += (p - next_after_data) * kPage;
      }
      SNAPVM_CHECK_OK(runs.add(p, page.data()));
      data += kPage;
      next_after_data = p + 1;
    }
    SNAPVM_CHECK_OK(runs.flush());
    data_bytes[unit.region] += data;
    gap_bytes += gap_fill;
    done += unit.count * kPage;
    return {};
  };
  SNAPVM_CHECK_OK(parallel_for(units.size(), options.threads, write_unit, options.progress, &done, total));
  auto stats = commit_with_stats(file, contents, format::kFlagWriterFull, std::move(plan), tables,
                                 {data_bytes.get(), ram.size()});
  if (stats) stats->written_bytes += gap_bytes.load();
  return stats;
}

Result<CompactRam> capture_compact(std::span<const RamSource> ram, unsigned threads) {
  SNAPVM_CHECK_OK(internal::check_sources(ram));
  std::vector<uint64_t> pages;
  for (const auto& r : ram) pages.push_back(r.bytes.size() / kPage);
  auto units = split_units(pages);

  // Pass 1 scans for data pages; pass 2 copies them to exact, final places,
  // so the capture never holds more than one copy of the data.
  std::vector<std::vector<uint64_t>> found(units.size());
  SNAPVM_CHECK_OK(parallel_for(units.size(), threads, [&](uint64_t u) -> Status {
    const Unit& unit = units[u];
    const uint8_t* base = ram[unit.region].bytes.data();
    for (uint64_t p = unit.first; p < unit.first + unit.count; ++p) {
      if (!is_all_zero({base + p * kPage, kPage})) found[u].push_back(p);
    }
    return {};
  }));

  CompactRam out;
  std::vector<uint64_t> unit_start(units.size());  // first list slot of each unit
  for (size_t r = 0; r < ram.size(); ++r) {
    CompactRegion region;
    region.gpa = ram[r].gpa;
    region.size = ram[r].bytes.size();
    out.regions.push_back(std::move(region));
  }
  for (size_t u = 0; u < units.size(); ++u) {
    auto& region = out.regions[units[u].region];
    unit_start[u] = region.pages.size();
    region.pages.insert(region.pages.end(), found[u].begin(), found[u].end());
  }
  for (auto& region : out.regions) {
    region.data = SNAPVM_TRY(MappedRegion::anonymous_huge(region.pages.size() * kPage));
  }

  SNAPVM_CHECK_OK(parallel_for(units.size(), threads, [&](uint64_t u) -> Status {
    auto& region = out.regions[units[u].region];
    const uint8_t* base = ram[units[u].region].bytes.data();
    uint8_t* dst = region.data.data() + unit_start[u] * kPage;
    for (uint64_t p : found[u]) {
      std::memcpy(dst, base + p * kPage, kPage);
      dst += kPage;
    }
    return {};
  }));
  return out;
}

Result<WriteStats> write_compact(const std::string& path, const SnapshotContents& contents, const CompactRam& ram,
                                 const WriteOptions& options) {
  SNAPVM_CHECK_OK(internal::check_arch(contents));
  std::vector<RamExtent> extents;
  std::vector<uint64_t> listed;
  for (const auto& r : ram.regions) {
    if (r.data.size() != r.pages.size() * kPage) {
      return make_error(ErrorCode::kInvalidArgument, "compact region at {:#x}: {} pages but {} data bytes", r.gpa,
                        r.pages.size(), r.data.size());
    }
    for (size_t i = 0; i < r.pages.size(); ++i) {
      if (r.pages[i] >= r.size / kPage || (i > 0 && r.pages[i] <= r.pages[i - 1])) {
        return make_error(ErrorCode::kInvalidArgument, "compact region at {:#x}: page list is not ascending and in range",
                          r.gpa);
      }
    }
    extents.push_back({r.gpa, r.size});
    listed.push_back(r.pages.size());
  }
  RamPlan plan = SNAPVM_TRY(plan_ram_layout(extents));
  auto file = SNAPVM_TRY(PendingFile::create(path));
  SNAPVM_CHECK_OK(size_ram_area(file.fd(), plan.metadata_offset));

  std::vector<std::vector<uint64_t>> tables;
  for (const auto& r : plan.regions) tables.emplace_back(r.pages(), zero_page_checksum());
  auto units = split_units(listed);
  auto data_bytes = std::make_unique<std::atomic<uint64_t>[]>(ram.regions.size());
  std::atomic<uint64_t> done{0};
  uint64_t total = ram.data_bytes();

  auto write_unit = [&](uint64_t u) -> Status {
    const Unit& unit = units[u];
    const auto& region = ram.regions[unit.region];
    internal::RunWriter runs(file.fd(), plan.regions[unit.region].file_offset);
    for (uint64_t i = unit.first; i < unit.first + unit.count; ++i) {
      const uint8_t* src = region.data.data() + i * kPage;
      tables[unit.region][region.pages[i]] = checksum64({src, kPage});
      SNAPVM_CHECK_OK(runs.add(region.pages[i], src));
    }
    SNAPVM_CHECK_OK(runs.flush());
    data_bytes[unit.region] += unit.count * kPage;
    done += unit.count * kPage;
    return {};
  };
  SNAPVM_CHECK_OK(parallel_for(units.size(), options.threads, write_unit, options.progress, &done, total));
  return commit_with_stats(file, contents, format::kFlagWriterCompact, std::move(plan), tables,
                           {data_bytes.get(), ram.regions.size()});
}

}  // namespace snapvm
