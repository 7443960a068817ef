// What the writers and readers cost in memory and reads: the full writer
// streams from guest memory without a copy, and opening a snapshot reads
// only the header and metadata, whatever the RAM size.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <string>

#include "snapshot/reader.h"
#include "state/snapshot_state.h"
#include "test_util.h"

namespace snapvm {
namespace {

uint64_t proc_field(const std::string& file, const std::string& key) {
  std::ifstream in(file);
  std::string k;
  uint64_t v = 0;
  while (in >> k) {
    if (k == key) {
      in >> v;
      return v;
    }
    in.ignore(1 << 20, '\n');
  }
  return 0;
}

// Resets the peak RSS so VmHWM then measures one operation.
void reset_peak_rss() { std::ofstream("/proc/self/clear_refs") << "5"; }
uint64_t peak_rss_bytes() { return proc_field("/proc/self/status", "VmHWM:") * 1024; }
uint64_t bytes_read() { return proc_field("/proc/self/io", "rchar:"); }

TEST(IoCost, FullWriterStreamsWithoutCopyingRam) {
  test::TempDir dir;
  test::SampleVm vm(128 << 20, 1.0, 3);
  auto src = vm.source();
  reset_peak_rss();
  uint64_t before = peak_rss_bytes();
  ASSERT_TRUE(write_full(dir.file("a.snap"), vm.contents(), {&src, 1}));
  uint64_t grew = peak_rss_bytes() - before;
  EXPECT_LT(grew, 16u << 20) << "the writer copied RAM: peak RSS grew by " << grew;

  // The same measurement does see a copy: the compact capture makes one.
  reset_peak_rss();
  before = peak_rss_bytes();
  auto captured = capture_compact({&src, 1});
  ASSERT_TRUE(captured);
  EXPECT_GT(peak_rss_bytes() - before, 100u << 20);
}

TEST(IoCost, OpeningReadsNoRam) {
  test::TempDir dir;
  test::SampleVm vm(64 << 20, 1.0, 3);
  auto src = vm.source();
  ASSERT_TRUE(write_full(dir.file("a.snap"), vm.contents(), {&src, 1}));
  uint64_t before = bytes_read();
  auto f = SnapshotFile::open(dir.file("a.snap"));
  ASSERT_TRUE(f);
  ASSERT_TRUE(state::load_state(*f));
  auto map = f->map_ram_cow(0);
  ASSERT_TRUE(map);
  uint64_t read = bytes_read() - before;
  EXPECT_LT(read, 64u << 10) << "opening and mapping read " << read << " bytes of a 64 MiB snapshot";
}

}  // namespace
}  // namespace snapvm

#include <sys/statvfs.h>

namespace snapvm {
namespace {

uint64_t used_bytes(const std::string& dir) {
  struct statvfs v {};
  EXPECT_EQ(::statvfs(dir.c_str(), &v), 0);
  return (v.f_blocks - v.f_bfree) * v.f_frsize;
}

// A restored guest reads its free memory. On tmpfs every hole read through a
// file mapping used to be allocated in the tmpfs, and a full tmpfs killed the
// VMM with SIGBUS: holes are now anonymous zero memory.
TEST(IoCost, ReadingHolesOfAMappingOnTmpfsAllocatesNothing) {
  if (!test::is_root()) GTEST_SKIP() << "mounting a small tmpfs needs root";
  auto fs = test::ScratchMount::tmpfs(128 << 20);
  ASSERT_NE(fs, nullptr);
  test::SampleVm vm(64 << 20, 0.5, 4);
  // 48 MiB of free memory, first: the search for holes is bounded by time
  // (reader.cc), and only the first hole is sure to be looked at on a
  // loaded host; behind 16 MiB of scattered pages it was missed under ASan.
  std::memset(vm.ram.data(), 0, 48 << 20);
  auto src = vm.source();
  ASSERT_TRUE(write_full(fs->file("a.snap"), vm.contents(), {&src, 1}));
  uint64_t before = used_bytes(fs->path());
  auto f = SnapshotFile::open(fs->file("a.snap"));
  ASSERT_TRUE(f);
  auto map = f->map_ram_cow(0);
  ASSERT_TRUE(map);
  uint64_t sum = 0;
  for (size_t i = 0; i < map->size(); i += 4096) sum += map->data()[i];
  EXPECT_EQ(std::memcmp(map->data(), vm.ram.data(), map->size()), 0) << "the mapping must still read the snapshot";
  uint64_t grew = used_bytes(fs->path()) - before;
  EXPECT_LT(grew, 4u << 20) << "reading the holes allocated " << (grew >> 20) << " MiB in the tmpfs (sum " << sum << ")";
}

}  // namespace
}  // namespace snapvm
