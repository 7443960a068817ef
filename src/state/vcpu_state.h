// One vCPU's architectural state in our own terms: every register the
// hypervisor reports, as (id, value) pairs of any width, plus run state.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "base/byte_codec.h"

namespace snapvm::state {

struct Register {
  uint64_t id = 0;             // KVM_GET_REG_LIST id on KVM (size encoded in it on arm64)
  std::vector<uint8_t> value;  // little-endian, 1..256 bytes, a power of two
  bool operator==(const Register&) const = default;
};

struct VcpuState {
  uint32_t index = 0;
  uint64_t mpidr = 0;          // arm64 affinity; the APIC id on x86_64
  uint32_t mp_state = 0;       // KVM_MP_STATE_* (RUNNABLE, STOPPED, ...)
  std::vector<Register> registers;  // in the order they must be restored
  std::vector<uint8_t> events;      // struct kvm_vcpu_events, opaque here
  bool operator==(const VcpuState&) const = default;

  const Register* find(uint64_t id) const;
};

void encode(ByteWriter& w, const VcpuState& v);
VcpuState decode_vcpu_state(ByteReader& r);

}  // namespace snapvm::state
