#include "snapshot/diff_writer.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <atomic>
#include <bit>
#include <cerrno>
#include <cstring>
#include <memory>

#include "base/checksum.h"
#include "base/file_io.h"
#include "snapshot/pending_file.h"
#include "snapshot/reader.h"
#include "snapshot/writer_internal.h"

namespace snapvm {
namespace {

constexpr uint64_t kPage = format::kPageSize;
constexpr uint64_t kWordsPerUnit = internal::kPagesPerUnit / 64;

// Copies the data extents of src into dst (same offsets), leaving holes as
// holes. copy_file_range lets the kernel share or offload where it can.
Status copy_preserving_holes(int src, int dst, uint64_t size) {
  if (::ftruncate(dst, static_cast<off_t>(size)) != 0) return errno_error("size diff file");
  uint64_t pos = 0;
  while (pos < size) {
    off_t data = ::lseek(src, static_cast<off_t>(pos), SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;
      data = static_cast<off_t>(pos);  // no SEEK_DATA: treat all as data
    }
    off_t hole = ::lseek(src, data, SEEK_HOLE);
    uint64_t end = hole < 0 ? size : std::min<uint64_t>(static_cast<uint64_t>(hole), size);
    loff_t in = data, out = data;
    while (static_cast<uint64_t>(in) < end) {
      ssize_t n = ::copy_file_range(src, &in, dst, &out, end - static_cast<uint64_t>(in), 0);
      if (n < 0) {
        if (errno == EINTR) continue;
        return errno_error("copy base snapshot");
      }
      if (n == 0) return make_error(ErrorCode::kDataLoss, "base snapshot ended early at {:#x}", in);
    }
    pos = end;
  }
  return {};
}

Status punch_hole(int fd, uint64_t off, uint64_t len) {
  if (::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(off),
                  static_cast<off_t>(len)) == 0) {
    return {};
  }
  if (errno != EOPNOTSUPP) return errno_error(fmt::format("punch hole at {:#x}", off));
  // No hole punching: the page must still read as zero.
  static const std::vector<uint8_t> zero(internal::kMaxRunPages * kPage, 0);
  for (uint64_t done = 0; done < len; done += zero.size()) {
    SNAPVM_CHECK_OK(pwrite_all(fd, {zero.data(), std::min<uint64_t>(zero.size(), len - done)}, off + done));
  }
  return {};
}

Status check_base_matches(const SnapshotFile& base, const SnapshotContents& contents,
                          std::span<const RamSource> ram, std::span<const DirtyBitmap> dirty) {
  if (base.header().arch != contents.arch) {
    return make_error(ErrorCode::kFailedPrecondition, "diff base {} is for {}, the VM is {}", base.name(),
                      format::arch_name(base.header().arch), format::arch_name(contents.arch));
  }
  const auto& regions = base.ram_regions();
  if (regions.size() != ram.size() || dirty.size() != ram.size()) {
    return make_error(ErrorCode::kFailedPrecondition, "diff base {} has {} RAM regions, the VM has {}", base.name(),
                      regions.size(), ram.size());
  }
  for (size_t i = 0; i < ram.size(); ++i) {
    if (regions[i].gpa != ram[i].gpa || regions[i].size != ram[i].bytes.size()) {
      return make_error(ErrorCode::kFailedPrecondition,
                        "diff base {} region {} is {} bytes at {:#x}, the VM's is {} bytes at {:#x}", base.name(), i,
                        regions[i].size, regions[i].gpa, ram[i].bytes.size(), ram[i].gpa);
    }
    if (dirty[i].pages() != regions[i].pages()) {
      return make_error(ErrorCode::kInvalidArgument, "dirty bitmap {} covers {} pages, region has {}", i,
                        dirty[i].pages(), regions[i].pages());
    }
  }
  return {};
}

}  // namespace

uint64_t DirtyBitmap::count() const {
  uint64_t n = 0;
  for (uint64_t w : words_) n += static_cast<uint64_t>(std::popcount(w));
  return n;
}

void DirtyBitmap::merge(const DirtyBitmap& other) {
  for (size_t i = 0; i < words_.size() && i < other.words_.size(); ++i) words_[i] |= other.words_[i];
}

DiffInProgress::DiffInProgress(SnapshotFile base, PendingFile file, bool reflinked,
                               std::vector<std::vector<uint64_t>> tables)
    : base_(std::move(base)), file_(std::move(file)), reflinked_(reflinked), tables_(std::move(tables)) {}

