// Writers of snapshot files: full (sparse, parallel, straight from guest
// memory), compact (capture non-zero pages now, write later) and diff (see
// diff_writer.h). All are crash-safe (pending_file.h) and return statistics.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/mapped_region.h"
#include "base/parallel.h"
#include "base/result.h"
#include "snapshot/format.h"
#include "snapshot/section.h"

namespace snapvm {

// Everything a snapshot holds except RAM: the state records, already encoded
// as sections by the state layer.
struct SnapshotContents {
  format::Arch arch{};  // no default: writing with none set fails
  std::vector<Section> sections;
};

// One guest RAM region as the writer sees it: its guest address and the
// memory holding its bytes (a live guest mapping or a copy).
struct RamSource {
  uint64_t gpa = 0;
  std::span<const uint8_t> bytes;
};

struct WriteOptions {
  unsigned threads = 0;  // 0: one per online CPU
  ProgressFn progress;   // called about 5 times a second from the caller's thread
  // Full writer: zero gaps of at most this many pages between data pages are
  // written as zeros rather than left as holes. One I/O (and one extent) per
  // 16 KiB is about what disks and reflink clones charge; 0 keeps every hole.
  uint32_t merge_gap_pages = 4;
};

struct WriteStats {
  uint64_t ram_bytes = 0;            // guest RAM described by the snapshot
  uint64_t data_bytes = 0;           // bytes of non-zero RAM pages
  uint64_t written_bytes = 0;        // RAM bytes written (data and merged zero gaps)
  uint64_t zero_bytes = 0;           // RAM bytes left or made holes
  uint64_t holes_punched_bytes = 0;  // diff: bytes turned into holes
  uint64_t file_bytes = 0;           // logical size of the file
  bool reflinked = false;            // diff: base cloned by reflink
};

// Writes a sparse snapshot streaming straight from `ram`: pages are checked
// for zero and checksummed where they lie, then written with pwrite; no copy
// of RAM is made. The caller keeps the memory stable (the VM paused) until it
// returns.
Result<WriteStats> write_full(const std::string& path, const SnapshotContents& contents,
                              std::span<const RamSource> ram, const WriteOptions& options = {});

// Non-zero pages of guest RAM, copied out of the guest: capturing costs one
// pass over RAM and memory for the data pages only, after which the guest may
// run again while the capture is written.
struct CompactRegion {
  uint64_t gpa = 0;
  uint64_t size = 0;
  std::vector<uint64_t> pages;  // indices of captured pages, ascending
  MappedRegion data;            // their bytes, packed in the same order
};
struct CompactRam {
  std::vector<CompactRegion> regions;
  uint64_t data_bytes() const;
};

Result<CompactRam> capture_compact(std::span<const RamSource> ram, unsigned threads = 0);
Result<WriteStats> write_compact(const std::string& path, const SnapshotContents& contents, const CompactRam& ram,
                                 const WriteOptions& options = {});

}  // namespace snapvm
