// Full integrity check of a snapshot: header, every section, every checksum
// table and every RAM page against its checksum.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/parallel.h"
#include "base/result.h"
#include "snapshot/reader.h"

namespace snapvm {

struct BadPage {
  size_t region = 0;
  uint64_t page = 0;
  uint64_t gpa = 0;
  uint64_t file_offset = 0;
};

struct VerifyReport {
  uint64_t pages_checked = 0;
  uint64_t data_pages = 0;  // pages read from disk; the rest were holes
  std::vector<BadPage> bad_pages;  // at most kMaxReportedBadPages
  uint64_t bad_page_count = 0;
  bool ok() const { return bad_page_count == 0; }
};

inline constexpr size_t kMaxReportedBadPages = 16;

// Checks all RAM of an opened file (opening already checked the metadata).
// Holes are found with SEEK_DATA and never read.
Result<VerifyReport> verify_ram(const SnapshotFile& file, const ProgressFn& progress = {});

}  // namespace snapvm
