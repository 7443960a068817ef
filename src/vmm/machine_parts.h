// What a Machine is made of (private to src/vmm/machine*.cc): each part owns
// its data; the machine composes them and holds the one lock that orders
// snapshots against each other and against disk changes.
#pragma once

#include <memory>
#include <optional>
#include <vector>

#include "arch/platform.h"
#include "base/mapped_region.h"
#include "base/thread_annotations.h"
#include "base/unique_fd.h"
#include "devices/guest_memory.h"
#include "kvm/kvm.h"
#include "vmm/device_set.h"
#include "vmm/dirty_log.h"
#include "vmm/machine.h"
#include "vmm/page_server_watchdog.h"
#include "vmm/panic_watch.h"
#include "vmm/vcpu_set.h"

namespace snapvm {

struct Machine::Parts {
  // The vCPUs stop first, then the devices' threads, which write guest
  // memory and mark dirty pages until joined; RAM, the dirty log and the
  // platform (interrupt lines) outlive both. On every path, a restore that
  // fails half way too.
  ~Parts();

  MachineConfig config;
  kvm::Kvm kvm;
  std::optional<kvm::Vm> vm;
  // Guest RAM: one host mapping and one KVM slot per region (slot i is
  // region i), all of it reachable through `memory`.
  std::vector<arch::RamRegion> ram_layout;
  std::vector<MappedRegion> ram;
  GuestMemory memory;
  bool ram_registered = false;  // with the SIGBUS reporter (RAM mapped from a file)
  UniqueFd uffd, uffd_socket;   // RAM served by a page server: kept open while the VM lives
  // Declared after the userfaultfd it watches: it stops before that closes.
  std::unique_ptr<PageServerWatchdog> page_server_watchdog;
  // Dirty tracking, when on; guarded by snapshot_mu (collected and rebased
  // only by snapshots).
  std::optional<DirtyLog> dirty;
  std::unique_ptr<arch::Platform> platform;
  std::unique_ptr<DeviceSet> devices;
  std::unique_ptr<VcpuSet> vcpus;
  // Reads the console for the kernel's panic line: a reset after it is a crash.
  std::shared_ptr<PanicWatch> panic_watch = std::make_shared<PanicWatch>();
  // One snapshot at a time, and no disk swapped under one.
  Mutex snapshot_mu;

  std::vector<RamSource> ram_sources() const;
  uint64_t ram_bytes() const;
  // The whole machine's state but RAM; only while paused.
  Result<state::SnapshotState> capture_state() const;
  // Captures the paused VM and writes it: in full, or finishing `diff`.
  // With `resume_early`, a diff whose pages are few enough is written from a
  // copy after calling it (the guest runs during the write).
  Result<WriteStats> write_snapshot(const std::string& path, std::optional<DiffInProgress> diff,
                                    LiveSnapshot* timing = nullptr, const std::function<void()>& resume_early = {})
      REQUIRES(snapshot_mu);
  Status check_diff_base(const std::string& diff_from) const REQUIRES(snapshot_mu);
};

}  // namespace snapvm
