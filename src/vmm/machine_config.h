// What a machine is built from: the configuration of a new VM, and the
// host resources a restored one takes in place of those its snapshot names.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "devices/virtio/net.h"
#include "state/host_state.h"

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

}  // namespace snapvm
