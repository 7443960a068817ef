// The restore plan: what a snapshot's records and the caller's options make
// of the machine to build, decided before any KVM object exists.
#include "vmm/restore_plan.h"

#include <gtest/gtest.h>

#include <fstream>

#include "base/byte_codec.h"
#include "test_util.h"

namespace snapvm {
namespace {

constexpr uint64_t kRam = 256ull << 20;
constexpr uint64_t kReadOnlyFeature = 1ull << 5;  // VIRTIO_BLK_F_RO

state::DeviceConfig virtio_at(uint32_t index, virtio::DeviceType type, std::string name, std::string backend) {
  const arch::DeviceSlot s = arch::virtio_slot(index);
  return {state::DeviceKind::kVirtioMmio, static_cast<uint32_t>(type), s.base, s.size, s.irq, std::move(name),
          std::move(backend)};
}

state::DeviceState saved(uint32_t slot, virtio::DeviceType type, uint64_t device_features = 0,
                         std::vector<uint8_t> specific = {}) {
  state::VirtioMmioState t;
  t.device_id = static_cast<uint32_t>(type);
  t.device_features = device_features;
  return {slot, t, std::move(specific)};
}

std::vector<uint8_t> vsock_record(uint64_t cid) {
  ByteWriter w;
  w.u64(cid);
  w.u32(0);  // no connections
  return w.take();
}

std::vector<uint8_t> net_record(std::array<uint8_t, 6> mac) {
  ByteWriter w;
  w.u32(1);  // the record's version
  for (uint8_t b : mac) w.u8(b);
  return w.take();
}

class RestorePlanTest : public ::testing::Test {
 protected:
  void SetUp() override {
    disk_ = dir_.file("disk.img");
    std::ofstream(disk_) << "x";
    snapshot_ = dir_.file("vm.snap");
    const arch::ConsoleSlot con = arch::console_slot();
    st_.machine.vcpu_count = 2;
    st_.machine.kernel_cmdline = "console=hvc0";
    st_.machine.devices.push_back({con.kind, 0, con.slot.base, con.slot.size, con.slot.irq, "console", ""});
    ram_ = arch::ram_regions(kRam);
  }
  void add(state::DeviceConfig where, std::optional<state::DeviceState> record) {
    const uint32_t slot = static_cast<uint32_t>(st_.machine.devices.size());
    st_.machine.devices.push_back(std::move(where));
    if (record) {
      record->slot = slot;
      st_.devices.push_back(*record);
    }
  }
  Result<RestorePlan> plan() { return plan_restore(st_, ram_, options_, snapshot_); }

