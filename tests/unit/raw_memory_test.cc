// Raw memory files (Firecracker's layout): full files keep zero pages as
// holes; Diff files hold exactly the dirty pages; rebasing a Diff over its
// base gives the memory at the Diff's time.
#include <fcntl.h>
#include <unistd.h>

#include <cstring>

#include <gtest/gtest.h>

#include "snapshot/raw_memory.h"
#include "tests/unit/test_util.h"

namespace snapvm {
namespace {

constexpr uint64_t kPage = 4096;

// Offsets of the data extents of a file, as SEEK_DATA/SEEK_HOLE report them.
std::vector<std::pair<off_t, off_t>> data_extents(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  EXPECT_GE(fd, 0);
  off_t size = ::lseek(fd, 0, SEEK_END);
  std::vector<std::pair<off_t, off_t>> out;
  for (off_t at = 0; at < size;) {
    off_t data = ::lseek(fd, at, SEEK_DATA);
    if (data < 0) break;
    off_t hole = ::lseek(fd, data, SEEK_HOLE);
    out.emplace_back(data, hole);
    at = hole;
  }
  ::close(fd);
  return out;
}

TEST(RawMemory, DiffHoldsExactlyTheDirtyPagesAndRebasesToTheCurrentMemory) {
  test::TempDir dir;
  const uint64_t pages = 64;
  auto ram = MappedRegion::anonymous(pages * kPage);
  ASSERT_TRUE(ram);
  std::span<uint8_t> bytes = ram->span();
  for (uint64_t p = 0; p < pages; p += 2) std::memset(bytes.data() + p * kPage, static_cast<int>(p + 1), kPage);
  RamSource src{0x4000'0000, bytes};
  const uint64_t offsets[] = {0};
  ASSERT_TRUE(write_raw_memory(dir.file("base.mem"), {&src, 1}, offsets));

  // After the base: page 3 (was zero) gains data, page 4 (had data) becomes
  // zero, page 10 is rewritten with the same bytes; all three are dirty.
  std::memset(bytes.data() + 3 * kPage, 0xab, kPage);
  std::memset(bytes.data() + 4 * kPage, 0, kPage);
  DirtyBitmap dirty(pages);
  for (uint64_t p : {3, 4, 10}) dirty.set(p);
  auto written = write_raw_memory(dir.file("diff.mem"), {&src, 1}, offsets, {&dirty, 1});
  ASSERT_TRUE(written) << written.error().describe();
  EXPECT_EQ(written->data_bytes, 3 * kPage);
  EXPECT_EQ(written->file_bytes, pages * kPage);

  // The zeroed page is data in the diff, or a rebase would keep its old bytes.
  auto extents = data_extents(dir.file("diff.mem"));
  ASSERT_EQ(extents.size(), 2u);
  EXPECT_EQ(extents[0], (std::pair<off_t, off_t>{3 * kPage, 5 * kPage}));
  EXPECT_EQ(extents[1], (std::pair<off_t, off_t>{10 * kPage, 11 * kPage}));

  auto rebased = rebase_raw_memory(dir.file("base.mem"), dir.file("diff.mem"));
  ASSERT_TRUE(rebased) << rebased.error().describe();
  EXPECT_EQ(rebased->data_bytes, 3 * kPage);
  EXPECT_EQ(rebased->extents, 2u);
  auto merged = test::read_file(dir.file("base.mem"));
  ASSERT_EQ(merged.size(), bytes.size());
  EXPECT_EQ(std::memcmp(merged.data(), bytes.data(), bytes.size()), 0);
}

TEST(RawMemory, DiffBitmapsMustMatchTheRegions) {
  test::TempDir dir;
  auto ram = MappedRegion::anonymous(16 * kPage);
  ASSERT_TRUE(ram);
  RamSource src{0, ram->span()};
  const uint64_t offsets[] = {0};
  DirtyBitmap wrong(8);
  auto r = write_raw_memory(dir.file("diff.mem"), {&src, 1}, offsets, {&wrong, 1});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().describe().find("dirty bitmap"), std::string::npos);
  EXPECT_TRUE(test::temp_files_in(dir.path()).empty());
  EXPECT_NE(::access(dir.file("diff.mem").c_str(), F_OK), 0);
}

TEST(RawMemory, RebaseRefusesALongerDiffAndTheSameFileAndChangesNothing) {
  test::TempDir dir;
  test::write_file(dir.file("base.mem"), std::vector<uint8_t>(4 * kPage, 7));
  test::write_file(dir.file("long.mem"), std::vector<uint8_t>(8 * kPage, 9));
  auto r = rebase_raw_memory(dir.file("base.mem"), dir.file("long.mem"));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().describe().find("longer than the base"), std::string::npos);
  auto same = rebase_raw_memory(dir.file("base.mem"), dir.file("base.mem"));
  ASSERT_FALSE(same);
  EXPECT_NE(same.error().describe().find("same file"), std::string::npos);
  EXPECT_EQ(test::read_file(dir.file("base.mem")), std::vector<uint8_t>(4 * kPage, 7));
  EXPECT_FALSE(rebase_raw_memory(dir.file("base.mem"), dir.file("missing.mem")));
}

}  // namespace
}  // namespace snapvm
