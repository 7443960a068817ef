#include "vmm/restore_plan.h"

#include <fmt/format.h>

#include "base/paths.h"
#include "devices/virtio/block.h"
#include "devices/virtio/net.h"
#include "devices/virtio/vsock.h"

namespace snapvm {
namespace {

// The regions must be exactly the ones this machine lays out for their
// total: KVM slots and device addresses depend on it.
Result<std::vector<arch::RamRegion>> check_layout(std::span<const arch::RamRegion> saved, const std::string& path) {
  uint64_t bytes = 0;
  for (const auto& r : saved) bytes += r.size;
  auto layout = arch::ram_regions(bytes);
  bool same = arch::check_ram_size(bytes).has_value() && layout.size() == saved.size();
  for (size_t i = 0; same && i < layout.size(); ++i) same = layout[i].gpa == saved[i].gpa && layout[i].size == saved[i].size;
  if (!same) {
    return make_error(ErrorCode::kUnsupported, "{}: its RAM regions are not the ones this {} machine lays out for {} MiB",
                      path, arch::name(), bytes >> 20);
  }
  return layout;
}

// The saved record of the device in `slot`, if the snapshot has one.
const state::DeviceState* saved_at(const state::SnapshotState& st, size_t slot) {
  for (const auto& d : st.devices) {
    if (d.slot == slot) return &d;
  }
  return nullptr;
}

}  // namespace

Result<RestorePlan> plan_restore(const state::SnapshotState& st, std::span<const arch::RamRegion> regions,
                                 const RestoreOptions& o, const std::string& path) {
  RestorePlan plan;
  plan.ram = SNAPVM_TRY(check_layout(regions, path));
  MachineConfig& c = plan.config;
  c.vcpus = st.machine.vcpu_count;
  c.mem_bytes = 0;
  for (const auto& r : plan.ram) c.mem_bytes += r.size;
  c.cmdline = st.machine.kernel_cmdline;
  c.console = o.console;
  c.rng = false;
  c.publish = o.publish;  // the snapshot's forwards belong to the VM it was taken from
  c.track_dirty = o.track_dirty;
  const std::string allowed = SNAPVM_TRY(o.allowed_dir.empty() ? directory_of(path) : resolve_within(o.allowed_dir, "/"));
  // A path the snapshot recorded, accepted only inside `allowed`.
  auto recorded = [&](const std::string& stored, const std::string& what, const char* flag) -> Result<std::string> {
    auto inside = resolve_within(stored, allowed);
    if (!inside) {
      return make_error(ErrorCode::kFailedPrecondition, "{}: the snapshot's {} {} is not inside {}: give {}", path,
                        what, stored, allowed, flag);
    }
    return *inside;
  };
  for (size_t slot = 0; slot < st.machine.devices.size(); ++slot) {
    const state::DeviceConfig& d = st.machine.devices[slot];
    if (d.kind != state::DeviceKind::kVirtioMmio) continue;
    const state::DeviceState* saved = saved_at(st, slot);
    switch (static_cast<virtio::DeviceType>(d.virtio_type)) {
      case virtio::DeviceType::kRng:
        if (c.rng) return make_error(ErrorCode::kDataLoss, "{}: two virtio-rng devices", path);
        c.rng = true;
        plan.placement.push_back({virtio::DeviceType::kRng, 0});
        break;
      case virtio::DeviceType::kBlock: {
        const size_t index = c.disks.size();
        // Read-only stays read-only: the guest negotiated VIRTIO_BLK_F_RO.
        const bool read_only = saved != nullptr && saved->transport && virtio::Block::read_only_of_saved(*saved->transport);
        std::string disk = index < o.disks.size()
                               ? o.disks[index]
                               : SNAPVM_TRY(recorded(d.backend, fmt::format("disk {}", index), "--disk PATH"));
        c.disks.push_back({std::move(disk), read_only, d.name});
        plan.placement.push_back({virtio::DeviceType::kBlock, index});
        break;
      }
      case virtio::DeviceType::kNet: {
        const size_t index = c.nets.size();
        MachineConfig::Net net = index < o.nets.size() ? o.nets[index] : MachineConfig::Net{};
        net.id = d.name;
        for (const auto& [id, tap] : o.taps_by_id) {
          if (id == d.name) net.tap = tap;
        }
        if (net.tap.empty()) {
          if (!o.recorded_taps) {
            return make_error(ErrorCode::kFailedPrecondition,
                              "{}: the snapshot's network interface {} was on tap {}: give --net tap=NAME", path, index,
                              d.backend);
          }
          net.tap = d.backend;
        }
        // The MAC the guest knows, unless this clone is given another.
        if (!net.mac && saved != nullptr) net.mac = SNAPVM_TRY(virtio::Net::mac_of_saved(saved->device_specific));
        c.nets.push_back(std::move(net));
        plan.placement.push_back({virtio::DeviceType::kNet, index});
        break;
      }
      case virtio::DeviceType::kVsock:
        if (!c.vsock_path.empty()) return make_error(ErrorCode::kDataLoss, "{}: two virtio-vsock devices", path);
        c.vsock_path = !o.vsock_path.empty() ? o.vsock_path
                                             : SNAPVM_TRY(recorded(d.backend, "vsock socket", "--vsock PATH or --name"));
        if (saved != nullptr) c.guest_cid = SNAPVM_TRY(virtio::Vsock::guest_cid_of_saved(saved->device_specific));
        plan.placement.push_back({virtio::DeviceType::kVsock, 0});
        break;
      default:
        return make_error(ErrorCode::kUnsupported, "{}: virtio device type {} in slot {} is not one this VMM has", path,
                          d.virtio_type, slot);
    }
  }
  if (o.nets.size() > c.nets.size()) {
    return make_error(ErrorCode::kInvalidArgument, "{}: {} --net given, the snapshot has {} network interface(s)", path,
                      o.nets.size(), c.nets.size());
  }
  return plan;
}

}  // namespace snapvm
