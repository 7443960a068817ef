// Hostile and damaged files: every metadata byte flipped, every boundary
// truncated, every count lied about. Each must give a clear error, never a
// crash or an allocation sized by the file.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include "alloc_tracker.h"
#include "base/byte_codec.h"
#include "base/file_io.h"
#include "snapshot/reader.h"
#include "snapshot/verify.h"
#include "state/snapshot_state.h"
#include "test_util.h"

namespace snapvm {
namespace {

using test::SampleVm;
using test::TempDir;

// Opens the file and decodes its state: what `inspect` does.
Status load_all(const std::string& path) {
  auto f = SnapshotFile::open(path);
  if (!f) return tl::unexpected(f.error());
  auto st = state::load_state(*f);
  if (!st) return tl::unexpected(st.error());
  return {};
}

struct SmallSnapshot {
  TempDir dir;
  std::string path = dir.file("a.snap");
  Header header;
  explicit SmallSnapshot(format::Arch arch = format::Arch::kArm64) {
    SampleVm vm(64 << 10, 0.5, 2, 2, arch);
    auto src = vm.source();
    EXPECT_TRUE(write_full(path, vm.contents(), {&src, 1}));
    header = SnapshotFile::open(path)->header();
  }
};

void flip_byte(const std::string& path, uint64_t offset, uint8_t mask) {
  auto fd = open_file(path, O_RDWR).value();
  uint8_t b = 0;
  ASSERT_TRUE(pread_exact(fd.get(), {&b, 1}, offset));
  b ^= mask;
  ASSERT_TRUE(pwrite_all(fd.get(), {&b, 1}, offset));
}

void every_metadata_byte_flip_is_detected(format::Arch arch) {
  SmallSnapshot s(arch);
  ASSERT_TRUE(load_all(s.path));
  std::vector<uint64_t> offsets;
  for (uint64_t o = 0; o < format::kHeaderSize; ++o) offsets.push_back(o);
  for (uint64_t o = s.header.metadata_offset; o < s.header.file_size; ++o) offsets.push_back(o);
  size_t undetected = 0;
  for (uint64_t off : offsets) {
    for (uint8_t mask : {uint8_t{0x01}, uint8_t{0x80}}) {
      flip_byte(s.path, off, mask);
      auto r = load_all(s.path);
      if (r) {
        ++undetected;
        ADD_FAILURE() << "flip of bit mask " << int(mask) << " at offset " << off << " went unnoticed";
      } else {
        EXPECT_EQ(r.error().code() == ErrorCode::kDataLoss || r.error().code() == ErrorCode::kUnsupported, true)
            << r.error().describe();
      }
      flip_byte(s.path, off, mask);
    }
    if (undetected > 5) break;
  }
  ASSERT_TRUE(load_all(s.path)) << "the file was not restored between flips";
}

TEST(Corruption, EveryMetadataByteFlipIsDetected) { every_metadata_byte_flip_is_detected(format::Arch::kArm64); }
TEST(Corruption, EveryMetadataByteFlipIsDetectedX86) { every_metadata_byte_flip_is_detected(format::Arch::kX86_64); }

TEST(Corruption, ErrorsNameTheSectionAndOffset) {
  SmallSnapshot s;
  auto f = SnapshotFile::open(s.path).value();
  const Section* vcpu = f.find(format::Tag::kVcpuState);
  ASSERT_NE(vcpu, nullptr);
  flip_byte(s.path, vcpu->file_offset + format::kSectionHeaderSize + 20, 0x10);
  auto r = SnapshotFile::open(s.path);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("vcpu-state"), std::string::npos) << r.error().message();
  EXPECT_NE(r.error().message().find(fmt::format("{:#x}", vcpu->file_offset)), std::string::npos)
      << r.error().message();
}

void truncation_at_every_boundary_is_rejected(format::Arch arch) {
  SmallSnapshot s(arch);
  auto f = SnapshotFile::open(s.path).value();
  std::vector<uint64_t> cuts = {0, 1, format::kHeaderSize - 1, format::kHeaderSize, f.ram_regions()[0].file_offset,
                                f.ram_regions()[0].file_offset + 4096, f.ram_regions()[0].table_offset,
                                s.header.metadata_offset, s.header.file_size - 1};
  for (const auto& sec : f.sections()) {
    cuts.push_back(sec.file_offset);
    cuts.push_back(sec.file_offset + format::kSectionHeaderSize);
  }
  auto original = test::read_file(s.path);
  for (uint64_t cut : cuts) {
    ASSERT_EQ(0, ::truncate(s.path.c_str(), static_cast<off_t>(cut)));
    auto r = SnapshotFile::open(s.path);
    EXPECT_FALSE(r) << "truncated at " << cut;
    if (!r) {
      EXPECT_EQ(r.error().code(), ErrorCode::kDataLoss) << r.error().describe();
    }
    test::write_file(s.path, original);
  }
}

TEST(Corruption, TruncationAtEveryBoundaryIsRejected) { truncation_at_every_boundary_is_rejected(format::Arch::kArm64); }
TEST(Corruption, TruncationAtEveryBoundaryIsRejectedX86) {
  truncation_at_every_boundary_is_rejected(format::Arch::kX86_64);
}

TEST(Corruption, FileTruncatedAfterOpenCannotBeMapped) {
  SmallSnapshot s;
  auto f = SnapshotFile::open(s.path).value();
  ASSERT_EQ(0, ::truncate(s.path.c_str(), static_cast<off_t>(f.ram_regions()[0].file_offset + 8192)));
  auto m = f.map_ram_cow(0);
  ASSERT_FALSE(m) << "a mapping past the end of the file would SIGBUS later";
  EXPECT_NE(m.error().message().find("ends at"), std::string::npos) << m.error().message();
}

// Writes a snapshot whose sections are exactly `sections` (checksums valid).
std::string write_with_sections(const TempDir& dir, std::vector<Section> sections) {
  SampleVm vm(64 << 10, 0.5, 2);
  auto src = vm.source();
  std::string path = dir.file("lie.snap");
  SnapshotContents c{format::Arch::kArm64, std::move(sections)};
  EXPECT_TRUE(write_full(path, c, {&src, 1}));
  return path;
}

TEST(Corruption, LyingCountsAreRejectedWithoutLargeAllocations) {
  TempDir dir;
  SampleVm vm(64 << 10, 0.5, 2);
  auto good = vm.contents().sections;
  struct Lie {
    format::Tag tag;
    std::vector<uint8_t> payload;
  };
  auto u32s = [](std::initializer_list<uint32_t> v) {
    ByteWriter w;
    for (uint32_t x : v) w.u32(x);
    return w.take();
  };
  std::vector<Lie> lies = {
      // vCPU: index, mpidr(2 words), mp_state, register count 0xffffffff
      {format::Tag::kVcpuState, u32s({0, 0, 0, 0, 0xffffffff})},
      {format::Tag::kVcpuState, u32s({0, 0, 0, 0, 8000, 1, 2})},
      {format::Tag::kGicV3State, u32s({128, 0xfffffff0})},
      {format::Tag::kDeviceState, u32s({0, 0xffffffffu})},
      {format::Tag::kMachineConfig, u32s({1, 0x7fffffff})},
      {format::Tag::kMachineConfig, u32s({1, 0, 0, 0xfffffff0})},
      {format::Tag::kPortForwards, u32s({0x10000000})},
      {format::Tag::kHostIdentity, u32s({0, 0xffffff00})},
  };
  for (const auto& lie : lies) {
    auto sections = good;
    for (auto& s : sections) {
      if (s.tag == static_cast<uint32_t>(lie.tag)) {
        s.payload = lie.payload;
        break;
      }
    }
    std::string path = write_with_sections(dir, sections);
    test::start_alloc_tracking();
    auto r = load_all(path);
    size_t largest = test::stop_alloc_tracking();
    ASSERT_FALSE(r) << "tag " << static_cast<uint32_t>(lie.tag);
    EXPECT_EQ(r.error().code(), ErrorCode::kDataLoss) << r.error().describe();
    EXPECT_LT(largest, 1u << 20) << r.error().describe();
  }
}

TEST(Corruption, UnknownOptionalSectionIsSkippedUnknownRequiredRefused) {
  TempDir dir;
  SampleVm vm(64 << 10, 0.5, 2);
  auto sections = vm.contents().sections;
  sections.push_back(Section{999, 0, {1, 2, 3}});
  auto ok = SnapshotFile::open(write_with_sections(dir, sections));
  ASSERT_TRUE(ok) << ok.error().describe();
  EXPECT_EQ(ok->skipped_sections(), 1u);
  EXPECT_TRUE(state::load_state(*ok));

  sections.back().flags = format::kSectionRequired;
  auto bad = SnapshotFile::open(write_with_sections(dir, sections));
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), ErrorCode::kUnsupported);
  EXPECT_NE(bad.error().message().find("tag 999"), std::string::npos) << bad.error().message();
}

