// Pausing a running guest and capturing every vCPU register, on the test
// host's real KVM: the first steps of a snapshot.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <set>

#include "arch_facts.h"
#include "arch/platform.h"
#include "background_vm.h"
#include "kvm/kvm.h"
#include "snapshot/reader.h"
#include "snapshot/verify.h"
#include "state/snapshot_state.h"

namespace snapvm {
namespace {

using test::BackgroundVm;
using test::run;

constexpr uint64_t kRegPc = test::arch_facts::kPcRegister;

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
    EXPECT_GT(v.registers.size(), test::arch_facts::kMinRegisters) << "vCPU " << v.index;
    std::set<uint64_t> ids;
    for (const auto& r : v.registers) {
#if defined(__aarch64__)
      EXPECT_EQ(r.value.size(), kvm::reg_size(r.id)) << std::hex << r.id;
#endif
      ids.insert(r.id);
    }
    EXPECT_EQ(ids.size(), v.registers.size()) << "duplicate register ids";
    EXPECT_TRUE(ids.count(kRegPc)) << "no PC";
#if !defined(__aarch64__)
    EXPECT_EQ(state::x86::check_vcpu(v), "");
#endif
    EXPECT_EQ(v.arch_id & 0xff, v.index);
    EXPECT_TRUE(test::arch_facts::online(v.mp_state)) << "vCPU " << v.index << " mp_state " << v.mp_state;
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

TEST(ArchVmState, CaptureRestoreRoundTripsWhilePaused) {
  const std::string vsock = "/tmp/gic-state.vsock";
  test::BackgroundVm vm(vsock);
  ASSERT_TRUE(vm.error().empty()) << vm.error();
  ASSERT_TRUE(vm.wait_ready()) << vm.console();
  EXPECT_FALSE(vm.machine().capture_arch_vm()) << "capture must refuse a running VM";
  ASSERT_TRUE(vm.machine().pause());
  auto captured = vm.machine().capture_arch_vm();
  ASSERT_TRUE(captured) << captured.error().describe();
#if defined(__aarch64__)
  const auto* gic = std::get_if<state::GicV3State>(&*captured);
  ASSERT_NE(gic, nullptr);
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
  auto restored = vm.machine().restore_arch_vm(*captured);
  ASSERT_TRUE(restored) << restored.error().describe();
  auto again_r = vm.machine().capture_arch_vm();
  ASSERT_TRUE(again_r);
  const auto* again = std::get_if<state::GicV3State>(&*again_r);
  for (size_t i = 0; i < gic->distributor.size(); ++i) {
    EXPECT_EQ(gic->distributor[i].value, again->distributor[i].value)
        << "GICD offset 0x" << std::hex << gic->distributor[i].offset;
  }
  for (size_t c = 0; c < 2; ++c) {
    EXPECT_EQ(gic->redistributors[c], again->redistributors[c]) << "redistributor " << c;
    EXPECT_EQ(gic->cpu_interfaces[c], again->cpu_interfaces[c]) << "CPU interface " << c;
  }
  EXPECT_EQ(gic->line_levels, again->line_levels);
#else
  const auto* x86 = std::get_if<state::x86::VmState>(&*captured);
  ASSERT_NE(x86, nullptr);
  ASSERT_EQ(x86->records.size(), 5u);
  // The IOAPIC's redirection entries for the virtio lines (GSI 5..) were
  // programmed by the guest: some entry is unmasked.
  const auto* ioapic = x86->find(state::x86::VmRecord::kIoapic);
  ASSERT_NE(ioapic, nullptr);
  bool unmasked = false;
  for (int pin = 0; pin < 24; ++pin) {
    uint64_t entry = 0;
    std::memcpy(&entry, ioapic->bytes.data() + 8 + 24 + 8 * pin, 8);  // chip_id, pad, base, ioregsel, id, irr, pad
    if ((entry & (1u << 16)) == 0 && (entry & 0xff) != 0) unmasked = true;
  }
  EXPECT_TRUE(unmasked) << "no IOAPIC pin unmasked by the guest";
  auto restored = vm.machine().restore_arch_vm(*captured);
  ASSERT_TRUE(restored) << restored.error().describe();
  auto again_r = vm.machine().capture_arch_vm();
  ASSERT_TRUE(again_r);
  const auto* again = std::get_if<state::x86::VmState>(&*again_r);
  for (auto k : {state::x86::VmRecord::kPicMaster, state::x86::VmRecord::kPicSlave, state::x86::VmRecord::kIoapic}) {
    EXPECT_EQ(x86->find(k)->bytes, again->find(k)->bytes) << state::x86::vm_record_name(k);
  }
#endif
  ASSERT_TRUE(vm.machine().resume());
  auto after = test::run(vsock, {"echo", "interrupts still flow"});
  ASSERT_TRUE(after.error.empty()) << after.error;
  EXPECT_EQ(after.out, "interrupts still flow\n");

  // Pause right after resume, before the vCPU threads even woke: the guest
  // must still run afterwards (a kick left armed once froze it for good).
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(vm.machine().pause()) << i;
    ASSERT_TRUE(vm.machine().resume()) << i;
  }
  auto after_many = test::run(vsock, {"echo", "runs after back-to-back pauses"});
  ASSERT_TRUE(after_many.error.empty()) << after_many.error;
  EXPECT_EQ(after_many.out, "runs after back-to-back pauses\n");

