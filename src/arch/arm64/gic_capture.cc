#include "arch/arm64/gic_capture.h"

#include <linux/kvm.h>

#include "arch/arm64/layout.h"

namespace snapvm::arch {
namespace {

constexpr uint32_t kWordsForSpis = kGicNrIrqs / 32;  // 32-bit words of 1 bit per irq

// Distributor registers saved for the SPIs (SGIs and PPIs live in the
// redistributors under affinity routing). {set offset, clear offset or 0,
// bits per irq}; the clear register is written with ~0 first on restore.
struct DistReg {
  uint32_t offset;
  uint32_t clear;
  uint32_t bits;
};
constexpr DistReg kDistRegs[] = {
    {0x0080, 0, 1},       // IGROUPR
    {0x0c00, 0, 2},       // ICFGR: before pending state
    {0x0400, 0, 8},       // IPRIORITYR
    {0x0100, 0x0180, 1},  // ISENABLER / ICENABLER
    {0x0200, 0x0280, 1},  // ISPENDR (uaccess writes the latch) / ICPENDR
    {0x0300, 0x0380, 1},  // ISACTIVER / ICACTIVER
};
constexpr uint32_t kGicdCtlr = 0x0000;
constexpr uint32_t kGicdIrouter = 0x6000;

// SGI/PPI frame of each redistributor.
constexpr DistReg kRedistRegs[] = {
    {0x10080, 0, 1},        // IGROUPR0
    {0x10c00, 0, 2},        // ICFGR0-1
    {0x10400, 0, 8},        // IPRIORITYR0-7
    {0x10100, 0x10180, 1},  // ISENABLER0 / ICENABLER0
    {0x10200, 0x10280, 1},  // ISPENDR0 / ICPENDR0
    {0x10300, 0x10380, 1},  // ISACTIVER0 / ICACTIVER0
};
constexpr uint32_t kGicrCtlr = 0x0000;

constexpr uint64_t icc(int op0, int op1, int crn, int crm, int op2) {
  return uint64_t(op0) << 14 | uint64_t(op1) << 11 | uint64_t(crn) << 7 | uint64_t(crm) << 3 | uint64_t(op2);
}
constexpr uint64_t kIccSre = icc(3, 0, 12, 12, 5);
constexpr uint64_t kIccCtlr = icc(3, 0, 12, 12, 4);
constexpr uint64_t kIccIgrpen0 = icc(3, 0, 12, 12, 6);
constexpr uint64_t kIccIgrpen1 = icc(3, 0, 12, 12, 7);
constexpr uint64_t kIccPmr = icc(3, 0, 4, 6, 0);
constexpr uint64_t kIccBpr0 = icc(3, 0, 12, 8, 3);
constexpr uint64_t kIccBpr1 = icc(3, 0, 12, 12, 3);
uint64_t icc_ap0r(int n) { return icc(3, 0, 12, 8, 4 + n); }
uint64_t icc_ap1r(int n) { return icc(3, 0, 12, 9, n); }

uint64_t packed_affinity(uint64_t mpidr) { return ((mpidr >> 32) & 0xff) << 24 | (mpidr & 0xffffff); }
uint64_t attr(uint64_t mpidr, uint64_t offset) { return packed_affinity(mpidr) << KVM_DEV_ARM_VGIC_V3_MPIDR_SHIFT | offset; }

Status get32(const kvm::Device& gic, uint32_t group, uint64_t a, uint32_t* v, const char* what) {
  auto r = gic.get_attr(group, a, v);
  if (!r) return tl::unexpected(std::move(r.error()).context(what));
  return {};
}

Status set32(const kvm::Device& gic, uint32_t group, uint64_t a, uint32_t v, const char* what) {
  auto r = gic.set_attr(group, a, &v);
  if (!r) return tl::unexpected(std::move(r.error()).context(what));
  return {};
}

// Words of a bank: for the distributor skip the first 32 irqs (SGI/PPI).
uint32_t first_word(const DistReg& r, bool dist) { return dist ? 32 * r.bits / 32 : 0; }
uint32_t word_count(const DistReg& r, bool dist) { return dist ? kGicNrIrqs * r.bits / 32 - first_word(r, dist) : 32 * r.bits / 32; }

// Number of active-priority registers per group, from ICC_CTLR.PRIbits.
int apr_count(uint64_t ctlr) {
  int pri_bits = static_cast<int>((ctlr >> 8) & 7) + 1;
  return pri_bits >= 7 ? 4 : pri_bits == 6 ? 2 : 1;
}

}  // namespace

Result<state::GicV3State> capture_gic(const kvm::Device& gic, std::span<const uint64_t> mpidrs) {
  state::GicV3State s;
  s.nr_irqs = kGicNrIrqs;
  const uint32_t kDist = KVM_DEV_ARM_VGIC_GRP_DIST_REGS, kRedist = KVM_DEV_ARM_VGIC_GRP_REDIST_REGS;
  uint32_t v = 0;
  SNAPVM_CHECK_OK(get32(gic, kDist, kGicdCtlr, &v, "GICD_CTLR"));
  s.distributor.push_back({kGicdCtlr, v});
  // Routing before configuration and state (the order restore writes).
  for (uint32_t irq = 32; irq < kGicNrIrqs; ++irq) {
    for (uint32_t half = 0; half < 2; ++half) {
      uint32_t off = kGicdIrouter + 8 * irq + 4 * half;
      SNAPVM_CHECK_OK(get32(gic, kDist, off, &v, "GICD_IROUTER"));
      s.distributor.push_back({off, v});
    }
  }
  for (const auto& r : kDistRegs) {
    for (uint32_t w = first_word(r, true); w < first_word(r, true) + word_count(r, true); ++w) {
      SNAPVM_CHECK_OK(get32(gic, kDist, r.offset + 4 * w, &v, "distributor register"));
      s.distributor.push_back({r.offset + 4 * w, v});
    }
  }
  for (uint64_t mpidr : mpidrs) {
    state::GicRedistributor rd{mpidr, {}};
    SNAPVM_CHECK_OK(get32(gic, kRedist, attr(mpidr, kGicrCtlr), &v, "GICR_CTLR"));
    rd.regs.push_back({kGicrCtlr, v});
    for (const auto& r : kRedistRegs) {
      for (uint32_t w = 0; w < word_count(r, false); ++w) {
        SNAPVM_CHECK_OK(get32(gic, kRedist, attr(mpidr, r.offset + 4 * w), &v, "redistributor register"));
        rd.regs.push_back({r.offset + 4 * w, v});
      }
    }
    s.redistributors.push_back(std::move(rd));

    state::GicCpuInterface ci{mpidr, {}};
    auto sys = [&](uint64_t id) -> Status {
      uint64_t value = 0;
      auto r = gic.get_attr(KVM_DEV_ARM_VGIC_GRP_CPU_SYSREGS, attr(mpidr, id), &value);
      if (!r) return tl::unexpected(std::move(r.error()).context(fmt::format("ICC register {:#x}", id)));
      ci.regs.push_back({id, value});
      return {};
    };
    // Saved in restore order: SRE, CTLR, priorities and binary points, the
    // active priorities (their count follows CTLR), group enables last.
    SNAPVM_CHECK_OK(sys(kIccSre));
    SNAPVM_CHECK_OK(sys(kIccCtlr));
    SNAPVM_CHECK_OK(sys(kIccPmr));
    SNAPVM_CHECK_OK(sys(kIccBpr0));
    SNAPVM_CHECK_OK(sys(kIccBpr1));
    int aprs = apr_count(ci.regs[1].value);
    for (int n = 0; n < aprs; ++n) SNAPVM_CHECK_OK(sys(icc_ap0r(n)));
    for (int n = 0; n < aprs; ++n) SNAPVM_CHECK_OK(sys(icc_ap1r(n)));
    SNAPVM_CHECK_OK(sys(kIccIgrpen0));
    SNAPVM_CHECK_OK(sys(kIccIgrpen1));
    s.cpu_interfaces.push_back(std::move(ci));
  }
  for (uint32_t base = 32; base < kGicNrIrqs; base += 32) {
    uint64_t a = uint64_t{VGIC_LEVEL_INFO_LINE_LEVEL} << KVM_DEV_ARM_VGIC_LINE_LEVEL_INFO_SHIFT | base;
    SNAPVM_CHECK_OK(get32(gic, KVM_DEV_ARM_VGIC_GRP_LEVEL_INFO, a, &v, "line levels"));
    s.line_levels.push_back({base, v});
  }
  return s;
}

Status restore_gic(const kvm::Device& gic, const state::GicV3State& s) {
  const uint32_t kDist = KVM_DEV_ARM_VGIC_GRP_DIST_REGS, kRedist = KVM_DEV_ARM_VGIC_GRP_REDIST_REGS;
  if (s.nr_irqs != kGicNrIrqs) {
    return make_error(ErrorCode::kUnsupported, "GIC with {} interrupts; this machine has {}", s.nr_irqs, kGicNrIrqs);
  }
  // Enable, pending and active bits are state, not commands: clear them all,
  // then set what was saved (the clear registers take ~0).
  auto restore_bank = [&](uint32_t group, uint64_t mpidr, const std::vector<state::MmioReg32>& regs,
                          std::span<const DistReg> table, bool dist) -> Status {
    for (const auto& r : table) {
      if (r.clear == 0) continue;
      for (uint32_t w = first_word(r, dist); w < first_word(r, dist) + word_count(r, dist); ++w) {
        uint64_t a = dist ? r.clear + 4 * w : attr(mpidr, r.clear + 4 * w);
        SNAPVM_CHECK_OK(set32(gic, group, a, ~0u, "clear"));
      }
    }
    for (const auto& reg : regs) {
      uint64_t a = dist ? reg.offset : attr(mpidr, reg.offset);
      SNAPVM_CHECK_OK(set32(gic, group, a, reg.value, dist ? "distributor register" : "redistributor register"));
    }
    return {};
  };
  SNAPVM_CHECK_OK(restore_bank(kDist, 0, s.distributor, kDistRegs, true));
  for (const auto& rd : s.redistributors) SNAPVM_CHECK_OK(restore_bank(kRedist, rd.mpidr, rd.regs, kRedistRegs, false));
  for (const auto& ci : s.cpu_interfaces) {
    for (const auto& reg : ci.regs) {
      uint64_t value = reg.value;
      auto r = gic.set_attr(KVM_DEV_ARM_VGIC_GRP_CPU_SYSREGS, attr(ci.mpidr, reg.id), &value);
      if (!r) return tl::unexpected(std::move(r.error()).context(fmt::format("ICC register {:#x}", reg.id)));
    }
  }
  for (const auto& l : s.line_levels) {
    uint64_t a = uint64_t{VGIC_LEVEL_INFO_LINE_LEVEL} << KVM_DEV_ARM_VGIC_LINE_LEVEL_INFO_SHIFT | l.offset;
    SNAPVM_CHECK_OK(set32(gic, KVM_DEV_ARM_VGIC_GRP_LEVEL_INFO, a, l.value, "line levels"));
  }
  return {};
}

}  // namespace snapvm::arch
