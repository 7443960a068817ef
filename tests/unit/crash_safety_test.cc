// A failed or killed write never damages the snapshot already at the target
// path, and never leaves its temp file behind when it fails.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "snapshot/diff_writer.h"
#include "snapshot/reader.h"
#include "snapshot/verify.h"
#include "test_util.h"

namespace snapvm {
namespace {

using test::SampleVm;

bool intact(const std::string& path, const SampleVm& expected) {
  auto f = SnapshotFile::open(path);
  if (!f) return false;
  std::vector<uint8_t> ram(f->ram_regions()[0].size);
  if (!f->read_ram(0, ram) || ram.size() != expected.ram.size()) return false;
  auto report = verify_ram(*f);
  return report && report->ok() && std::equal(ram.begin(), ram.end(), expected.ram.data());
}

TEST(CrashSafety, NoSpaceMidWriteKeepsOldSnapshotAndRemovesTemp) {
  if (!test::is_root()) GTEST_SKIP() << "mounting a small tmpfs needs root";
  auto fs = test::ScratchMount::tmpfs(24 << 20);
  ASSERT_NE(fs, nullptr) << "mount tmpfs failed";
  std::string path = fs->file("vm.snap");
  SampleVm old_vm(8 << 20, 0.5, 1);
  auto src = old_vm.source();
  ASSERT_TRUE(write_full(path, old_vm.contents(), {&src, 1}));

  // 32 MiB of data cannot fit in what is left of 24 MiB.
  SampleVm big(32 << 20, 1.0, 2);
  auto big_src = big.source();
  auto r = write_full(path, big.contents(), {&big_src, 1});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().sys_errno(), ENOSPC) << r.error().describe();
  EXPECT_NE(r.error().describe().find("No space left"), std::string::npos) << r.error().describe();
  EXPECT_TRUE(test::temp_files_in(fs->path()).empty());
  EXPECT_TRUE(intact(path, old_vm));

  // The compact and diff writers clean up the same way.
  auto captured = capture_compact({&big_src, 1});
  ASSERT_TRUE(captured);
  EXPECT_FALSE(write_compact(path, big.contents(), *captured));
  EXPECT_TRUE(test::temp_files_in(fs->path()).empty());
  EXPECT_TRUE(intact(path, old_vm));

  // A diff whose copy of the base no longer fits.
  SampleVm filler(14 << 20, 1.0, 3);
  auto filler_src = filler.source();
  ASSERT_TRUE(write_full(fs->file("filler.snap"), filler.contents(), {&filler_src, 1}));
  DirtyBitmap all(old_vm.ram.size() / 4096);
  for (uint64_t p = 0; p < all.pages(); ++p) all.set(p);
  SampleVm changed(8 << 20, 1.0, 4);
  auto changed_src = changed.source();
  auto d = write_diff(fs->file("diff.snap"), path, old_vm.contents(), {&changed_src, 1}, {&all, 1});
  ASSERT_FALSE(d);
  EXPECT_TRUE(test::temp_files_in(fs->path()).empty());
  EXPECT_TRUE(intact(path, old_vm));
}

TEST(CrashSafety, WriterKilledMidWriteLeavesOldSnapshotReadable) {
  test::TempDir dir;
  std::string path = dir.file("vm.snap");
  SampleVm old_vm(4 << 20, 0.5, 1);
  auto src = old_vm.source();
  ASSERT_TRUE(write_full(path, old_vm.contents(), {&src, 1}));

  for (int delay_ms : {0, 5, 20, 60}) {
    pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      SampleVm big(256 << 20, 1.0, 9);
      auto big_src = big.source();
      auto r = write_full(path, big.contents(), {&big_src, 1}, {1, {}});
      ::_exit(r ? 0 : 1);
    }
    // Wait until the child is writing its temp file, then kill it.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (test::temp_files_in(dir.path()).empty() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    ::kill(child, SIGKILL);
    int status = 0;
    ::waitpid(child, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status)) << "the writer finished before it could be killed (delay " << delay_ms << ")";
    EXPECT_TRUE(intact(path, old_vm)) << "delay " << delay_ms;
    // A killed process cannot clean up: its marked temp file is all it leaves.
    for (const auto& t : test::temp_files_in(dir.path())) ::unlink(t.c_str());
  }
}

TEST(CrashSafety, InvalidTargetFailsCleanly) {
  SampleVm vm(64 << 10, 0.5, 1);
  auto src = vm.source();
  auto r = write_full("/nonexistent-dir/x.snap", vm.contents(), {&src, 1});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().describe().find("/nonexistent-dir"), std::string::npos);
}

}  // namespace
}  // namespace snapvm
