#include "arch/platform.h"

#include <linux/kvm.h>

#include <algorithm>
#include <cstring>

#include "arch/fdt.h"
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

}  // namespace

uint32_t max_vcpus(const kvm::Kvm& kvm) {
  int n = kvm.check_extension(KVM_CAP_MAX_VCPUS);
  if (n <= 0) n = kvm.check_extension(KVM_CAP_NR_VCPUS);
  if (n <= 0) n = 4;
  return std::min<uint32_t>(kMaxVcpus, static_cast<uint32_t>(n));
}

uint32_t Platform::spi_line(uint32_t spi) {
  return (KVM_ARM_IRQ_TYPE_SPI << KVM_ARM_IRQ_TYPE_SHIFT) | (kGicSpiBase + spi);
}

Result<Platform> Platform::create(const kvm::Vm& vm, uint32_t vcpus) {
  auto gic = vm.create_device(KVM_DEV_TYPE_ARM_VGIC_V3);
  if (!gic) return tl::unexpected(std::move(gic.error()).context("create the in-kernel GICv3 (does the host have one?)"));
  uint64_t dist = kGicDistBase, redist = kGicRedistBase;
  (void)vcpus;  // the redistributor region is sized by the vCPUs created later
  SNAPVM_CHECK_OK(gic->set_attr(KVM_DEV_ARM_VGIC_GRP_ADDR, KVM_VGIC_V3_ADDR_TYPE_DIST, &dist));
  SNAPVM_CHECK_OK(gic->set_attr(KVM_DEV_ARM_VGIC_GRP_ADDR, KVM_VGIC_V3_ADDR_TYPE_REDIST, &redist));
  return Platform(std::move(*gic));
}

Status Platform::init_vcpu(const kvm::Vm& vm, const kvm::Vcpu& vcpu) const {
  kvm_vcpu_init init{};
  SNAPVM_TRY(kvm::checked_ioctl(vm.fd(), KVM_ARM_PREFERRED_TARGET, &init, "KVM_ARM_PREFERRED_TARGET"));
  std::memset(init.features, 0, sizeof init.features);
  init.features[0] |= 1u << KVM_ARM_VCPU_PSCI_0_2;
  if (vcpu.id() != 0) init.features[0] |= 1u << KVM_ARM_VCPU_POWER_OFF;
  auto r = kvm::checked_ioctl(vcpu.fd(), KVM_ARM_VCPU_INIT, &init, "KVM_ARM_VCPU_INIT");
  if (!r) return tl::unexpected(std::move(r.error()).context(fmt::format("vCPU {}", vcpu.id())));
  return {};
}

Status Platform::finalize() const {
  uint32_t nr_irqs = kGicNrIrqs;
  SNAPVM_CHECK_OK(gic_.set_attr(KVM_DEV_ARM_VGIC_GRP_NR_IRQS, 0, &nr_irqs));
  SNAPVM_CHECK_OK(gic_.set_attr(KVM_DEV_ARM_VGIC_GRP_CTRL, KVM_DEV_ARM_VGIC_CTRL_INIT, nullptr));
  return {};
}

VirtioMmioNode Platform::virtio_slot(uint32_t slot) {
  return {kVirtioMmioBase + slot * kVirtioMmioSlotSize, kVirtioMmioSlotSize, kVirtioFirstSpi + slot};
}

Status Platform::boot(std::span<uint8_t> ram, const BootImages& images, std::span<const kvm::Vcpu> vcpus,
                      std::span<const VirtioMmioNode> virtio) const {
  BootLayout b = SNAPVM_TRY(plan_boot(kRamBase, ram.size(), images.kernel, images.initrd.size()));
  auto at = [&](uint64_t gpa) { return ram.data() + (gpa - kRamBase); };
  std::memcpy(at(b.kernel_addr), images.kernel.bytes.data(), images.kernel.bytes.size());
  if (!images.initrd.empty()) std::memcpy(at(b.initrd_addr), images.initrd.data(), images.initrd.size());

  FdtConfig fc;
  fc.ram_base = kRamBase;
  fc.ram_size = ram.size();
  for (const auto& v : vcpus) fc.mpidrs.push_back(SNAPVM_TRY(v.get_reg64(kRegMpidr)) & kMpidrAffinityMask);
  fc.cmdline = images.cmdline;
  fc.initrd_addr = b.initrd_addr;
  fc.initrd_size = images.initrd.size();
  fc.virtio.assign(virtio.begin(), virtio.end());
  auto dtb = SNAPVM_TRY(build_fdt(fc));
  std::memcpy(at(b.dtb_addr), dtb.data(), dtb.size());

  const kvm::Vcpu& boot_cpu = vcpus.front();
  SNAPVM_CHECK_OK(boot_cpu.set_reg64(kRegPstate, kBootPstate));
  SNAPVM_CHECK_OK(boot_cpu.set_reg64(kRegPc, b.kernel_addr));
  SNAPVM_CHECK_OK(boot_cpu.set_reg64(kRegX0, b.dtb_addr));
  for (uint64_t i = 1; i < 4; ++i) SNAPVM_CHECK_OK(boot_cpu.set_reg64(kRegX0 + 2 * i, 0));
  return {};
}

}  // namespace snapvm::arch
