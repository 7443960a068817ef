// CPUID for x86_64 vCPUs: what KVM supports on this host, made consistent
// per vCPU (APIC id, topology, hypervisor bit, TSC-deadline timer), and the
// feature comparison a restore needs.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"
#include "kvm/kvm.h"

namespace snapvm::arch::x86 {

using CpuidEntries = std::vector<kvm_cpuid_entry2>;

Result<CpuidEntries> supported_cpuid(const kvm::Kvm& kvm);
// The table vCPU `apic_id` of `vcpus` sees.
CpuidEntries vcpu_cpuid(CpuidEntries supported, uint32_t apic_id, uint32_t vcpus, bool tsc_deadline);

// Serialised as KVM's kvm_cpuid2 (header, then entries), the snapshot record.
std::vector<uint8_t> encode_cpuid(const CpuidEntries& entries);
CpuidEntries decode_cpuid(const std::vector<uint8_t>& bytes);
Status set_cpuid(const kvm::Vcpu& vcpu, const CpuidEntries& entries);

const kvm_cpuid_entry2* find_leaf(const CpuidEntries& entries, uint32_t function, uint32_t index = 0);
// "GenuineIntel", "AuthenticAMD", ...
std::string vendor_of(const CpuidEntries& entries);
// Empty when every feature `saved` announces is one `supported` offers;
// else which leaf and bits are missing.
std::string missing_features(const CpuidEntries& saved, const CpuidEntries& supported);

}  // namespace snapvm::arch::x86
