#include "state/x86_64/x86_state.h"

#include <set>

#include <fmt/format.h>

namespace snapvm::state::x86 {

bool struct_size_ok(Struct s, size_t n) {
  switch (s) {
    case Struct::kCpuid: return n >= 8 && (n - 8) % kCpuidEntryBytes == 0 && (n - 8) / kCpuidEntryBytes <= kMaxCpuidEntries;
    case Struct::kTscKhz: return n == 8;
    case Struct::kRegs: return n == 144;
    case Struct::kSregs: return n == 312;
    case Struct::kXsave: return n >= kXsaveLegacyBytes && n <= kMaxXsaveBytes && n % 64 == 0;
    case Struct::kXcrs: return n == 392;
    case Struct::kDebugRegs: return n == 128;
    case Struct::kLapic: return n == 1024;
  }
  return false;
}

std::string_view struct_name(Struct s) {
  switch (s) {
    case Struct::kCpuid: return "cpuid";
    case Struct::kTscKhz: return "tsc-khz";
    case Struct::kRegs: return "regs";
    case Struct::kSregs: return "sregs";
    case Struct::kXsave: return "xsave";
    case Struct::kXcrs: return "xcrs";
    case Struct::kDebugRegs: return "debugregs";
    case Struct::kLapic: return "lapic";
  }
  return "unknown";
}

std::string register_name(uint64_t reg_id) {
  if (!in_space(reg_id)) return fmt::format("{:#x}", reg_id);
  switch (kind_of(reg_id)) {
    case Kind::kStruct: return std::string(struct_name(static_cast<Struct>(number_of(reg_id))));
    case Kind::kMsr: return fmt::format("msr {:#x}", number_of(reg_id));
    case Kind::kIdentity: return fmt::format("cpuid leaf {:#x}", number_of(reg_id));
  }
  return fmt::format("{:#x}", reg_id);
}

std::string_view vm_record_name(VmRecord r) {
  switch (r) {
    case VmRecord::kPit: return "pit";
    case VmRecord::kClock: return "kvmclock";
    case VmRecord::kPicMaster: return "pic-master";
    case VmRecord::kPicSlave: return "pic-slave";
    case VmRecord::kIoapic: return "ioapic";
  }
  return "unknown";
}

size_t vm_record_size(VmRecord r) {
  switch (r) {
    case VmRecord::kPit: return 112;    // kvm_pit_state2
    case VmRecord::kClock: return 48;   // kvm_clock_data
    case VmRecord::kPicMaster:
    case VmRecord::kPicSlave:
    case VmRecord::kIoapic: return 520;  // kvm_irqchip
  }
  return 0;
}

const VmState::Record* VmState::find(VmRecord kind) const {
  for (const auto& r : records) {
    if (r.kind == kind) return &r;
  }
  return nullptr;
}

void encode(ByteWriter& w, const VmState& s) {
  w.u32(static_cast<uint32_t>(s.records.size()));
  for (const auto& r : s.records) {
    w.u32(static_cast<uint32_t>(r.kind));
    w.blob(r.bytes);
  }
}

VmState decode_vm_state(ByteReader& r) {
  VmState s;
  uint32_t n = r.count(16, 8);
  std::set<uint32_t> seen;
  for (uint32_t i = 0; i < n && r.ok(); ++i) {
    uint32_t kind = r.u32();
    auto bytes = r.blob(4096);
    if (!r.ok()) break;
    auto k = static_cast<VmRecord>(kind);
    if (vm_record_size(k) == 0) {
      r.fail(fmt::format("unknown x86 VM record {}", kind));
      break;
    }
    if (!seen.insert(kind).second) {
      r.fail(fmt::format("x86 VM record {} repeated", vm_record_name(k)));
      break;
    }
    if (bytes.size() != vm_record_size(k)) {
      r.fail(fmt::format("x86 VM record {} is {} bytes, not {}", vm_record_name(k), bytes.size(), vm_record_size(k)));
      break;
    }
    s.records.push_back({k, {bytes.begin(), bytes.end()}});
  }
  if (r.ok() && s.records.size() != 5) r.fail(fmt::format("x86 VM state has {} of its 5 records", s.records.size()));
  return s;
}

std::string check_vcpu(const VcpuState& v) {
  std::set<uint64_t> seen;
  for (const auto& reg : v.registers) {
    if (!in_space(reg.id)) return fmt::format("register id {:#x} is not an x86 one", reg.id);
    if (!seen.insert(reg.id).second) return fmt::format("{} repeated", register_name(reg.id));
    switch (kind_of(reg.id)) {
      case Kind::kStruct: {
        auto s = static_cast<Struct>(number_of(reg.id));
        if (struct_name(s) == "unknown") return fmt::format("unknown x86 state record {}", number_of(reg.id));
        if (!struct_size_ok(s, reg.value.size())) {
          return fmt::format("{} record has an impossible size of {} bytes", struct_name(s), reg.value.size());
        }
        break;
      }
      case Kind::kMsr:
        if (reg.value.size() != 8) return fmt::format("{} is {} bytes, not 8", register_name(reg.id), reg.value.size());
        break;
      default: return fmt::format("register id {:#x} has an unknown x86 kind", reg.id);
    }
  }
  for (auto s : {Struct::kCpuid, Struct::kTscKhz, Struct::kRegs, Struct::kSregs, Struct::kXsave, Struct::kXcrs,
                 Struct::kDebugRegs, Struct::kLapic}) {
    if (seen.count(struct_id(s)) == 0) return fmt::format("the {} record is missing", struct_name(s));
  }
  if (v.events.size() != kVcpuEventsBytes) return fmt::format("vCPU events are {} bytes, not 64", v.events.size());
  return {};
}

}  // namespace snapvm::state::x86