TEST(Corruption, WrongMagicAndFutureMajorVersionGiveClearErrors) {
  SmallSnapshot s;
  flip_byte(s.path, 0, 0x20);
  auto r = SnapshotFile::open(s.path);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("not a snapvm snapshot"), std::string::npos);
  flip_byte(s.path, 0, 0x20);
  flip_byte(s.path, 8, 0x03);  // major 1 -> 2
  r = SnapshotFile::open(s.path);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kUnsupported);
  EXPECT_NE(r.error().message().find("version 2.0"), std::string::npos) << r.error().message();
}

TEST(Corruption, VerifyFindsAnyFlippedBitInRamAndNamesThePage) {
  TempDir dir;
  SampleVm vm(2 << 20, 0.5, 4);
  auto src = vm.source();
  std::string path = dir.file("a.snap");
  ASSERT_TRUE(write_full(path, vm.contents(), {&src, 1}));
  auto f0 = SnapshotFile::open(path).value();
  const RamRegion region = f0.ram_regions()[0];
  // Data pages and holes alike, first, middle and last bytes of pages.
  for (uint64_t page : {0ull, 1ull, 2ull, 77ull, 255ull, 511ull}) {
    for (uint64_t byte : {0ull, 2049ull, 4095ull}) {
      uint64_t off = region.file_offset + page * 4096 + byte;
      for (uint8_t mask : {uint8_t{1}, uint8_t{0x40}}) {
        flip_byte(path, off, mask);
        auto f = SnapshotFile::open(path).value();  // RAM damage does not stop opening
        auto report = verify_ram(f);
        ASSERT_TRUE(report);
        ASSERT_EQ(report->bad_page_count, 1u) << "page " << page << " byte " << byte;
        EXPECT_EQ(report->bad_pages[0].page, page);
        EXPECT_EQ(report->bad_pages[0].file_offset, region.file_offset + page * 4096);
        EXPECT_EQ(report->bad_pages[0].gpa, region.gpa + page * 4096);
        flip_byte(path, off, mask);
      }
    }
  }
  EXPECT_TRUE(verify_ram(SnapshotFile::open(path).value())->ok());
}

TEST(Corruption, VerifyDetectsDamagedChecksumTable) {
  SmallSnapshot s;
  auto f = SnapshotFile::open(s.path).value();
  flip_byte(s.path, f.ram_regions()[0].table_offset + 13, 0x08);
  auto r = verify_ram(SnapshotFile::open(s.path).value());
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("checksum table"), std::string::npos) << r.error().message();
}

}  // namespace
}  // namespace snapvm
