// Converting between snapvm's single-file snapshots and Firecracker's
// two-file layout (a state file whose RAM is external, plus a raw memory
// file), both ways, without a VM: `snapvm convert`.
#pragma once

#include <string>

#include "base/result.h"
#include "snapshot/writer.h"

namespace snapvm::state {

struct ConvertStats {
  WriteStats state, memory;  // to two files: both; to one file: the snapshot in `state`
};

// A snapvm snapshot to STATE + MEM.
Result<ConvertStats> split_snapshot(const std::string& snapshot, const std::string& state_path,
                                    const std::string& mem_path, const WriteOptions& options = {});

// STATE + MEM to a snapvm snapshot (RAM inside, checksummed).
Result<ConvertStats> join_snapshot(const std::string& state_path, const std::string& mem_path,
                                   const std::string& snapshot, const WriteOptions& options = {});

}  // namespace snapvm::state
