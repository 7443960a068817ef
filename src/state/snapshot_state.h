// The typed root of everything a snapshot holds besides RAM, and its mapping
// to and from the container's sections.
#pragma once

#include <optional>
#include <variant>
#include <vector>

#include "base/result.h"
#include "snapshot/format.h"
#include "snapshot/reader.h"
#include "snapshot/writer.h"
#include "state/device_state.h"
#include "state/external_ram.h"
#include "state/arm64/gic_state.h"
#include "state/host_state.h"
#include "state/machine_shape.h"
#include "state/vcpu_state.h"
#include "state/x86_64/x86_state.h"

namespace snapvm::state {

// The interrupt controller and timers that belong to the VM rather than to
// one vCPU: the GICv3 on arm64; the PIC pair, IOAPIC, PIT and kvmclock on
// x86_64. Which one a snapshot must hold follows from its architecture.
using ArchVmState = std::variant<std::monostate, GicV3State, x86::VmState>;

struct SnapshotState {
  format::Arch arch{};  // no default: a writer that forgets it fails
  MachineShape machine;
  std::vector<VcpuState> vcpus;
  ArchVmState arch_vm;
  std::vector<DeviceState> devices;
  std::vector<PortForward> port_forwards;
  ClockState clock;
  HostIdentity host;
  std::optional<Creator> creator;
  // Set when guest RAM lives in a separate memory file, not in this one.
  std::optional<ExternalRam> external_ram;
  bool operator==(const SnapshotState&) const = default;
};

SnapshotContents to_contents(const SnapshotState& s);

// Decodes every section of an opened file and checks that they agree with
// each other and with the RAM layout (vCPU count, device slots, memory).
Result<SnapshotState> load_state(const SnapshotFile& file);

}  // namespace snapvm::state
