#include "arch/arm64/vcpu_capture.h"

#include <linux/kvm.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "kvm/ioctl.h"

namespace snapvm::arch {
namespace {

constexpr uint64_t kRegMpidr = ARM64_SYS_REG(3, 0, 0, 0, 5);
constexpr uint64_t kRegTimerCnt = ARM64_SYS_REG(3, 3, 14, 3, 2);  // KVM_REG_ARM_TIMER_CNT
constexpr uint64_t kRegCntfrq = ARM64_SYS_REG(3, 3, 14, 0, 0);
// Registers that identify the CPU model; a 6.1 vCPU restores only on the same.
constexpr uint64_t kIdentityRegs[] = {
    ARM64_SYS_REG(3, 0, 0, 0, 0),  // MIDR_EL1
    ARM64_SYS_REG(3, 0, 0, 0, 6),  // REVIDR_EL1
    ARM64_SYS_REG(3, 1, 0, 0, 1),  // CLIDR_EL1
    ARM64_SYS_REG(3, 3, 0, 0, 1),  // CTR_EL0
    ARM64_SYS_REG(3, 0, 0, 4, 0),  // ID_AA64PFR0_EL1
    ARM64_SYS_REG(3, 0, 0, 6, 0),  // ID_AA64ISAR0_EL1
    ARM64_SYS_REG(3, 0, 0, 7, 0),  // ID_AA64MMFR0_EL1
};

uint64_t value64(const state::Register* r) {
  uint64_t v = 0;
  if (r != nullptr) std::memcpy(&v, r->value.data(), std::min<size_t>(8, r->value.size()));
  return v;
}

}  // namespace

state::ClockState clock_of(const state::VcpuState& v) {
  state::ClockState c;
  c.guest_counter = value64(v.find(kRegTimerCnt));
  c.counter_frequency_hz = value64(v.find(kRegCntfrq));
  if (c.counter_frequency_hz == 0) {
    // KVM does not list CNTFRQ_EL0; the guest sees the host's frequency,
    // which EL0 may read.
    uint64_t frq = 0;
    asm volatile("mrs %0, cntfrq_el0" : "=r"(frq));
    c.counter_frequency_hz = frq;
  }
  return c;
}

state::HostIdentity host_identity_of(const state::VcpuState& v) {
  state::HostIdentity h;
  for (uint64_t id : kIdentityRegs) {
    if (const auto* r = v.find(id)) h.cpu_regs.push_back({id, value64(r)});
  }
  char model[64];
  std::snprintf(model, sizeof model, "MIDR %#llx", static_cast<unsigned long long>(value64(v.find(kIdentityRegs[0]))));
  h.cpu_model = model;
  return h;
}

Result<uint64_t> vcpu_affinity(const kvm::Vcpu& vcpu) { return vcpu.get_reg64(kRegMpidr); }

Result<state::VcpuState> capture_vcpu(const kvm::Vcpu& vcpu) {
  state::VcpuState s;
  s.index = vcpu.id();
  auto ids = SNAPVM_TRY(vcpu.reg_list());
  s.registers.reserve(ids.size());
  for (uint64_t id : ids) {
    state::Register r{id, std::vector<uint8_t>(kvm::reg_size(id))};
    auto got = vcpu.get_reg(id, r.value);
    if (!got) return tl::unexpected(std::move(got.error()).context("capture vCPU state"));
    s.registers.push_back(std::move(r));
  }
  s.arch_id = SNAPVM_TRY(vcpu.get_reg64(kRegMpidr));
  s.mp_state = SNAPVM_TRY(vcpu.get_mp_state()).mp_state;
  kvm_vcpu_events events{};
  SNAPVM_TRY(kvm::checked_ioctl(vcpu.fd(), KVM_GET_VCPU_EVENTS, &events, "KVM_GET_VCPU_EVENTS"));
  s.events.resize(sizeof events);
  std::memcpy(s.events.data(), &events, sizeof events);
  return s;
}

Status restore_vcpu(const kvm::Vcpu& vcpu, const state::VcpuState& saved) {
  for (const auto& r : saved.registers) {
    auto set = vcpu.set_reg(r.id, r.value);
    if (!set) return tl::unexpected(std::move(set.error()).context("restore vCPU state"));
  }
  kvm_mp_state mp{saved.mp_state};
  SNAPVM_CHECK_OK(vcpu.set_mp_state(mp));
  if (saved.events.size() == sizeof(kvm_vcpu_events)) {
    kvm_vcpu_events events{};
    std::memcpy(&events, saved.events.data(), sizeof events);
    SNAPVM_TRY(kvm::checked_ioctl(vcpu.fd(), KVM_SET_VCPU_EVENTS, &events, "KVM_SET_VCPU_EVENTS"));
  }
  return {};
}

}  // namespace snapvm::arch
