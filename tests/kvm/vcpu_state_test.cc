// Pausing a running guest and capturing every vCPU register, on the test
// host's real KVM: the first steps of a snapshot.
#include <gtest/gtest.h>

#include <set>

#include "background_vm.h"
#include "kvm/kvm.h"

namespace snapvm {
namespace {

using test::BackgroundVm;
using test::run;

constexpr uint64_t kRegPc = 0x6030'0000'0010'0040;
constexpr uint64_t kTimerCnt = 0x6030'0000'0013'DF1A;

TEST(VcpuState, PauseCaptureRestoreResume) {
  const std::string vsock = "/tmp/vcpu-state.vsock";
  BackgroundVm vm(vsock);
  ASSERT_TRUE(vm.error().empty()) << vm.error();
  ASSERT_TRUE(vm.wait_ready()) << vm.console();
  ASSERT_EQ(run(vsock, {"true"}).result.exit_code, 0);

  EXPECT_FALSE(vm.machine().capture_vcpus()) << "capture must refuse a running VM";
  ASSERT_TRUE(vm.machine().pause());
  EXPECT_TRUE(vm.machine().paused());

  auto first = vm.machine().capture_vcpus();
  ASSERT_TRUE(first) << first.error().describe();
  ASSERT_EQ(first->size(), 2u);
  for (const auto& v : *first) {
    // Every register KVM lists, each with the width its id encodes.
    EXPECT_GT(v.registers.size(), 200u) << "vCPU " << v.index;
    std::set<uint64_t> ids;
    for (const auto& r : v.registers) {
      EXPECT_EQ(r.value.size(), kvm::reg_size(r.id)) << std::hex << r.id;
      ids.insert(r.id);
    }
    EXPECT_EQ(ids.size(), v.registers.size()) << "duplicate register ids";
    EXPECT_TRUE(ids.count(kRegPc)) << "no PC";
    EXPECT_TRUE(ids.count(kTimerCnt)) << "no virtual counter";
    EXPECT_EQ(v.mpidr & 0xff, v.index);
    EXPECT_EQ(v.mp_state, 0u) << "both vCPUs are online and runnable";
    EXPECT_FALSE(v.events.empty());
  }
  std::printf("FIGURE vcpu_registers_captured=%zu\n", (*first)[0].registers.size());

  // Paused means frozen: a second capture sees the same PC on every vCPU.
  auto second = vm.machine().capture_vcpus();
  ASSERT_TRUE(second);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ((*first)[i].find(kRegPc)->value, (*second)[i].find(kRegPc)->value) << "vCPU " << i << " ran while paused";
  }

  // Writing the whole captured state back is accepted register by register,
  // and the guest carries on from it.
  auto restored = vm.machine().restore_vcpus(*first);
  ASSERT_TRUE(restored) << restored.error().describe();
  ASSERT_TRUE(vm.machine().resume());
  EXPECT_FALSE(vm.machine().paused());
  auto after = run(vsock, {"sh", "-c", "echo still running"});
  ASSERT_TRUE(after.error.empty()) << after.error;
  EXPECT_EQ(after.out, "still running\n");
  EXPECT_FALSE(vm.exited());
}

}  // namespace
}  // namespace snapvm

namespace snapvm {
namespace {

TEST(GicState, CaptureRestoreRoundTripsWhilePaused) {
  const std::string vsock = "/tmp/gic-state.vsock";
  test::BackgroundVm vm(vsock);
  ASSERT_TRUE(vm.error().empty()) << vm.error();
  ASSERT_TRUE(vm.wait_ready()) << vm.console();
  EXPECT_FALSE(vm.machine().capture_gic()) << "capture must refuse a running VM";
  ASSERT_TRUE(vm.machine().pause());
  auto gic = vm.machine().capture_gic();
  ASSERT_TRUE(gic) << gic.error().describe();
  EXPECT_EQ(gic->nr_irqs, 128u);
  EXPECT_EQ(gic->redistributors.size(), 2u);
  ASSERT_EQ(gic->cpu_interfaces.size(), 2u);
  EXPECT_EQ(gic->distributor.front().offset, 0u);
  EXPECT_NE(gic->distributor.front().value & 0x2, 0u) << "GICD_CTLR: group 1 enabled by the guest";
  EXPECT_EQ(gic->cpu_interfaces[0].regs.front().value & 1, 1u) << "ICC_SRE_EL1.SRE";
  EXPECT_EQ(gic->cpu_interfaces[0].regs.back().value & 1, 1u) << "ICC_IGRPEN1_EL1 enabled by Linux";
  // The guest enabled some SPIs (UART, virtio): at least one enable bit.
  uint32_t enabled = 0;
  for (const auto& r : gic->distributor) {
    if (r.offset >= 0x104 && r.offset < 0x110) enabled |= r.value;
  }
  EXPECT_NE(enabled, 0u);

  // Restoring into the same GIC and capturing again gives the same state.
  auto restored = vm.machine().restore_gic(*gic);
  ASSERT_TRUE(restored) << restored.error().describe();
  auto again = vm.machine().capture_gic();
  ASSERT_TRUE(again);
  for (size_t i = 0; i < gic->distributor.size(); ++i) {
    EXPECT_EQ(gic->distributor[i].value, again->distributor[i].value)
        << "GICD offset 0x" << std::hex << gic->distributor[i].offset;
  }
  for (size_t c = 0; c < 2; ++c) {
    EXPECT_EQ(gic->redistributors[c], again->redistributors[c]) << "redistributor " << c;
    EXPECT_EQ(gic->cpu_interfaces[c], again->cpu_interfaces[c]) << "CPU interface " << c;
  }
  EXPECT_EQ(gic->line_levels, again->line_levels);
  ASSERT_TRUE(vm.machine().resume());
  auto after = test::run(vsock, {"echo", "interrupts still flow"});
  ASSERT_TRUE(after.error.empty()) << after.error;
  EXPECT_EQ(after.out, "interrupts still flow\n");
}

}  // namespace
}  // namespace snapvm
