// The test host kernel's own record of what KVM did to a guest that reset:
// on x86_64, KVM on AMD re-INITs a vCPU that triple-faulted before user
// space can read where it was, so the place (kvm_exit's guest RIP) and the
// events injected just before it are kept from the kernel's tracepoints.
// Tracing stops by itself at the first shutdown exit, so the record of the
// fault survives the guests that keep running. Where tracefs or the KVM
// events are missing (arm64), and on a native host (SNAPVM_GUEST_DIR set),
// it does nothing.
#pragma once

#include <string>

namespace snapvm::test {

class KvmShutdownTrace {
 public:
  KvmShutdownTrace();
  ~KvmShutdownTrace();
  KvmShutdownTrace(const KvmShutdownTrace&) = delete;
  KvmShutdownTrace& operator=(const KvmShutdownTrace&) = delete;

  bool active() const { return active_; }
  // The last `lines` lines of the trace ("" when inactive); then the trace
  // starts again, empty, for the next shutdown.
  std::string take(int lines);

 private:
  bool active_ = false;
};

}  // namespace snapvm::test
