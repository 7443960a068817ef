#include "snapshot/verify.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "base/checksum.h"
#include "base/file_io.h"

namespace snapvm {
namespace {

constexpr uint64_t kPage = format::kPageSize;
constexpr uint64_t kReadChunk = 4ull << 20;

// Start of the next data extent at or after `off`, or `end` if only a hole
// remains. Filesystems without SEEK_DATA report everything as data.
uint64_t next_data(int fd, uint64_t off, uint64_t end) {
  off_t d = ::lseek(fd, static_cast<off_t>(off), SEEK_DATA);
  if (d < 0) return errno == ENXIO ? end : off;
  return std::min<uint64_t>(static_cast<uint64_t>(d), end);
}

uint64_t next_hole(int fd, uint64_t off, uint64_t end) {
  off_t h = ::lseek(fd, static_cast<off_t>(off), SEEK_HOLE);
  if (h < 0) return end;
  return std::min<uint64_t>(static_cast<uint64_t>(h), end);
}

}  // namespace

Result<VerifyReport> verify_ram(const SnapshotFile& file, const ProgressFn& progress) {
  VerifyReport report;
  const uint64_t zero_sum = zero_page_checksum();
  const uint64_t total = file.ram_bytes();
  uint64_t done_before = 0;
  std::vector<uint8_t> buf(kReadChunk);

  auto record_bad = [&](size_t ri, const RamRegion& r, uint64_t page) {
    ++report.bad_page_count;
    if (report.bad_pages.size() < kMaxReportedBadPages) {
      report.bad_pages.push_back({ri, page, r.gpa + page * kPage, r.file_offset + page * kPage});
    }
  };

  for (size_t ri = 0; ri < file.ram_regions().size(); ++ri) {
    const RamRegion& r = file.ram_regions()[ri];
    auto table = SNAPVM_TRY(file.read_page_table(ri));
    uint64_t pos = 0;  // byte position within the region
    while (pos < r.size) {
      // Pages inside a hole read as zero without touching the disk.
      uint64_t data_at = next_data(file.fd(), r.file_offset + pos, r.file_end()) - r.file_offset;
      data_at = data_at / kPage * kPage;
      for (; pos < data_at; pos += kPage) {
        ++report.pages_checked;
        if (table[pos / kPage] != zero_sum) record_bad(ri, r, pos / kPage);
      }
      if (pos >= r.size) break;
      uint64_t hole_at = next_hole(file.fd(), r.file_offset + pos, r.file_end()) - r.file_offset;
      hole_at = std::max(pos + kPage, (hole_at + kPage - 1) / kPage * kPage);
      while (pos < hole_at && pos < r.size) {
        uint64_t n = std::min({kReadChunk, hole_at - pos, r.size - pos});
        std::span<uint8_t> chunk(buf.data(), n);
        SNAPVM_CHECK_OK(pread_exact(file.fd(), chunk, r.file_offset + pos));
        for (uint64_t off = 0; off < n; off += kPage) {
          ++report.pages_checked;
          ++report.data_pages;
          if (checksum64(chunk.subspan(off, kPage)) != table[(pos + off) / kPage]) record_bad(ri, r, (pos + off) / kPage);
        }
        pos += n;
        if (progress) progress(done_before + pos, total);
      }
    }
    done_before += r.size;
    if (progress) progress(done_before, total);
  }
  return report;
}

}  // namespace snapvm