  test::TempDir dir_;
  std::string disk_, snapshot_;
  state::SnapshotState st_;
  std::vector<arch::RamRegion> ram_;
  RestoreOptions options_;
};

TEST_F(RestorePlanTest, EachVirtioDeviceGoesBackToTheSlotItWasSavedIn) {
  // Not the order a new machine takes (rng, disks, vsock): the snapshot's.
  add(virtio_at(0, virtio::DeviceType::kVsock, "vsock", dir_.file("vm.vsock")),
      saved(0, virtio::DeviceType::kVsock, 0, vsock_record(42)));
  add(virtio_at(1, virtio::DeviceType::kBlock, "rootfs", disk_), saved(0, virtio::DeviceType::kBlock, kReadOnlyFeature));
  add(virtio_at(2, virtio::DeviceType::kRng, "virtio2", ""), saved(0, virtio::DeviceType::kRng));
  auto p = plan();
  ASSERT_TRUE(p.has_value()) << p.error().message();
  const std::vector<VirtioPlacement> expected = {
      {virtio::DeviceType::kVsock, 0}, {virtio::DeviceType::kBlock, 0}, {virtio::DeviceType::kRng, 0}};
  EXPECT_EQ(p->placement, expected);
  EXPECT_EQ(p->config.vcpus, 2u);
  EXPECT_EQ(p->config.mem_bytes, kRam);
  EXPECT_EQ(p->config.cmdline, "console=hvc0");
  EXPECT_TRUE(p->config.rng);
  EXPECT_EQ(p->config.guest_cid, 42u);
  EXPECT_EQ(p->config.vsock_path, dir_.file("vm.vsock"));
  ASSERT_EQ(p->config.disks.size(), 1u);
  EXPECT_TRUE(p->config.disks[0].read_only) << "the guest negotiated VIRTIO_BLK_F_RO";
  EXPECT_EQ(p->config.disks[0].id, "rootfs");
  EXPECT_EQ(p->config.disks[0].path, disk_);
}

TEST_F(RestorePlanTest, RecordedPathsOutsideTheAllowedDirectoryNeedTheCallersOwn) {
  add(virtio_at(0, virtio::DeviceType::kBlock, "", "/etc/passwd"), saved(0, virtio::DeviceType::kBlock));
  auto p = plan();
  ASSERT_FALSE(p.has_value());
  EXPECT_NE(p.error().message().find("--disk PATH"), std::string::npos) << p.error().message();
  options_.disks = {disk_};
  p = plan();
  ASSERT_TRUE(p.has_value()) << p.error().message();
  EXPECT_EQ(p->config.disks.at(0).path, disk_);
  EXPECT_FALSE(p->config.disks.at(0).read_only);
}

TEST_F(RestorePlanTest, ANetworkInterfaceNeedsATapAndKeepsItsMacUnlessGivenOne) {
  add(virtio_at(0, virtio::DeviceType::kNet, "eth0", "tap-old"),
      saved(0, virtio::DeviceType::kNet, 0, net_record({2, 0, 0, 0, 0, 7})));
  auto p = plan();
  ASSERT_FALSE(p.has_value());
  EXPECT_NE(p.error().message().find("--net tap=NAME"), std::string::npos) << p.error().message();
  options_.taps_by_id = {{"eth0", "tap-new"}};
  p = plan();
  ASSERT_TRUE(p.has_value()) << p.error().message();
  ASSERT_EQ(p->config.nets.size(), 1u);
  EXPECT_EQ(p->config.nets[0].tap, "tap-new");
  EXPECT_EQ(p->config.nets[0].mac, (virtio::MacAddress{2, 0, 0, 0, 0, 7}));
  options_.nets = {{"tap-x", virtio::MacAddress{2, 1, 1, 1, 1, 1}, ""}};
  options_.taps_by_id.clear();
  p = plan();
  ASSERT_TRUE(p.has_value()) << p.error().message();
  EXPECT_EQ(p->config.nets[0].tap, "tap-x");
  EXPECT_EQ(p->config.nets[0].mac, (virtio::MacAddress{2, 1, 1, 1, 1, 1}));
  EXPECT_EQ(p->config.nets[0].id, "eth0");
  options_.nets.push_back({"tap-y", std::nullopt, ""});
  p = plan();
  ASSERT_FALSE(p.has_value()) << "two --net for one interface";
}

TEST_F(RestorePlanTest, RefusesWhatCannotBeBuilt) {
  {
    SCOPED_TRACE("a virtio type this VMM lacks");
    add(virtio_at(0, static_cast<virtio::DeviceType>(9), "", ""), std::nullopt);
    EXPECT_FALSE(plan().has_value());
    st_.machine.devices.pop_back();
  }
  {
    SCOPED_TRACE("two vsock devices");
    add(virtio_at(0, virtio::DeviceType::kVsock, "", dir_.file("a")), std::nullopt);
    add(virtio_at(1, virtio::DeviceType::kVsock, "", dir_.file("b")), std::nullopt);
    EXPECT_FALSE(plan().has_value());
    st_.machine.devices.resize(1);
  }
  {
    SCOPED_TRACE("a vsock record too short for its CID");
    add(virtio_at(0, virtio::DeviceType::kVsock, "", dir_.file("a")), saved(0, virtio::DeviceType::kVsock, 0, {1, 2}));
    EXPECT_FALSE(plan().has_value());
    st_.machine.devices.resize(1);
    st_.devices.clear();
  }
  {
    SCOPED_TRACE("RAM laid out otherwise than this machine lays it out");
    ram_.front().gpa += 2ull << 20;
    auto p = plan();
    ASSERT_FALSE(p.has_value());
    EXPECT_NE(p.error().message().find("RAM regions"), std::string::npos) << p.error().message();
  }
}

}  // namespace
}  // namespace snapvm
