// Capturing and restoring an x86_64 vCPU: CPUID and TSC frequency, general
// and special registers, XSAVE (KVM's full size), XCRs, debug registers,
// the local APIC, every MSR this vCPU can read, MP state and pending events.
//
// Restore order and why (KVM's API documentation, and what Firecracker, QEMU
// and Cloud Hypervisor learned):
//  1. CPUID first: it decides which MSRs and XSAVE features exist.
//  2. TSC frequency before any TSC value, which is read at that rate.
//  3. MP state, then registers, special registers, XSAVE, XCRs, debug
//     registers.
//  4. The LAPIC before the MSRs: MSR_IA32_TSC_DEADLINE is accepted only
//     once the LAPIC timer is in TSC-deadline mode.
//  5. MSRs with IA32_TSC before IA32_TSC_DEADLINE (the deadline counts in
//     that TSC), so the deadline is last in the list.
//  6. vCPU events last: they carry pending exceptions, NMIs and interrupt
//     shadows that earlier writes could clear.
// The VM's PIT, kvmclock, PICs and IOAPIC are restored before any vCPU.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "base/result.h"
#include "kvm/kvm.h"
#include "state/vcpu_state.h"

namespace snapvm::arch::x86 {

// MSRs of KVM_GET_MSR_INDEX_LIST that `probe` can read, in restore order.
Result<std::vector<uint32_t>> readable_msrs(const kvm::Kvm& kvm, const kvm::Vcpu& probe);

Result<state::VcpuState> capture_vcpu(const kvm::Vcpu& vcpu, const std::vector<uint32_t>& msrs, uint32_t xsave_bytes);

// `tsc`: the value to give IA32_TSC instead of the saved one (a restore
// moves the guest's clocks on by the time the snapshot spent on disk).
// `fresh`: the vCPU has never run, so CPUID and TSC frequency are set (KVM
// refuses to change CPUID after KVM_RUN; a vCPU restored in place keeps its
// own, which is the one it was captured with).
Status restore_vcpu(const kvm::Vcpu& vcpu, const state::VcpuState& saved, bool can_scale_tsc, bool fresh,
                    std::optional<uint64_t> tsc = std::nullopt);

inline constexpr uint32_t kMsrTsc = 0x10;
inline constexpr uint32_t kMsrTscDeadline = 0x6e0;
uint64_t saved_msr(const state::VcpuState& v, uint32_t msr);

}  // namespace snapvm::arch::x86
