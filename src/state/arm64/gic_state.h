// GICv3 state as read through the KVM device API: the distributor, each
// redistributor and each CPU interface, plus level-triggered line levels.
#pragma once

#include <cstdint>
#include <vector>

#include "base/byte_codec.h"

namespace snapvm::state {

struct MmioReg32 {
  uint32_t offset = 0;
  uint32_t value = 0;
  bool operator==(const MmioReg32&) const = default;
};

struct SysReg64 {
  uint64_t id = 0;  // the ICC register's sysreg encoding
  uint64_t value = 0;
  bool operator==(const SysReg64&) const = default;
};

struct GicRedistributor {
  uint64_t mpidr = 0;
  std::vector<MmioReg32> regs;
  bool operator==(const GicRedistributor&) const = default;
};

struct GicCpuInterface {
  uint64_t mpidr = 0;
  std::vector<SysReg64> regs;  // restore order: SRE, CTLR, ..., IGRPEN last
  bool operator==(const GicCpuInterface&) const = default;
};

struct GicV3State {
  uint32_t nr_irqs = 0;
  std::vector<MmioReg32> distributor;
  std::vector<GicRedistributor> redistributors;
  std::vector<GicCpuInterface> cpu_interfaces;
  std::vector<MmioReg32> line_levels;  // KVM_DEV_ARM_VGIC_GRP_LEVEL_INFO words
  bool operator==(const GicV3State&) const = default;
};

void encode(ByteWriter& w, const GicV3State& g);
GicV3State decode_gic_state(ByteReader& r);

}  // namespace snapvm::state
