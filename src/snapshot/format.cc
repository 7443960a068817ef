#include "snapshot/format.h"

namespace snapvm::format {

std::string_view arch_name(Arch arch) {
  switch (arch) {
    case Arch::kArm64: return "arm64";
    case Arch::kX86_64: return "x86_64";
  }
  return "unknown";
}

bool arch_known(uint32_t raw) { return raw == 1 || raw == 2; }

std::string_view tag_name(uint32_t tag) {
  switch (static_cast<Tag>(tag)) {
    case Tag::kMachineConfig: return "machine-config";
    case Tag::kRamLayout: return "ram-layout";
    case Tag::kVcpuState: return "vcpu-state";
    case Tag::kGicV3State: return "gicv3-state";
    case Tag::kX86VmState: return "x86-vm-state";
    case Tag::kDeviceState: return "device-state";
    case Tag::kPortForwards: return "port-forwards";
    case Tag::kClock: return "clock";
    case Tag::kHostIdentity: return "host-identity";
    case Tag::kCreator: return "creator";
    case Tag::kExternalRam: return "external-ram";
  }
  return "unknown";
}

}  // namespace snapvm::format
