// GICv3 state through the KVM device API: distributor, each vCPU's
// redistributor and CPU interface (ICC system registers), and the levels of
// level-triggered lines. Registers come from tables, restored in an order
// the kernel accepts (docs: kvm-arm64-notes, vgic-v3 device documentation).
#pragma once

#include <span>

#include "base/result.h"
#include "kvm/kvm.h"
#include "state/arm64/gic_state.h"

namespace snapvm::arch {

// All vCPUs must be out of KVM_RUN. `mpidrs` are the vCPUs' MPIDR values.
Result<state::GicV3State> capture_gic(const kvm::Device& gic, std::span<const uint64_t> mpidrs);
Status restore_gic(const kvm::Device& gic, const state::GicV3State& saved);

}  // namespace snapvm::arch