Result<DiffInProgress> DiffInProgress::prepare(const std::string& path, const std::string& base_path) {
  auto base = SnapshotFile::open(base_path);
  if (!base) return tl::unexpected(std::move(base.error()).context("diff base"));
  auto file = SNAPVM_TRY(PendingFile::create(path));
  bool reflinked = false;
  if (::ioctl(file.fd(), FICLONE, base->fd()) == 0) {
    reflinked = true;
  } else if (errno == EOPNOTSUPP || errno == EXDEV || errno == EINVAL || errno == ENOTTY || errno == EPERM) {
    SNAPVM_CHECK_OK(copy_preserving_holes(base->fd(), file.fd(), base->header().file_size));
  } else {
    return errno_error(fmt::format("reflink {}", base_path));
  }
  // The base's page checksums too: the diff updates them in place.
  std::vector<std::vector<uint64_t>> tables;
  for (size_t i = 0; i < base->ram_regions().size(); ++i) tables.push_back(SNAPVM_TRY(base->read_page_table(i)));
  return DiffInProgress(std::move(*base), std::move(file), reflinked, std::move(tables));
}

Result<DirtyPagesCopy> copy_dirty_pages(std::span<const RamSource> ram, std::span<const DirtyBitmap> dirty) {
  if (ram.size() != dirty.size()) {
    return make_error(ErrorCode::kInvalidArgument, "{} RAM regions but {} dirty bitmaps", ram.size(), dirty.size());
  }
  uint64_t total = 0;
  for (size_t r = 0; r < ram.size(); ++r) {
    const uint64_t pages = ram[r].bytes.size() / kPage;
    if (dirty[r].pages() < pages) {
      return make_error(ErrorCode::kInvalidArgument, "the dirty bitmap of region {} covers {} of its {} pages", r,
                        dirty[r].pages(), pages);
    }
    total += dirty[r].count();
  }
  DirtyPagesCopy copy;
  copy.pages = SNAPVM_TRY(MappedRegion::anonymous_populated(total * kPage));
  uint8_t* out = copy.pages.data();
  uint64_t index = 0;
  for (size_t r = 0; r < ram.size(); ++r) {
    copy.region_first.push_back(index);
    const uint64_t pages = ram[r].bytes.size() / kPage;
    const uint8_t* src = ram[r].bytes.data();
    // Runs of consecutive dirty pages, one memcpy each. Bits past the
    // region's end are never copied (finish() stops at the end as well).
    uint64_t p = 0;
    while (p < pages) {
      if (!dirty[r].test(p)) {
        ++p;
        continue;
      }
      uint64_t end = p + 1;
      while (end < pages && dirty[r].test(end)) ++end;
      std::memcpy(out + index * kPage, src + p * kPage, (end - p) * kPage);
      index += end - p;
      p = end;
    }
    // Bits set past the end would shift every later region's pages.
    if (dirty[r].pages() > pages) {
      for (uint64_t q = pages; q < dirty[r].pages(); ++q) {
        if (dirty[r].test(q)) return make_error(ErrorCode::kInvalidArgument, "dirty page {} is past region {}", q, r);
      }
    }
  }
  return copy;
}

Result<WriteStats> write_diff(const std::string& path, const std::string& base_path,
                              const SnapshotContents& contents, std::span<const RamSource> ram,
                              std::span<const DirtyBitmap> dirty, const WriteOptions& options) {
  auto diff = SNAPVM_TRY(DiffInProgress::prepare(path, base_path));
  return std::move(diff).finish(contents, ram, dirty, options);
}

