// Every record survives a write and a read unchanged, through every writer.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <cstring>

#include "base/checksum.h"
#include "snapshot/reader.h"
#include "snapshot/verify.h"
#include "state/snapshot_state.h"
#include "test_util.h"

namespace snapvm {
namespace {

using test::SampleVm;
using test::TempDir;

std::vector<uint8_t> load_ram(const SnapshotFile& f) {
  std::vector<uint8_t> out(f.ram_regions()[0].size);
  EXPECT_TRUE(f.read_ram(0, out));
  return out;
}

TEST(RoundTrip, EveryRecordTypeSurvivesFullWriter) {
  TempDir dir;
  SampleVm vm(4 << 20, 0.3, 11, 4);
  // Edge values in every record type, beyond what the sample holds.
  vm.state.vcpus[1].registers.push_back({0x6010'0000'0000'0001, {0xff}});  // 8-bit
  vm.state.vcpus[2].events.assign(200, 0xab);
  vm.state.devices[0].transport->queues[0].last_avail_idx = 0xffff;
  vm.state.devices.push_back({0, std::nullopt, {9, 8, 7}});  // a non-virtio device (PL011) with state
  vm.state.port_forwards.push_back({3, 65535, 65535, 10, 2, "::1"});
  vm.state.clock.host_realtime_ns = -5;
  vm.state.host.kernel_release = std::string(4096, 'k');
  auto src = vm.source();
  ASSERT_TRUE(write_full(dir.file("a.snap"), vm.contents(), {&src, 1}));

  auto f = SnapshotFile::open(dir.file("a.snap"));
  ASSERT_TRUE(f) << f.error().describe();
  auto st = state::load_state(*f);
  ASSERT_TRUE(st) << st.error().describe();
  EXPECT_EQ(*st, vm.state);
  EXPECT_EQ(load_ram(*f), std::vector<uint8_t>(vm.ram.data(), vm.ram.data() + vm.ram.size()));
}

TEST(RoundTrip, CompactWriterMatchesFullWriter) {
  TempDir dir;
  SampleVm vm(8 << 20, 0.1, 3);
  auto src = vm.source();
  auto full = write_full(dir.file("full.snap"), vm.contents(), {&src, 1});
  ASSERT_TRUE(full);
  auto captured = capture_compact({&src, 1});
  ASSERT_TRUE(captured);
  EXPECT_EQ(captured->data_bytes(), full->data_bytes);
  // The capture is a copy: the guest may change its RAM before the write.
  std::memset(vm.ram.data(), 0x5a, vm.ram.size());
  auto compact = write_compact(dir.file("compact.snap"), vm.contents(), *captured);
  ASSERT_TRUE(compact);
  EXPECT_EQ(compact->data_bytes, full->data_bytes);

  auto a = SnapshotFile::open(dir.file("full.snap"));
  auto b = SnapshotFile::open(dir.file("compact.snap"));
  ASSERT_TRUE(a && b);
  EXPECT_EQ(load_ram(*a), load_ram(*b));
  EXPECT_EQ(*state::load_state(*a), *state::load_state(*b));
  EXPECT_EQ(b->header().writer_kind(), format::kFlagWriterCompact);
  EXPECT_TRUE(verify_ram(*b)->ok());
}

TEST(RoundTrip, SeveralRegionsAndThreadCounts) {
  TempDir dir;
  auto r0 = MappedRegion::anonymous(3 << 20).value();
  auto r1 = MappedRegion::anonymous(5 << 20).value();
  sample::fill_ram(r0.span(), 0.5, 1);
  sample::fill_ram(r1.span(), 0.05, 2);
  RamExtent ext[2] = {{0x4000'0000, r0.size()}, {0x1'0000'0000, r1.size()}};
  auto st = sample::make_state(1, ext);
  RamSource srcs[2] = {{ext[0].gpa, r0.span()}, {ext[1].gpa, r1.span()}};
  for (unsigned threads : {1u, 2u, 7u}) {
    std::string path = dir.file(fmt::format("t{}.snap", threads));
    ASSERT_TRUE(write_full(path, state::to_contents(st), srcs, {threads, {}}));
    auto f = SnapshotFile::open(path);
    ASSERT_TRUE(f);
    ASSERT_EQ(f->ram_regions().size(), 2u);
    for (size_t i = 0; i < 2; ++i) {
      EXPECT_EQ(f->ram_regions()[i].file_offset % format::kRamAlign, 0u);
      std::vector<uint8_t> got(f->ram_regions()[i].size);
      ASSERT_TRUE(f->read_ram(i, got));
      EXPECT_EQ(0, std::memcmp(got.data(), srcs[i].bytes.data(), got.size())) << "region " << i;
    }
    EXPECT_TRUE(verify_ram(*f)->ok());
  }
}

TEST(RoundTrip, CopyOnWriteMappingSeesFileAndKeepsWritesPrivate) {
  TempDir dir;
  SampleVm vm(4 << 20, 0.5, 5);
  auto src = vm.source();
  ASSERT_TRUE(write_full(dir.file("a.snap"), vm.contents(), {&src, 1}));
  auto f = SnapshotFile::open(dir.file("a.snap"));
  ASSERT_TRUE(f);
  auto map = f->map_ram_cow(0);
  ASSERT_TRUE(map) << map.error().describe();
  EXPECT_EQ(0, std::memcmp(map->data(), vm.ram.data(), vm.ram.size()));
  std::memset(map->data(), 0xee, 8192);  // a guest write after restore
  auto again = f->map_ram_cow(0);
  ASSERT_TRUE(again);
  EXPECT_EQ(0, std::memcmp(again->data(), vm.ram.data(), 8192)) << "a private write reached the file";
  EXPECT_TRUE(verify_ram(*f)->ok());
}

TEST(RoundTrip, SparseFileAllocatesOnlyDataPages) {
  TempDir dir;
  SampleVm vm(32 << 20, 0.02, 9);
  auto src = vm.source();
  auto stats = write_full(dir.file("a.snap"), vm.contents(), {&src, 1});
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->data_bytes + stats->zero_bytes, stats->ram_bytes);
  uint64_t expected = 0;
  for (uint64_t p = 0; p < vm.ram.size() / 4096; ++p) expected += sample::page_has_data(p, 0.02, 9) ? 4096 : 0;
  EXPECT_EQ(stats->data_bytes, expected);
  EXPECT_GE(stats->written_bytes, stats->data_bytes);
  EXPECT_LE(stats->written_bytes, stats->data_bytes * 2);  // short gaps only
  uint64_t allocated = test::allocated_bytes(dir.file("a.snap"));
  // What was written plus tables and metadata (a few blocks); never the holes.
  EXPECT_GE(allocated, stats->written_bytes);
  EXPECT_LE(allocated, stats->written_bytes + (256 << 10)) << "holes were allocated";

  // With gap merging off, exactly the data pages are allocated.
  WriteOptions exact;
  exact.merge_gap_pages = 0;
  auto exact_stats = write_full(dir.file("b.snap"), vm.contents(), {&src, 1}, exact);
  ASSERT_TRUE(exact_stats);
  EXPECT_EQ(exact_stats->written_bytes, expected);
  EXPECT_LE(test::allocated_bytes(dir.file("b.snap")), expected + (256 << 10));
}

}  // namespace
}  // namespace snapvm

namespace snapvm {
namespace {

// A snapshot holds guest RAM: other local users must not read it, whatever
// the umask (the writer used to force 0644).
TEST(Permissions, SnapshotsAreReadableByTheirOwnerOnly) {
  TempDir dir;
  SampleVm vm(1 << 20, 0.5, 5);
  auto src = vm.source();
  mode_t old = ::umask(0);
  auto full = write_full(dir.file("full.snap"), vm.contents(), {&src, 1});
  auto captured = capture_compact({&src, 1});
  auto compact = captured ? write_compact(dir.file("compact.snap"), vm.contents(), *captured) : tl::unexpected(captured.error());
  ::umask(old);
  ASSERT_TRUE(full && compact);
  for (const char* name : {"full.snap", "compact.snap"}) {
    struct stat st {};
    ASSERT_EQ(::stat(dir.file(name).c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u) << name;
  }
}

}  // namespace
}  // namespace snapvm
