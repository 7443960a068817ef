// A running microVM: guest memory, vCPU threads, devices, and the way it
// ends. Architecture specifics come from arch/platform.h.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/mapped_region.h"
#include "base/result.h"
#include "snapshot/writer.h"
#include "state/host_state.h"
#include "state/snapshot_state.h"
#include "state/vcpu_state.h"
#include "vmm/exit_reason.h"
#include "vmm/machine_config.h"

namespace snapvm {

struct VirtioPlacement;  // vmm/device_set.h

struct RestoreTimings {
  double open_us = 0;     // open and validate the file, decode the state
  double map_ram_us = 0;  // map RAM copy-on-write
  double vcpus_us = 0;    // VM, vCPUs and devices created, vCPU registers written
  double arch_vm_us = 0;  // interrupt controller and timers (GIC; PIC, IOAPIC, PIT, kvmclock)
  double devices_us = 0;  // device state
  double total_us = 0;    // everything before the first guest instruction
};

class Machine {
 public:
  // Builds the VM and loads the guest; checks every input first and fails
  // with one clear error.
  static Result<std::unique_ptr<Machine>> create(const MachineConfig& config);

  // Rebuilds a VM from a snapshot in this process: RAM mapped copy-on-write
  // from the file (nothing copied), vCPUs, interrupt controller and devices restored; vsock
  // connections are reset with a transport-reset event. Call run() to go on.
  static Result<std::unique_ptr<Machine>> restore(const std::string& path, const RestoreOptions& options,
                                                  RestoreTimings* timings = nullptr);
  ~Machine();

  // Runs the vCPUs until the guest powers off, resets or crashes, or until
  // request_stop(); an error in a vCPU thread stops the others too.
  // `on_started` runs on the calling thread once the vCPU threads exist
  // (the command line installs the main thread's seccomp filter there).
  Result<ExitReason> run(const std::function<void()>& on_started = {});
  // After run(): how the exit came about where the architecture tells more
  // than the reason ("vCPU 2 triple-faulted"), else empty.
  std::string exit_detail() const;

  // Thread-safe: makes run() return kStopped soon.
  void request_stop();

  // Parks every vCPU outside KVM_RUN (the guest stops; devices keep their
  // host sides), and lets them run again. Only while run() is running.
  // A pause that does not complete within `timeout` is rolled back: the VM
  // runs on and the error says so.
  // `paused_here` (if given): whether this call paused it (false: it was
  // paused already, and its pauser will resume it).
  Status pause(std::chrono::milliseconds timeout = std::chrono::seconds(10), bool* paused_here = nullptr);
  Status resume();
  // Before run(): its vCPUs start parked, as if paused (restore --paused).
  void start_paused();
  bool paused() const;

  // Presses the guest's power button (arch::power_button_slot) and, for a
  // GPIO button, holds it until the guest's driver has read it (at most
  // `hold`, blocking the caller), then releases it: a request to shut down
  // cleanly, which a guest without the driver ignores. Not while paused.
  Status press_power_button(std::chrono::milliseconds hold = std::chrono::seconds(2));
  // Where each vCPU is ("vCPU 0: pc=... pstate=..."), for reports of a
  // guest that hangs; only while paused.
  Result<std::vector<std::string>> describe_vcpus() const;
  // Each virtio device's registers, queue indices and own account, for the
  // same reports; safe while running.
  std::vector<std::string> describe_devices() const;
  // Every vCPU's complete state; only while paused.
  Result<std::vector<state::VcpuState>> capture_vcpus() const;
  Status restore_vcpus(const std::vector<state::VcpuState>& saved);
  // Writes a complete snapshot of the paused VM to `path`: vCPUs, interrupt controller,
  // devices, port forwards, clock, host identity, then RAM (streamed from
  // guest memory, sparse). Crash-safe; returns the write statistics.
  //
  // With `diff_from`, the RAM comes from that snapshot plus the pages written
  // since it was taken or restored (dirty tracking must be on, and it must be
  // the snapshot this VM last wrote or was restored from); the result is
  // still standalone. Either way, with tracking on, the new snapshot becomes
  // the base that later diffs count from.
  Result<WriteStats> snapshot(const std::string& path, const std::string& diff_from = {});

  // The same for a running VM with the shortest pause: what does not depend
  // on guest state (a diff's copy of its base) is done while the guest runs,
  // then it pauses for capture and writing, and resumes if `resume`.
  struct LiveSnapshot {
    WriteStats stats;
    double pause_ms = 0;  // guest stopped: pause to resume (or to the end)
    double total_ms = 0;
    // Within the pause: vCPUs, interrupt controller and devices captured; KVM's dirty log
    // read and re-protected; the file written and committed. A diff taken
    // with resume copies its pages (copy_ms, in the pause) and is written
    // while the guest runs (written_while_running: write_ms is after it).
    double capture_ms = 0, dirty_log_ms = 0, copy_ms = 0, write_ms = 0;
    bool written_while_running = false;
  };
  Result<LiveSnapshot> snapshot_live(const std::string& path, const std::string& diff_from, bool resume);

  // Firecracker's two-file layout: the machine state to `state_path` (a
  // snapvm snapshot whose RAM is external) and guest RAM raw to `mem_path`,
  // region after region, sparse. Only while paused; both crash-safe.
  // `diff` writes only the pages dirtied since the last snapshot of either
  // layout (or since the start), zero or not, the rest left as holes: a
  // Firecracker Diff, laid over its base with rebase_raw_memory. It needs
  // dirty tracking. With tracking on, every two-file snapshot starts a new
  // dirty interval, so a native diff then needs a native full snapshot first.
  struct TwoFileStats {
    WriteStats state, memory;
  };
  Result<TwoFileStats> snapshot_two_files(const std::string& state_path, const std::string& mem_path,
                                          bool diff = false);

  // The disks, in MachineConfig::disks order, with their current files and
  // ids (for a restored machine, the ids its snapshot recorded).
  std::vector<MachineConfig::Disk> disks() const;
  // Disk `index` (in MachineConfig::disks order) reads and writes the
  // image at `path` from now on; the guest is told its capacity changed.
  // Snapshots record the new path. Thread-safe.
  Status replace_disk(size_t index, const std::string& path);

  bool tracking_dirty() const;
  // The snapshot dirty pages are counted from (empty: none yet).
  std::string dirty_base() const;

  // The VM's interrupt controller and timers; only while paused.
  Result<state::ArchVmState> capture_arch_vm() const;
  Status restore_arch_vm(const state::ArchVmState& saved);

  uint64_t mem_bytes() const;
  const std::string& vsock_path() const;
  uint32_t vcpu_count() const;
  // The forwards as listening (a requested port 0 shows the chosen port).
  std::vector<state::PortForward> port_forwards() const;

 private:
  struct Parts;  // vmm/machine_parts.h
  explicit Machine(std::unique_ptr<Parts> parts);
  // Everything but guest memory contents: KVM, vCPUs, interrupt controller
  // and devices, each virtio device in the slot `placement` gives it.
  // `ram`: one mapping per region of arch::ram_regions(config.mem_bytes).
  static Result<std::unique_ptr<Parts>> build(const MachineConfig& config, std::vector<MappedRegion> ram,
                                              std::span<const VirtioPlacement> placement);
  std::unique_ptr<Parts> p_;
};

}  // namespace snapvm
