#include "vmm/device_set.h"

#include <fmt/format.h>

#include "devices/tap.h"
#include "devices/virtio/block.h"
#include "devices/virtio/net.h"
#include "devices/virtio/rng.h"
#include "devices/virtio/vsock.h"

namespace snapvm {

std::vector<VirtioPlacement> default_placement(const MachineConfig& c) {
  std::vector<VirtioPlacement> out;
  if (c.rng) out.push_back({virtio::DeviceType::kRng, 0});
  for (size_t i = 0; i < c.disks.size(); ++i) out.push_back({virtio::DeviceType::kBlock, i});
  if (!c.vsock_path.empty()) out.push_back({virtio::DeviceType::kVsock, 0});
  for (size_t i = 0; i < c.nets.size(); ++i) out.push_back({virtio::DeviceType::kNet, i});
  return out;
}

DeviceSet::DeviceSet(const kvm::Vm& vm, const GuestMemory& memory, arch::Platform& platform)
    : vm_(vm), memory_(memory), platform_(platform) {}

// Devices with threads write guest memory and mark dirty pages until their
// transports are gone; the machine keeps RAM and the dirty log alive
// until then.
DeviceSet::~DeviceSet() { virtio_.clear(); }

Status DeviceSet::build(const MachineConfig& c, std::span<const VirtioPlacement> placement,
                        std::function<void(std::string_view)> console, arch::GuestRequestFn guest_request) {
  const arch::ConsoleSlot con = arch::console_slot();
  console_ = arch::make_console(std::move(console), [this, line = con.slot.irq](bool level) {
    platform_.set_irq(line, level);
  });
  SNAPVM_CHECK_OK(platform_.add_devices(mmio_, *console_, std::move(guest_request)));
  if (!c.publish.empty() && c.vsock_path.empty()) {
    return make_error(ErrorCode::kInvalidArgument, "--publish needs a vsock device (--vsock PATH or --name NAME)");
  }
  for (const VirtioPlacement& p : placement) {
    switch (p.type) {
      case virtio::DeviceType::kRng: SNAPVM_CHECK_OK(add_virtio(std::make_unique<virtio::Rng>(), {}, {})); break;
      case virtio::DeviceType::kBlock: {
        const MachineConfig::Disk& d = c.disks.at(p.index);
        SNAPVM_CHECK_OK(add_virtio(SNAPVM_TRY(virtio::Block::open(d.path, d.read_only)), d.path, d.id));
        break;
      }
      case virtio::DeviceType::kVsock: {
        auto vsock = SNAPVM_TRY(virtio::Vsock::create(c.guest_cid, c.vsock_path, c.publish));
        vsock_ = vsock.get();
        SNAPVM_CHECK_OK(add_virtio(std::move(vsock), c.vsock_path, {}));
        break;
      }
      case virtio::DeviceType::kNet: {
        const MachineConfig::Net& n = c.nets.at(p.index);
        UniqueFd tap = SNAPVM_TRY(open_tap(n.tap));
        const int fd = tap.get();  // owned by the device from here on
        auto device = SNAPVM_TRY(virtio::Net::create(std::move(tap), n.mac.value_or(virtio::random_mac()),
                                                     [fd](uint64_t features) { return set_tap_offloads(fd, features); }));
        SNAPVM_CHECK_OK(add_virtio(std::move(device), n.tap, n.id));
        break;
      }
    }
  }
  return {};
}

Status DeviceSet::add_virtio(std::unique_ptr<virtio::VirtioDevice> device, std::string backend, std::string name) {
  const uint32_t slot = static_cast<uint32_t>(virtio_.size());
  if (slot >= arch::virtio_slot_count()) {
    return make_error(ErrorCode::kInvalidArgument, "more than {} virtio devices", arch::virtio_slot_count());
  }
  const arch::DeviceSlot node = arch::virtio_slot(slot);
  // Edge-triggered: a rising edge per notification.
  auto irq = [p = &platform_, line = node.irq] {
    p->set_irq(line, true);
    p->set_irq(line, false);
  };
  // Queues whose device has a thread of its own are notified through
  // KVM, without an exit to this process (the vCPU goes on at once).
  for (size_t q = 0; q < device->queue_max_sizes().size(); ++q) {
    if (int fd = device->queue_notify_fd(q); fd >= 0) {
      SNAPVM_CHECK_OK(vm_.add_mmio_eventfd(node.base + virtio::MmioTransport::kQueueNotifyOffset, 4, q, fd));
    }
  }
  virtio_.push_back(std::make_unique<virtio::MmioTransport>(std::move(device), memory_, irq));
  SNAPVM_CHECK_OK(mmio_.add(node.base, node.size, virtio_.back().get()));
  slots_.push_back(node);
  names_.push_back(std::move(name));
  MutexLock lock(backends_mu_);
  backends_.push_back(std::move(backend));
  return {};
}

void DeviceSet::serve(arch::Exit& e) {
  if (e.kind == arch::Exit::Kind::kPortIo) {
    platform_.port_io(e);
  } else if (e.write) {
    mmio_.write(e.addr, e.data);
  } else {
    mmio_.read(e.addr, e.data);
  }
}

void DeviceSet::set_paused(bool paused) {
  for (auto& t : virtio_) t->device().set_paused(paused);
}

void DeviceSet::save(state::SnapshotState& st) const {
  const arch::ConsoleSlot con = arch::console_slot();
  st.machine.devices.push_back({con.kind, 0, con.slot.base, con.slot.size, con.slot.irq, "console", ""});
  {
    MutexLock lock(backends_mu_);
    for (size_t i = 0; i < virtio_.size(); ++i) {
      const arch::DeviceSlot& node = slots_[i];
      state::DeviceState saved = virtio_[i]->save_device(static_cast<uint32_t>(i + 1));
      st.machine.devices.push_back({state::DeviceKind::kVirtioMmio, saved.transport->device_id, node.base, node.size,
                                    node.irq, names_[i].empty() ? fmt::format("virtio{}", i) : names_[i],
                                    backends_[i]});
      st.devices.push_back(std::move(saved));
    }
  }
  st.devices.push_back({0, std::nullopt, console_->save()});  // slot 0, no transport: the console UART
  for (auto& p : platform_.save_devices()) {
    st.machine.devices.push_back(std::move(p.where));
    st.devices.push_back({static_cast<uint32_t>(st.machine.devices.size() - 1), std::nullopt, std::move(p.bytes)});
  }
}

Status DeviceSet::check_saved(const state::SnapshotState& st) const {
  const auto& places = st.machine.devices;
  // The places first: each virtio slot where this machine has it, and the
  // console where this machine has it.
  if (places.empty()) return make_error(ErrorCode::kDataLoss, "the snapshot lists no devices (not even its console)");
  const arch::ConsoleSlot con = arch::console_slot();
  if (places[0].kind != con.kind || places[0].mmio_base != con.slot.base || places[0].irq != con.slot.irq) {
    return make_error(ErrorCode::kDataLoss, "the snapshot's slot 0 is not this machine's console ({:#x}, irq {})",
                      con.slot.base, con.slot.irq);
  }
  size_t virtio_seen = 0;
  for (size_t slot = 1; slot < places.size(); ++slot) {
    const state::DeviceConfig& d = places[slot];
    if (d.kind != state::DeviceKind::kVirtioMmio) continue;
    // Virtio devices sit in the slots right after the console, in order.
    if (slot != virtio_seen + 1 || virtio_seen >= virtio_.size()) {
      return make_error(ErrorCode::kDataLoss, "the snapshot's device slot {} is a virtio device this machine lacks",
                        slot);
    }
    const arch::DeviceSlot here = slots_[virtio_seen];
    if (d.mmio_base != here.base || d.mmio_size != here.size || d.irq != here.irq) {
      return make_error(ErrorCode::kDataLoss,
                        "the snapshot's virtio device {} is at {:#x} (irq {}); this machine's slot is at {:#x} (irq {})",
                        virtio_seen, d.mmio_base, d.irq, here.base, here.irq);
    }
    if (d.virtio_type != virtio_[virtio_seen]->device().device_id()) {
      return make_error(ErrorCode::kDataLoss, "device slot {} holds virtio type {}, the snapshot says {}", slot,
                        virtio_[virtio_seen]->device().device_id(), d.virtio_type);
    }
    ++virtio_seen;
  }
  if (virtio_seen != virtio_.size()) {
    return make_error(ErrorCode::kDataLoss, "the snapshot has {} virtio devices, this machine {}", virtio_seen,
                      virtio_.size());
  }
  for (const auto& d : st.devices) {
    if (d.slot >= places.size()) {
      return make_error(ErrorCode::kDataLoss, "saved device slot {} is not in the machine's {} slots", d.slot,
                        places.size());
    }
    const state::DeviceConfig& where = places[d.slot];
    if (d.slot == 0) {
      if (d.transport) return make_error(ErrorCode::kDataLoss, "the saved console has a virtio transport");
    } else if (where.kind == state::DeviceKind::kVirtioMmio) {
      if (!d.transport) return make_error(ErrorCode::kDataLoss, "saved virtio device slot {} has no transport", d.slot);
      // The places above were checked: virtio slot N is device N - 1 here.
      const uint32_t here = virtio_[d.slot - 1]->device().device_id();
      if (d.transport->device_id != here) {
        return make_error(ErrorCode::kDataLoss, "device slot {} holds virtio type {}, the snapshot says {}", d.slot,
                          here, d.transport->device_id);
      }
    } else {
      if (d.transport) return make_error(ErrorCode::kDataLoss, "saved platform device slot {} has a transport", d.slot);
      SNAPVM_CHECK_OK(platform_.check_saved_device(where));
    }
  }
  return {};
}

Status DeviceSet::restore(const state::SnapshotState& st) {
  SNAPVM_CHECK_OK(check_saved(st));
  for (const auto& d : st.devices) {
    const state::DeviceConfig& where = st.machine.devices[d.slot];
    if (d.slot == 0) {
      SNAPVM_CHECK_OK(console_->restore(d.device_specific));
    } else if (where.kind == state::DeviceKind::kVirtioMmio) {
      SNAPVM_CHECK_OK(virtio_[d.slot - 1]->restore_device(d));  // slot - 1 < virtio_.size(): check_saved
    } else {
      SNAPVM_CHECK_OK(platform_.restore_device(where, d.device_specific));
    }
  }
  return {};
}

std::vector<std::string> DeviceSet::describe() const {
  std::vector<std::string> out;
  for (const auto& t : virtio_) out.push_back(t->describe());
  return out;
}

std::vector<MachineConfig::Disk> DeviceSet::disks(std::span<const MachineConfig::Disk> configured) const {
  MutexLock lock(backends_mu_);
  std::vector<MachineConfig::Disk> out;
  size_t index = 0;
  for (size_t slot = 0; slot < virtio_.size(); ++slot) {
    if (virtio_[slot]->device().device_id() != static_cast<uint32_t>(virtio::DeviceType::kBlock)) continue;
    MachineConfig::Disk d = configured[index++];
    d.path = backends_[slot];
    out.push_back(std::move(d));
  }
  return out;
}

Status DeviceSet::replace_disk(size_t index, const std::string& path) {
  MutexLock lock(backends_mu_);
  size_t seen = 0;
  for (size_t slot = 0; slot < virtio_.size(); ++slot) {
    auto& device = virtio_[slot]->device();
    if (device.device_id() != static_cast<uint32_t>(virtio::DeviceType::kBlock)) continue;
    if (seen++ != index) continue;
    SNAPVM_CHECK_OK(static_cast<virtio::Block&>(device).replace_backing(path));
    backends_[slot] = path;
    return {};
  }
  return make_error(ErrorCode::kNotFound, "no disk {} (the VM has {})", index, seen);
}

}  // namespace snapvm
