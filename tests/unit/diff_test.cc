// Diff snapshots: reflink sharing on XFS, the copy fallback elsewhere, holes
// for pages that became zero, and refusal of a base that does not match.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <sys/ioctl.h>

#include <cstring>

#include "base/checksum.h"
#include "base/file_io.h"
#include "snapshot/diff_writer.h"
#include "snapshot/reader.h"
#include "snapshot/verify.h"
#include "test_util.h"

namespace snapvm {
namespace {

using test::SampleVm;

// Bytes of the file that FIEMAP reports as shared with another file.
uint64_t shared_bytes(const std::string& path) {
  auto fd = open_file(path, O_RDONLY).value();
  std::vector<uint8_t> buf(sizeof(fiemap) + 4096 * sizeof(fiemap_extent));
  auto* fm = reinterpret_cast<fiemap*>(buf.data());
  fm->fm_start = 0;
  fm->fm_length = FIEMAP_MAX_OFFSET;
  fm->fm_flags = FIEMAP_FLAG_SYNC;
  fm->fm_extent_count = 4096;
  if (::ioctl(fd.get(), FS_IOC_FIEMAP, fm) != 0) return 0;
  uint64_t shared = 0;
  for (uint32_t i = 0; i < fm->fm_mapped_extents; ++i) {
    if (fm->fm_extents[i].fe_flags & FIEMAP_EXTENT_SHARED) shared += fm->fm_extents[i].fe_length;
  }
  return shared;
}

// Changes `n` pages spread over RAM and marks them dirty; every `zero_every`th
// one is zeroed instead.
DirtyBitmap dirty_some(SampleVm& vm, uint64_t n, uint64_t zero_every) {
  uint64_t pages = vm.ram.size() / 4096;
  DirtyBitmap d(pages);
  for (uint64_t i = 0; i < n; ++i) {
    uint64_t p = sample::mix64(i) % pages;
    uint8_t* page = vm.ram.data() + p * 4096;
    if (zero_every != 0 && i % zero_every == 0) {
      std::memset(page, 0, 4096);
    } else {
      std::memset(page, static_cast<int>(i % 251) + 1, 4096);
    }
    d.set(p);
  }
  return d;
}

void expect_ram_equals(const std::string& path, const SampleVm& vm) {
  auto f = SnapshotFile::open(path);
  ASSERT_TRUE(f) << f.error().describe();
  auto map = f->map_ram_cow(0);
  ASSERT_TRUE(map);
  EXPECT_EQ(0, std::memcmp(map->data(), vm.ram.data(), vm.ram.size()));
  auto report = verify_ram(*f);
  ASSERT_TRUE(report);
  EXPECT_TRUE(report->ok()) << report->bad_page_count << " bad pages";
  uint64_t data = 0;
  for (uint64_t p = 0; p < vm.ram.size() / 4096; ++p) data += is_all_zero({vm.ram.data() + p * 4096, 4096}) ? 0 : 4096;
  EXPECT_EQ(f->ram_regions()[0].data_bytes, data);
}

void diff_round_trip(const std::string& dir, bool expect_reflink) {
  SampleVm vm(64 << 20, 0.1, 21);  // mostly holes: copying them would show
  auto src = vm.source();
  std::string base = dir + "/base.snap";
  ASSERT_TRUE(write_full(base, vm.contents(), {&src, 1}));

  DirtyBitmap dirty = dirty_some(vm, 160, 4);  // ~1% of 16384 pages, a quarter zeroed
  vm.state.clock.guest_counter += 1000;        // state changes too
  auto stats = write_diff(dir + "/diff.snap", base, vm.contents(), {&src, 1}, {&dirty, 1});
  ASSERT_TRUE(stats) << stats.error().describe();
  EXPECT_EQ(stats->reflinked, expect_reflink);
  EXPECT_LE(stats->data_bytes, dirty.count() * 4096);
  EXPECT_GT(stats->holes_punched_bytes, 0u);
  // Holes of the base stay holes, and zeroed pages became holes. (Checked
  // before anything maps the file: tmpfs fills holes that are read through
  // a mapping. XFS may hold copy-on-write preallocations beyond the data for
  // a while, but never the whole 64 MiB region.)
  uint64_t slack = expect_reflink ? (16 << 20) : (1 << 20);
  EXPECT_LE(test::allocated_bytes(dir + "/diff.snap"), test::allocated_bytes(base) + slack);
  expect_ram_equals(dir + "/diff.snap", vm);
  auto f = SnapshotFile::open(dir + "/diff.snap").value();
  EXPECT_EQ(f.header().writer_kind(), format::kFlagWriterDiff);
  EXPECT_EQ(state::load_state(f)->clock.guest_counter, vm.state.clock.guest_counter);
  if (expect_reflink) {
    // Nearly all of the base's data is shared, not copied.
    EXPECT_GT(shared_bytes(dir + "/diff.snap"), test::allocated_bytes(base) * 8 / 10);
  }

  // A chain: base -> diff -> diff2, each standalone.
  DirtyBitmap dirty2 = dirty_some(vm, 500, 0);
  auto stats2 = write_diff(dir + "/diff2.snap", dir + "/diff.snap", vm.contents(), {&src, 1}, {&dirty2, 1});
  ASSERT_TRUE(stats2) << stats2.error().describe();
  expect_ram_equals(dir + "/diff2.snap", vm);
  // The base itself is untouched.
  EXPECT_TRUE(verify_ram(SnapshotFile::open(base).value())->ok());
}

TEST(Diff, SharesExtentsWithBaseOnReflinkXfs) {
  if (!test::is_root()) GTEST_SKIP() << "loop-mounting XFS needs root";
  auto fs = test::ScratchMount::xfs_reflink(512ull << 20);
  ASSERT_NE(fs, nullptr) << "could not make and mount a reflink XFS (is xfsprogs installed?)";
  diff_round_trip(fs->path(), true);
}

TEST(Diff, FallsBackToHolePreservingCopyWithoutReflinks) {
  if (!test::is_root()) GTEST_SKIP() << "mounting tmpfs needs root";
  auto fs = test::ScratchMount::tmpfs(256 << 20);  // tmpfs never reflinks
  ASSERT_NE(fs, nullptr);
  diff_round_trip(fs->path(), false);
}

TEST(Diff, RefusesBaseThatDoesNotMatch) {
  test::TempDir dir;
  SampleVm vm(4 << 20, 0.5, 1);
  auto src = vm.source();
  ASSERT_TRUE(write_full(dir.file("base.snap"), vm.contents(), {&src, 1}));
  SampleVm other(8 << 20, 0.5, 1);
  auto other_src = other.source();
  DirtyBitmap d(other.ram.size() / 4096);
  auto r = write_diff(dir.file("d.snap"), dir.file("base.snap"), other.contents(), {&other_src, 1}, {&d, 1});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kFailedPrecondition);
  EXPECT_NE(r.error().message().find("region 0"), std::string::npos) << r.error().message();

