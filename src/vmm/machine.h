// A running microVM: guest memory, vCPU threads, devices, and the way it
// ends. Architecture specifics come from arch/platform.h.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "base/mapped_region.h"
#include "base/result.h"
#include "devices/virtio/net.h"
#include "snapshot/writer.h"
#include "state/host_state.h"
#include "state/snapshot_state.h"
#include "state/vcpu_state.h"

namespace snapvm {

struct MachineConfig {
  std::string kernel_path;
  std::string initrd_path;  // empty: none
  std::string cmdline;
  uint64_t mem_bytes = 512ull << 20;
  uint32_t vcpus = 1;
  struct Disk {
    Disk() = default;
    Disk(std::string p, bool ro, std::string name = {}) : path(std::move(p)), read_only(ro), id(std::move(name)) {}
    std::string path;
    bool read_only = false;
    // A name kept in snapshots (the device's name), e.g. a Firecracker
    // drive_id; empty: "virtio<slot>". Restored machines carry it back.
    std::string id;
  };
  std::vector<Disk> disks;  // virtio-blk, /dev/vda, /dev/vdb, ... in order
  bool rng = true;          // virtio-rng: host entropy for the guest
  // virtio-vsock, host side on this Unix socket (Firecracker's protocol);
  // empty: no vsock device.
  std::string vsock_path;
  uint64_t guest_cid = 3;
  // Host TCP listeners forwarded to guest vsock ports (needs vsock_path).
  std::vector<state::PortForward> publish;
  // virtio-net interfaces (eth0, eth1, ... in order), each on a host tap.
  struct Net {
    std::string tap;                         // the tap device's name (created if missing and allowed)
    std::optional<virtio::MacAddress> mac;  // none: a random locally administered one
    std::string id;                          // kept in snapshots (e.g. Firecracker's iface_id); empty: "virtio<slot>"
  };
  std::vector<Net> nets;
  // Where the guest console goes: every chunk the UART emits.
  std::function<void(std::string_view)> console;
  // Dirty-page tracking from boot: KVM logs the guest's writes, the VMM
  // marks its own; diff snapshots need it.
  bool track_dirty = false;
};

enum class ExitReason {
  kPowerOff,  // the guest powered off (PSCI SYSTEM_OFF; ACPI S5 on x86_64)
  kReset,     // the guest asked for a reset (PSCI SYSTEM_RESET; ACPI or i8042 reset, triple fault)
  kCrash,     // the guest reported a crash
  kStopped,   // request_stop() from the host
};
std::string_view to_string(ExitReason r);

// The host resources a restored VM takes. A snapshot is untrusted input, so
// the host paths it recorded are used only inside `allowed_dir`; anything
// else must come from here. Each clone needs its own sockets and ports.
struct RestoreOptions {
  std::string vsock_path;          // empty: the snapshot's, if inside allowed_dir
  std::vector<std::string> disks;  // per disk, in order; missing: the snapshot's, if inside allowed_dir
  // Per network interface, in order: another tap (and MAC) for this clone.
  // A missing one takes the snapshot's tap only with `recorded_taps` (a
  // tap is a host resource the snapshot names, like a path) and keeps the
  // MAC the guest knows unless one is given.
  std::vector<MachineConfig::Net> nets;
  bool recorded_taps = false;
  // Another tap by the interface's id (Firecracker's network_overrides);
  // these count as given, like `nets`.
  std::vector<std::pair<std::string, std::string>> taps_by_id;
  // Where the snapshot's own paths may lie; empty: the snapshot file's directory.
  std::string allowed_dir;
  // Host TCP forwards to guest ports; the snapshot's are never re-bound
  // (their addresses and ports belong to the VM it was taken from).
  std::vector<state::PortForward> publish;
  std::function<void(std::string_view)> console;
  bool track_dirty = false;  // dirty-page tracking from the restore on
  // Where guest RAM comes from for a snapshot that keeps it in a separate
  // memory file (Firecracker's two-file layout); required for those, refused
  // for snapshots that hold their RAM.
  struct MemoryFile {
    enum class Backend { kFile, kPageServer } backend = Backend::kFile;
    std::string path;  // the memory file, or the page server's Unix socket (userfaultfd)
    // Page server only: how long guest memory faults may wait unread before
    // the VMM ends with one line (vmm/page_server_watchdog.h); 0: forever.
    std::chrono::milliseconds fault_timeout{std::chrono::seconds(30)};
  };
  std::optional<MemoryFile> memory;
};

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
  Status pause(std::chrono::milliseconds timeout = std::chrono::seconds(10));
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
  struct State;
  explicit Machine(std::unique_ptr<State> state);
  // `ram`: one mapping per region of arch::ram_regions(config.mem_bytes).
  static Result<std::unique_ptr<State>> build(const MachineConfig& config, std::vector<MappedRegion> ram);
  static Status check_saved_devices(const State& s, const state::SnapshotState& st);
  std::unique_ptr<State> s_;
};

}  // namespace snapvm
