#include "arch/vcpu_state.h"

#include <linux/kvm.h>

#include <cstring>

#include "kvm/ioctl.h"

namespace snapvm::arch {
namespace {

constexpr uint64_t kRegMpidr = ARM64_SYS_REG(3, 0, 0, 0, 5);

}  // namespace

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
  s.mpidr = SNAPVM_TRY(vcpu.get_reg64(kRegMpidr));
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
