// The vCPU exits every KVM architecture reports the same way (MMIO, system
// events, interrupted runs, entry failures); each architecture's
// decode_exit handles its own first and hands the rest here.
#include "arch/platform.h"

namespace snapvm::arch {

Exit decode_common_exit(kvm_run& run, uint32_t vcpu_index) {
  Exit e;
  switch (run.exit_reason) {
    case KVM_EXIT_MMIO:
      e.kind = Exit::Kind::kMmio;
      e.addr = run.mmio.phys_addr;
      e.data = {run.mmio.data, run.mmio.len};
      e.size = run.mmio.len;
      e.write = run.mmio.is_write != 0;
      return e;
    case KVM_EXIT_SYSTEM_EVENT:  // PSCI SYSTEM_OFF / SYSTEM_RESET on arm64
      switch (run.system_event.type) {
        case KVM_SYSTEM_EVENT_SHUTDOWN: e.kind = Exit::Kind::kPowerOff; return e;
        case KVM_SYSTEM_EVENT_RESET: e.kind = Exit::Kind::kReset; return e;
        default: e.kind = Exit::Kind::kCrash; return e;
      }
    case KVM_EXIT_INTR: return e;
    case KVM_EXIT_FAIL_ENTRY:
      e.kind = Exit::Kind::kFail;
      e.error = fmt::format("vCPU {}: KVM_EXIT_FAIL_ENTRY, reason {:#x}", vcpu_index,
                            run.fail_entry.hardware_entry_failure_reason);
      return e;
    case KVM_EXIT_INTERNAL_ERROR:
      e.kind = Exit::Kind::kFail;
      e.error = fmt::format("vCPU {}: KVM internal error {}", vcpu_index, run.internal.suberror);
      return e;
    default:
      e.kind = Exit::Kind::kFail;
      e.error = fmt::format("vCPU {}: unhandled exit reason {}", vcpu_index, run.exit_reason);
      return e;
  }
}

uint32_t kvm_vcpu_limit(const kvm::Kvm& kvm) {
  int n = kvm.check_extension(KVM_CAP_MAX_VCPUS);
  if (n <= 0) n = kvm.check_extension(KVM_CAP_NR_VCPUS);
  return n > 0 ? static_cast<uint32_t>(n) : 4;
}

}  // namespace snapvm::arch
