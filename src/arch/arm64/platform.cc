// The arm64 machine: GICv3, PSCI, a PL011 console, virtio-mmio slots, and a
// device tree for the kernel (layout in arch/arm64/layout.h).
#include "arch/platform.h"

#include <linux/kvm.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>

#include "arch/arm64/fdt.h"
#include "arch/arm64/gic_capture.h"
#include "arch/arm64/kernel_image.h"
#include "arch/arm64/layout.h"
#include "arch/arm64/vcpu_capture.h"
#include "devices/pl011.h"
#include "devices/pl061.h"
#include "kvm/ioctl.h"

namespace snapvm::arch {
namespace {

constexpr uint64_t core_reg(uint64_t offset_bytes) {
  return KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE | (offset_bytes / sizeof(uint32_t));
}
constexpr uint64_t kRegPc = core_reg(offsetof(kvm_regs, regs.pc));
constexpr uint64_t kRegPstate = core_reg(offsetof(kvm_regs, regs.pstate));
constexpr uint64_t kRegX0 = core_reg(offsetof(kvm_regs, regs.regs));
constexpr uint64_t kRegMpidr = ARM64_SYS_REG(3, 0, 0, 0, 5);
// EL1h with D, A, I and F masked, as the boot protocol requires.
constexpr uint64_t kBootPstate = 0x3c5;
constexpr uint64_t kMpidrAffinityMask = 0xff00ffffffull;

uint32_t spi_line(uint32_t spi) { return (KVM_ARM_IRQ_TYPE_SPI << KVM_ARM_IRQ_TYPE_SHIFT) | (kGicSpiBase + spi); }

}  // namespace

struct Platform::Impl {
  const kvm::Vm* vm = nullptr;
  kvm::Device gic;
  std::unique_ptr<Pl061> power_gpio;  // the power button's GPIO, from add_devices on
};

format::Arch snapshot_arch() { return format::Arch::kArm64; }
std::string_view name() { return "arm64"; }
std::string_view default_cmdline() { return "console=ttyAMA0 quiet panic=-1"; }
std::string_view console_description() { return "a PL011 UART"; }
std::string_view kernel_file_example() { return "Image"; }
std::string_view kernel_description() { return "kernel: an arm64 Image, uncompressed (Debian's vmlinuz is one)"; }

Status check_ram_size(uint64_t bytes) {
  if (bytes == 0 || bytes % (2ull << 20) != 0 || bytes > kMaxRamBytes) {
    return make_error(ErrorCode::kInvalidArgument, "memory size {} is not a positive multiple of 2 MiB up to {} GiB",
                      bytes, kMaxRamBytes >> 30);
  }
  return {};
}

std::vector<RamRegion> ram_regions(uint64_t bytes) { return {{kRamBase, bytes}}; }

uint32_t max_vcpus(const kvm::Kvm& kvm) { return std::min(kMaxVcpus, kvm_vcpu_limit(kvm)); }

uint32_t virtio_slot_count() { return kVirtioMmioSlots; }

DeviceSlot virtio_slot(uint32_t index) {
  return {kVirtioMmioBase + index * kVirtioMmioSlotSize, kVirtioMmioSlotSize, kVirtioFirstSpi + index};
}

ConsoleSlot console_slot() { return {{kUartBase, kUartSize, kUartSpi}, false, state::DeviceKind::kPl011}; }

std::unique_ptr<ConsoleDevice> make_console(ConsoleDevice::OutputFn output, ConsoleDevice::IrqFn irq) {
  return std::make_unique<Pl011>(std::move(output), std::move(irq));
}

std::optional<PowerButtonSlot> power_button_slot() {
  return PowerButtonSlot{{kGpioBase, kGpioSize, kGpioSpi}, kPowerButtonLine};  // wired in build_fdt
}

Status check_boot(const BootImages& images, uint64_t ram_bytes) {
  auto kernel = SNAPVM_TRY(parse_kernel_image(images.kernel, images.kernel_name));
  SNAPVM_TRY(plan_boot(kRamBase, ram_bytes, kernel, images.initrd.size()));
  return {};
}

// Everything arm64 reports (MMIO, PSCI power events) is common to KVM.
Exit decode_exit(kvm_run& run, uint32_t vcpu_index) { return decode_common_exit(run, vcpu_index); }

Platform::Platform(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Platform::~Platform() = default;

Result<std::unique_ptr<Platform>> Platform::create(const kvm::Kvm& /*kvm*/, const kvm::Vm& vm, uint32_t /*vcpus*/) {
  auto gic = vm.create_device(KVM_DEV_TYPE_ARM_VGIC_V3);
  if (!gic) return tl::unexpected(std::move(gic.error()).context("create the in-kernel GICv3 (does the host have one?)"));
  uint64_t dist = kGicDistBase, redist = kGicRedistBase;
  // The redistributor region is sized by the vCPUs created later.
  SNAPVM_CHECK_OK(gic->set_attr(KVM_DEV_ARM_VGIC_GRP_ADDR, KVM_VGIC_V3_ADDR_TYPE_DIST, &dist));
  SNAPVM_CHECK_OK(gic->set_attr(KVM_DEV_ARM_VGIC_GRP_ADDR, KVM_VGIC_V3_ADDR_TYPE_REDIST, &redist));
  auto impl = std::make_unique<Impl>();
  impl->vm = &vm;
  impl->gic = std::move(*gic);
  return std::unique_ptr<Platform>(new Platform(std::move(impl)));
}

// KVM_ARM_VCPU_INIT: PSCI 0.2; every vCPU but the first starts powered off
// and is brought up by the guest with PSCI CPU_ON.
Status Platform::init_vcpu(const kvm::Vcpu& vcpu) {
  kvm_vcpu_init init{};
  SNAPVM_TRY(kvm::checked_ioctl(impl_->vm->fd(), KVM_ARM_PREFERRED_TARGET, &init, "KVM_ARM_PREFERRED_TARGET"));
  std::memset(init.features, 0, sizeof init.features);
  init.features[0] |= 1u << KVM_ARM_VCPU_PSCI_0_2;
  if (vcpu.id() != 0) init.features[0] |= 1u << KVM_ARM_VCPU_POWER_OFF;
  auto r = kvm::checked_ioctl(vcpu.fd(), KVM_ARM_VCPU_INIT, &init, "KVM_ARM_VCPU_INIT");
  if (!r) return tl::unexpected(std::move(r.error()).context(fmt::format("vCPU {}", vcpu.id())));
  return {};
}

// After all vCPUs are initialised: size and initialise the GIC.
Status Platform::finalize(std::span<const kvm::Vcpu> /*vcpus*/) {
  uint32_t nr_irqs = kGicNrIrqs;
  SNAPVM_CHECK_OK(impl_->gic.set_attr(KVM_DEV_ARM_VGIC_GRP_NR_IRQS, 0, &nr_irqs));
  SNAPVM_CHECK_OK(impl_->gic.set_attr(KVM_DEV_ARM_VGIC_GRP_CTRL, KVM_DEV_ARM_VGIC_CTRL_INIT, nullptr));
  return {};
}

// Power off and reset arrive as PSCI calls (KVM_EXIT_SYSTEM_EVENT): no
// device carries a request, and everything is on the MMIO bus.
Status Platform::add_devices(MmioBus& mmio, ConsoleDevice& console, GuestRequestFn /*request*/) {
  const ConsoleSlot con = console_slot();
  SNAPVM_CHECK_OK(mmio.add(con.slot.base, con.slot.size, &console));
  impl_->power_gpio = std::make_unique<Pl061>([this](bool level) { set_irq(kGpioSpi, level); });
  return mmio.add(kGpioBase, kGpioSize, impl_->power_gpio.get());
}

// KVM reports no port I/O on arm64.
void Platform::port_io(Exit& exit) const { std::memset(exit.data.data(), 0xff, exit.data.size()); }

Status Platform::press_power_button(std::chrono::milliseconds hold) const {
  if (!impl_->power_gpio) return make_error(ErrorCode::kFailedPrecondition, "the power button is not wired yet");
  Pl061& gpio = *impl_->power_gpio;
  gpio.set_input(kPowerButtonLine, true);
  // gpio-keys reads the line a debounce interval after the interrupt; a
  // release before that read would lose the press.
  const auto deadline = std::chrono::steady_clock::now() + hold;
  while (!gpio.guest_saw_input(kPowerButtonLine) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  gpio.set_input(kPowerButtonLine, false);
  return {};
}

namespace {
state::DeviceConfig power_button_place() {
  return {state::DeviceKind::kPl061, 0, kGpioBase, kGpioSize, kGpioSpi, "power-button", ""};
}
}  // namespace

std::vector<SavedPlatformDevice> Platform::save_devices() const {
  if (!impl_->power_gpio) return {};
  return {{power_button_place(), impl_->power_gpio->save()}};
}

Status Platform::check_saved_device(const state::DeviceConfig& where) const {
  const state::DeviceConfig here = power_button_place();
  if (where.kind != here.kind || !impl_->power_gpio) {
    return make_error(ErrorCode::kDataLoss, "the snapshot has a platform device (kind {}) this machine lacks",
                      static_cast<uint32_t>(where.kind));
  }
  if (where.mmio_base != here.mmio_base || where.mmio_size != here.mmio_size || where.irq != here.irq) {
    return make_error(ErrorCode::kDataLoss,
                      "the snapshot's power button is at {:#x} (SPI {}); this machine has it at {:#x} (SPI {})",
                      where.mmio_base, where.irq, here.mmio_base, here.irq);
  }
  return {};
}

Status Platform::restore_device(const state::DeviceConfig& where, std::span<const uint8_t> bytes) const {
  SNAPVM_CHECK_OK(check_saved_device(where));
  return impl_->power_gpio->restore(bytes);
}

Status Platform::boot(const GuestMemory& ram, const BootImages& images, std::span<const kvm::Vcpu> vcpus,
                      std::span<const DeviceSlot> virtio) const {
  const uint64_t ram_size = ram.regions().front().host.size();
  KernelImage kernel = SNAPVM_TRY(parse_kernel_image(images.kernel, images.kernel_name));
  BootLayout b = SNAPVM_TRY(plan_boot(kRamBase, ram_size, kernel, images.initrd.size()));
  ram.write(b.kernel_addr, kernel.bytes.data(), kernel.bytes.size());
  if (!images.initrd.empty()) ram.write(b.initrd_addr, images.initrd.data(), images.initrd.size());

  FdtConfig fc;
  fc.ram_base = kRamBase;
  fc.ram_size = ram_size;
  for (const auto& v : vcpus) fc.mpidrs.push_back(SNAPVM_TRY(v.get_reg64(kRegMpidr)) & kMpidrAffinityMask);
  fc.cmdline = images.cmdline;
  fc.initrd_addr = b.initrd_addr;
  fc.initrd_size = images.initrd.size();
  for (const auto& d : virtio) fc.virtio.push_back({d.base, d.size, d.irq});
  auto dtb = SNAPVM_TRY(build_fdt(fc));
  ram.write(b.dtb_addr, dtb.data(), dtb.size());

  const kvm::Vcpu& boot_cpu = vcpus.front();
  SNAPVM_CHECK_OK(boot_cpu.set_reg64(kRegPstate, kBootPstate));
  SNAPVM_CHECK_OK(boot_cpu.set_reg64(kRegPc, b.kernel_addr));
  SNAPVM_CHECK_OK(boot_cpu.set_reg64(kRegX0, b.dtb_addr));
  for (uint64_t i = 1; i < 4; ++i) SNAPVM_CHECK_OK(boot_cpu.set_reg64(kRegX0 + 2 * i, 0));
  return {};
}

void Platform::set_irq(uint32_t irq, bool level) const { (void)impl_->vm->irq_line(spi_line(irq), level); }

Result<state::VcpuState> Platform::capture_vcpu(const kvm::Vcpu& vcpu) const { return arch::capture_vcpu(vcpu); }

Result<state::ArchVmState> Platform::capture_vm(std::span<const kvm::Vcpu> vcpus) const {
  std::vector<uint64_t> mpidrs;
  for (const auto& v : vcpus) mpidrs.push_back(SNAPVM_TRY(vcpu_affinity(v)));
  return state::ArchVmState{SNAPVM_TRY(capture_gic(impl_->gic, mpidrs))};
}

// A 6.1 arm64 snapshot loads only on the CPU model it was taken on.
Status Platform::check_host(const state::SnapshotState& saved, const kvm::Vcpu& probe) const {
  if (saved.host.cpu_regs.empty()) return {};
  const state::IdentityReg& midr = saved.host.cpu_regs.front();  // MIDR_EL1 comes first
  uint8_t buf[8] = {};
  if (!probe.get_reg(midr.id, {buf, 8})) return {};
  uint64_t here;
  std::memcpy(&here, buf, 8);
  if (here != midr.value) {
    return make_error(ErrorCode::kFailedPrecondition,
                      "the snapshot was taken on another CPU model ({}, this host has MIDR {:#x}); it cannot be restored "
                      "here", saved.host.cpu_model, here);
  }
  return {};
}

// vCPUs first (registers in KVM's list order, MP state, events), then the
// GIC, whose redistributors and CPU interfaces belong to vCPUs that exist.
Status Platform::restore(std::span<const kvm::Vcpu> vcpus, const state::SnapshotState& saved,
                         RestoreSplit* split) const {
  using Clock = std::chrono::steady_clock;
  auto t0 = Clock::now();
  for (const auto& v : saved.vcpus) {
    if (v.index >= vcpus.size()) return make_error(ErrorCode::kDataLoss, "vCPU index out of range");
    SNAPVM_CHECK_OK(arch::restore_vcpu(vcpus[v.index], v));
  }
  auto t1 = Clock::now();
  SNAPVM_CHECK_OK(restore_vm(vcpus, saved.arch_vm));
  if (split != nullptr) {
    split->vcpus_us = std::chrono::duration<double, std::micro>(t1 - t0).count();
    split->arch_vm_us = std::chrono::duration<double, std::micro>(Clock::now() - t1).count();
  }
  return {};
}

Status Platform::restore_vcpu(const kvm::Vcpu& vcpu, const state::VcpuState& saved) const {
  return arch::restore_vcpu(vcpu, saved);
}

Status Platform::restore_vm(std::span<const kvm::Vcpu> /*vcpus*/, const state::ArchVmState& saved) const {
  const auto* gic = std::get_if<state::GicV3State>(&saved);
  if (gic == nullptr) return make_error(ErrorCode::kDataLoss, "the snapshot holds no GICv3 state");
  return restore_gic(impl_->gic, *gic);
}

std::string Platform::describe_vcpu(const kvm::Vcpu& vcpu) const {
  auto pc = vcpu.get_reg64(kRegPc);
  auto pstate = vcpu.get_reg64(kRegPstate);
  if (!pc || !pstate) return "registers unreadable";
  return fmt::format("pc={:#x} pstate={:#x}", *pc, *pstate);
}

state::ClockState Platform::clock_of(const state::VcpuState& v) const { return arch::clock_of(v); }
state::HostIdentity Platform::host_identity_of(const state::VcpuState& v) const { return arch::host_identity_of(v); }

}  // namespace snapvm::arch
