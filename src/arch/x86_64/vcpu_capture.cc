#include "arch/x86_64/vcpu_capture.h"

#include <linux/kvm.h>
#include <sys/ioctl.h>

#include <algorithm>
#include <cstring>
#include <optional>

#include "arch/x86_64/kvm_ioctls.h"
#include "kvm/ioctl.h"
#include "state/x86_64/x86_state.h"

namespace snapvm::arch::x86 {
namespace {

using state::x86::Struct;
using state::x86::struct_id;

template <typename T>
std::vector<uint8_t> bytes_of(const T& v) {
  std::vector<uint8_t> b(sizeof v);
  std::memcpy(b.data(), &v, sizeof v);
  return b;
}

template <typename T>
Status get(const kvm::Vcpu& vcpu, unsigned long req, const char* name, state::VcpuState& s, Struct which) {
  T v{};
  SNAPVM_TRY(kvm::checked_ioctl(vcpu.fd(), req, &v, name));
  s.registers.push_back({struct_id(which), bytes_of(v)});
  return {};
}

template <typename T>
Status set(const kvm::Vcpu& vcpu, unsigned long req, const char* name, const state::Register& r) {
  T v{};
  if (r.value.size() != sizeof v) {
    return make_error(ErrorCode::kDataLoss, "{}: {} bytes saved, KVM takes {}", name, r.value.size(), sizeof v);
  }
  std::memcpy(&v, r.value.data(), sizeof v);
  SNAPVM_TRY(kvm::checked_ioctl(vcpu.fd(), req, &v, name));
  return {};
}

// kvm_msrs with its entries, as one buffer.
struct MsrBuffer {
  std::vector<uint8_t> bytes;
  explicit MsrBuffer(size_t n) : bytes(ioctl::kMsrsHeader + n * sizeof(kvm_msr_entry), 0) {
    uint32_t count = static_cast<uint32_t>(n);
    std::memcpy(bytes.data(), &count, 4);
  }
  void* head() { return bytes.data(); }
  kvm_msr_entry* entries() { return reinterpret_cast<kvm_msr_entry*>(bytes.data() + ioctl::kMsrsHeader); }
};

}  // namespace

uint64_t saved_msr(const state::VcpuState& v, uint32_t msr) {
  const auto* r = v.find(state::x86::msr_id(msr));
  uint64_t value = 0;
  if (r != nullptr && r->value.size() == 8) std::memcpy(&value, r->value.data(), 8);
  return value;
}

Result<std::vector<uint32_t>> readable_msrs(const kvm::Kvm& kvm, const kvm::Vcpu& probe) {
  std::vector<uint32_t> buf(1 + 4096, 0);  // nmsrs, then the indices
  buf[0] = 4096;
  SNAPVM_TRY(kvm::checked_ioctl(kvm.fd(), ioctl::kGetMsrIndexList, buf.data(), "KVM_GET_MSR_INDEX_LIST"));
  const uint32_t count = std::min<uint32_t>(buf[0], 4096);
  const uint32_t* indices = buf.data() + ioctl::kMsrListHeader / 4;
  std::vector<uint32_t> out;
  bool deadline = false;
  for (uint32_t i = 0; i < count; ++i) {
    // The list names MSRs KVM knows, not all of which this vCPU has (the
    // other vendor's, features CPUID left out): KVM_GET_MSRS stops at the
    // first it cannot read, so each is tried alone.
    MsrBuffer one(1);
    one.entries()[0].index = indices[i];
    int got = ::ioctl(probe.fd(), ioctl::kGetMsrs, one.head());
    if (got != 1) continue;
    if (indices[i] == kMsrTscDeadline) {
      deadline = true;
      continue;
    }
    out.push_back(indices[i]);
  }
  if (deadline) out.push_back(kMsrTscDeadline);  // after IA32_TSC
  return out;
}

Result<state::VcpuState> capture_vcpu(const kvm::Vcpu& vcpu, const std::vector<uint32_t>& msrs, uint32_t xsave_bytes) {
  state::VcpuState s;
  s.index = vcpu.id();
  s.mp_state = SNAPVM_TRY(vcpu.get_mp_state()).mp_state;

  // CPUID as set (KVM_GET_CPUID2 returns what KVM_SET_CPUID2 gave it).
  std::vector<uint8_t> cpuid(ioctl::kCpuid2Header + state::x86::kMaxCpuidEntries * sizeof(kvm_cpuid_entry2), 0);
  uint32_t nent = state::x86::kMaxCpuidEntries;
  std::memcpy(cpuid.data(), &nent, 4);
  SNAPVM_TRY(kvm::checked_ioctl(vcpu.fd(), ioctl::kGetCpuid2, cpuid.data(), "KVM_GET_CPUID2"));
  std::memcpy(&nent, cpuid.data(), 4);
  cpuid.resize(ioctl::kCpuid2Header + std::min(nent, state::x86::kMaxCpuidEntries) * sizeof(kvm_cpuid_entry2));
  s.registers.push_back({struct_id(Struct::kCpuid), std::move(cpuid)});

  int khz = SNAPVM_TRY(kvm::checked_ioctl(vcpu.fd(), KVM_GET_TSC_KHZ, 0, "KVM_GET_TSC_KHZ"));
  s.registers.push_back({struct_id(Struct::kTscKhz), bytes_of(static_cast<uint64_t>(khz))});

  SNAPVM_CHECK_OK(get<kvm_regs>(vcpu, KVM_GET_REGS, "KVM_GET_REGS", s, Struct::kRegs));
  SNAPVM_CHECK_OK(get<kvm_sregs>(vcpu, KVM_GET_SREGS, "KVM_GET_SREGS", s, Struct::kSregs));
  std::vector<uint8_t> xsave(xsave_bytes, 0);
  SNAPVM_TRY(kvm::checked_ioctl(vcpu.fd(), xsave_bytes > ioctl::kXsaveLegacy ? ioctl::kGetXsave2 : ioctl::kGetXsave,
                                xsave.data(), "KVM_GET_XSAVE"));
  s.registers.push_back({struct_id(Struct::kXsave), std::move(xsave)});
  SNAPVM_CHECK_OK(get<kvm_xcrs>(vcpu, KVM_GET_XCRS, "KVM_GET_XCRS", s, Struct::kXcrs));
  SNAPVM_CHECK_OK(get<kvm_debugregs>(vcpu, KVM_GET_DEBUGREGS, "KVM_GET_DEBUGREGS", s, Struct::kDebugRegs));
  kvm_lapic_state lapic{};
  SNAPVM_TRY(kvm::checked_ioctl(vcpu.fd(), KVM_GET_LAPIC, &lapic, "KVM_GET_LAPIC"));
  s.registers.push_back({struct_id(Struct::kLapic), bytes_of(lapic)});
  uint32_t apic_id = 0;
  std::memcpy(&apic_id, lapic.regs + 0x20, 4);
  s.arch_id = apic_id >> 24;

  MsrBuffer all(msrs.size());
  for (size_t i = 0; i < msrs.size(); ++i) all.entries()[i].index = msrs[i];
  int got = SNAPVM_TRY(kvm::checked_ioctl(vcpu.fd(), ioctl::kGetMsrs, all.head(), "KVM_GET_MSRS"));
  if (static_cast<size_t>(got) != msrs.size()) {
    return make_error(ErrorCode::kIo, "KVM_GET_MSRS read {} of {} MSRs; MSR {:#x} failed", got, msrs.size(),
                      msrs[static_cast<size_t>(got)]);
  }
  for (size_t i = 0; i < msrs.size(); ++i) {
    s.registers.push_back({state::x86::msr_id(msrs[i]), bytes_of(static_cast<uint64_t>(all.entries()[i].data))});
  }

  kvm_vcpu_events events{};
  SNAPVM_TRY(kvm::checked_ioctl(vcpu.fd(), KVM_GET_VCPU_EVENTS, &events, "KVM_GET_VCPU_EVENTS"));
  s.events = bytes_of(events);
  return s;
}

Status restore_vcpu(const kvm::Vcpu& vcpu, const state::VcpuState& saved, bool can_scale_tsc, bool fresh,
                    std::optional<uint64_t> tsc) {
  const auto* cpuid = saved.find(struct_id(Struct::kCpuid));
  const auto* khz = saved.find(struct_id(Struct::kTscKhz));
  if (cpuid == nullptr || khz == nullptr) return make_error(ErrorCode::kDataLoss, "x86 vCPU state without CPUID or TSC");
  if (fresh) {
    SNAPVM_TRY(kvm::checked_ioctl(vcpu.fd(), ioctl::kSetCpuid2, const_cast<uint8_t*>(cpuid->value.data()),
                                  "KVM_SET_CPUID2"));
    uint64_t want_khz = 0;
    std::memcpy(&want_khz, khz->value.data(), 8);
    int here_khz = SNAPVM_TRY(kvm::checked_ioctl(vcpu.fd(), KVM_GET_TSC_KHZ, 0, "KVM_GET_TSC_KHZ"));
    if (want_khz != 0 && static_cast<uint64_t>(here_khz) != want_khz) {
      if (!can_scale_tsc) {
        return make_error(ErrorCode::kFailedPrecondition,
                          "the snapshot's TSC runs at {} kHz, this host's at {} kHz, and KVM here cannot scale it",
                          want_khz, here_khz);
      }
      SNAPVM_TRY(kvm::checked_ioctl(vcpu.fd(), KVM_SET_TSC_KHZ, want_khz, "KVM_SET_TSC_KHZ"));
    }
  }
  kvm_mp_state mp{saved.mp_state};
  SNAPVM_CHECK_OK(vcpu.set_mp_state(mp));

  std::vector<std::pair<uint32_t, uint64_t>> msrs;
  for (const auto& r : saved.registers) {
    if (state::x86::kind_of(r.id) == state::x86::Kind::kMsr) {
      uint64_t v = 0;
      std::memcpy(&v, r.value.data(), 8);
      uint32_t index = state::x86::number_of(r.id);
      if (index == kMsrTsc && tsc) v = *tsc;
      msrs.emplace_back(index, v);
      continue;
    }
    switch (static_cast<Struct>(state::x86::number_of(r.id))) {
      case Struct::kRegs: SNAPVM_CHECK_OK(set<kvm_regs>(vcpu, KVM_SET_REGS, "KVM_SET_REGS", r)); break;
      case Struct::kSregs: SNAPVM_CHECK_OK(set<kvm_sregs>(vcpu, KVM_SET_SREGS, "KVM_SET_SREGS", r)); break;
      case Struct::kXsave: {
        std::vector<uint8_t> x = r.value;  // KVM reads its own full size from the buffer
        SNAPVM_TRY(kvm::checked_ioctl(vcpu.fd(), ioctl::kSetXsave, x.data(), "KVM_SET_XSAVE"));
        break;
      }
      case Struct::kXcrs: SNAPVM_CHECK_OK(set<kvm_xcrs>(vcpu, KVM_SET_XCRS, "KVM_SET_XCRS", r)); break;
      case Struct::kDebugRegs: SNAPVM_CHECK_OK(set<kvm_debugregs>(vcpu, KVM_SET_DEBUGREGS, "KVM_SET_DEBUGREGS", r)); break;
      case Struct::kLapic: SNAPVM_CHECK_OK(set<kvm_lapic_state>(vcpu, KVM_SET_LAPIC, "KVM_SET_LAPIC", r)); break;
      case Struct::kCpuid:
      case Struct::kTscKhz: break;  // done first
    }
  }
  MsrBuffer all(msrs.size());
  for (size_t i = 0; i < msrs.size(); ++i) {
    all.entries()[i].index = msrs[i].first;
    all.entries()[i].data = msrs[i].second;
  }
  int written = SNAPVM_TRY(kvm::checked_ioctl(vcpu.fd(), ioctl::kSetMsrs, all.head(), "KVM_SET_MSRS"));
  if (static_cast<size_t>(written) != msrs.size()) {
    return make_error(ErrorCode::kFailedPrecondition, "KVM_SET_MSRS took {} of {} MSRs; MSR {:#x} was refused", written,
                      msrs.size(), msrs[static_cast<size_t>(written)].first);
  }
  kvm_vcpu_events events{};
  if (saved.events.size() != sizeof events) return make_error(ErrorCode::kDataLoss, "x86 vCPU events of the wrong size");
  std::memcpy(&events, saved.events.data(), sizeof events);
  SNAPVM_TRY(kvm::checked_ioctl(vcpu.fd(), KVM_SET_VCPU_EVENTS, &events, "KVM_SET_VCPU_EVENTS"));
  return {};
}

}  // namespace snapvm::arch::x86