Result<WriteStats> DiffInProgress::finish(const SnapshotContents& contents, std::span<const RamSource> ram,
                                          std::span<const DirtyBitmap> dirty, const WriteOptions& options,
                                          const DirtyPagesCopy* copy) && {
  SNAPVM_CHECK_OK(internal::check_arch(contents));
  SNAPVM_CHECK_OK(internal::check_sources(ram));
  const SnapshotFile* base = &base_;
  PendingFile& file = file_;
  SNAPVM_CHECK_OK(check_base_matches(*base, contents, ram, dirty));

  std::vector<std::vector<uint64_t>>& tables = tables_;
  WriteStats stats;
  stats.reflinked = reflinked_;

  RamPlan plan = replan_tables(base->ram_regions());
  std::vector<uint64_t> words;
  for (const auto& d : dirty) words.push_back(d.words().size());
  struct Unit {
    size_t region;
    uint64_t first_word;
    uint64_t words;
  };
  std::vector<Unit> units;
  for (size_t r = 0; r < words.size(); ++r) {
    for (uint64_t w = 0; w < words[r]; w += kWordsPerUnit) units.push_back({r, w, std::min(kWordsPerUnit, words[r] - w)});
  }
  auto data_bytes = std::make_unique<std::atomic<int64_t>[]>(ram.size());
  std::atomic<uint64_t> punched{0}, written{0}, done{0};
  const uint64_t zero_sum = zero_page_checksum();
  uint64_t total = 0;
  for (const auto& d : dirty) total += d.count() * kPage;

  // Reading from a copy: where each unit's first page lies in it (the
  // pages before it in its region, counted).
  std::vector<uint64_t> copy_index(units.size(), 0);
  if (copy != nullptr) {
    if (copy->region_first.size() != dirty.size()) {
      return make_error(ErrorCode::kInvalidArgument, "the copy of the dirty pages is of other bitmaps");
    }
    for (size_t u = 0; u < units.size(); ++u) {
      const Unit& unit = units[u];
      if (u == 0 || units[u - 1].region != unit.region) {
        copy_index[u] = copy->region_first[unit.region];
      } else {
        const Unit& prev = units[u - 1];
        uint64_t n = 0;
        for (uint64_t w = prev.first_word; w < prev.first_word + prev.words; ++w) {
          n += static_cast<uint64_t>(std::popcount(dirty[prev.region].words()[w]));
        }
        copy_index[u] = copy_index[u - 1] + n;
      }
    }
    if (total != copy->bytes()) {
      return make_error(ErrorCode::kInvalidArgument, "the copy holds {} bytes, the bitmaps mark {}", copy->bytes(),
                        total);
    }
  }

  auto write_unit = [&](uint64_t u) -> Status {
    const Unit& unit = units[u];
    const RamRegion& region = plan.regions[unit.region];
    const uint8_t* src = ram[unit.region].bytes.data();
    const uint8_t* next_copied = copy != nullptr ? copy->pages.data() + copy_index[u] * kPage : nullptr;
    auto& table = tables[unit.region];
    internal::RunWriter runs(file.fd(), region.file_offset);
    int64_t delta = 0;  // change in the region's data bytes
    uint64_t hole_first = 0, hole_pages = 0, unit_written = 0, unit_punched = 0;
    auto flush_hole = [&]() -> Status {
      if (hole_pages == 0) return {};
      SNAPVM_CHECK_OK(punch_hole(file.fd(), region.file_offset + hole_first * kPage, hole_pages * kPage));
      unit_punched += hole_pages * kPage;
      hole_pages = 0;
      return {};
    };
    for (uint64_t w = unit.first_word; w < unit.first_word + unit.words; ++w) {
      uint64_t bits = dirty[unit.region].words()[w];
      while (bits != 0) {
        uint64_t p = w * 64 + static_cast<uint64_t>(std::countr_zero(bits));
        bits &= bits - 1;
        if (p >= region.pages()) break;
        std::span<const uint8_t> page(next_copied != nullptr ? next_copied : src + p * kPage, kPage);
        if (next_copied != nullptr) next_copied += kPage;
        bool was_data = table[p] != zero_sum;
        if (is_all_zero(page)) {
          if (!was_data) continue;  // zero in the base already: hole or zeros there
          delta -= static_cast<int64_t>(kPage);
          table[p] = zero_sum;
          if (hole_pages > 0 && hole_first + hole_pages == p) {
            ++hole_pages;
          } else {
            SNAPVM_CHECK_OK(flush_hole());
            hole_first = p;
            hole_pages = 1;
          }
          continue;
        }
        if (!was_data) delta += static_cast<int64_t>(kPage);
        table[p] = checksum64(page);
        SNAPVM_CHECK_OK(runs.add(p, page.data()));
        unit_written += kPage;
      }
    }
    SNAPVM_CHECK_OK(runs.flush());
    SNAPVM_CHECK_OK(flush_hole());
    data_bytes[unit.region] += delta;
    written += unit_written;
    punched += unit_punched;
    done += unit_written + unit_punched;
    return {};
  };
  SNAPVM_CHECK_OK(parallel_for(units.size(), options.threads, write_unit, options.progress, &done, total));

  for (size_t i = 0; i < plan.regions.size(); ++i) {
    plan.regions[i].data_bytes = static_cast<uint64_t>(static_cast<int64_t>(plan.regions[i].data_bytes) +
                                                       data_bytes[i].load());
    stats.ram_bytes += plan.regions[i].size;
  }
  stats.data_bytes = written.load();
  stats.written_bytes = written.load();
  stats.holes_punched_bytes = punched.load();
  stats.zero_bytes = punched.load();
  stats.file_bytes = SNAPVM_TRY(internal::finish_file(file.fd(), contents.arch, format::kFlagWriterDiff,
                                                      std::move(plan.regions), plan.metadata_offset, tables,
                                                      contents.sections));
  SNAPVM_CHECK_OK(file.commit());
  return stats;
}

}  // namespace snapvm
