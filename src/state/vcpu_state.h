// One vCPU's architectural state in our own terms: every register the
// hypervisor reports, as (id, value) pairs of any width, plus run state.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "base/byte_codec.h"

namespace snapvm::state {

struct Register {
  // arm64: the KVM_GET_REG_LIST id (size encoded in it); x86_64: an id of
  // state/x86_64/x86_state.h naming a KVM structure or an MSR.
  uint64_t id = 0;
  // arm64: little-endian, 1..256 bytes, a power of two; x86_64: the
  // structure's bytes (up to 64 KiB) or an MSR's 8.
  std::vector<uint8_t> value;
  bool operator==(const Register&) const = default;
};

struct VcpuState {
  uint32_t index = 0;
  uint64_t arch_id = 0;        // how the interrupt controller names it: MPIDR affinity (arm64), APIC id (x86_64)
  uint32_t mp_state = 0;       // KVM_MP_STATE_* (RUNNABLE, STOPPED, ...)
  std::vector<Register> registers;  // in the order they must be restored
  std::vector<uint8_t> events;      // struct kvm_vcpu_events, opaque here
  bool operator==(const VcpuState&) const = default;

  const Register* find(uint64_t id) const;
};

void encode(ByteWriter& w, const VcpuState& v);
VcpuState decode_vcpu_state(ByteReader& r);

}  // namespace snapvm::state
