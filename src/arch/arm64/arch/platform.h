// The arm64 platform as the generic VMM sees it: interrupt controller,
// vCPU initialisation and booting a Linux kernel. Generic code includes
// "arch/platform.h" and gets the one for the architecture it is built for.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "arch/fdt.h"
#include "arch/kernel_image.h"
#include "arch/layout.h"
#include "base/result.h"
#include "kvm/kvm.h"

namespace snapvm::arch {

inline constexpr const char* kArchName = "arm64";

struct BootImages {
  KernelImage kernel;
  std::vector<uint8_t> initrd;  // empty: none
  std::string cmdline;
};

class Platform {
 public:
  // Creates the in-kernel GICv3 and places it; must precede vCPU creation.
  static Result<Platform> create(const kvm::Vm& vm, uint32_t vcpus);

  // KVM_ARM_VCPU_INIT: PSCI 0.2; every vCPU but the first starts powered off
  // and is brought up by the guest with PSCI CPU_ON.
  Status init_vcpu(const kvm::Vm& vm, const kvm::Vcpu& vcpu) const;

  // After all vCPUs are initialised: size and initialise the GIC.
  Status finalize() const;

  // Loads kernel, initrd and device tree into guest RAM and points the boot
  // vCPU at the kernel.
  Status boot(std::span<uint8_t> ram, const BootImages& images, std::span<const kvm::Vcpu> vcpus,
              std::span<const VirtioMmioNode> virtio) const;

  // Where virtio-mmio slot `slot` lives and which SPI it raises.
  static VirtioMmioNode virtio_slot(uint32_t slot);

  // The KVM_IRQ_LINE number of a shared peripheral interrupt.
  static uint32_t spi_line(uint32_t spi);

  const kvm::Device& gic() const { return gic_; }

 private:
  explicit Platform(kvm::Device gic) : gic_(std::move(gic)) {}
  kvm::Device gic_;
};

// The vCPU limit of this machine layout, further capped by what KVM reports.
uint32_t max_vcpus(const kvm::Kvm& kvm);

}  // namespace snapvm::arch
