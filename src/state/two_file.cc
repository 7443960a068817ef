#include "state/two_file.h"

#include "snapshot/raw_memory.h"
#include "snapshot/reader.h"
#include "state/snapshot_state.h"

namespace snapvm::state {
namespace {

Result<SnapshotState> load(const SnapshotFile& file) {
  auto st = load_state(file);
  if (!st) return tl::unexpected(std::move(st.error()).context(file.name()));
  return st;
}

}  // namespace

Result<ConvertStats> split_snapshot(const std::string& snapshot, const std::string& state_path,
                                    const std::string& mem_path, const WriteOptions& options) {
  auto file = SNAPVM_TRY(SnapshotFile::open(snapshot));
  SnapshotState st = SNAPVM_TRY(load(file));
  if (st.external_ram) {
    return make_error(ErrorCode::kInvalidArgument, "{} is already a state file with a separate memory file", snapshot);
  }
  std::vector<std::pair<uint64_t, uint64_t>> regions;
  for (const auto& r : file.ram_regions()) regions.emplace_back(r.gpa, r.size);
  st.external_ram = external_ram_for(regions);
  // Read through private mappings: only the pages holding data are read.
  std::vector<MappedRegion> maps;
  std::vector<RamSource> sources;
  std::vector<uint64_t> offsets;
  for (size_t i = 0; i < regions.size(); ++i) {
    maps.push_back(SNAPVM_TRY(file.map_ram_cow(i)));
    sources.push_back({regions[i].first, maps.back().span()});
    offsets.push_back(st.external_ram->regions[i].file_offset);
  }
  ConvertStats stats;
  stats.memory = SNAPVM_TRY(write_raw_memory(mem_path, sources, offsets, {}, options));
  stats.state = SNAPVM_TRY(write_full(state_path, to_contents(st), {}, options));
  return stats;
}

Result<ConvertStats> join_snapshot(const std::string& state_path, const std::string& mem_path,
                                   const std::string& snapshot, const WriteOptions& options) {
  auto file = SNAPVM_TRY(SnapshotFile::open(state_path));
  SnapshotState st = SNAPVM_TRY(load(file));
  if (!st.external_ram) {
    return make_error(ErrorCode::kInvalidArgument, "{} holds its own RAM: there is no memory file to join", state_path);
  }
  std::vector<RawRegion> raw;
  for (const auto& r : st.external_ram->regions) raw.push_back({r.file_offset, r.size});
  std::vector<MappedRegion> maps = SNAPVM_TRY(map_raw_memory(mem_path, raw));
  std::vector<RamSource> sources;
  for (size_t i = 0; i < maps.size(); ++i) sources.push_back({st.external_ram->regions[i].gpa, maps[i].span()});
  st.external_ram.reset();
  ConvertStats stats;
  stats.state = SNAPVM_TRY(write_full(snapshot, to_contents(st), sources, options));
  return stats;
}

}  // namespace snapvm::state
