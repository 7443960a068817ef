// Helpers shared by the native tests: temp dirs, sample snapshots, scratch
// filesystems (tmpfs for ENOSPC, loop-mounted XFS for reflinks).
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "base/mapped_region.h"
#include "snapshot/writer.h"
#include "state/snapshot_state.h"
#include "tools/common/sample_state.h"

namespace snapvm::test {

class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// A filesystem mounted for one test and unmounted after it. Needs root; the
// test is skipped (with the reason) elsewhere.
class ScratchMount {
 public:
  static std::unique_ptr<ScratchMount> tmpfs(uint64_t bytes);
  static std::unique_ptr<ScratchMount> xfs_reflink(uint64_t bytes);
  ~ScratchMount();
  const std::string& path() const { return dir_.path(); }
  std::string file(const std::string& name) const { return dir_.file(name); }

 private:
  ScratchMount() = default;
  TempDir dir_;
  TempDir image_dir_;
  bool mounted_ = false;
};

// Guest RAM of `bytes` with the given data density, at the sample RAM base.
struct SampleVm {
  SampleVm(uint64_t bytes, double density, uint64_t seed = 1, uint32_t vcpus = 2,
           format::Arch arch = format::Arch::kArm64);
  RamSource source() const { return {base, ram.span()}; }
  uint64_t base = sample::kRamBase;
  MappedRegion ram;
  state::SnapshotState state;
  SnapshotContents contents() const { return state::to_contents(state); }
};

std::vector<uint8_t> read_file(const std::string& path);
void write_file(const std::string& path, const std::vector<uint8_t>& bytes);
bool is_root();
// Files in `dir` whose name marks a snapvm temp file.
std::vector<std::string> temp_files_in(const std::string& dir);
uint64_t allocated_bytes(const std::string& path);

}  // namespace snapvm::test
