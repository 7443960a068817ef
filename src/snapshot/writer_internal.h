// Pieces shared by the full, compact and diff writers, so that the file is
// encoded in exactly one place (the seed wrote its encoder twice, W12).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "base/result.h"
#include "snapshot/format.h"
#include "snapshot/ram_layout.h"
#include "snapshot/writer.h"

namespace snapvm::internal {

// Pages per work unit for the parallel writers: 8 MiB.
inline constexpr uint64_t kPagesPerUnit = 2048;
// Adjacent data pages are merged into one pwrite of at most 1 MiB.
inline constexpr uint64_t kMaxRunPages = 256;

// Coalesces adjacent data pages into few large pwrites.
class RunWriter {
 public:
  RunWriter(int fd, uint64_t region_file_offset) : fd_(fd), base_(region_file_offset) {}
  // Queues page `index` whose bytes are at `src`; flushes when not contiguous.
  Status add(uint64_t index, const uint8_t* src);
  Status flush();

 private:
  int fd_;
  uint64_t base_;
  uint64_t first_ = 0;
  uint64_t count_ = 0;
  const uint8_t* src_ = nullptr;
};

// Writes checksum tables, the metadata area and the header at the end of an
// otherwise complete temp file, and truncates the file to its final size.
// `regions` carry their data_bytes; tables[i] belongs to regions[i].
Result<uint64_t> finish_file(int fd, format::Arch arch, uint64_t writer_flags, std::vector<RamRegion> regions,
                             uint64_t metadata_offset, std::span<const std::vector<uint64_t>> tables,
                             std::span<const Section> sections);

Status check_sources(std::span<const RamSource> ram);
// Refuses contents whose architecture was never set.
Status check_arch(const SnapshotContents& contents);

}  // namespace snapvm::internal
