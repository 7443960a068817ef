#include "state/vcpu_state.h"

#include <bit>

#include "snapshot/format.h"
#include "state/x86_64/x86_state.h"

namespace snapvm::state {

const Register* VcpuState::find(uint64_t id) const {
  for (const auto& r : registers) {
    if (r.id == id) return &r;
  }
  return nullptr;
}

void encode(ByteWriter& w, const VcpuState& v) {
  w.u32(v.index);
  w.u64(v.arch_id);
  w.u32(v.mp_state);
  w.u32(static_cast<uint32_t>(v.registers.size()));
  for (const auto& reg : v.registers) {
    w.u64(reg.id);
    w.u16(static_cast<uint16_t>(reg.value.size()));
    w.bytes(reg.value);
  }
  w.blob(v.events);
}

VcpuState decode_vcpu_state(ByteReader& r) {
  VcpuState v;
  v.index = r.u32();
  v.arch_id = r.u64();
  v.mp_state = r.u32();
  uint32_t n = r.count(format::kMaxRegistersPerVcpu, 8 + 2 + 1);
  v.registers.reserve(n);
  for (uint32_t i = 0; i < n && r.ok(); ++i) {
    Register reg;
    reg.id = r.u64();
    uint16_t size = r.u16();
    // x86 records are whole KVM structures, checked against their kind
    // once the file's architecture is known (state/x86_64/x86_state.h).
    bool x86 = (reg.id & x86::kIdSpaceMask) == x86::kIdSpace;
    if (r.ok() && (size == 0 || (!x86 && (size > format::kMaxRegisterBytes || !std::has_single_bit(size))))) {
      r.fail(fmt::format("register {:#x} has invalid width {} bytes", reg.id, size));
      break;
    }
    auto bytes = r.bytes(size);
    reg.value.assign(bytes.begin(), bytes.end());
    v.registers.push_back(std::move(reg));
  }
  auto events = r.blob(4096);
  v.events.assign(events.begin(), events.end());
  return v;
}

}  // namespace snapvm::state
