// Guest RAM as one raw memory file: region after region at the offsets the
// caller chose, zero pages left as holes. Firecracker's memory file has this
// shape, and userfaultfd page servers read it. Crash-safe like every
// snapshot file (pending_file.h): the target is replaced only when complete.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/mapped_region.h"

#include "base/result.h"
#include "snapshot/diff_writer.h"
#include "snapshot/writer.h"

namespace snapvm {

// One region of a raw memory file.
struct RawRegion {
  uint64_t file_offset = 0;
  uint64_t size = 0;
};

// Maps each region MAP_PRIVATE from the file at `path` (opened read-only:
// writes to the mapping never reach it); the file must cover them all.
Result<std::vector<MappedRegion>> map_raw_memory(const std::string& path, std::span<const RawRegion> regions);

// ram[i] goes to file offset offsets[i]; the file is as long as the end of
// the last region. Pages are scanned and written in parallel.
//
// With `dirty` (one bitmap of 4 KiB pages per region), only the marked pages
// are written, zero or not, and every other page is a hole: a diff to lay
// over an earlier memory file (rebase_raw_memory), which is what
// Firecracker's Diff snapshots write. Without it, zero pages are the holes.
Result<WriteStats> write_raw_memory(const std::string& path, std::span<const RamSource> ram,
                                    std::span<const uint64_t> offsets, std::span<const DirtyBitmap> dirty = {},
                                    const WriteOptions& options = {});

struct RebaseStats {
  uint64_t data_bytes = 0;  // bytes copied from the diff
  uint64_t extents = 0;     // runs of data in the diff
};

// Copies every data extent of the diff memory file at `diff_path` (found
// with SEEK_DATA/SEEK_HOLE) into the file at `base_path`, in place, and
// syncs it: what Firecracker's rebase-snap does, so a chain of Diff memory
// files folds into one full file. The diff must not be longer than the base.
Result<RebaseStats> rebase_raw_memory(const std::string& base_path, const std::string& diff_path);

}  // namespace snapvm
