// Human-readable and JSON descriptions of a snapshot, for `snapvm inspect`.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "snapshot/reader.h"
#include "state/snapshot_state.h"

namespace snapvm::cli {

std::string describe_text(const SnapshotFile& file, const state::SnapshotState& s);
nlohmann::ordered_json describe_json(const SnapshotFile& file, const state::SnapshotState& s);

std::string human_bytes(uint64_t n);

}  // namespace snapvm::cli
