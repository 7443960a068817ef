// x86_64 snapshots through the container on any host: written, read back
// equal, and refused when their architecture's records are missing, mixed
// with another architecture's or of impossible sizes.
#include <gtest/gtest.h>

#include "snapshot/reader.h"
#include "snapshot/writer.h"
#include "state/snapshot_state.h"
#include "state/x86_64/x86_state.h"
#include "test_util.h"

namespace snapvm {
namespace {

using namespace state::x86;

state::VcpuState x86_vcpu(uint32_t index) {
  state::VcpuState v;
  v.index = index;
  v.arch_id = index;
  v.mp_state = index == 0 ? 0 : 3;
  auto add = [&](Struct s, size_t n) {
    v.registers.push_back({struct_id(s), std::vector<uint8_t>(n, static_cast<uint8_t>(index + n))});
  };
  add(Struct::kCpuid, 8 + 40 * 2);
  add(Struct::kTscKhz, 8);
  add(Struct::kRegs, 144);
  add(Struct::kSregs, 312);
  add(Struct::kXsave, 4096 + 64 * 8);  // KVM_CAP_XSAVE2's larger size
  add(Struct::kXcrs, 392);
  add(Struct::kDebugRegs, 128);
  add(Struct::kLapic, 1024);
  for (uint32_t msr : {0x10u, 0x174u, 0xc0000080u, 0x6e0u}) v.registers.push_back({msr_id(msr), std::vector<uint8_t>(8, 7)});
  v.events.assign(64, 1);
  return v;
}

state::SnapshotState x86_state() {
  state::SnapshotState s;
  s.arch = format::Arch::kX86_64;
  s.machine.vcpu_count = 2;
  s.machine.memory.push_back({0, 64 << 10});
  s.machine.devices.push_back({state::DeviceKind::kSerial8250, 0, 0x3f8, 8, 4, "console", ""});
  s.vcpus = {x86_vcpu(0), x86_vcpu(1)};
  VmState vm;
  for (auto k : {VmRecord::kPit, VmRecord::kClock, VmRecord::kPicMaster, VmRecord::kPicSlave, VmRecord::kIoapic}) {
    vm.records.push_back({k, std::vector<uint8_t>(vm_record_size(k), 3)});
  }
  s.arch_vm = vm;
  s.devices.push_back({0, std::nullopt, std::vector<uint8_t>(16, 1)});
  s.host.cpu_model = "AuthenticAMD family 0x19";
  return s;
}

Result<state::SnapshotState> round_trip(const state::SnapshotState& s, const std::string& path) {
  std::vector<uint8_t> ram(64 << 10, 0);
  ram[4096] = 1;
  RamSource src{0, ram};
  SNAPVM_TRY(write_full(path, state::to_contents(s), {&src, 1}));
  auto f = SNAPVM_TRY(SnapshotFile::open(path));
  return state::load_state(f);
}

TEST(X86Snapshot, WrittenAndReadBackEqual) {
  test::TempDir dir;
  auto s = x86_state();
  auto back = round_trip(s, dir.path() + "/x86.snap");
  ASSERT_TRUE(back) << back.error().describe();
  EXPECT_EQ(*back, s);
}

TEST(X86Snapshot, RefusedWithoutItsRecordsOrMixedWithArm64Ones) {
  test::TempDir dir;
  auto no_vm = x86_state();
  no_vm.arch_vm = std::monostate{};
  auto r1 = round_trip(no_vm, dir.path() + "/a.snap");
  ASSERT_FALSE(r1);
  EXPECT_NE(r1.error().describe().find("no x86-vm-state"), std::string::npos) << r1.error().describe();

  auto short_regs = x86_state();
  short_regs.vcpus[1].registers[2].value.resize(100);
  auto r2 = round_trip(short_regs, dir.path() + "/b.snap");
  ASSERT_FALSE(r2);
  EXPECT_NE(r2.error().describe().find("x86_64 vCPU 1: regs record"), std::string::npos) << r2.error().describe();

  auto mixed = x86_state();
  mixed.vcpus[0].registers.push_back({0x6030'0000'0010'0040ull, std::vector<uint8_t>(8, 0)});
  auto r3 = round_trip(mixed, dir.path() + "/c.snap");
  ASSERT_FALSE(r3);
  EXPECT_NE(r3.error().describe().find("not an x86 one"), std::string::npos) << r3.error().describe();

  auto as_arm = x86_state();
  as_arm.arch = format::Arch::kArm64;
  auto r4 = round_trip(as_arm, dir.path() + "/d.snap");
  ASSERT_FALSE(r4) << "an arm64 file with x86 records";
}

TEST(X86Snapshot, WriterRefusesContentsWithoutAnArchitecture) {
  test::TempDir dir;
  auto s = x86_state();
  s.arch = format::Arch{};
  std::vector<uint8_t> ram(64 << 10, 0);
  RamSource src{0, ram};
  auto w = write_full(dir.path() + "/none.snap", state::to_contents(s), {&src, 1});
  ASSERT_FALSE(w);
  EXPECT_NE(w.error().describe().find("no architecture"), std::string::npos) << w.error().describe();
}

}  // namespace
}  // namespace snapvm
