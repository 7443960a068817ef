// What to build for a restore: from a snapshot's decoded state, its RAM
// regions and the restore options, the machine's configuration and the
// slot of each virtio device. Decides everything a snapshot's records and
// the caller's options say about the new machine, and refuses what cannot
// be honoured, before any KVM object exists (unit-tested without KVM).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "arch/platform.h"
#include "base/result.h"
#include "state/snapshot_state.h"
#include "vmm/device_set.h"
#include "vmm/machine_config.h"

namespace snapvm {

struct RestorePlan {
  MachineConfig config;
  std::vector<VirtioPlacement> placement;  // per virtio slot, in slot order
  std::vector<arch::RamRegion> ram;        // the layout this machine gives that much RAM
};

// `regions`: the snapshot's RAM regions (guest address and size), from the
// file or from its external-memory record. `snapshot_path` names the
// snapshot in errors and, without options.allowed_dir, is where its own
// recorded paths may lie.
Result<RestorePlan> plan_restore(const state::SnapshotState& st, std::span<const arch::RamRegion> regions,
                                 const RestoreOptions& options, const std::string& snapshot_path);

}  // namespace snapvm
