// The names Linux gives CPUID feature bits (the flags of /proc/cpuinfo), so
// a restore refused for missing features names them ("avx2, x2apic") rather
// than leaving the reader to decode a mask. Plain data: built and tested on
// every host.
#pragma once

#include <cstdint>
#include <string>

namespace snapvm::arch::x86 {

enum class CpuidReg { kEax, kEbx, kEcx, kEdx };

// "avx2"; for a bit with no name here, "CPUID 0x7.0 ebx bit 5".
std::string cpuid_feature_name(uint32_t function, uint32_t index, CpuidReg reg, unsigned bit);
// Every set bit of `bits`, named, lowest first, joined by ", ".
std::string cpuid_feature_names(uint32_t function, uint32_t index, CpuidReg reg, uint32_t bits);

}  // namespace snapvm::arch::x86
