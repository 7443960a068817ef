// Format compatibility: a snapshot written by the first version of snapvm
// (format 1.0, kept in tests/data) must load with every later 1.x reader.
#include <gtest/gtest.h>

#include <cstring>

#include "base/checksum.h"
#include "snapshot/reader.h"
#include "snapshot/verify.h"
#include "state/snapshot_state.h"

namespace snapvm {
namespace {

const std::string kSample = std::string(SNAPVM_TEST_DATA_DIR) + "/sample-v1.0.snap";

TEST(Compat, FirstVersionSampleLoadsForever) {
  auto f = SnapshotFile::open(kSample);
  ASSERT_TRUE(f) << f.error().describe();
  EXPECT_EQ(f->header().major, 1);
  EXPECT_EQ(f->header().minor, 0);
  EXPECT_EQ(f->header().arch, format::Arch::kArm64);
  EXPECT_EQ(f->header().metadata_checksum, 0x257692ef9d43a519ull);
  ASSERT_EQ(f->ram_regions().size(), 1u);
  EXPECT_EQ(f->ram_regions()[0].gpa, 0x4000'0000u);
  EXPECT_EQ(f->ram_regions()[0].size, 256u << 10);
  EXPECT_EQ(f->ram_regions()[0].data_bytes, 139264u);

  auto st = state::load_state(*f);
  ASSERT_TRUE(st) << st.error().describe();
  EXPECT_EQ(st->machine.vcpu_count, 2u);
  ASSERT_EQ(st->vcpus.size(), 2u);
  EXPECT_EQ(st->vcpus[0].registers.size(), 82u);
  const state::Register* pc = st->vcpus[0].find(0x6030'0000'0010'0040ull);
  ASSERT_NE(pc, nullptr);
  uint64_t pc_value = 0;
  std::memcpy(&pc_value, pc->value.data(), 8);
  EXPECT_EQ(pc_value, 0x96fd7f745956c334ull);
  EXPECT_EQ(st->vcpus[1].mp_state, 5u);  // a PSCI-off secondary
  const auto* gic = std::get_if<state::GicV3State>(&st->arch_vm);
  ASSERT_NE(gic, nullptr);
  EXPECT_EQ(gic->nr_irqs, 128u);
  ASSERT_EQ(st->port_forwards.size(), 1u);
  EXPECT_EQ(st->port_forwards[0].host_port, 8080u);
  EXPECT_EQ(st->port_forwards[0].guest_port, 80u);
  EXPECT_EQ(st->devices.size(), 3u);
  EXPECT_EQ(st->clock.counter_frequency_hz, 62'500'000u);

  std::vector<uint8_t> ram(f->ram_regions()[0].size);
  ASSERT_TRUE(f->read_ram(0, ram));
  EXPECT_EQ(checksum64(ram), 0xfa453920b9c7c1a5ull);
  auto report = verify_ram(*f);
  ASSERT_TRUE(report);
  EXPECT_TRUE(report->ok());
}

}  // namespace
}  // namespace snapvm
