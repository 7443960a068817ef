// Seccomp filters per VMM thread kind. A guest that escapes through a device
// bug lands in a thread that may make only the system calls its kind needs:
// a vCPU thread runs KVM_RUN and serves MMIO, a device worker moves vsock
// bytes, the control thread writes snapshots. Anything else ends the VMM
// with one line naming the thread and the call.
//
// Filters are opt-in per process (the snapvm command enables them; tests
// and benchmarks that embed a Machine do not), and each thread installs its
// own when it starts: enter() is a no-op until enable() was called.
#pragma once

#include "base/result.h"

namespace snapvm::sandbox {

enum class ThreadKind {
  kMain,     // the command's main thread once the VM runs: waits, then tears down
  kVcpu,     // KVM_RUN, MMIO exits, devices served on notification (block I/O)
  kDevice,   // device workers (vsock) and agent clients: sockets, epoll, interrupts
  kControl,  // the control socket: requests, capture, snapshot writing
  kApi,      // the Firecracker API's HTTP thread: requests, capture, snapshot writing
  kBuild,    // the thread that builds or restores the machine (and starts the others)
  kPool,     // `pool serve`: requests on its socket; clones start unfiltered elsewhere
  kImport,   // `image import`: archives unpacked, the ext4 image made
};
const char* name(ThreadKind kind);

enum class Mode {
  kEnforce,  // a forbidden call traps: one line on stderr, exit kExitForbiddenSyscall
  kLog,      // allowed but logged by the kernel (discovery: dmesg "type=1326")
};

inline constexpr int kExitForbiddenSyscall = 159;

// PR_SET_NO_NEW_PRIVS, the SIGSYS reporter, glibc's housekeeping done or
// kept out of filtered threads (one malloc arena, the unwinder loaded), and
// from now on enter() installs filters. Call once, before the process
// starts its first thread.
Status enable(Mode mode);
bool enabled();

// Installs the filter of `kind` on the calling thread (and the threads it
// creates later). No-op unless enable() was called.
Status enter(ThreadKind kind);
// The same for threads that must not run unfiltered: on failure, one line
// and the process ends.
void enter_or_die(ThreadKind kind);

}  // namespace snapvm::sandbox
