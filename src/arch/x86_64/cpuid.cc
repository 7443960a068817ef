#include "arch/x86_64/cpuid.h"

#include <cstring>

#include <fmt/format.h>

#include "arch/x86_64/cpu_features.h"
#include "arch/x86_64/kvm_ioctls.h"
#include "kvm/ioctl.h"

namespace snapvm::arch::x86 {
namespace {

constexpr uint32_t kHypervisorBit = 1u << 31;      // leaf 1 ECX
constexpr uint32_t kTscDeadlineBit = 1u << 24;     // leaf 1 ECX
constexpr uint32_t kOsxsaveBit = 1u << 27;         // leaf 1 ECX: follows CR4, not the host
constexpr uint32_t kApicBit = 1u << 9;             // leaf 1 EDX: follows the APIC base MSR
constexpr uint32_t kHttBit = 1u << 28;             // leaf 1 EDX
constexpr uint32_t kOspkeBit = 1u << 4;            // leaf 7 ECX: follows CR4.PKE

std::vector<uint8_t> header_and(const CpuidEntries& e) {
  std::vector<uint8_t> out(8 + e.size() * sizeof(kvm_cpuid_entry2), 0);
  uint32_t n = static_cast<uint32_t>(e.size());
  std::memcpy(out.data(), &n, 4);
  if (!e.empty()) std::memcpy(out.data() + 8, e.data(), e.size() * sizeof(kvm_cpuid_entry2));
  return out;
}

}  // namespace

Result<CpuidEntries> supported_cpuid(const kvm::Kvm& kvm) {
  // KVM says E2BIG until the buffer is large enough.
  for (uint32_t n = 64; n <= 1024; n *= 2) {
    std::vector<uint8_t> buf(ioctl::kCpuid2Header + n * sizeof(kvm_cpuid_entry2), 0);
    auto* c = reinterpret_cast<kvm_cpuid2*>(buf.data());
    c->nent = n;
    auto r = kvm::checked_ioctl(kvm.fd(), ioctl::kGetSupportedCpuid, c, "KVM_GET_SUPPORTED_CPUID");
    if (!r) {
      if (r.error().sys_errno() == E2BIG) continue;
      return tl::unexpected(std::move(r.error()));
    }
    CpuidEntries out(c->nent);
    std::memcpy(out.data(), buf.data() + ioctl::kCpuid2Header, c->nent * sizeof(kvm_cpuid_entry2));
    return out;
  }
  return make_error(ErrorCode::kUnsupported, "KVM_GET_SUPPORTED_CPUID wants more than 1024 entries");
}

CpuidEntries vcpu_cpuid(CpuidEntries e, uint32_t apic_id, uint32_t vcpus, bool tsc_deadline) {
  // Smallest shift that gives every vCPU its own APIC id at the core level.
  uint32_t core_shift = 0;
  while ((1u << core_shift) < vcpus) ++core_shift;
  const bool amd = vendor_of(e) == "AuthenticAMD";
  for (auto& x : e) {
    switch (x.function) {
      case 1:
        x.ebx = (x.ebx & 0x0000ffff) | (std::min<uint32_t>(vcpus, 255) << 16) | (apic_id << 24);
        x.ecx |= kHypervisorBit;
        if (tsc_deadline) x.ecx |= kTscDeadlineBit; else x.ecx &= ~kTscDeadlineBit;
        if (vcpus > 1) x.edx |= kHttBit; else x.edx &= ~kHttBit;
        break;
      case 4:  // Intel cache topology: cores per package in EAX[31:26]
        if (!amd && (x.eax & 0x1f) != 0) x.eax = (x.eax & 0x03ff'ffff) | ((vcpus - 1) << 26);
        break;
      case 0xb:
      case 0x1f:  // extended topology: one thread per core, `vcpus` cores
        x.edx = apic_id;
        if (x.index == 0) {
          x.eax = 0;
          x.ebx = 1;
          x.ecx = (1u << 8) | 0;
        } else if (x.index == 1) {
          x.eax = core_shift;
          x.ebx = vcpus;
          x.ecx = (2u << 8) | 1;
        } else {
          x.eax = x.ebx = 0;
          x.ecx = x.index;
        }
        break;
      case 0x80000008:  // AMD: cores per package - 1, and the APIC id width
        if (amd) x.ecx = (x.ecx & ~0xf0ffu) | (core_shift << 12) | (vcpus - 1);
        break;
      case 0x8000001e:  // AMD extended APIC id and core id
        if (amd) {
          x.eax = apic_id;
          x.ebx = (x.ebx & ~0xffu) | (apic_id & 0xff);
          x.ecx = 0;
        }
        break;
      default: break;
    }
  }
  return e;
}

std::vector<uint8_t> encode_cpuid(const CpuidEntries& entries) { return header_and(entries); }

CpuidEntries decode_cpuid(const std::vector<uint8_t>& bytes) {
  CpuidEntries out((bytes.size() - 8) / sizeof(kvm_cpuid_entry2));
  if (!out.empty()) std::memcpy(out.data(), bytes.data() + 8, out.size() * sizeof(kvm_cpuid_entry2));
  return out;
}

Status set_cpuid(const kvm::Vcpu& vcpu, const CpuidEntries& entries) {
  auto buf = header_and(entries);
  SNAPVM_TRY(kvm::checked_ioctl(vcpu.fd(), ioctl::kSetCpuid2, buf.data(), "KVM_SET_CPUID2"));
  return {};
}

const kvm_cpuid_entry2* find_leaf(const CpuidEntries& entries, uint32_t function, uint32_t index) {
  for (const auto& e : entries) {
    if (e.function == function && ((e.flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) == 0 || e.index == index)) return &e;
  }
  return nullptr;
}

std::string vendor_of(const CpuidEntries& entries) {
  const auto* l0 = find_leaf(entries, 0);
  if (l0 == nullptr) return "unknown";
  char v[13] = {};
  std::memcpy(v, &l0->ebx, 4);
  std::memcpy(v + 4, &l0->edx, 4);
  std::memcpy(v + 8, &l0->ecx, 4);
  return v;
}

std::string missing_features(const CpuidEntries& saved, const CpuidEntries& supported) {
  struct Check {
    uint32_t function, index;
    CpuidReg reg;
    uint32_t ignore;
  };
  static const Check kChecks[] = {
      {1, 0, CpuidReg::kEcx, kHypervisorBit | kTscDeadlineBit | kOsxsaveBit},
      {1, 0, CpuidReg::kEdx, kApicBit | kHttBit},
      {7, 0, CpuidReg::kEbx, 0},
      {7, 0, CpuidReg::kEcx, kOspkeBit},
      {7, 0, CpuidReg::kEdx, 0},
      {0xd, 1, CpuidReg::kEax, 0},
      {0x80000001, 0, CpuidReg::kEcx, 0},
      {0x80000001, 0, CpuidReg::kEdx, 0},
  };
  static const char* kRegs[] = {"eax", "ebx", "ecx", "edx"};
  auto reg = [](const kvm_cpuid_entry2& e, CpuidReg r) {
    switch (r) {
      case CpuidReg::kEax: return e.eax;
      case CpuidReg::kEbx: return e.ebx;
      case CpuidReg::kEcx: return e.ecx;
      case CpuidReg::kEdx: return e.edx;
    }
    return 0u;
  };
  // Every missing feature by name, then the masks for whoever compares
  // them with a CPU's documentation.
  std::string names, masks;
  for (const auto& c : kChecks) {
    const auto* s = find_leaf(saved, c.function, c.index);
    if (s == nullptr) continue;
    const auto* h = find_leaf(supported, c.function, c.index);
    uint32_t want = reg(*s, c.reg) & ~c.ignore;
    uint32_t have = h != nullptr ? reg(*h, c.reg) : 0;
    if (uint32_t missing = want & ~have; missing != 0) {
      names += (names.empty() ? "" : ", ") + cpuid_feature_names(c.function, c.index, c.reg, missing);
      masks += fmt::format("{}CPUID leaf {:#x}.{} {} bits {:#x}", masks.empty() ? "" : "; ", c.function, c.index,
                           kRegs[static_cast<int>(c.reg)], missing);
    }
  }
  return names.empty() ? std::string() : fmt::format("{} ({})", names, masks);
}

}  // namespace snapvm::arch::x86
