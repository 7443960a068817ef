// The typed root of everything a snapshot holds besides RAM, and its mapping
// to and from the container's sections.
#pragma once

#include <optional>
#include <vector>

#include "base/result.h"
#include "snapshot/format.h"
#include "snapshot/reader.h"
#include "snapshot/writer.h"
#include "state/device_state.h"
#include "state/gic_state.h"
#include "state/host_state.h"
#include "state/machine_config.h"
#include "state/vcpu_state.h"

namespace snapvm::state {

struct SnapshotState {
  format::Arch arch = format::Arch::kArm64;
  MachineConfig machine;
  std::vector<VcpuState> vcpus;
  std::optional<GicV3State> gic;
  std::vector<DeviceState> devices;
  std::vector<PortForward> port_forwards;
  ClockState clock;
  HostIdentity host;
  std::optional<Creator> creator;
  bool operator==(const SnapshotState&) const = default;
};

SnapshotContents to_contents(const SnapshotState& s);

// Decodes every section of an opened file and checks that they agree with
// each other and with the RAM layout (vCPU count, device slots, memory).
Result<SnapshotState> load_state(const SnapshotFile& file);

}  // namespace snapvm::state
