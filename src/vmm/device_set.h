// The devices of a machine: the MMIO bus, the console, the virtio devices
// in their slots with the host resources behind them, and the platform's
// own devices (through arch::Platform). Builds them from a configuration,
// serves the vCPUs' I/O exits, saves them into a snapshot's state and
// loads them back. Each device decodes its own record; this places each at
// the slot its record names and refuses a record whose place differs from
// this machine's.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "arch/platform.h"
#include "base/result.h"
#include "base/thread_annotations.h"
#include "devices/console_device.h"
#include "devices/mmio_bus.h"
#include "devices/virtio/device.h"
#include "devices/virtio/mmio_transport.h"
#include "kvm/kvm.h"
#include "state/snapshot_state.h"
#include "vmm/machine_config.h"

namespace snapvm {

namespace virtio {
class Vsock;
}

// What a virtio slot holds: a device type and, for disks and network
// interfaces, which one of the configuration's (in its order).
struct VirtioPlacement {
  virtio::DeviceType type = virtio::DeviceType::kRng;
  size_t index = 0;
  bool operator==(const VirtioPlacement&) const = default;
};
// The order a new machine takes: rng, disks, vsock, network interfaces.
std::vector<VirtioPlacement> default_placement(const MachineConfig& config);

class DeviceSet {
 public:
  // `memory`, `vm` and `platform` must outlive the set.
  DeviceSet(const kvm::Vm& vm, const GuestMemory& memory, arch::Platform& platform);
  // Stops the devices' threads before anything they use goes.
  ~DeviceSet();

  // The console, the platform's devices and the virtio devices, each virtio
  // device in the slot `placement` gives it. `console` gets every chunk the
  // UART emits; `guest_request` what the guest asks of platform devices.
  Status build(const MachineConfig& config, std::span<const VirtioPlacement> placement,
               std::function<void(std::string_view)> console, arch::GuestRequestFn guest_request);

  // An MMIO or port-I/O exit, on the vCPU thread that took it.
  void serve(arch::Exit& exit);
  // Devices with threads of their own stop touching guest memory (and
  // start again); see VirtioDevice::set_paused.
  void set_paused(bool paused);

  // The machine's devices and their state, into `st` (machine.devices and
  // devices), in the order of the format: the console in slot 0, the
  // virtio devices, then the platform's. Only while paused.
  void save(state::SnapshotState& st) const EXCLUDES(backends_mu_);
  // Every saved device against this machine, before anything is loaded: in
  // a slot it has, of the type there, at the place there. Needs no RAM.
  Status check_saved(const state::SnapshotState& st) const;
  // Loads every saved device (check_saved first).
  Status restore(const state::SnapshotState& st);

  virtio::Vsock* vsock() const { return vsock_; }
  std::span<const arch::DeviceSlot> virtio_slots() const { return slots_; }
  std::vector<std::string> describe() const;
  // The disks in configuration order, each with its current image path.
  std::vector<MachineConfig::Disk> disks(std::span<const MachineConfig::Disk> configured) const EXCLUDES(backends_mu_);
  Status replace_disk(size_t index, const std::string& path) EXCLUDES(backends_mu_);

 private:
  Status add_virtio(std::unique_ptr<virtio::VirtioDevice> device, std::string backend, std::string name);

  const kvm::Vm& vm_;
  const GuestMemory& memory_;
  arch::Platform& platform_;
  MmioBus mmio_;  // set up before the vCPUs run, read-only after
  std::unique_ptr<ConsoleDevice> console_;
  std::vector<std::unique_ptr<virtio::MmioTransport>> virtio_;
  std::vector<arch::DeviceSlot> slots_;  // per virtio device, its place
  std::vector<std::string> names_;       // per virtio device, its name in snapshots (empty: "virtio<slot>")
  virtio::Vsock* vsock_ = nullptr;       // owned by its transport
  // Per virtio device: the image or socket behind it, as snapshots record
  // it. A disk's changes (replace_disk) while snapshots read it.
  mutable Mutex backends_mu_;
  std::vector<std::string> backends_ GUARDED_BY(backends_mu_);
};

}  // namespace snapvm