  auto missing = write_diff(dir.file("d.snap"), dir.file("nope.snap"), vm.contents(), {&src, 1}, {&d, 1});
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().describe().find("nope.snap"), std::string::npos);
  EXPECT_TRUE(test::temp_files_in(dir.path()).empty());
}

// A diff taken with resume: the dirty pages are copied while the guest is
// paused, the guest writes again at once, and the diff written from the copy
// holds RAM as it was at the copy, not as it is now.
TEST(Diff, WrittenFromACopyHoldsRamAsItWasWhenCopied) {
  test::TempDir dir;
  SampleVm vm(64 << 20, 0.3, 5);  // 8 units of the diff writer
  auto src = vm.source();
  ASSERT_TRUE(write_full(dir.file("base.snap"), vm.contents(), {&src, 1}));
  DirtyBitmap dirty = dirty_some(vm, 400, 5);  // some pages zeroed: they must become holes
  std::vector<uint8_t> at_copy(vm.ram.data(), vm.ram.data() + vm.ram.size());

  auto copy = copy_dirty_pages({&src, 1}, {&dirty, 1});
  ASSERT_TRUE(copy) << copy.error().describe();
  EXPECT_EQ(copy->bytes(), dirty.count() * 4096);
  EXPECT_EQ(copy->pages.size(), dirty.count() * 4096) << "only the dirty pages are copied";

  // The guest runs on: every page changes, dirty or not.
  for (size_t i = 0; i < vm.ram.size(); i += 4096) vm.ram.data()[i] ^= 0x5a;

  // Small units, so that pages are read back from the copy by many units.
  WriteOptions small;
  small.threads = 3;
  auto diff = DiffInProgress::prepare(dir.file("diff.snap"), dir.file("base.snap"));
  ASSERT_TRUE(diff) << diff.error().describe();
  auto stats = std::move(*diff).finish(vm.contents(), {&src, 1}, {&dirty, 1}, small, &*copy);
  ASSERT_TRUE(stats) << stats.error().describe();
  auto f = SnapshotFile::open(dir.file("diff.snap"));
  ASSERT_TRUE(f) << f.error().describe();
  auto map = f->map_ram_cow(0);
  ASSERT_TRUE(map);
  EXPECT_EQ(0, std::memcmp(map->data(), at_copy.data(), at_copy.size())) << "the diff must hold RAM as copied";
  EXPECT_TRUE(verify_ram(*f)->ok());

  DirtyBitmap short_map(3);
  EXPECT_FALSE(copy_dirty_pages({&src, 1}, {&short_map, 1})) << "a bitmap shorter than the region is refused";
  // A copy made from other bitmaps is refused, not misread.
  DirtyBitmap more = dirty;
  for (uint64_t p = 0; more.count() == dirty.count(); ++p) more.set(p);
  auto again = DiffInProgress::prepare(dir.file("diff2.snap"), dir.file("diff.snap"));
  ASSERT_TRUE(again);
  auto mismatch = std::move(*again).finish(vm.contents(), {&src, 1}, {&more, 1}, {}, &*copy);
  ASSERT_FALSE(mismatch);
  EXPECT_NE(mismatch.error().describe().find("the bitmaps mark"), std::string::npos) << mismatch.error().describe();
}

}  // namespace
}  // namespace snapvm
