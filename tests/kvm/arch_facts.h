// What the KVM tests expect of each architecture's state, in one place: the
// rest of the suite is the same on arm64 and x86_64.
#pragma once

#include <cstdint>
#include <variant>

#include "state/snapshot_state.h"
#include "state/x86_64/x86_state.h"

namespace snapvm::test::arch_facts {

#if defined(__aarch64__)
inline constexpr uint64_t kPcRegister = 0x6030'0000'0010'0040;  // holds the program counter
inline constexpr size_t kMinRegisters = 200;                    // KVM_GET_REG_LIST lists ~240
inline constexpr size_t kConsoleRecordBytes = 32;               // PL011
using ArchVm = state::GicV3State;
// Registers whose value moves while the guest is paused: the virtual
// counter, and the physical counter (CNTPCT_EL0), which KVM lists from Linux
// 6.4 on (the arm64 test host runs 6.12).
inline bool moves_while_paused(uint64_t id) { return id == 0x6030'0000'0013'DF1A || id == 0x6030'0000'0013'DF01; }
#else
inline constexpr uint64_t kPcRegister = state::x86::struct_id(state::x86::Struct::kRegs);
inline constexpr size_t kMinRegisters = 20;  // 8 structures and the readable MSRs
inline constexpr size_t kConsoleRecordBytes = 16;  // 8250
using ArchVm = state::x86::VmState;
// The TSC and Hyper-V's run-time and reference-time counters count on,
// and the LAPIC record holds the timer's current count.
inline bool moves_while_paused(uint64_t id) {
  return id == state::x86::msr_id(0x10) || id == state::x86::msr_id(0x40000010) ||
         id == state::x86::msr_id(0x40000020) || id == state::x86::struct_id(state::x86::Struct::kLapic);
}
#endif

// An online vCPU of an idle guest: runnable, or on x86 halted in the
// kernel's LAPIC (HLT never leaves KVM there).
inline bool online(uint32_t mp_state) {
#if defined(__aarch64__)
  return mp_state == 0;
#else
  return mp_state == 0 || mp_state == 3;
#endif
}

inline bool holds_arch_vm(const state::ArchVmState& s) { return std::holds_alternative<ArchVm>(s); }

}  // namespace snapvm::test::arch_facts
