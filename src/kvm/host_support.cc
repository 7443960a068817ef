#include "kvm/host_support.h"

#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

namespace snapvm::kvm {
namespace {

std::optional<bool> module_loaded(const std::string& root, const char* name, bool sys_readable) {
  if (!sys_readable) return std::nullopt;
  struct stat st {};
  return ::stat((root + "/sys/module/" + name).c_str(), &st) == 0;
}

// Whether any "flags" line of cpuinfo names vmx or svm as a whole word.
std::optional<bool> cpu_virtualization(const std::string& root) {
  std::ifstream in(root + "/proc/cpuinfo");
  if (!in) return std::nullopt;
  std::string line;
  bool saw_flags = false;
  while (std::getline(in, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    saw_flags = true;
    std::istringstream words(line.substr(line.find(':') == std::string::npos ? line.size() : line.find(':') + 1));
    for (std::string w; words >> w;) {
      if (w == "vmx" || w == "svm") return true;
    }
  }
  return saw_flags ? std::optional<bool>(false) : std::nullopt;
}

}  // namespace

HostFacts read_host_facts(const std::string& root) {
  struct stat st {};
  const bool sys_readable = ::stat((root + "/sys/module").c_str(), &st) == 0;
  HostFacts f;
  f.pvm_loaded = module_loaded(root, "kvm_pvm", sys_readable);
  auto intel = module_loaded(root, "kvm_intel", sys_readable);
  auto amd = module_loaded(root, "kvm_amd", sys_readable);
  if (intel && amd) f.vendor_loaded = *intel || *amd;
  // cpuinfo is long on a large host and is needed only when no hardware
  // backend is loaded: a host that has one is not read at all.
  if (!f.vendor_loaded.value_or(false)) f.cpu_has_vmx_svm = cpu_virtualization(root);
  return f;
}

std::string x86_unusable_reason(const HostFacts& f) {
  constexpr const char* kWhatToDo =
      "run snapvm on a host with hardware virtualization (kvm_intel or kvm_amd; on a cloud VM, one with nested "
      "virtualization), or set SNAPVM_ALLOW_ANY_KVM=1 to try anyway";
  // PVM is the backend only when no hardware one is loaded beside it.
  if (f.pvm_loaded.value_or(false) && !f.vendor_loaded.value_or(false)) {
    return std::string("this host's /dev/kvm is the PVM backend (kvm_pvm), which cannot boot a stock Linux guest: ") +
           kWhatToDo;
  }
  if (f.cpu_has_vmx_svm == false && !f.vendor_loaded.value_or(false)) {
    return std::string("this host's CPU shows neither vmx nor svm and no kvm_intel or kvm_amd is loaded, so its "
                       "/dev/kvm cannot boot a stock Linux guest: ") +
           kWhatToDo;
  }
  return {};
}

std::string unusable_reason_here() {
#if defined(__x86_64__)
  const char* allow = std::getenv("SNAPVM_ALLOW_ANY_KVM");
  if (allow != nullptr && std::string(allow) == "1") return {};
  // Once per process: the backend does not change under it, and a restore
  // (whose time is the figure we chase) opens KVM again in every clone.
  static const std::string reason = x86_unusable_reason(read_host_facts());
  return reason;
#else
  return {};
#endif
}

}  // namespace snapvm::kvm
