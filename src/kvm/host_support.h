// Whether this host's KVM can run a stock Linux guest at all. A /dev/kvm
// alone proves nothing: some x86_64 machines offer one backed by PVM
// (kvm_pvm, paravirtualized guests only), where a stock kernel runs for
// minutes without a word on its console. The VMM asks before it builds a
// VM, so such a host gets one line saying what is wrong and what to do.
#pragma once

#include <optional>
#include <string>

namespace snapvm::kvm {

// What the host's kernel says about its KVM backend; each fact unknown
// (nullopt) when its file cannot be read (a jail without /sys or /proc).
struct HostFacts {
  std::optional<bool> pvm_loaded;       // /sys/module/kvm_pvm
  std::optional<bool> vendor_loaded;    // /sys/module/kvm_intel or kvm_amd
  std::optional<bool> cpu_has_vmx_svm;  // a vmx or svm flag in /proc/cpuinfo (read only without a vendor module)
};

// Reads the facts under `root` ("/" on a real host; tests pass a tree of
// their own).
HostFacts read_host_facts(const std::string& root = "/");

// For an x86_64 host: why its KVM cannot run a stock guest, with what to do,
// in one sentence; empty when nothing is known to be wrong.
std::string x86_unusable_reason(const HostFacts& facts);

// The check the VMM makes (x86_64 only; arm64 has no such backend):
// x86_unusable_reason of this host unless SNAPVM_ALLOW_ANY_KVM=1 says to
// try anyway.
std::string unusable_reason_here();

}  // namespace snapvm::kvm
