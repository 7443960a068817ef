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
Result<WriteStats> write_raw_memory(const std::string& path, std::span<const RamSource> ram,
                                    std::span<const uint64_t> offsets, const WriteOptions& options = {});

}  // namespace snapvm
