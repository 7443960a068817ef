// Capturing and restoring a vCPU's complete architectural state: every
// register KVM_GET_REG_LIST reports (core, FP/SIMD, SVE, firmware, timer,
// system), in the order KVM lists them (a valid restore order), plus MP
// state and pending vCPU events.
#pragma once

#include "base/result.h"
#include "kvm/kvm.h"
#include "snapshot/format.h"
#include "state/host_state.h"
#include "state/vcpu_state.h"

namespace snapvm::arch {

// The vCPU must be out of KVM_RUN. A register that cannot be read is an
// error naming it, never a silent gap.
Result<state::VcpuState> capture_vcpu(const kvm::Vcpu& vcpu);

// The vCPU's affinity (MPIDR), which names it to the interrupt controller.
Result<uint64_t> vcpu_affinity(const kvm::Vcpu& vcpu);

// The guest clock in a captured vCPU: the virtual counter and its frequency.
state::ClockState clock_of(const state::VcpuState& v);
// What must match for the state to load elsewhere: the CPU's identity
// registers (MIDR, REVIDR, ...) as the vCPU sees them.
state::HostIdentity host_identity_of(const state::VcpuState& v);

// Writes every register back in saved order, then MP state and events.
Status restore_vcpu(const kvm::Vcpu& vcpu, const state::VcpuState& saved);

}  // namespace snapvm::arch
