#include "arch/x86_64/cpu_features.h"

#include <array>

#include <fmt/format.h>

namespace snapvm::arch::x86 {
namespace {

using Names = std::array<const char*, 32>;  // by bit; nullptr: no name here

// Leaf 1 ECX and EDX.
constexpr Names kLeaf1Ecx = {
    "sse3",  "pclmulqdq", "dtes64",  "monitor", "ds_cpl", "vmx",    "smx",    "est",
    "tm2",   "ssse3",     "cid",     "sdbg",    "fma",    "cx16",   "xtpr",   "pdcm",
    nullptr, "pcid",      "dca",     "sse4_1",  "sse4_2", "x2apic", "movbe",  "popcnt",
    "tsc_deadline_timer", "aes", "xsave", "osxsave", "avx", "f16c", "rdrand", "hypervisor"};
constexpr Names kLeaf1Edx = {
    "fpu",  "vme",   "de",   "pse",  "tsc",  "msr",   "pae",  "mce",  "cx8",  "apic",  nullptr, "sep",  "mtrr",
    "pge",  "mca",   "cmov", "pat",  "pse36", "pn",   "clflush", nullptr, "dts", "acpi", "mmx",  "fxsr", "sse",
    "sse2", "ss",    "ht",   "tm",   "ia64", "pbe"};
// Leaf 7 subleaf 0 EBX, ECX and EDX.
constexpr Names kLeaf7Ebx = {
    "fsgsbase", "tsc_adjust", "sgx",      "bmi1",     "hle",        "avx2",     "fdp_excptn_only", "smep",
    "bmi2",     "erms",       "invpcid",  "rtm",      "cqm",        "zero_fcs_fds", "mpx",         "rdt_a",
    "avx512f",  "avx512dq",   "rdseed",   "adx",      "smap",       "avx512ifma", "pcommit",       "clflushopt",
    "clwb",     "intel_pt",   "avx512pf", "avx512er", "avx512cd",   "sha_ni",   "avx512bw",        "avx512vl"};
constexpr Names kLeaf7Ecx = {
    "prefetchwt1", "avx512vbmi", "umip",   "pku",       "ospke",        "waitpkg", "avx512_vbmi2", "cet_ss",
    "gfni",        "vaes",       "vpclmulqdq", "avx512_vnni", "avx512_bitalg", "tme", "avx512_vpopcntdq", nullptr,
    "la57",        nullptr,      nullptr,  nullptr,     nullptr,        nullptr,   "rdpid",        "kl",
    nullptr,       "cldemote",   nullptr,  "movdiri",   "movdir64b",    "enqcmd",  "sgx_lc",       "pks"};
constexpr Names kLeaf7Edx = {
    nullptr,      nullptr,      "avx512_4vnniw", "avx512_4fmaps", "fsrm",      nullptr,  nullptr,   nullptr,
    "avx512_vp2intersect", nullptr, "md_clear",  nullptr,         nullptr,     nullptr,  "serialize", nullptr,
    "tsxldtrk",   nullptr,      "pconfig",       "arch_lbr",      "ibt",       nullptr,  "amx_bf16", "avx512_fp16",
    "amx_tile",   "amx_int8",   "spec_ctrl",     "intel_stibp",   "flush_l1d", "arch_capabilities",
    "core_capabilities", "spec_ctrl_ssbd"};
// Leaf 0xd subleaf 1 EAX.
constexpr Names kLeafDEax1 = {"xsaveopt", "xsavec", "xgetbv1", "xsaves", "xfd"};
// Leaf 0x80000001 ECX and EDX (AMD's extended features; the EDX bits that
// repeat leaf 1 on AMD carry leaf 1's names).
constexpr Names kExt1Ecx = {
    "lahf_lm", "cmp_legacy", "svm",  "extapic", "cr8_legacy", "abm",      "sse4a",       "misalignsse",
    "3dnowprefetch", "osvw", "ibs",  "xop",     "skinit",     "wdt",      nullptr,       "lwp",
    "fma4",    "tce",        nullptr, "nodeid_msr", nullptr,  "tbm",      "topoext",     "perfctr_core",
    "perfctr_nb", nullptr,   "bpext", "ptsc",   "perfctr_llc", "mwaitx",  nullptr,       nullptr};
constexpr Names kExt1Edx = {
    "fpu",  "vme",  "de",   "pse",  "tsc",   "msr",   "pae",    "mce",  "cx8",    "apic",    nullptr, "syscall",
    "mtrr", "pge",  "mca",  "cmov", "pat",   "pse36", nullptr,  "mp",   "nx",     nullptr,   "mmxext", "mmx",
    "fxsr", "fxsr_opt", "pdpe1gb", "rdtscp", nullptr, "lm", "3dnowext", "3dnow"};

const Names* table(uint32_t function, uint32_t index, CpuidReg reg) {
  switch (function) {
    case 1: return reg == CpuidReg::kEcx ? &kLeaf1Ecx : reg == CpuidReg::kEdx ? &kLeaf1Edx : nullptr;
    case 7:
      if (index != 0) return nullptr;
      return reg == CpuidReg::kEbx ? &kLeaf7Ebx : reg == CpuidReg::kEcx ? &kLeaf7Ecx
                                                : reg == CpuidReg::kEdx ? &kLeaf7Edx : nullptr;
    case 0xd: return index == 1 && reg == CpuidReg::kEax ? &kLeafDEax1 : nullptr;
    case 0x80000001: return reg == CpuidReg::kEcx ? &kExt1Ecx : reg == CpuidReg::kEdx ? &kExt1Edx : nullptr;
    default: return nullptr;
  }
}

}  // namespace

std::string cpuid_feature_name(uint32_t function, uint32_t index, CpuidReg reg, unsigned bit) {
  static constexpr const char* kRegs[] = {"eax", "ebx", "ecx", "edx"};
  const Names* names = bit < 32 ? table(function, index, reg) : nullptr;
  if (names != nullptr && (*names)[bit] != nullptr) return (*names)[bit];
  return fmt::format("CPUID {:#x}.{} {} bit {}", function, index, kRegs[static_cast<int>(reg)], bit);
}

std::string cpuid_feature_names(uint32_t function, uint32_t index, CpuidReg reg, uint32_t bits) {
  std::string out;
  for (unsigned bit = 0; bit < 32; ++bit) {
    if ((bits & (1u << bit)) == 0) continue;
    if (!out.empty()) out += ", ";
    out += cpuid_feature_name(function, index, reg, bit);
  }
  return out;
}

}  // namespace snapvm::arch::x86