  // A pause that times out is rolled back, not left half-done with some
  // vCPUs parked (0 ms: the vCPUs cannot all park that fast).
  bool timed_out = false;
  for (int i = 0; i < 20 && !timed_out; ++i) {
    auto p = vm.machine().pause(std::chrono::milliseconds(0));
    if (p) {
      ASSERT_TRUE(vm.machine().resume());
      continue;
    }
    timed_out = true;
    EXPECT_NE(p.error().describe().find("the VM keeps running"), std::string::npos) << p.error().describe();
    EXPECT_FALSE(vm.machine().paused());
  }
  ASSERT_TRUE(timed_out) << "a 0 ms pause completed 20 times";
  auto after_timeout = test::run(vsock, {"echo", "runs after a timed-out pause"});
  ASSERT_TRUE(after_timeout.error.empty()) << after_timeout.error;
  EXPECT_EQ(after_timeout.out, "runs after a timed-out pause\n");
  ASSERT_TRUE(vm.machine().pause());
  ASSERT_TRUE(vm.machine().resume());
}

}  // namespace
}  // namespace snapvm


namespace snapvm {
namespace {

TEST(Snapshot, PausedRunningVmBecomesAVerifiableSnapshot) {
  const std::string vsock = "/tmp/snap.vsock", path = "/tmp/vm.snap";
  std::string image = "/tmp/snap-disk.img";
  {
    int fd = ::open(image.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(0, ::ftruncate(fd, 4 << 20));
    ::close(fd);
  }
  test::BackgroundVm vm(vsock, {{image, false}}, {{0, 1024, 0, 0, 0, "127.0.0.1"}});
  ASSERT_TRUE(vm.wait_ready()) << vm.error() << vm.console();
  ASSERT_EQ(test::run(vsock, {"true"}).result.exit_code, 0);
  EXPECT_FALSE(vm.machine().snapshot(path)) << "snapshot must refuse a running VM";
  ASSERT_TRUE(vm.machine().pause());
  auto vcpus = vm.machine().capture_vcpus();
  ASSERT_TRUE(vcpus);
  auto t0 = std::chrono::steady_clock::now();
  auto stats = vm.machine().snapshot(path);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(stats) << stats.error().describe();
  EXPECT_EQ(stats->ram_bytes, 256ull << 20);
  EXPECT_GT(stats->data_bytes, 1u << 20);
  std::printf("FIGURE snapshot_256mib seconds=%.2f data_mib=%llu\n", secs,
              static_cast<unsigned long long>(stats->data_bytes >> 20));

  auto f = SnapshotFile::open(path);
  ASSERT_TRUE(f) << f.error().describe();
  auto st = state::load_state(*f);
  ASSERT_TRUE(st) << st.error().describe();
  // The snapshot's vCPU state is the paused state; only the virtual counter
  // moves (it counts host time while the guest is paused).
  ASSERT_EQ(st->vcpus.size(), vcpus->size());
  for (size_t i = 0; i < vcpus->size(); ++i) {
    const auto& a = st->vcpus[i];
    const auto& b = (*vcpus)[i];
    EXPECT_EQ(a.mp_state, b.mp_state);
    EXPECT_EQ(a.events, b.events);
    ASSERT_EQ(a.registers.size(), b.registers.size());
    for (size_t r = 0; r < a.registers.size(); ++r) {
      ASSERT_EQ(a.registers[r].id, b.registers[r].id);
      if (test::arch_facts::moves_while_paused(a.registers[r].id)) continue;
      EXPECT_EQ(a.registers[r].value, b.registers[r].value) << "register 0x" << std::hex << a.registers[r].id;
    }
  }
  EXPECT_EQ(st->machine.vcpu_count, 2u);
  ASSERT_TRUE(test::arch_facts::holds_arch_vm(st->arch_vm));
  // arm64's power button is a GPIO with registers of its own; x86_64's is
  // an ACPI event with none.
  const size_t power_button_records = arch::power_button_slot()->gpio_line ? 1 : 0;
  ASSERT_EQ(st->devices.size(), 4u + power_button_records)
      << "rng, block, vsock, the console UART's registers (and the power button's GPIO)";
  for (const auto& d : st->devices) {
    if (d.slot == 0) {
      // The console: no transport, its registers' record (version 1).
      EXPECT_FALSE(d.transport);
      ASSERT_EQ(d.device_specific.size(), test::arch_facts::kConsoleRecordBytes);
      EXPECT_EQ(d.device_specific[0], 1);
      continue;
    }
    if (st->machine.devices[d.slot].kind == state::DeviceKind::kPl061) {
      // The power button's GPIO: version 1, then DATA DIR IS IBE IEV IE ...;
      // gpio-keys enabled the button's line (3) for interrupts on both edges.
      ASSERT_EQ(d.device_specific.size(), 13u);
      EXPECT_EQ(d.device_specific[0], 1);
      EXPECT_EQ(d.device_specific[4 + 3] & 0x08, 0x08) << "IBE";
      EXPECT_EQ(d.device_specific[4 + 5] & 0x08, 0x08) << "IE";
      continue;
    }
    ASSERT_TRUE(d.transport);
    EXPECT_EQ(d.transport->status & 4, 4u) << "DRIVER_OK: the guest drives device slot " << d.slot;
  }
  EXPECT_EQ(st->machine.devices[2].backend, image);
  ASSERT_EQ(st->port_forwards.size(), 1u);
  EXPECT_EQ(st->port_forwards[0].guest_port, 1024u);
  EXPECT_GT(st->clock.guest_counter, 0u);
  EXPECT_GT(st->clock.counter_frequency_hz, 0u);
  EXPECT_FALSE(st->host.cpu_regs.empty());
  auto report = verify_ram(*f);
  ASSERT_TRUE(report);
  EXPECT_TRUE(report->ok());

  ASSERT_TRUE(vm.machine().resume());
  EXPECT_EQ(test::run(vsock, {"echo", "after"}).out, "after\n");
}

}  // namespace
}  // namespace snapvm
