// x86_64 state in snapshot records. KVM hands x86 state over as whole
// structures (kvm_regs, kvm_sregs, kvm_xsave, ...) and MSRs one by one, so a
// vCPU's state is the same (id, bytes) list arm64 uses, with ids from the
// x86 namespace below; the VM-level state (PIC pair, IOAPIC, PIT, kvmclock)
// is a list of records too. Sizes are the Linux UAPI's, which never change;
// decoding checks them, so a restore never hands KVM a short buffer.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "base/byte_codec.h"
#include "state/vcpu_state.h"

namespace snapvm::state::x86 {

// KVM's own x86 register-id prefix (KVM_REG_X86): no arm64 id starts so.
inline constexpr uint64_t kIdSpace = 0x2000'0000'0000'0000ull;
inline constexpr uint64_t kIdSpaceMask = 0xF000'0000'0000'0000ull;
enum class Kind : uint32_t { kStruct = 1, kMsr = 2, kIdentity = 3 };

constexpr uint64_t id(Kind kind, uint32_t n) { return kIdSpace | (uint64_t{static_cast<uint32_t>(kind)} << 32) | n; }
constexpr Kind kind_of(uint64_t reg_id) { return static_cast<Kind>((reg_id >> 32) & 0xFFFF); }
constexpr uint32_t number_of(uint64_t reg_id) { return static_cast<uint32_t>(reg_id); }
constexpr bool in_space(uint64_t reg_id) { return (reg_id & kIdSpaceMask) == kIdSpace; }

// Whole KVM structures of a vCPU, in the order they are restored.
enum class Struct : uint32_t {
  kCpuid = 1,      // kvm_cpuid2 header + entries (variable)
  kTscKhz = 2,     // u64: the vCPU's TSC frequency
  kRegs = 3,       // kvm_regs
  kSregs = 4,      // kvm_sregs
  kXsave = 5,      // kvm_xsave (4096 bytes, or KVM_CAP_XSAVE2's size)
  kXcrs = 6,       // kvm_xcrs
  kDebugRegs = 7,  // kvm_debugregs
  kLapic = 8,      // kvm_lapic_state
};
constexpr uint64_t struct_id(Struct s) { return id(Kind::kStruct, static_cast<uint32_t>(s)); }
constexpr uint64_t msr_id(uint32_t msr) { return id(Kind::kMsr, msr); }

inline constexpr uint32_t kCpuidEntryBytes = 40;  // kvm_cpuid_entry2
inline constexpr uint32_t kMaxCpuidEntries = 256;
inline constexpr uint32_t kXsaveLegacyBytes = 4096;
inline constexpr uint32_t kMaxXsaveBytes = 64 * 1024 - 64;  // a u16 length, 64-byte multiple
inline constexpr uint32_t kVcpuEventsBytes = 64;            // kvm_vcpu_events

// The size a struct record must have ("": any size in range, checked by
// struct_size_ok).
bool struct_size_ok(Struct s, size_t bytes);
std::string_view struct_name(Struct s);
// "regs", "msr 0x10", "cpuid": for inspect and error messages.
std::string register_name(uint64_t reg_id);

// VM-level records, in restore order.
enum class VmRecord : uint32_t {
  kPit = 1,        // kvm_pit_state2
  kClock = 2,      // kvm_clock_data
  kPicMaster = 3,  // kvm_irqchip (chip 0)
  kPicSlave = 4,   // kvm_irqchip (chip 1)
  kIoapic = 5,     // kvm_irqchip (chip 2)
};
std::string_view vm_record_name(VmRecord r);
size_t vm_record_size(VmRecord r);

struct VmState {
  struct Record {
    VmRecord kind = VmRecord::kPit;
    std::vector<uint8_t> bytes;
    bool operator==(const Record&) const = default;
  };
  std::vector<Record> records;  // each kind exactly once
  bool operator==(const VmState&) const = default;
  const Record* find(VmRecord kind) const;
};

void encode(ByteWriter& w, const VmState& s);
VmState decode_vm_state(ByteReader& r);

// Checks an x86_64 vCPU record: every id in the x86 space, each struct
// present once with its exact size, MSRs 8 bytes, events 64 bytes.
// Returns an empty string when it is sound, else what is wrong.
std::string check_vcpu(const VcpuState& v);

}  // namespace snapvm::state::x86
